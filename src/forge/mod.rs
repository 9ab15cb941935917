//! The forge: where promotion requests, their approvals and commit statuses live.
//!
//! The embedded default ([`local`]) keeps them in the deployment repository itself, so every
//! clone carries the review record. The types here are what any forge records: enough to
//! enforce branch protection and to audit who approved and merged what, and when.

pub mod github;
pub mod local;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Artifact;
use crate::plan::promote::Kind;

/// A promotion request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Open,
    Merged,
    Closed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::Merged => "merged",
            RequestState::Closed => "closed",
        }
    }
}

/// One pin a request moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedMove {
    pub app: String,
    /// The target's version before (`None`: new to the target).
    pub from: Option<String>,
    pub to: String,
    pub kind: Kind,
    /// The exact pin the target takes.
    pub pin: Artifact,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    /// Unix seconds.
    pub at: i64,
    /// The request's head commit when approved.
    pub head: String,
}

/// The branch of the promotion request `from` → `to`.
pub fn request_branch(from: &str, to: &str) -> String {
    format!("ferry/promote/{from}-to-{to}")
}

/// A promotion request: `from` → `to`, on its own branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub from: String,
    pub to: String,
    /// The branch holding the proposed state of `to`.
    pub branch: String,
    pub state: RequestState,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The commit of `to` the proposal is built on.
    pub base: String,
    /// The proposed commit of `to`.
    pub head: String,
    /// The commit of `from` being promoted.
    pub source: String,
    pub rollback: bool,
    pub moves: Vec<RequestedMove>,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
}

impl Request {
    /// The distinct people, other than the author, who approved the current head (or any
    /// head, unless stale approvals are dismissed).
    pub fn approvers(&self, dismiss_stale: bool) -> Vec<&str> {
        let mut people: Vec<&str> = self
            .approvals
            .iter()
            .filter(|a| a.by != self.author)
            .filter(|a| !dismiss_stale || a.head == self.head)
            .map(|a| a.by.as_str())
            .collect();
        people.sort_unstable();
        people.dedup();
        people
    }
}

/// A commit status state, as GitHub has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Error => "error",
        }
    }
}

/// The latest report of one check on one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: CheckState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub by: String,
    /// Unix seconds.
    pub at: i64,
}

/// The longest check name.
pub const CHECK_NAME_LIMIT: usize = 128;

/// Whether `name` is a check name: letters, digits, `.`, `_`, `/`, `:` and `-`, starting with a
/// letter or digit, at most [`CHECK_NAME_LIMIT`] characters (the schema's `check` pattern,
/// `^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$`). Names are printed in tables, messages and commit
/// messages: nothing in one may start a line or hide what follows.
pub fn check_name(name: &str) -> Result<(), String> {
    let shown = || {
        format!(
            "{:?}",
            name.chars().take(CHECK_NAME_LIMIT + 8).collect::<String>()
        )
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '-');
    if name.is_empty() {
        return Err("a check name is empty".to_owned());
    }
    if name.chars().count() > CHECK_NAME_LIMIT {
        return Err(format!(
            "the check name {} is longer than {CHECK_NAME_LIMIT} characters",
            shown()
        ));
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "the check name {} contains {bad:?}: a check name is letters, digits, `.`, `_`, `/`, `:` and `-`",
            shown()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "the check name {} starts with {:?}: it starts with a letter or a digit",
            shown(),
            name.chars().next().expect("not empty")
        ));
    }
    Ok(())
}

/// The longest description a status record keeps (the repository's hook refuses longer ones;
/// GitHub keeps 140 characters).
pub const MAX_DESCRIPTION: usize = 1024;

/// `description` within [`MAX_DESCRIPTION`] characters, cut with a marker.
pub fn fit_description(description: &str) -> String {
    if description.chars().count() <= MAX_DESCRIPTION {
        return description.to_owned();
    }
    let mut cut: String = description.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

/// The statuses of one commit, by check name.
pub type Statuses = BTreeMap<String, Status>;

/// The checks of `required` that are not green in `statuses`.
pub fn missing_checks<'a>(required: &'a [String], statuses: &Statuses) -> Vec<&'a str> {
    required
        .iter()
        .filter(|c| statuses.get(*c).map(|s| s.state) != Some(CheckState::Success))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_fit_the_record_with_a_marker() {
        assert_eq!(super::fit_description("ok"), "ok");
        let long = "é".repeat(super::MAX_DESCRIPTION + 10);
        let fit = super::fit_description(&long);
        assert_eq!(fit.chars().count(), super::MAX_DESCRIPTION);
        assert!(fit.ends_with('…'));
    }

    use super::*;

    #[test]
    fn check_names_are_one_line_of_a_sane_charset() {
        for ok in [
            "ci/test",
            "ferry/deploy/staging",
            "a",
            "build:lint",
            "x.y_z-1",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_name(&"a".repeat(128)), Ok(()));
        let refused = |name: &str| check_name(name).expect_err(name);
        assert!(refused("ci/test\nferry/deploy/prod: success").contains("contains '\\n'"));
        assert!(refused("").contains("empty"));
        assert!(refused(&"a".repeat(129)).contains("longer than 128"));
        assert!(refused("/ci").contains("starts with '/'"));
        assert!(refused("ci test").contains("contains ' '"));
        assert!(refused("ci\u{202e}test").contains("contains"));
    }
}
