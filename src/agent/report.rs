//! Where the agent reports its deploys: its host's commit status `ferry/deploy/ENV/HOST` on
//! the revision it deploys, and the environment's aggregate `ferry/deploy/ENV` when its report
//! completes or halts the rollout, through a [`Reporter`]. The one implementation,
//! [`ForgeStatuses`], works through any [`Forge`] (the embedded forge's records, GitHub's
//! statuses API, …), and reads and writes nothing while its last report still holds.

use std::cell::{Cell, RefCell};

use crate::store::Oid;

use crate::forge::{CheckState, Forge, ForgeError, ForgeKind, RolloutState, Status, Statuses};

/// Reads and sets the agent's commit statuses.
pub trait Reporter {
    /// The statuses on `commit` (the other hosts' reports, for the rollout's waves).
    fn statuses(&self, commit: Oid) -> Result<Statuses, ReportError>;

    /// Sets this host's status `check` on `commit` to `status`, and with it what `then`
    /// makes of the statuses that result (the environment's aggregate, when this report
    /// completes or halts the rollout), in one compare-and-swap where the forge has one.
    fn report(
        &self,
        commit: Oid,
        check: &str,
        status: Status,
        then: &dyn Fn(&Statuses) -> Vec<(String, Status)>,
    ) -> Result<(), ReportError>;
}

/// Why a status could not be read or set.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReportError(#[from] ForgeError);

/// Statuses set through a forge, as `by` (the name the embedded forge records; a hosted
/// forge records its token's user).
pub struct ForgeStatuses<'s> {
    forge: Box<dyn Forge + 's>,
    by: String,
    /// The last host status set, and whether the commit's aggregate was final then: nothing
    /// to read or write again every interval while both hold.
    said: RefCell<Option<(Oid, String, Status, bool)>>,
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

/// What a report says of one app, whenever it was made.
type Said<'s> = (
    &'s str,
    RolloutState,
    &'s str,
    Option<(usize, usize)>,
    &'s str,
);

/// Whether two reports say the same (whenever they were made).
fn same(a: &Status, b: &Status) -> bool {
    fn apps(s: &Status) -> Vec<Said<'_>> {
        s.apps
            .iter()
            .map(|(name, a)| {
                (
                    name.as_str(),
                    a.state,
                    a.version.as_str(),
                    a.wave,
                    a.message.as_str(),
                )
            })
            .collect()
    }
    a.state == b.state && a.description == b.description && apps(a) == apps(b)
}

/// `status` with each app's `since` kept from `old` where its state did not change.
fn keep_since(old: Option<&Status>, mut status: Status) -> Status {
    if let Some(old) = old {
        for (name, app) in &mut status.apps {
            if let Some(before) = old.apps.get(name)
                && before.state == app.state
            {
                app.since = before.since;
            }
        }
    }
    status
}

impl Reporter for ForgeStatuses<'_> {
    fn statuses(&self, commit: Oid) -> Result<Statuses, ReportError> {
        Ok(self.forge.statuses(commit)?)
    }

    fn report(
        &self,
        commit: Oid,
        check: &str,
        status: Status,
        then: &dyn Fn(&Statuses) -> Vec<(String, Status)>,
    ) -> Result<(), ReportError> {
        let mut status = status;
        status.by = self.by.clone();
        if let Some((c, k, said, settled)) = &*self.said.borrow()
            && (*c, k.as_str()) == (commit, check)
            && same(said, &status)
            && *settled
        {
            return Ok(()); // said already, and the aggregate is final
        }
        // `change` runs again on the statuses read back after each write (the embedded forge
        // writes a host's status to the host's own record, then the aggregate on what it
        // reads). A waiting host's status restates a decision made on the statuses it read:
        // when its write did not land (another agent serving the same host), that decision
        // may be stale; it is not retried, the next interval decides again on what it reads
        // then. A report that finishes (success, failure), and with it the aggregate, is
        // retried until it lands.
        let once = status.state == CheckState::Pending;
        let attempts = Cell::new(0u32);
        let change = |current: &Statuses| {
            attempts.set(attempts.get() + 1);
            if once && attempts.get() > 1 {
                return Vec::new();
            }
            let mut writes = Vec::new();
            let mut merged = current.clone();
            if !current.get(check).is_some_and(|old| same(old, &status)) {
                let status = keep_since(current.get(check), status.clone());
                merged.insert(check.to_owned(), status.clone());
                writes.push((check.to_owned(), status));
            }
            for (check, mut status) in then(&merged) {
                status.by = self.by.clone();
                merged.insert(check.clone(), status.clone());
                writes.push((check, status));
            }
            writes
        };
        let written = self.forge.update_statuses(commit, &change)?;
        if !written.get(check).is_some_and(|s| same(s, &status)) {
            tracing::info!(
                "{check}: not reported yet: the statuses moved meanwhile; the next reconcile reports it"
            );
            return Ok(()); // said nothing: the next reconcile says it
        }
        let aggregate = check.rsplit_once('/').map(|(env, _)| env).unwrap_or(check);
        // Where the write is a compare-and-swap (the embedded forge), whoever lands the last
        // report computes the aggregate from every report: this host has nothing more to read
        // until it has something new to say. Elsewhere two last reports may cross, each
        // missing the other: then this host asks again until the aggregate is there.
        let settled = self.forge.kind() == ForgeKind::Local
            || written
                .get(aggregate)
                .is_some_and(|s| s.state != CheckState::Pending);
        *self.said.borrow_mut() = Some((commit, check.to_owned(), status, settled));
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
