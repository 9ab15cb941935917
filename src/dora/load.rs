//! Gathers an environment's [`Events`] from the store: its branch's first-parent history
//! (walked once, each manifest blob parsed once), the first environment's history for the
//! bumps (walked once for every environment of its path), and the embedded forge's records
//! under `refs/ferry/`: the deploy reports in the statuses of the branch's commits
//! (`refs/ferry/statuses/COMMIT`) and in the hosts' records (`refs/ferry/hosts/ENV/HOST`),
//! every version of each (one listing, one fetch, then one read per version), and the merged
//! `--rollback` requests (`refs/ferry/requests/ID`).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Bump, Change, DeployReport, Events, Rollback};
use crate::error::{Error, Result};
use crate::forge::local::{HOST_FILE, HOSTS, HostReport, LocalForge, STATUSES, STATUSES_FILE};
use crate::forge::{CheckState, RequestState, RolloutState, Statuses};
use crate::plan::history::moves;
use crate::state::{Manifests, branch_of, changes};
use crate::store::{History, Oid, Store};

/// Reads events from one store, remembering what environments share (the first
/// environment's bumps, the requests).
pub struct Loader<'s> {
    store: &'s Store,
    paths: Vec<Vec<String>>,
    bumps: HashMap<String, Vec<Bump>>,
    rollbacks: Option<HashMap<(String, String), Rollback>>,
    /// What the figures could not count, for the person reading them.
    pub notes: Vec<String>,
}

impl<'s> Loader<'s> {
    /// A loader for `store`, whose promotion paths are `paths` (see
    /// [`crate::state::promotion_paths`]).
    pub fn new(store: &'s Store, paths: Vec<Vec<String>>) -> Self {
        Loader {
            store,
            paths,
            bumps: HashMap::new(),
            rollbacks: None,
            notes: Vec::new(),
        }
    }

    /// The first environment of `env`'s promotion path (itself when none holds it).
    pub fn first_env(&self, env: &str) -> String {
        self.paths
            .iter()
            .find(|path| path.iter().any(|e| e == env))
            .and_then(|path| path.first())
            .cloned()
            .unwrap_or_else(|| env.to_owned())
    }

    /// Everything the figures of `env` are computed from.
    pub fn events(&mut self, env: &str) -> Result<Events> {
        let branch = branch_of(self.store, env)?;
        let tip = self.store.tip(&branch, History::Full)?;
        let mut changes = walk(self.store, tip)?;
        let first_env = self.first_env(env);
        let rollbacks = self.rollbacks()?;
        for change in &mut changes {
            change.rollback = rollbacks
                .get(&(env.to_owned(), change.commit.clone()))
                .copied();
        }
        let bumps = if first_env == env {
            // Its own history: read now, and remembered for the environments after it.
            let bumps = bumps_of(&changes);
            self.bumps.insert(env.to_owned(), bumps.clone());
            bumps
        } else {
            self.bumps_in(&first_env)?
        };
        let reporters = crate::promotion::gather::reporters_in(self.store, tip, env)?;
        let reports = self.reports(env, &changes, &reporters)?;
        Ok(Events {
            env: env.to_owned(),
            branch,
            first_env,
            changes,
            reports,
            bumps,
        })
    }

    /// The bumps of `env` (a first environment), read once.
    fn bumps_in(&mut self, env: &str) -> Result<Vec<Bump>> {
        if let Some(bumps) = self.bumps.get(env) {
            return Ok(bumps.clone());
        }
        let branch = branch_of(self.store, env)?;
        let tip = self.store.tip(&branch, History::Full)?;
        let bumps = bumps_of(&walk(self.store, tip)?);
        self.bumps.insert(env.to_owned(), bumps.clone());
        Ok(bumps)
    }

    /// The merged `--rollback` requests, by (target environment, merge commit), read once.
    fn rollbacks(&mut self) -> Result<HashMap<(String, String), Rollback>> {
        if let Some(known) = &self.rollbacks {
            return Ok(known.clone());
        }
        let mut known = HashMap::new();
        for record in LocalForge::new(self.store).requests()? {
            let r = record.value;
            if r.state != RequestState::Merged || !r.rollback {
                continue;
            }
            if let Some(commit) = r.merge_commit {
                known.insert(
                    (r.to.clone(), commit),
                    Rollback {
                        request: r.id,
                        opened_at: r.created_at,
                    },
                );
            }
        }
        self.rollbacks = Some(known.clone());
        Ok(known)
    }

