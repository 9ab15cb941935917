//! Where the agent reports its deploys: the commit status `ferry/deploy/<env>` on the revision
//! it deployed, through a [`Reporter`]. Two exist: the local forge's records in the deployment
//! repository ([`LocalStatuses`]) and GitHub's statuses API ([`GitHubStatuses`]). Each says
//! nothing when the status already says the same. (A `Forge` with statuses read and write
//! would implement [`Reporter`] in a few lines.)

use std::cell::RefCell;

use git2::Oid;

use crate::forge::github::{GitHub, GitHubError};
use crate::forge::local::{ForgeError, LocalForge};
use crate::forge::{CheckState, Status};
use crate::identity::{identity, now, signature};
use crate::store::Store;

/// Sets the agent's commit statuses.
pub trait Reporter {
    /// Sets check `check` on `commit` to `state` with `description`, unless it says that
    /// already.
    fn report(
        &self,
        commit: Oid,
        check: &str,
        state: CheckState,
        description: &str,
    ) -> Result<(), ReportError>;
}

/// Why a status could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Local(#[from] ForgeError),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// Who signs the local record is not known (git's `user.name`).
    #[error("{0}")]
    Signature(String),
}

/// The local forge's records (`refs/ferry/…`) in the deployment repository.
pub struct LocalStatuses<'s> {
    store: &'s Store,
}

impl<'s> LocalStatuses<'s> {
    pub fn new(store: &'s Store) -> LocalStatuses<'s> {
        LocalStatuses { store }
    }
}

impl Reporter for LocalStatuses<'_> {
    fn report(
        &self,
        commit: Oid,
        check: &str,
        state: CheckState,
        description: &str,
    ) -> Result<(), ReportError> {
        let forge = LocalForge::new(self.store);
        let current = forge.statuses(commit)?;
        if current
            .get(check)
            .is_some_and(|s| s.state == state && s.description == description)
        {
            return Ok(()); // said already
        }
        let by = identity(self.store, None);
        let signature = signature(self.store).map_err(|e| ReportError::Signature(e.message))?;
        let status = Status {
            state,
            description: description.to_owned(),
            url: None,
            by,
            at: now(),
        };
        forge.set_status(commit, check, status, &signature)?;
        Ok(())
    }
}

/// GitHub's statuses API, with the agent's own token.
pub struct GitHubStatuses {
    github: GitHub,
    /// The last status set, not to set it again every interval.
    said: RefCell<Option<(Oid, CheckState, String)>>,
}

impl GitHubStatuses {
    pub fn new(github: GitHub) -> GitHubStatuses {
        GitHubStatuses {
            github,
            said: RefCell::default(),
        }
    }
}

impl Reporter for GitHubStatuses {
    fn report(
        &self,
        commit: Oid,
        check: &str,
        state: CheckState,
        description: &str,
    ) -> Result<(), ReportError> {
        let said = (commit, state, description.to_owned());
        if self.said.borrow().as_ref() == Some(&said) {
            return Ok(()); // said already
        }
        self.github
            .create_status(&commit.to_string(), state.as_str(), check, description)?;
        *self.said.borrow_mut() = Some(said);
        Ok(())
    }
}

/// The first line of `text`, within GitHub's 140 characters for a status, marked when cut.
pub fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= 140 {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(139).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_says_the_first_line_within_140_characters() {
        assert_eq!(first_line("one\ntwo"), "one");
        assert_eq!(first_line(""), "");
        let long = "é".repeat(200);
        let cut = first_line(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
    }
}
