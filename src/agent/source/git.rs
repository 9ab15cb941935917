//! The desired state on the environment's branch in the git store: one ref advertisement per
//! reconcile, a shallow fetch only when the branch moved (the store's cache and verdicts make
//! loading an unchanged tip cheap).

use std::rc::Rc;

use super::{Desired, DesiredSource, Invalid, SourceError};
use crate::deploy::fetch::Cache;
use crate::state::load_at;
use crate::store::{History, Store};

/// The environment's branch `branch` in `store`.
pub struct GitBranch<'s> {
    store: &'s Store,
    branch: String,
}

impl<'s> GitBranch<'s> {
    pub fn new(store: &'s Store, branch: String) -> GitBranch<'s> {
        GitBranch { store, branch }
    }
}

impl DesiredSource for GitBranch<'_> {
    fn desired(&mut self, env: &str, _: &Cache) -> Result<Desired, SourceError> {
        self.store.refresh();
        let tip = self.store.tip(&self.branch, History::Tip)?;
        let state = load_at(self.store, env, &self.branch, tip)
            .map(|loaded| Rc::new(loaded.state))
            .map_err(|e| Invalid(e.message_with_details()));
        Ok(Desired {
            revision: tip.to_string(),
            state,
        })
    }
}