    /// The final deploy reports of `env` on `changes`, from every version of the commits'
    /// statuses records and of the environment's hosts' records; only `reporters`' when it
    /// names any.
    fn reports(
        &mut self,
        env: &str,
        changes: &[Change],
        reporters: &[String],
    ) -> Result<Vec<DeployReport>> {
        let commits: HashSet<&str> = changes.iter().map(|c| c.commit.as_str()).collect();
        // When each change was committed: what a report dated before git existed (an agent
        // whose clock was never set) is taken at instead, so that it does not stretch the
        // period back to 1970 and make every rate nothing.
        let committed: HashMap<&str, i64> =
            changes.iter().map(|c| (c.commit.as_str(), c.at)).collect();
        let mut unset_clocks = 0usize;
        let aggregate = format!("ferry/deploy/{env}");
        let host_prefix = format!("{aggregate}/");
        // `refs/ferry/hosts/ENV/` with ENV escaped as the records' names have it.
        let hosts_of_env = crate::forge::local::host_record(&format!("{host_prefix}h"))
            .map(|name| name.trim_end_matches('h').to_owned())
            .unwrap_or_else(|| format!("{HOSTS}{env}/"));
        let names: Vec<String> = self
            .store
            .refs()?
            .keys()
            .filter(|name| {
                name.strip_prefix(STATUSES)
                    .is_some_and(|commit| commits.contains(commit))
                    || name.starts_with(&hosts_of_env)
            })
            .cloned()
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let tips = self.store.fetch_refs(&names, History::Full)?;
        let mut seen: HashSet<(String, String, i64, bool, String)> = HashSet::new();
        let mut reports = Vec::new();
        let mut ignored: BTreeMap<String, usize> = BTreeMap::new();
        let mut keep = |commit: &str, check: &str, status: &crate::forge::Status| {
            let success = match status.state {
                CheckState::Success => true,
                CheckState::Failure | CheckState::Error => false,
                CheckState::Pending => return,
            };
            let host = if check == aggregate {
                None
            } else {
                match check.strip_prefix(&host_prefix) {
                    Some(host) if !host.is_empty() && !host.contains('/') => Some(host.to_owned()),
                    _ => return,
                }
            };
            if !reporters.is_empty() && !reporters.contains(&status.by) {
                *ignored.entry(status.by.clone()).or_default() += 1;
                return;
            }
            // Each version of a commit's record holds every check: a report once.
            let key = (
                commit.to_owned(),
                check.to_owned(),
                status.at,
                success,
                status.by.clone(),
            );
            if !seen.insert(key) {
                return;
            }
            let at = if status.at < GIT_EPOCH {
                unset_clocks += 1;
                committed.get(commit).copied().unwrap_or(status.at)
            } else {
                status.at
            };
            reports.push(DeployReport {
                commit: commit.to_owned(),
                at,
                success,
                host,
                rolled_back: status
                    .apps
                    .iter()
                    .filter(|(_, a)| a.state == RolloutState::RolledBack)
                    .map(|(name, _)| name.clone())
                    .collect(),
                description: status.description.clone(),
            });
        };
        for (name, tip) in tips {
            let Some(tip) = tip else { continue };
            let statuses_of = name.strip_prefix(STATUSES).map(str::to_owned);
            // A record whose tip is no commit (no hook guarded the repository) is passed over,
            // as a damaged version is.
            let versions = match self.store.ancestors(tip) {
                Ok(versions) => versions,
                Err(e) => {
                    tracing::warn!("{name}: passed over: {e}");
                    continue;
                }
            };
            for version in versions {
                match &statuses_of {
                    Some(commit) => {
                        let Some(statuses) = read::<Statuses>(self.store, version, STATUSES_FILE)
                        else {
                            continue;
                        };
                        for (check, status) in &statuses {
                            keep(commit, check, status);
                        }
                    }
                    None => {
                        let Some(report) = read::<HostReport>(self.store, version, HOST_FILE)
                        else {
                            continue;
                        };
                        // A host's record holds only its own host's reports.
                        if crate::forge::local::host_record(&report.check).as_deref()
                            != Some(name.as_str())
                            || !commits.contains(report.commit.as_str())
                        {
                            continue;
                        }
                        keep(&report.commit, &report.check, &report.status);
                    }
                }
            }
        }
        if unset_clocks > 0 {
            self.notes.push(format!(
                "{unset_clocks} deploy report(s) of {env} dated before 2005 (a clock never set?) taken at their commit's time"
            ));
        }
        for (by, count) in ignored {
            self.notes.push(format!(
                "{count} deploy report(s) of {env} by `{by}` not counted: {env}'s deploys are reported by its `agent.reporters` only ({})",
                reporters.join(", ")
            ));
        }
        Ok(reports)
    }
}

/// Git's first release (2005-04-07): no record is older.
const GIT_EPOCH: i64 = 1_112_911_993;

/// A record's file at `version`, when it reads as one (a damaged version is passed over, as
/// the forge passes it over).
fn read<T: serde::de::DeserializeOwned>(store: &Store, version: Oid, file: &str) -> Option<T> {
    let bytes = store.read_file(version, file).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// `tip`'s first-parent history, oldest first, each change with what it pinned.
fn walk(store: &Store, tip: Oid) -> Result<Vec<Change>, Error> {
    let mut manifests = Manifests::new(store);
    let mut walked = Vec::new();
    for change in changes(store, tip)? {
        let (commit, before) = change?;
        let mut pinned = Vec::new();
        let mut removed = Vec::new();
        if commit.manifest != before {
            for m in moves(
                manifests.at_blob(before).as_ref(),
                manifests.at_blob(commit.manifest).as_ref(),
            ) {
                match m.to {
                    Some(version) => pinned.push((m.app, version)),
                    None => removed.push(m.app),
                }
            }
        }
        walked.push(Change {
            commit: commit.id.to_string(),
            at: commit.committer.time,
            pinned,
            removed,
            rollback: None,
        });
    }
    walked.reverse();
    Ok(walked)
}

/// The changes that pinned a version.
fn bumps_of(changes: &[Change]) -> Vec<Bump> {
    changes
        .iter()
        .flat_map(|c| {
            c.pinned.iter().map(|(app, version)| Bump {
                app: app.clone(),
                version: version.clone(),
                commit: c.commit.clone(),
                at: c.at,
            })
        })
        .collect()
}
