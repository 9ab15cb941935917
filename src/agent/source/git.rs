//! The desired state on the environment's branch in the git store: one ref advertisement per
//! reconcile, a shallow fetch only when the branch moved (the store's cache and verdicts make
//! loading an unchanged tip cheap).

use std::rc::Rc;

use super::{Desired, DesiredSource, Invalid, SourceError};
use crate::deploy::fetch::Cache;
use crate::sign::AllowedSigners;
use crate::state::load_at;
use crate::store::{History, Store};

/// The environment's branch `branch` in `store`.
pub struct GitBranch<'s> {
    store: &'s Store,
    branch: String,
    /// When set, only a tip signed by one of these keys is desired state.
    trusted: Option<AllowedSigners>,
}

impl<'s> GitBranch<'s> {
    pub fn new(store: &'s Store, branch: String) -> GitBranch<'s> {
        GitBranch {
            store,
            branch,
            trusted: None,
        }
    }

    /// Only a tip whose commit carries a good signature by one of `keys` is desired state:
    /// any other is invalid (the agent keeps its release and says why).
    pub fn trusting(self, keys: AllowedSigners) -> GitBranch<'s> {
        GitBranch {
            trusted: Some(keys),
            ..self
        }
    }
}

impl DesiredSource for GitBranch<'_> {
    fn desired(&mut self, env: &str, _: &Cache) -> Result<Desired, SourceError> {
        self.store.refresh();
        let tip = self.store.tip(&self.branch, History::Tip)?;
        let mut checked = None;
        if let Some(trusted) = &self.trusted {
            let (signature, signed) = self.store.signature_of(tip)?;
            let verdict = trusted.verify(signature.as_deref(), &signed);
            if !verdict.is_trusted() {
                return Ok(Desired {
                    revision: tip.to_string(),
                    state: Err(Invalid(format!(
                        "{verdict}: {} is not signed by a trusted key (--trusted-keys)",
                        &tip.to_string()[..12]
                    ))),
                    signature: Some(verdict),
                });
            }
            tracing::debug!("{}: {verdict}", &tip.to_string()[..12]);
            checked = Some(verdict);
        }
        let state = load_at(self.store, env, &self.branch, tip)
            .map(|loaded| Rc::new(loaded.state))
            .map_err(|e| Invalid(e.message_with_details()));
        Ok(Desired {
            revision: tip.to_string(),
            state,
            signature: checked,
        })
    }
}
