//! Where the agent reads the desired state from: a [`DesiredSource`]. Two exist: the
//! environment's branch in the git store ([`git::GitBranch`]) and the artifact `ferry publish`
//! pushes to a registry ([`oci::OciTag`]). A new source is one new file here implementing the
//! trait, and one line in `cmd/agent.rs` choosing it.

pub mod git;
pub mod oci;

use std::rc::Rc;

use crate::deploy::fetch::Cache;
use crate::oci::OciError;
use crate::store::StoreError;
use crate::validate::State;

pub use git::GitBranch;
pub use oci::OciTag;

/// Where the agent reads the desired state from.
pub trait DesiredSource {
    /// The desired state of environment `env` now, read cheaply when it has not moved;
    /// `Err` when it cannot be read at all. `cache` is the agent's artifact cache, for a
    /// source that keeps what it pulled there.
    fn desired(&mut self, env: &str, cache: &Cache) -> Result<Desired, SourceError>;

    /// The artifact cache's entry (a SHA-256) this source keeps, not to be pruned.
    fn cached(&self) -> Option<&str> {
        None
    }
}

/// The desired state one reconcile works from.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The commit (or, for an artifact without one, its digest).
    pub revision: String,
    /// The state, valid; or why it cannot be deployed.
    pub state: Result<Rc<State>, Invalid>,
    /// What the revision's signature says, when the source checks it (`--trusted-keys`).
    pub signature: Option<crate::sign::Verdict>,
}

/// Why a desired state that was read cannot be deployed (the whole report, in words): it
/// waits for a new revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Why the desired state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The state store could not be read (unreachable, refused): retried.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry answered with an error, or could not be reached.
    #[error(transparent)]
    Registry(#[from] OciError),
    /// What the source holds is not a desired state (no such tag, another artifact): waits
    /// for someone to act.
    #[error("{0}")]
    Refused(String),
}

impl SourceError {
    /// Whether retrying may help (a store or registry out of reach), rather than someone
    /// acting.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Store(_) => true,
            SourceError::Registry(e) => e.is_transient(),
            SourceError::Refused(_) => false,
        }
    }
}
