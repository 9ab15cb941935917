//! The embedded forge: requests, approvals and statuses stored in the deployment repository
//! under `refs/ferry/…`, pushed and fetched like any ref.
//!
//! Each record is a ref whose history is append-only: `refs/ferry/requests/<id>` holds
//! `request.json`, `refs/ferry/statuses/<commit>` holds `statuses.json`, and every change is a
//! new commit on top (its message says what happened), moved with compare-and-swap. The tip
//! is the current state; the history is the audit trail. A host's deploy status
//! (`ferry/deploy/ENV/HOST`) lives in the host's own record, `refs/ferry/hosts/ENV/HOST`
//! (`host.json`: its latest report, on which commit), so that the hosts of a wave report
//! without contending for one ref; a commit's statuses are its record's and the hosts' that
//! report on it. Its branch protection is the
//! repository's own hooks, which enforce each environment's declared rules on every push
//! ([`LocalForge::hooks`]), so the [`Forge`] trait's branch rules are not supported here.

use std::collections::BTreeMap;

use git2::{Oid, Signature};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Approved, CloseReason, Forge, ForgeKind, Merge, NewCommit, OpenRequest, Proposal, Published,
    Request, RequestState, Status, Statuses,
};
pub use super::{ForgeError, Record};
use crate::plan::protection::Rules;
use crate::store::{History, RefUpdate, Store, StoreError, UpdateOutcome};

pub const REQUESTS: &str = "refs/ferry/requests/";
pub const STATUSES: &str = "refs/ferry/statuses/";
const REQUEST_FILE: &str = "request.json";
pub const STATUSES_FILE: &str = "statuses.json";
pub const HOSTS: &str = "refs/ferry/hosts/";
pub const HOST_FILE: &str = "host.json";

/// A host's latest deploy report, as its record `refs/ferry/hosts/ENV/HOST` holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostReport {
    /// The commit reported on.
    pub commit: String,
    /// `ferry/deploy/ENV/HOST`: the record's name says the same ([`host_record`]).
    pub check: String,
    pub status: Status,
}

/// The record holding `check` when it is a host's deploy status, `ferry/deploy/ENV/HOST`:
/// `refs/ferry/hosts/ENV/HOST`, with `%`, `.` and `:` escaped (`%25`, `%2E`, `%3A`), which a
/// ref's name may not hold as they come (`..`, `.lock`, `:`).
pub fn host_record(check: &str) -> Option<String> {
    let (env, host) = check.strip_prefix("ferry/deploy/")?.split_once('/')?;
    if env.is_empty() || host.is_empty() || host.contains('/') {
        return None;
    }
    let escaped = |name: &str| {
        name.replace('%', "%25")
            .replace('.', "%2E")
            .replace(':', "%3A")
    };
    Some(format!("{HOSTS}{}/{}", escaped(env), escaped(host)))
}

/// The push log: one commit per accepted push (`push.json`: who, when, which refs moved from
/// what to what), written by the repository's `post-receive` hook only. `ferry audit` reads it
/// to say who pushed each change.
pub const PUSHES: &str = "refs/ferry/pushes";
pub const PUSH_FILE: &str = "push.json";

/// One accepted push, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Push {
    /// `None`: the transport said nobody (a push to an unprotected branch may still land).
    pub pusher: Option<String>,
    /// For a push to a path, the operating system's login that pushed (`pusher` is what `USER`
    /// said, which may differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Unix seconds.
    pub at: i64,
    pub updates: Vec<LoggedUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoggedUpdate {
    pub refname: String,
    pub old: String,
    pub new: String,
}

/// How long a status write retries its compare-and-swap against other writers.
const CONTENDED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The wait before the `attempt`th retry of a contended status write: 100 ms × 2^n up to 1 s,
/// full jitter, so that the agents of a wave spread out. An attempt over HTTP is a fetch and a
/// push (about six requests, and the server's hook): retries much sooner than that only refuse
/// each other, and their requests slow down the writer that wins (bench/fleet.sh, 50 agents
/// reporting at once: from 10 ms, 11 pushes per report). Not longer: the last writers would
/// wait out long backoffs while the record is free.
fn contention_wait(attempt: u32) -> std::time::Duration {
    crate::net::retry::Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    )
    .delay(attempt)
}

