//! The document of `ferry history`: each change of an environment's branch, newest first,
//! with who made it, who signed it and which apps it moved.

use serde::Serialize;

use crate::error::Result;
use crate::output::format_time;
use crate::plan::history::{Move, moves};
use crate::sign::{AllowedSigners, Verdict};
use crate::state::{Manifests, branch_of, changes};
use crate::store::{History, Store};

/// One change of the branch.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub commit: String,
    pub time: String,
    pub author: String,
    pub email: String,
    pub subject: String,
    pub changes: Vec<Move>,
    pub signature: Verdict,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Only the changes that moved this app.
    pub app: Option<&'a str>,
    /// At most this many changes.
    pub limit: Option<usize>,
}

/// The changes of `env`'s branch, newest first, each signature checked against `trusted`.
/// Also returns the branch.
pub fn history(
    store: &Store,
    env: &str,
    query: &Query<'_>,
    trusted: &AllowedSigners,
) -> Result<(String, Vec<Entry>)> {
    let branch = branch_of(store, env)?;
    let tip = store.tip(&branch, History::Full)?;

    let mut manifests = Manifests::new(store);
    let mut entries = Vec::new();
    for change in changes(store, tip)? {
        if query.limit.is_some_and(|limit| entries.len() >= limit) {
            break;
        }
        let (commit, before) = change?;
        let (id, after) = (commit.id, commit.manifest);
        let changes = if after == before {
            Vec::new()
        } else {
            moves(
                manifests.at_blob(before).as_ref(),
                manifests.at_blob(after).as_ref(),
            )
        };
        if let Some(app) = query.app
            && !changes.iter().any(|m| m.app == app)
        {
            continue;
        }
        let (signature, signed) = store.signature_of(id)?;
        entries.push(Entry {
            signature: trusted.verify(signature.as_deref(), &signed),
            commit: id.to_string(),
            time: format_time(commit.committer.time),
            subject: commit.subject(),
            author: commit.author.name,
            email: commit.author.email,
            changes,
        });
    }
    Ok((branch, entries))
}
