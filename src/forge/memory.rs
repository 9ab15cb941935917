//! A forge in memory, for unit tests of what drives a forge (promotion, approvals, merges,
//! statuses, protection) without a repository or a network.
//!
//! It is strict as the embedded forge is: records are swapped against the version they were
//! read at, a merge moves the target branch only from the tip it was read at, and requests
//! follow the same rules ([`super::approve_record`], [`super::close_record`]). Commits it
//! writes get made-up ids and are kept, with their files and message, for tests to inspect.

use std::cell::RefCell;
use std::collections::BTreeMap;

use git2::Oid;

use super::{
    Approved, CloseReason, Forge, ForgeError, ForgeKind, Merge, NewCommit, OpenRequest, Proposal,
    Published, Record, Request, RequestState, Status, Statuses,
};
use crate::plan::protection::Rules;

/// A commit the forge wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub id: Oid,
    pub parent: Oid,
    pub files: Vec<(String, String)>,
    pub message: String,
    pub author: String,
    pub committer: String,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    requests: BTreeMap<u64, Record<Request>>,
    statuses: BTreeMap<Oid, Statuses>,
    branches: BTreeMap<String, Oid>,
    protection: BTreeMap<String, Rules>,
    commits: Vec<Written>,
}

/// The in-memory forge.
#[derive(Debug, Default)]
pub struct MemoryForge {
    state: RefCell<State>,
}

impl MemoryForge {
    pub fn new() -> Self {
        MemoryForge::default()
    }

    /// A made-up id, different each time.
    fn id(state: &mut State) -> Oid {
        state.next += 1;
        let mut bytes = [0u8; 20];
        bytes[12..].copy_from_slice(&state.next.to_be_bytes());
        Oid::from_bytes(&bytes).expect("20 bytes")
    }

    /// Where `branch` points, as the forge's merges moved it.
    pub fn branch(&self, branch: &str) -> Option<Oid> {
        self.state.borrow().branches.get(branch).copied()
    }

    /// Sets `branch` (a test's starting point, or someone else's push).
    pub fn set_branch(&self, branch: &str, commit: Oid) {
        self.state
            .borrow_mut()
            .branches
            .insert(branch.to_owned(), commit);
    }

    /// Every commit written, oldest first.
    pub fn commits(&self) -> Vec<Written> {
        self.state.borrow().commits.clone()
    }

    fn write(state: &mut State, commit: &NewCommit<'_>) -> Oid {
        let id = MemoryForge::id(state);
        state.commits.push(Written {
            id,
            parent: commit.parent,
            files: commit.files.to_vec(),
            message: commit.message.to_owned(),
            author: commit.author.to_owned(),
            committer: commit.committer.to_owned(),
        });
        id
    }

    /// Saves `request` over the version read at `tip`.
    fn swap(state: &mut State, tip: Oid, request: Request) -> Result<Record<Request>, ForgeError> {
        let id = request.id;
        if state.requests.get(&id).map(|r| r.tip) != Some(tip) {
            return Err(ForgeError::RequestMoved { id });
        }
        let record = Record {
            tip: MemoryForge::id(state),
            value: request,
        };
        state.requests.insert(id, record.clone());
        Ok(record)
    }

    fn change(
        &self,
        id: u64,
        change: impl FnOnce(&mut Request) -> Result<bool, ForgeError>,
    ) -> Result<Request, ForgeError> {
        let mut state = self.state.borrow_mut();
        let record = state
            .requests
            .get(&id)
            .cloned()
            .ok_or(ForgeError::NoRequest(id))?;
        let mut request = record.value;
        if !change(&mut request)? {
            return Ok(request);
        }
        Ok(MemoryForge::swap(&mut state, record.tip, request)?.value)
    }
}

impl Forge for MemoryForge {
    /// It keeps ferry's own records, as the embedded forge does (and is trusted as it is).
    fn kind(&self) -> ForgeKind {
        ForgeKind::Local
    }

    fn open_request(
        &self,
        from: &str,
        to: &str,
        _to_branch: &str,
    ) -> Result<Option<OpenRequest>, ForgeError> {
        Ok(self
            .state
            .borrow()
            .requests
            .values()
            .find(|r| {
                r.value.state == RequestState::Open && r.value.from == from && r.value.to == to
            })
            .map(|r| OpenRequest {
                id: r.value.id,
                url: format!("memory#{}", r.value.id),
                record: Some(r.clone()),
            }))
    }

