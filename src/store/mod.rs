//! The state store: where the desired state lives, one branch per environment.
//!
//! The store is git, reached remote-first with no working tree: ferry reads blobs and trees
//! straight from objects and builds commits with git2 (blob, tree, commit, ref update), never a
//! checkout or a `git` process. A remote on a local path (the embedded default) is opened
//! directly; a network remote (`https://`, `ssh://`, `git@host:path`, `git://`) is mirrored
//! into a bare cache, shallow unless history is needed. Branch updates are compare-and-swap:
//! an update names the commit it expects the branch to be at, and reports
//! [`UpdateOutcome::Moved`] instead of overwriting someone else's change.

mod auth;
mod git;
pub mod hook;
mod loose;
mod remote;
pub mod tls;
mod tree;

pub use git::{
    CommitInfo, History, Person, RefUpdate, Store, UpdateOutcome, signature, signature_in,
};
/// Commit, tree and blob ids: the store's names for states.
pub use git2::Oid;
pub use loose::{Collision, object_id};
pub use remote::{Remote, RemoteArgs};
pub use tree::TreeSource;

/// What can go wrong talking to the store. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach `{remote}`: {message}")]
    Unreachable {
        remote: String,
        message: String,
        /// Whether trying again may help (the network, a timeout), unlike a refused
        /// credential or certificate.
        transient: bool,
    },
    #[error("`{remote}` is not a git repository: {message}")]
    NotARepository { remote: String, message: String },
    #[error("`{remote}` has no branch `{branch}`")]
    NoBranch { remote: String, branch: String },
    #[error("the push to `{remote}` was refused: {message}")]
    Refused { remote: String, message: String },
    #[error("cache `{path}`: {message}")]
    Cache { path: String, message: String },
    #[error("git: {0}")]
    Git(String),
    #[error("{0}")]
    Credentials(#[from] crate::secret::SecretError),
    /// The signing key configured (`FERRY_SIGNING_KEY`, or git's `commit.gpgsign`) cannot sign.
    #[error("{0}")]
    Signing(String),
    /// No `--remote`, no `FERRY_REMOTE`, and no clone around the current directory.
    #[error("no remote given")]
    NoRemote,
}
