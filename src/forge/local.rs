//! The embedded forge: requests, approvals and statuses stored in the deployment repository
//! under `refs/ferry/…`, pushed and fetched like any ref.
//!
//! Each record is a ref whose history is append-only: `refs/ferry/requests/<id>` holds
//! `request.json`, `refs/ferry/statuses/<commit>` holds `statuses.json`, and every change is a
//! new commit on top (its message says what happened), moved with compare-and-swap. The tip
//! is the current state; the history is the audit trail.

use git2::{Oid, Signature};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Request, Status, Statuses};
use crate::store::{History, RefUpdate, Store, StoreError, UpdateOutcome};

pub const REQUESTS: &str = "refs/ferry/requests/";
pub const STATUSES: &str = "refs/ferry/statuses/";
const REQUEST_FILE: &str = "request.json";
pub const STATUSES_FILE: &str = "statuses.json";

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no request #{0}")]
    NoRequest(u64),
    #[error("record `{refname}` is damaged: {message}")]
    Damaged { refname: String, message: String },
    #[error("`{refname}` kept changing under ferry: gave up")]
    Contended { refname: String },
}

/// A record read from its ref: the value and the commit it came from.
pub struct Record<T> {
    pub tip: Oid,
    pub value: T,
}

/// The forge that lives in the store.
pub struct LocalForge<'s> {
    store: &'s Store,
}

impl<'s> LocalForge<'s> {
    pub fn new(store: &'s Store) -> Self {
        LocalForge { store }
    }

    /// The store the records live in.
    pub fn store(&self) -> &'s Store {
        self.store
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
    fn write<T: Serialize>(
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

    /// The statuses reported on `commit`.
    pub fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        Ok(self
            .statuses_record(commit)?
            .map(|r| r.value)
            .unwrap_or_default())
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

    /// Reports `check` on `commit` (the latest report of a check wins; the history keeps all).
    pub fn set_status(
        &self,
        commit: Oid,
        check: &str,
        status: Status,
        signature: &Signature<'_>,
    ) -> Result<(), ForgeError> {
        let name = format!("{STATUSES}{commit}");
        for _ in 0..20 {
            let record = self.statuses_record(commit)?;
            let previous = record.as_ref().map(|r| r.tip);
            let mut statuses = record.map(|r| r.value).unwrap_or_default();
            let event = format!("{check}: {} by {}", status.state.as_str(), status.by);
            let mut status = status.clone();
            status.description = super::fit_description(&status.description);
            statuses.insert(check.to_owned(), status);
            if self.write(&name, previous, STATUSES_FILE, &statuses, &event, signature)? {
                return Ok(());
            }
            self.store.refresh();
        }
        Err(ForgeError::Contended { refname: name })
    }
}