    fn publish(
        &self,
        proposal: &Proposal<'_>,
        open: Option<&OpenRequest>,
    ) -> Result<Published, ForgeError> {
        let mut state = self.state.borrow_mut();
        let head = MemoryForge::write(&mut state, &proposal.commit);
        let open = open.and_then(|o| o.record.as_ref());
        let mut request = super::proposed_record(proposal, head, open.map(|r| &r.value));
        let updated = match open {
            Some(record) => {
                MemoryForge::swap(&mut state, record.tip, request.clone())?;
                true
            }
            None => {
                request.id = state.requests.keys().max().copied().unwrap_or(0) + 1;
                let tip = MemoryForge::id(&mut state);
                state.requests.insert(
                    request.id,
                    Record {
                        tip,
                        value: request.clone(),
                    },
                );
                false
            }
        };
        state.branches.insert(proposal.branch.to_owned(), head);
        Ok(Published {
            id: request.id,
            url: format!("memory#{}", request.id),
            updated,
            title: request.title,
            head: Some(head),
        })
    }

    fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.state.borrow().requests.values().cloned().collect())
    }

    fn request(&self, id: u64) -> Result<Record<Request>, ForgeError> {
        self.state
            .borrow()
            .requests
            .get(&id)
            .cloned()
            .ok_or(ForgeError::NoRequest(id))
    }

    fn approve(&self, id: u64, by: &str, at: i64) -> Result<Approved, ForgeError> {
        let mut already = false;
        let request = self.change(id, |request| {
            already = super::approve_record(request, by, at)?;
            Ok(!already)
        })?;
        Ok(Approved {
            request,
            already,
            complete: true,
        })
    }

    fn merge(&self, merge: &Merge<'_>) -> Result<Oid, ForgeError> {
        let mut state = self.state.borrow_mut();
        let request = &merge.request.value;
        if state
            .branches
            .get(merge.target_branch)
            .is_some_and(|tip| *tip != merge.target_tip)
        {
            return Err(ForgeError::BranchMoved {
                branch: merge.target_branch.to_owned(),
            });
        }
        if state.requests.get(&request.id).map(|r| r.tip) != Some(merge.request.tip) {
            return Err(ForgeError::RequestMoved { id: request.id });
        }
        let new = match &merge.rebuild {
            Some(commit) => MemoryForge::write(&mut state, commit),
            None => Oid::from_str(&request.head).map_err(|_| ForgeError::Damaged {
                refname: format!("memory#{}", request.id),
                message: "its head is not a commit id".to_owned(),
            })?,
        };
        let merged = super::merged_record(merge, new);
        MemoryForge::swap(&mut state, merge.request.tip, merged)?;
        state.branches.insert(merge.target_branch.to_owned(), new);
        Ok(new)
    }

    fn close(&self, id: u64, by: &str, at: i64, reason: CloseReason) -> Result<(), ForgeError> {
        self.change(id, |request| {
            super::close_record(request, by, at, reason).map(|_| true)
        })
        .map(|_| ())
    }

    fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        Ok(self
            .state
            .borrow()
            .statuses
            .get(&commit)
            .cloned()
            .unwrap_or_default())
    }

    fn set_status(&self, commit: Oid, check: &str, status: &Status) -> Result<(), ForgeError> {
        let mut status = status.clone();
        status.description = super::fit_description(&status.description);
        self.state
            .borrow_mut()
            .statuses
            .entry(commit)
            .or_default()
            .insert(check.to_owned(), status);
        Ok(())
    }

    fn landed(&self, env: &str, commit: Oid) -> Result<Option<Request>, ForgeError> {
        let commit = commit.to_string();
        Ok(self
            .state
            .borrow()
            .requests
            .values()
            .map(|r| &r.value)
            .find(|r| r.to == env && r.merge_commit.as_deref() == Some(commit.as_str()))
            .cloned())
    }

    fn statuses_at(&self, commit: Oid, when: i64) -> Result<Statuses, ForgeError> {
        let mut statuses = self.statuses(commit)?;
        statuses.retain(|_, s| s.at <= when);
        Ok(statuses)
    }

    fn pushes(&self, _branch: &str, _since: Option<i64>) -> Result<super::Pushes, ForgeError> {
        Ok(super::Pushes::default())
    }

    fn owner(&self) -> Option<&str> {
        Some("acme")
    }

    fn protection(&self, branch: &str) -> Result<Option<Rules>, ForgeError> {
        Ok(self.state.borrow().protection.get(branch).cloned())
    }

    fn apply_protection(&self, branch: &str, rules: &Rules) -> Result<(), ForgeError> {
        self.state
            .borrow_mut()
            .protection
            .insert(branch.to_owned(), rules.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::CheckState;

    fn proposal<'a>(files: &'a [(String, String)], parent: Oid) -> Proposal<'a> {
        Proposal {
            from: "dev",
            to: "staging",
            branch: "ferry/promote/dev-to-staging",
            base_branch: "staging",
            commit: NewCommit {
                parent,
                files,
                message: "Promote",
                author: "alice",
                committer: "alice",
                valid_as: None,
            },
            parent_tree: Oid::ZERO_SHA1,
            branch_exists: false,
            source: Oid::ZERO_SHA1,
            title: "Promote dev → staging: web 1.1.0",
            body: "body",
            labels: &[],
            moves: &[],
            rollback: false,
            author: "alice",
            at: 10,
        }
    }

    #[test]
    fn requests_are_opened_updated_approved_merged_and_closed_by_the_rules() {
        let forge = MemoryForge::new();
        let base = Oid::from_str("1111111111111111111111111111111111111111").unwrap();
        forge.set_branch("staging", base);
        let files = [("manifest.json".to_owned(), "{}\n".to_owned())];
        let opened = forge.publish(&proposal(&files, base), None).unwrap();
        assert_eq!((opened.id, opened.updated), (1, false));
        let open = forge.open_request("dev", "staging", "staging").unwrap();
        let updated = forge
            .publish(&proposal(&files, base), open.as_ref())
            .unwrap();
        assert_eq!((updated.id, updated.updated), (1, true));
        // A stale read is refused, as the embedded forge's compare-and-swap does.
        assert!(matches!(
            forge.publish(&proposal(&files, base), open.as_ref()),
            Err(ForgeError::RequestMoved { id: 1 })
        ));

        assert!(matches!(
            forge.approve(1, "alice", 11),
            Err(ForgeError::OwnRequest { id: 1, .. })
        ));
        assert!(!forge.approve(1, "bob", 11).unwrap().already);
        assert!(forge.approve(1, "bob", 12).unwrap().already);
        assert_eq!(forge.request(1).unwrap().value.approvers(true), ["bob"]);

        let record = forge.request(1).unwrap();
        let head = Oid::from_str(&record.value.head).unwrap();
        let moved = Merge {
            request: &record,
            target_branch: "staging",
            target_tip: Oid::ZERO_SHA1,
            rebuild: None,
            by: "carol",
            at: 13,
            method: crate::forge::MergeMethod::Merge,
        };
        assert!(matches!(
            forge.merge(&moved),
            Err(ForgeError::BranchMoved { .. })
        ));
        let merge = Merge {
            target_tip: base,
            ..moved
        };
        assert_eq!(forge.merge(&merge).unwrap(), head);
        assert_eq!(forge.branch("staging"), Some(head));
        let merged = forge.request(1).unwrap().value;
        assert_eq!(merged.state, RequestState::Merged);
        assert_eq!(merged.merged_by.as_deref(), Some("carol"));
        assert!(matches!(
            forge.close(1, "bob", 14, CloseReason::ByHand),
            Err(ForgeError::NotOpen {
                state: RequestState::Merged,
                ..
            })
        ));
        assert!(
            forge
                .open_request("dev", "staging", "staging")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn statuses_keep_the_latest_report_of_each_check() {
        let forge = MemoryForge::new();
        let commit = Oid::ZERO_SHA1;
        let status = |state| Status {
            apps: Default::default(),
            state,
            description: "d".repeat(2_000),
            url: None,
            by: "ci".into(),
            at: 1,
        };
        forge
            .set_status(commit, "ci/test", &status(CheckState::Pending))
            .unwrap();
        forge
            .set_status(commit, "ci/test", &status(CheckState::Success))
            .unwrap();
        let statuses = forge.statuses(commit).unwrap();
        assert_eq!(statuses["ci/test"].state, CheckState::Success);
        assert_eq!(
            statuses["ci/test"].description.chars().count(),
            crate::forge::MAX_DESCRIPTION
        );
    }
}
