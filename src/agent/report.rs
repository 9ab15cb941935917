//! Where the agent reports its deploys: the commit status `ferry/deploy/<env>` on the revision
//! it deployed, through a [`Reporter`]. The one implementation, [`ForgeStatuses`], writes it
//! through any [`Forge`] (the embedded forge's records, GitHub's statuses API, …), and says
//! nothing when the status already says the same.

use std::cell::RefCell;

use crate::store::Oid;

use crate::forge::{CheckState, Forge, ForgeError, ForgeKind, Status};
use crate::identity::now;

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
#[error(transparent)]
pub struct ReportError(#[from] ForgeError);

/// Statuses set through a forge, as `by` (the name the embedded forge records; a hosted
/// forge records its token's user).
pub struct ForgeStatuses<'s> {
    forge: Box<dyn Forge + 's>,
    by: String,
    /// The last status set, not to set it again every interval.
    said: RefCell<Option<(Oid, CheckState, String)>>,
}

impl<'s> ForgeStatuses<'s> {
    pub fn new(forge: Box<dyn Forge + 's>, by: impl Into<String>) -> ForgeStatuses<'s> {
        ForgeStatuses {
            forge,
            by: by.into(),
            said: RefCell::default(),
        }
    }
}

impl Reporter for ForgeStatuses<'_> {
    fn report(
        &self,
        commit: Oid,
        check: &str,
        state: CheckState,
        description: &str,
    ) -> Result<(), ReportError> {
        let said = (commit, state, description.to_owned());
        if self.said.borrow().as_ref() == Some(&said) {
            return Ok(()); // said already, by this agent
        }
        // The embedded forge's records are local reads: another writer (an earlier run of
        // this agent) may have said it already. A hosted forge is not asked: one call saved
        // per interval.
        if self.forge.kind() == ForgeKind::Local
            && self
                .forge
                .statuses(commit)?
                .get(check)
                .is_some_and(|s| s.state == state && s.description == description)
        {
            *self.said.borrow_mut() = Some(said);
            return Ok(());
        }
        let status = Status {
            state,
            description: description.to_owned(),
            url: None,
            by: self.by.clone(),
            at: now(),
        };
        self.forge.set_status(commit, check, &status)?;
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
