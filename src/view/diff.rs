//! The document of `ferry diff`: per app, what two environments run and which way a promotion
//! would move it.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::compare::{self, AppComparison};
use crate::state::{branch_of, manifest_at};
use crate::store::{History, Store};

/// Two environments compared.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub from: String,
    pub to: String,
    pub from_commit: String,
    pub to_commit: String,
    pub apps: Vec<AppComparison>,
}

/// `from` and `to` compared, app by app.
pub fn diff(store: &Store, from: &str, to: &str) -> Result<DiffReport> {
    let from_branch = branch_of(store, from)?;
    let to_branch = branch_of(store, to)?;
    let tips = store.fetch(&[&from_branch, &to_branch], History::Tip)?;
    let tip = |branch: &str| {
        tips.get(branch)
            .copied()
            .flatten()
            .expect("branch_of found it")
    };
    let (from_tip, to_tip) = (tip(&from_branch), tip(&to_branch));
    let read = |env: &str, commit| {
        manifest_at(store, commit)?.ok_or_else(|| {
            Error::failure(format!(
                "`{env}` has no readable `manifest.json` at {}",
                crate::output::abbrev(&commit.to_string(), 7)
            ))
            .hint("run `ferry validate` on the branch's files")
        })
    };
    let apps = compare::compare(&read(from, from_tip)?, &read(to, to_tip)?);
    Ok(DiffReport {
        from: from.to_owned(),
        to: to.to_owned(),
        from_commit: from_tip.to_string(),
        to_commit: to_tip.to_string(),
        apps,
    })
}