/// The repository's hooks (see [`LocalForge::hooks`]).
#[derive(Debug)]
pub struct Hooks {
    /// The repository, on this machine.
    pub path: std::path::PathBuf,
    /// Whether it is bare (pushes are received only by a bare repository).
    pub bare: bool,
    /// Where git runs its hooks from.
    pub dir: std::path::PathBuf,
    pub pre_receive: crate::store::hook::Installed,
    pub post_receive: crate::store::hook::Installed,
}

/// The forge that lives in the store.
pub struct LocalForge<'s> {
    store: &'s Store,
    /// The merged requests, read once (an audit asks of each change).
    merged: std::sync::OnceLock<Vec<Request>>,
}

impl<'s> LocalForge<'s> {
    pub fn new(store: &'s Store) -> Self {
        LocalForge {
            store,
            merged: std::sync::OnceLock::new(),
        }
    }

    /// The store the records live in.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// The signature of the records ferry writes (see [`crate::store::signature`]).
    pub fn signature(&self) -> Result<Signature<'static>, ForgeError> {
        self.store.signature().map_err(git)
    }

    /// The signature of `name` (see [`Store::signature_as`]).
    fn signature_as(&self, name: &str) -> Result<Signature<'static>, ForgeError> {
        self.store.signature_as(name).map_err(git)
    }

    /// Writes `commit` into the store, and remembers its tree as valid when it says so.
    fn write(&self, commit: &NewCommit<'_>) -> Result<Oid, ForgeError> {
        let (author, committer) = (
            self.signature_as(commit.author)?,
            self.signature_as(commit.committer)?,
        );
        let files: Vec<(String, Vec<u8>)> = commit
            .files
            .iter()
            .map(|(path, text)| (path.clone(), text.clone().into_bytes()))
            .collect();
        let id = self.store.write_commit(
            Some(commit.parent),
            &files,
            commit.message,
            &author,
            &committer,
        )?;
        if let Some(summary) = commit.valid_as {
            self.store
                .verdicts()
                .record(self.store.tree_of(id)?, summary);
        }
        Ok(id)
    }

    fn read<T: DeserializeOwned>(
        &self,
        refname: &str,
        tip: Oid,
        file: &str,
    ) -> Result<T, ForgeError> {
        let damaged = |message: String| ForgeError::Damaged {
            refname: refname.to_owned(),
            message,
        };
        let bytes = self
            .store
            .read_file(tip, file)?
            .ok_or_else(|| damaged(format!("no `{file}`")))?;
        serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))
    }

    /// The update that records `request` as the next state of its record (read at
    /// `previous`), to push together with other updates (a merge moves the target branch and
    /// marks its request merged in one push, which is how the remote's hook recognizes it).
    pub fn request_update(
        &self,
        request: &Request,
        previous: Oid,
        event: &str,
        signature: &Signature<'_>,
    ) -> Result<RefUpdate, ForgeError> {
        self.record_update(
            &format!("{REQUESTS}{}", request.id),
            Some(previous),
            REQUEST_FILE,
            request,
            event,
            signature,
        )
    }

    /// The next state of a record, written as a commit on `previous`, and the update that
    /// moves the record to it.
    fn record_update<T: Serialize>(
        &self,
        refname: &str,
        previous: Option<Oid>,
        file: &str,
        value: &T,
        event: &str,
        signature: &Signature<'_>,
    ) -> Result<RefUpdate, ForgeError> {
        let mut text = serde_json::to_string_pretty(value).expect("records serialize");
        text.push('\n');
        let commit = self.store.write_commit(
            previous,
            &[(file.to_owned(), text.into_bytes())],
            event,
            signature,
            signature,
        )?;
        Ok(RefUpdate::of(refname.to_owned(), previous, commit))
    }

    /// Appends a new state of a record; `false` when the record moved meanwhile.
    fn write_record<T: Serialize>(
        &self,
        refname: &str,
        previous: Option<Oid>,
        file: &str,
        value: &T,
        event: &str,
        signature: &Signature<'_>,
    ) -> Result<bool, ForgeError> {
        let update = self.record_update(refname, previous, file, value, event, signature)?;
        Ok(match self.store.update(&[update], false, event)? {
            UpdateOutcome::Updated => true,
            UpdateOutcome::Moved { .. } => false,
        })
    }

    /// Every request, by id.
    pub fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        let names: Vec<String> = self
            .store
            .refs()?
            .keys()
            .filter(|n| n.starts_with(REQUESTS))
            .cloned()
            .collect();
        let tips = self.store.fetch_refs(&names, History::Tip)?;
        let mut requests = Vec::new();
        for (name, tip) in tips {
            if let Some(tip) = tip {
                requests.push(Record {
                    tip,
                    value: self.read::<Request>(&name, tip, REQUEST_FILE)?,
                });
            }
        }
        requests.sort_by_key(|r| r.value.id);
        Ok(requests)
    }

    pub fn request(&self, id: u64) -> Result<Record<Request>, ForgeError> {
        let name = format!("{REQUESTS}{id}");
        let tip = self
            .store
            .fetch_refs(std::slice::from_ref(&name), History::Tip)?
            .remove(&name)
            .flatten()
            .ok_or(ForgeError::NoRequest(id))?;
        Ok(Record {
            tip,
            value: self.read(&name, tip, REQUEST_FILE)?,
        })
    }

    /// Records a new request under the next free id, and returns it. `with` moves in the same
    /// update (the request's branch: a repository's hook accepts a request branch only beside
    /// its record).
    pub fn create(
        &self,
        mut request: Request,
        signature: &Signature<'_>,
        with: &[RefUpdate],
    ) -> Result<Request, ForgeError> {
        for _ in 0..20 {
            let next = self
                .store
                .refs()?
                .keys()
                .filter_map(|n| n.strip_prefix(REQUESTS)?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            request.id = next;
            let event = format!(
                "request #{next} opened by {}: {} → {}",
                request.author, request.from, request.to
            );
            let refname = format!("{REQUESTS}{next}");
            let record =
                self.record_update(&refname, None, REQUEST_FILE, &request, &event, signature)?;
            if self.push_with(with, record, &event)? {
                return Ok(request);
            }
            self.store.refresh(); // someone took that id: take the next
        }
        Err(ForgeError::Contended {
            refname: REQUESTS.trim_end_matches('/').to_owned(),
        })
    }

    /// Records a new state of a request read at `previous`, with `with` in the same update;
    /// `false` when the record changed meanwhile.
    pub fn save(
        &self,
        request: &Request,
        previous: Oid,
        event: &str,
        signature: &Signature<'_>,
        with: &[RefUpdate],
    ) -> Result<bool, ForgeError> {
        let record = self.request_update(request, previous, event, signature)?;
        self.push_with(with, record, event)
    }

    /// Moves `with` and `record` together: `false` when the record moved meanwhile, an error
    /// when one of the others did.
    fn push_with(
        &self,
        with: &[RefUpdate],
        record: RefUpdate,
        event: &str,
    ) -> Result<bool, ForgeError> {
        let mut updates = with.to_vec();
        updates.push(record);
        match self.store.update(&updates, false, event)? {
            UpdateOutcome::Updated => Ok(true),
            UpdateOutcome::Moved { refname, .. } if refname.starts_with(REQUESTS) => Ok(false),
            UpdateOutcome::Moved { refname, .. } => Err(ForgeError::Contended { refname }),
        }
    }

    /// Changes request `id` with `change` and records the result, re-reading and re-applying
    /// it when the record moved meanwhile. `change` returns the event to record, or `None`
    /// when there is nothing to change (the request is then returned as it is).
    pub fn modify<E: From<ForgeError>>(
        &self,
        id: u64,
        signature: &Signature<'_>,
        mut change: impl FnMut(&mut Request) -> Result<Option<String>, E>,
    ) -> Result<Request, E> {
        for _ in 0..20 {
            let record = self.request(id)?;
            let mut request = record.value;
            let Some(event) = change(&mut request)? else {
                return Ok(request);
            };
            if self.save(&request, record.tip, &event, signature, &[])? {
                return Ok(request);
            }
            self.store.refresh();
        }
        Err(ForgeError::Contended {
            refname: format!("{REQUESTS}{id}"),
        }
        .into())
    }

    /// How the repository's hooks, which enforce each environment's own rules on every push
    /// (the embedded forge's branch protection), stand; `None` when the repository is not on
    /// this machine.
    pub fn hooks(&self) -> Option<Hooks> {
        use crate::store::hook;
        let path = self.store.remote().path.clone()?;
        let repo = self.store.repo();
        Some(Hooks {
            path,
            bare: repo.is_bare(),
            dir: hook::dir(repo),
            pre_receive: hook::installed(repo, "pre-receive"),
            post_receive: hook::installed(repo, "post-receive"),
        })
    }

    /// Installs (or reinstalls) ferry's hooks in the repository.
    pub fn install_hooks(&self) -> std::io::Result<std::path::PathBuf> {
        crate::store::hook::install(self.store.repo())
    }

    /// Where request `id` is recorded, as people name it.
    pub fn url(&self, id: u64) -> String {
        format!("{}#{}{}", self.store.remote().shown, REQUESTS, id)
    }

    /// The statuses reported on `commit`: its record's, and each host's whose latest report
    /// is on it (the later of the two where both have a check).
    pub fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        let mut statuses = self
            .statuses_record(commit)?
            .map(|r| r.value)
            .unwrap_or_default();
        for record in self.host_records()?.into_values() {
            with_report(&mut statuses, commit, &record.value);
        }
        Ok(statuses)
    }

    fn statuses_record(&self, commit: Oid) -> Result<Option<Record<Statuses>>, ForgeError> {
        let name = format!("{STATUSES}{commit}");
        let tip = self
            .store
            .fetch_refs(std::slice::from_ref(&name), History::Tip)?
            .remove(&name)
            .flatten();
        match tip {
            None => Ok(None),
            Some(tip) => Ok(Some(Record {
                tip,
                value: self.read(&name, tip, STATUSES_FILE)?,
            })),
        }
    }

    /// The names of the hosts' records the store has.
    fn host_names(&self) -> Result<Vec<String>, ForgeError> {
        Ok(self
            .store
            .refs()?
            .keys()
            .filter(|n| n.starts_with(HOSTS))
            .cloned()
            .collect())
    }

    /// Every host's record, by name, in one fetch. A record that does not read as one (no
    /// hook guarded the repository) is passed over with a warning: a missing report only
    /// holds a rollout back, it never completes one.
    fn host_records(&self) -> Result<BTreeMap<String, Record<HostReport>>, ForgeError> {
        let names = self.host_names()?;
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut records = BTreeMap::new();
        for (name, tip) in self.store.fetch_refs(&names, History::Tip)? {
            let Some(tip) = tip else { continue };
            match self.read::<HostReport>(&name, tip, HOST_FILE) {
                Ok(value) if host_record(&value.check).as_deref() == Some(name.as_str()) => {
                    records.insert(name, Record { tip, value });
                }
                Ok(value) => tracing::warn!(
                    "{name}: passed over: it holds `{}`, another host's status",
                    crate::output::printable(&value.check)
                ),
                Err(e) => tracing::warn!("passed over: {e}"),
            }
        }
        Ok(records)
    }

    /// Reports `check` on `commit` (the latest report of a check wins; the history keeps all).
    fn write_status(
        &self,
        commit: Oid,
        check: &str,
        status: Status,
        signature: &Signature<'_>,
    ) -> Result<(), ForgeError> {
        let change = |_: &Statuses| vec![(check.to_owned(), status.clone())];
        self.change_statuses(commit, &change, signature).map(drop)
    }

    /// The statuses `change` makes of `commit`'s, written with compare-and-swap: when another
    /// writer moved a record meanwhile, `change` runs again on what is there then.
    ///
    /// A host's status goes to the host's own record, which only that host writes: the hosts
    /// of a wave report at once without refusing each other. Then `change` runs again on
    /// the statuses read back from the store, and what else it sets (the environment's
    /// aggregate) goes to the commit's record. Each host reads after its own write lands,
    /// so of two hosts reporting last at once, at least the later reader sees both reports.
    /// The commit's record is contended only by those last writers and by CI: the retries
    /// back off with jitter, for up to a minute.
    fn change_statuses(
        &self,
        commit: Oid,
        change: &dyn Fn(&Statuses) -> Vec<(String, Status)>,
        signature: &Signature<'_>,
    ) -> Result<Statuses, ForgeError> {
        let name = format!("{STATUSES}{commit}");
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        // The host statuses this call has written: set once, whatever `change` says again.
        let mut reported: std::collections::BTreeSet<String> = Default::default();
        loop {
            let record = self.statuses_record(commit)?;
            let previous = record.as_ref().map(|r| r.tip);
            let mut own = record.map(|r| r.value).unwrap_or_default();
            let hosts = self.host_records()?;
            let mut statuses = own.clone();
            for host in hosts.values() {
                with_report(&mut statuses, commit, &host.value);
            }
            let mut changes: Vec<(String, Status)> = change(&statuses)
                .into_iter()
                .filter(|(check, _)| !reported.contains(check))
                .map(|(check, mut status)| {
                    status.description = super::fit_description(&status.description);
                    (check, status)
                })
                .collect();
            if changes.is_empty() {
                return Ok(statuses);
            }
            let event = |changes: &[(String, Status)]| {
                changes
                    .iter()
                    .map(|(check, status)| {
                        format!("{check}: {} by {}", status.state.as_str(), status.by)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if changes
                .iter()
                .any(|(check, _)| host_record(check).is_some())
            {
                let mut landed = true;
                for (check, status) in changes.extract_if(.., |(c, _)| host_record(c).is_some()) {
                    let record = host_record(&check).expect("a host's status");
                    let report = HostReport {
                        commit: commit.to_string(),
                        check: check.clone(),
                        status: status.clone(),
                    };
                    let previous = hosts.get(&record).map(|r| r.tip);
                    let said = event(&[(check.clone(), status)]);
                    if self.write_record(&record, previous, HOST_FILE, &report, &said, signature)? {
                        reported.insert(check);
                    } else {
                        landed = false; // another agent serving the same host
                    }
                }
                if !landed {
                    attempt += 1;
                    self.contended(&name, started, attempt)?;
                }
                // Read again, from the store, what the statuses are now.
                continue;
            }
            let said = event(&changes);
            for (check, status) in changes {
                own.insert(check.clone(), status.clone());
                statuses.insert(check, status);
            }
            if self.write_record(&name, previous, STATUSES_FILE, &own, &said, signature)? {
                return Ok(statuses);
            }
            attempt += 1;
            // No listing again: the refused push listed the record's new tip, and fetching it
            // brings whatever tip the record has by then.
            self.contended(&name, started, attempt)?;
        }
    }

    /// Waits before the next try of a write that lost its compare-and-swap, or gives up
    /// after [`CONTENDED_FOR`].
    fn contended(
        &self,
        refname: &str,
        started: std::time::Instant,
        attempt: u32,
    ) -> Result<(), ForgeError> {
        if started.elapsed() > CONTENDED_FOR {
            return Err(ForgeError::Contended {
                refname: refname.to_owned(),
            });
        }
        std::thread::sleep(contention_wait(attempt));
        Ok(())
    }
}

/// `statuses` with `report`'s status when it is on `commit` and later than the commit's
/// record's own (which kept hosts' statuses before hosts had records of their own).
fn with_report(statuses: &mut Statuses, commit: Oid, report: &HostReport) {
    if report.commit == commit.to_string()
        && statuses
            .get(&report.check)
            .is_none_or(|s| s.at <= report.status.at)
    {
        statuses.insert(report.check.clone(), report.status.clone());
    }
}

/// The pushes in the log whose tip is `tip`, oldest first.
pub fn pushes(repo: &git2::Repository, tip: Oid) -> Vec<Push> {
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    if walk.push(tip).is_err() {
        return Vec::new();
    }
    let mut out: Vec<Push> = walk
        .flatten()
        .filter_map(|id| {
            let tree = repo.find_commit(id).ok()?.tree().ok()?;
            let blob = repo.find_blob(tree.get_name(PUSH_FILE)?.id()).ok()?;
            serde_json::from_slice(blob.content()).ok()
        })
        .collect();
    out.reverse();
    out
}

fn git(e: git2::Error) -> ForgeError {
    ForgeError::Store(StoreError::Git(e.message().to_owned()))
}

impl Forge for LocalForge<'_> {
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
            .requests()?
            .into_iter()
            .find(|r| {
                r.value.state == RequestState::Open && r.value.from == from && r.value.to == to
            })
            .map(|record| OpenRequest {
                id: record.value.id,
                url: self.url(record.value.id),
                record: Some(record),
            }))
    }

    fn publish(
        &self,
        proposal: &Proposal<'_>,
        open: Option<&OpenRequest>,
    ) -> Result<Published, ForgeError> {
        let head = self.write(&proposal.commit)?;
        // The request branch moves with its record, in one update.
        let current = self
            .store
            .refs()?
            .get(&format!("refs/heads/{}", proposal.branch))
            .copied();
        let branch = RefUpdate::branch(proposal.branch, current, head).rewriting();
        let signature = self.signature()?;
        let open = open.and_then(|o| o.record.as_ref());
        let request = super::proposed_record(proposal, head, open.map(|r| &r.value));
        let (request, updated) = match open {
            Some(record) => {
                let event = format!("request #{} updated by {}", request.id, proposal.author);
                if !self.save(&request, record.tip, &event, &signature, &[branch])? {
                    return Err(ForgeError::RequestMoved { id: request.id });
                }
                (request, true)
            }
            None => (self.create(request, &signature, &[branch])?, false),
        };
        Ok(Published {
            id: request.id,
            url: self.url(request.id),
            updated,
            title: request.title,
            head: Some(head),
        })
    }

    fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        LocalForge::requests(self)
    }

    fn request(&self, id: u64) -> Result<Record<Request>, ForgeError> {
        LocalForge::request(self, id)
    }

    fn approve(&self, id: u64, by: &str, at: i64) -> Result<Approved, ForgeError> {
        let signature = self.signature()?;
        let mut already = false;
        let request = self.modify(id, &signature, |request| {
            already = super::approve_record(request, by, at)?;
            Ok::<_, ForgeError>(
                (!already).then(|| format!("request #{} approved by {by}", request.id)),
            )
        })?;
        Ok(Approved {
            request,
            already,
            complete: true,
        })
    }

    fn merge(&self, merge: &Merge<'_>) -> Result<Oid, ForgeError> {
        let request = &merge.request.value;
        let new = match &merge.rebuild {
            None => {
                self.store.fetch(&[&request.branch], History::Tip)?;
                Oid::from_str(&request.head).map_err(|_| ForgeError::Damaged {
                    refname: format!("{REQUESTS}{}", request.id),
                    message: "its head is not a commit id".to_owned(),
                })?
            }
            Some(commit) => self.write(commit)?,
        };
        // The branch and the record move in one push: the remote's hook sees a merge (by the
        // pusher, of an approved request), not a direct push.
        let signature = self.signature()?;
        let merged = super::merged_record(merge, new);
        let record = self.request_update(
            &merged,
            merge.request.tip,
            &format!("request #{} merged by {}", request.id, merge.by),
            &signature,
        )?;
        match self.store.update(
            &[
                RefUpdate::branch(merge.target_branch, Some(merge.target_tip), new),
                record,
            ],
            false,
            &format!("ferry merge #{}", request.id),
        )? {
            UpdateOutcome::Updated => Ok(new),
            UpdateOutcome::Moved { refname, .. } if refname.starts_with("refs/heads/") => {
                Err(ForgeError::BranchMoved {
                    branch: merge.target_branch.to_owned(),
                })
            }
            UpdateOutcome::Moved { .. } => Err(ForgeError::RequestMoved { id: request.id }),
        }
    }

    fn close(&self, id: u64, by: &str, at: i64, reason: CloseReason) -> Result<(), ForgeError> {
        let signature = self.signature()?;
        self.modify(id, &signature, |request| {
            super::close_record(request, by, at, reason).map(Some)
        })?;
        Ok(())
    }

    fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        LocalForge::statuses(self, commit)
    }

    fn set_status(&self, commit: Oid, check: &str, status: &Status) -> Result<(), ForgeError> {
        let signature = self.signature()?;
        self.write_status(commit, check, status.clone(), &signature)
    }

    fn update_statuses(
        &self,
        commit: Oid,
        change: &dyn Fn(&Statuses) -> Vec<(String, Status)>,
    ) -> Result<Statuses, ForgeError> {
        let signature = self.signature()?;
        self.change_statuses(commit, change, &signature)
    }

    fn landed(&self, env: &str, commit: Oid) -> Result<Option<Request>, ForgeError> {
        let merged = match self.merged.get() {
            Some(merged) => merged,
            None => {
                let merged: Vec<Request> = LocalForge::requests(self)?
                    .into_iter()
                    .map(|r| r.value)
                    .filter(|r| r.state == RequestState::Merged)
                    .collect();
                self.merged.get_or_init(|| merged)
            }
        };
        let commit = commit.to_string();
        Ok(merged
            .iter()
            .find(|r| r.to == env && r.merge_commit.as_deref() == Some(commit.as_str()))
            .cloned())
    }

    /// From the histories of the commit's record and of the hosts' records: each check's
    /// latest report on `commit` at `when`.
    fn statuses_at(&self, commit: Oid, when: i64) -> Result<Statuses, ForgeError> {
        let name = format!("{STATUSES}{commit}");
        let mut names = vec![name.clone()];
        names.extend(self.host_names()?);
        let tips = self.store.fetch_refs(&names, History::Full)?;
        let mut at_time = Statuses::new();
        let mut seen = |check: String, status: Status| {
            if status.at <= when && at_time.get(&check).is_none_or(|seen| seen.at < status.at) {
                at_time.insert(check, status);
            }
        };
        for (refname, tip) in tips {
            let Some(tip) = tip else { continue };
            for id in self.store.ancestors(tip)? {
                if refname == name {
                    let version = self
                        .store
                        .read_file(id, STATUSES_FILE)
                        .ok()
                        .flatten()
                        .and_then(|bytes| serde_json::from_slice::<Statuses>(&bytes).ok());
                    for (check, status) in version.into_iter().flatten() {
                        seen(check, status);
                    }
                } else if let Some(report) = self
                    .store
                    .read_file(id, HOST_FILE)
                    .ok()
                    .flatten()
                    .and_then(|bytes| serde_json::from_slice::<HostReport>(&bytes).ok())
                    .filter(|r| {
                        r.commit == commit.to_string()
                            && host_record(&r.check).as_deref() == Some(refname.as_str())
                    })
                {
                    seen(report.check, report.status);
                }
            }
        }
        Ok(at_time)
    }

    /// From the push log the repository's hook keeps.
    fn pushes(&self, branch: &str, _since: Option<i64>) -> Result<super::Pushes, ForgeError> {
        let mut log = super::Pushes::default();
        let Some(tip) = self
            .store
            .fetch_refs(&[PUSHES.to_owned()], History::Full)?
            .remove(PUSHES)
            .flatten()
        else {
            return Ok(log);
        };
        log.kept = true;
        let refname = format!("refs/heads/{branch}");
        for push in pushes(self.store.repo(), tip) {
            for u in push.updates.iter().filter(|u| u.refname == refname) {
                let (Ok(after), Ok(before)) = (Oid::from_str(&u.new), Oid::from_str(&u.old)) else {
                    continue;
                };
                log.pushes.push(super::LoggedPush {
                    before,
                    after,
                    by: super::Pushed {
                        pusher: push.pusher.clone(),
                        login: push.login.clone(),
                    },
                });
            }
        }
        Ok(log)
    }

    fn protection(&self, _branch: &str) -> Result<Option<Rules>, ForgeError> {
        Err(ForgeError::NotSupported {
            forge: "the local forge (its hook enforces each environment's own file)",
            what: "reading branch rules",
        })
    }

    fn apply_protection(&self, _branch: &str, _rules: &Rules) -> Result<(), ForgeError> {
        Err(ForgeError::NotSupported {
            forge: "the local forge (its hook enforces each environment's own file)",
            what: "setting branch rules",
        })
    }
}
