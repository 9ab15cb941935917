//! The pull agent: inside an environment, make what runs match the environment's branch.
//!
//! One reconcile: read the desired state from its source (the branch's tip: one ref
//! advertisement, a shallow fetch only when it moved; or an OCI tag: one `HEAD`, a pull only
//! when its digest changed), validate it whole (an invalid one is never deployed), then for
//! each app this host runs whose wave of the rollout is open: fetch the pinned artifact into the cache while verifying its
//! digest, unpack it as a new release, switch the live link atomically, run `activate`, wait
//! for `healthcheck_url` to answer 2xx, and on failure switch back to the previous release.
//! When nothing is to deploy, check each release for drift (metadata first) and heal it. The
//! result is written to `status.json` in the state dir and reported as the host's commit status
//! `ferry/deploy/<env>/<host>` through the forge, with the environment's aggregate
//! `ferry/deploy/<env>` when this report completes or halts the rollout.
//!
//! Where things are: `source/` reads the desired state (a new source is a new file there);
//! `decide.rs` decides, without I/O, which steps each app needs and what a failure comes to;
//! `rollout.rs` decides, from the other hosts' statuses, whether this host's wave is open;
//! `execute.rs` observes the host and carries the steps out; `release.rs` is the directory
//! driver (releases, the live link, drift); `report.rs` sets commit statuses; `http.rs` and
//! `server.rs` serve the metrics and the trigger; `signal.rs` stops between steps.

pub mod decide;
mod execute;
pub mod http;
pub mod nudge;
pub mod release;
pub mod report;
pub mod rollout;
pub mod server;
pub mod signal;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store::Oid;
use serde::{Deserialize, Serialize};

use crate::deploy::fetch::Cache;
use crate::deploy::unpack::Limits;
use crate::forge::{AppStatus, CheckState, RolloutState, Status, Statuses};
use crate::identity::now;
use crate::model::App;
use crate::validate::State;
pub use decide::{AppState, Backoff, EnvState, Outcome};
use execute::Executor;
use release::Place;
use report::Reporter;
use source::DesiredSource;

/// How the agent runs.
#[derive(Debug)]
pub struct Settings {
    pub env: String,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    /// The host this agent deploys on: the apps that name it (and those that name none).
    pub host: String,
    /// Releases kept per app (the live one and the previous included).
    pub keep: usize,
    pub limits: Limits,
    /// Tells the environment's other agents (`agent.trigger_urls`) when this host's report
    /// finishes its wave; `None`: they learn of it by polling.
    pub nudge: Option<nudge::Nudge>,
}

/// The agent's memory between reconciles (`agent.json` in the state dir).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// A revision that failed to deploy, not to be tried again until the branch moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Why it failed, to say again while waiting.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failed_reason: String,
    /// The release each app was last deployed to (a directory name), to tell a live link
    /// changed by hand from a new revision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployed: BTreeMap<String, String>,
    #[serde(default)]
    pub drift_events: u64,
    /// Releases switched to but not yet activated and checked, by app: after a crash there,
    /// the next reconcile finishes the job instead of taking the release as deployed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, String>,
    /// When this agent first saw the first k waves of an app's rollout of a revision finish
    /// (`APP@REVISION#k`, Unix seconds): a wave's pause runs from then at the earliest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub waves_seen: BTreeMap<String, i64>,
}

impl Memory {
    /// The memory saved in `state_dir` (empty when there is none, or it cannot be read).
    fn load(state_dir: &Path) -> Option<Memory> {
        std::fs::read(state_dir.join("agent.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
}

/// `status.json`: what the agent last did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub env: String,
    #[serde(default)]
    pub host: String,
    pub revision: Option<String>,
    pub state: EnvState,
    pub message: String,
    /// Unix seconds.
    pub at: i64,
    pub apps: BTreeMap<String, AppReport>,
    pub drift_events: u64,
}

/// What one app came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReport {
    /// The version it runs now.
    pub version: String,
    /// The release directory it runs now.
    pub release: Option<String>,
    pub state: AppState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Its host's wave of the rollout and the number of waves, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<(usize, usize)>,
}

impl AppReport {
    pub fn deployed(version: &str, release: &str) -> AppReport {
        AppReport {
            version: version.to_owned(),
            release: Some(release.to_owned()),
            state: AppState::Deployed,
            message: String::new(),
            wave: None,
        }
    }

    /// `version` cannot be deployed (nothing of it runs).
    pub fn failed(version: &str, message: impl Into<String>) -> AppReport {
        AppReport {
            version: version.to_owned(),
            release: None,
            state: AppState::Failed,
            message: message.into(),
            wave: None,
        }
    }
}

/// Why the agent cannot start, or `ferry agent retry` cannot say so.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Agent<'s> {
    source: Box<dyn DesiredSource + 's>,
    /// Where `ferry/deploy/<env>` is reported (nowhere when `None`).
    reporter: Option<Box<dyn Reporter + 's>>,
    settings: Settings,
    cache: Cache,
    memory: Memory,
    /// The memory as last saved: it is written only when it changed.
    saved: Option<Memory>,
    /// The environment's `agent.interval`, as last read.
    pub interval: Option<Duration>,
    /// What `status.json` holds: the last report, written or found at start.
    last: Option<Report>,
    /// The last reconcile found the disk full: the next waits longer (a retry refills it).
    disk_full: bool,
    /// The last reconcile left an app waiting for a wave that other hosts' reports (or a
    /// pause) will open: the next reads sooner.
    wave_ahead: bool,
    /// What the desired revision's signature said at the last reconcile (`--trusted-keys`).
    signature: Option<crate::sign::Verdict>,
}

impl Agent<'_> {
    /// What the desired revision's signature said at the last reconcile, when checked.
    pub fn signature(&self) -> Option<&crate::sign::Verdict> {
        self.signature.as_ref()
    }

    /// Drift events healed since the state dir was made.
    pub fn drift_events(&self) -> u64 {
        self.memory.drift_events
    }

    /// The last report (what `status.json` holds).
    pub fn last_report(&self) -> Option<&Report> {
        self.last.as_ref()
    }

    /// Artifact bytes downloaded since the agent started.
    pub fn artifact_bytes(&self) -> u64 {
        self.cache.fetched_bytes()
    }

    /// Whether the last reconcile was retried because the disk is full.
    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// Whether the last reconcile left some app waiting for its wave, which opens when the
    /// earlier waves' hosts report (and a pause passes), not for a halted rollout: the
    /// agent reads again at half its interval, so that a wave opens within one interval of
    /// the reports it waits for.
    pub fn wave_ahead(&self) -> bool {
        self.wave_ahead
    }
}

impl<'s> Agent<'s> {
    /// An agent deploying what `source` says, reporting through `reporter`.
    pub fn new(
        source: Box<dyn DesiredSource + 's>,
        reporter: Option<Box<dyn Reporter + 's>>,
        cache: Cache,
        settings: Settings,
    ) -> Result<Agent<'s>, AgentError> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|source| AgentError::Io {
            path: settings.state_dir.clone(),
            source,
        })?;
        let saved = Memory::load(&settings.state_dir);
        let last = std::fs::read(settings.state_dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Agent {
            source,
            reporter,
            cache,
            settings,
            memory: saved.clone().unwrap_or_default(),
            saved,
            interval: None,
            last,
            disk_full: false,
            wave_ahead: false,
            signature: None,
        })
    }

    /// Forgets a failed revision, so the next reconcile tries it again (`ferry agent retry`).
    pub fn retry(state_dir: &Path) -> Result<Option<String>, AgentError> {
        let mut memory = Memory::load(state_dir).unwrap_or_default();
        let failed = memory.failed.take();
        write_json(&state_dir.join("agent.json"), &memory, true)?;
        Ok(failed)
    }

    /// One reconcile, reported.
    pub fn reconcile(&mut self) -> Outcome {
        self.disk_full = false;
        self.wave_ahead = false;
        let desired = match self.source.desired(&self.settings.env, &self.cache) {
            Ok(desired) => desired,
            Err(e) => {
                let outcome = if e.is_transient() {
                    Outcome::Transient(e.to_string())
                } else {
                    Outcome::Stalled(e.to_string())
                };
                self.write_report(None, &outcome, BTreeMap::new(), None);
                return outcome;
            }
        };
        self.signature = desired.signature.clone();
        let revision = desired.revision;
        // `ferry agent retry` clears the failed revision in the state dir, while this runs.
        let on_disk = Memory::load(&self.settings.state_dir);
        if on_disk.as_ref().is_some_and(|m| m.failed.is_none()) {
            self.memory.failed = None;
        }
        // Compare the end of this reconcile with what is on disk now, not what this process
        // last wrote (`ferry agent retry` rewrites it meanwhile).
        self.saved = on_disk;
        if let Some(waiting) = decide::waiting(&revision, &self.memory) {
            // Already reported; nothing new until the branch moves.
            return waiting;
        }
        let (outcome, apps) = match &desired.state {
            Ok(state) => self.deploy(state, &revision),
            Err(invalid) => (Outcome::Stalled(invalid.to_string()), BTreeMap::new()),
        };
        if let Outcome::Failed(reason) = &outcome {
            self.memory.failed = Some(revision.clone());
            self.memory.failed_reason = reason.clone();
        }
        if self.saved.as_ref() != Some(&self.memory) {
            save_memory(&self.settings.state_dir, &self.memory);
            self.saved = Some(self.memory.clone());
        }
        let state = desired.state.as_ref().ok().map(|s| &**s);
        self.write_report(Some(&revision), &outcome, apps, state);
        outcome
    }

    fn deploy(&mut self, state: &State, revision: &str) -> (Outcome, BTreeMap<String, AppReport>) {
        let env_name = &self.settings.env;
        let env = &state.environments[env_name];
        self.interval = Some(env.agent.interval.as_std());
        let host = self.settings.host.as_str();
        let apps = match decide::apps(env_name, &state.manifest.artifacts, env.apps.as_ref(), host)
        {
            Ok(apps) => apps,
            Err(outcome) => return (outcome, BTreeMap::new()),
        };
        // The other hosts' reports, when this host waits for a wave of some app's rollout.
        let none = Statuses::new();
        let behind = apps.iter().any(|(name, _, app)| {
            rollout::Plan::new(env_name, name, app, env.rollout.as_ref(), &none)
                .wave_of(host)
                .is_some_and(|wave| wave > 0)
        });
        let commit = Oid::from_str(revision).ok();
        let statuses = match (&self.reporter, commit) {
            (Some(reporter), Some(commit)) if behind => match reporter.statuses(commit) {
                Ok(statuses) => statuses,
                Err(e) => {
                    return (
                        Outcome::Transient(format!("cannot read the other hosts' reports: {e}")),
                        BTreeMap::new(),
                    );
                }
            },
            _ => none,
        };
        let now = now();
        // What was seen of other revisions' rollouts is of no more use.
        let current = format!("@{revision}#");
        self.memory
            .waves_seen
            .retain(|key, _| key.contains(&current));
        let mut executor = Executor {
            settings: &self.settings,
            cache: &self.cache,
            memory: &mut self.memory,
            disk_full: false,
            wrote: false,
        };
        let mut reports = BTreeMap::new();
        for (name, artifact, app) in apps {
            let plan = rollout::Plan::new(env_name, name, app, env.rollout.as_ref(), &statuses);
            // When this agent first saw each wave finish: the pause runs from then at the
            // earliest, whatever the reporting hosts' clocks say.
            let key = |k: usize| format!("{name}@{revision}#{k}");
            let first = {
                let seen = |k: usize| executor.memory.waves_seen.get(&key(k)).copied();
                rollout::progress_seen(env_name, &plan, &statuses, now, &seen)
            };
            for k in 1..=first.finished {
                executor.memory.waves_seen.entry(key(k)).or_insert(now);
            }
            let seen = |k: usize| executor.memory.waves_seen.get(&key(k)).copied();
            let progress = rollout::progress_seen(env_name, &plan, &statuses, now, &seen);
            let report = match rollout::turn(&plan, &progress, host) {
                rollout::Turn::Go => executor.deploy_app(name, artifact, app),
                rollout::Turn::Wait { wave, of, why } => {
                    self.wave_ahead |= self.reporter.is_some() && !progress.halted;
                    let why = if self.reporter.is_none() {
                        "the rollout's waves need the hosts' reports, and this agent reports nothing (`--no-report`)".to_owned()
                    } else {
                        why
                    };
                    let running = executor
                        .memory
                        .deployed
                        .get(name)
                        .map(|release| release::version_of(Path::new(release)))
                        .unwrap_or_default();
                    AppReport {
                        version: running,
                        release: executor.memory.deployed.get(name).cloned(),
                        state: AppState::Waiting,
                        message: format!("waiting (wave {wave} of {of}): {why}"),
                        wave: Some((wave, of)),
                    }
                }
            };
            let mut report = report;
            if report.wave.is_none() {
                report.wave = plan.wave_of(host).map(|w| (w + 1, progress.waves));
            }
            reports.insert(name.to_owned(), report);
        }
        self.disk_full |= executor.disk_full;
        if executor.wrote {
            self.saved = None; // a switch saved the memory midway: save the end too
        }
        if let Some(settings) = &env.apps {
            self.prune_cache(state, settings);
        }
        (decide::outcome(env_name, host, &reports), reports)
    }

    /// Deletes the cached artifacts that neither a pin of this host's apps nor a release kept
    /// on disk needs (a release directory ends in its digest's first 12 digits), nor the
    /// source's own entry (the state layer last pulled).
    fn prune_cache(&self, state: &State, settings: &BTreeMap<String, App>) {
        let mut pinned: Vec<String> = self
            .source
            .cached()
            .map(str::to_owned)
            .into_iter()
            .collect();
        let mut kept: Vec<String> = Vec::new();
        for (name, app) in settings {
            if !app.runs_on(&self.settings.host) {
                continue;
            }
            if let Some(pin) = state.manifest.artifacts.get(name).and_then(|a| a.pin()) {
                pinned.push(pin.sha256.clone());
            }
            let Ok(place) = Place::new(&self.settings.root, &app.deployment_path) else {
                continue;
            };
            for entry in std::fs::read_dir(&place.releases)
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let id = name.split('~').next().unwrap_or_default();
                if let Some((_, short)) = id.rsplit_once('-')
                    && short.len() == 12
                    && !name.starts_with('.')
                {
                    kept.push(short.to_owned());
                }
            }
        }
        let needed = |digest: &str| {
            pinned.iter().any(|p| p == digest)
                || kept.iter().any(|k| digest.starts_with(k.as_str()))
        };
        let freed = self.cache.prune(&needed);
        if freed > 0 {
            tracing::info!(bytes = freed, "pruned the artifact cache");
        }
    }

    /// Writes `status.json`, and reports the outcome as this host's status on the revision
    /// (with the environment's aggregate when this completes or halts the rollout).
    fn write_report(
        &mut self,
        revision: Option<&str>,
        outcome: &Outcome,
        apps: BTreeMap<String, AppReport>,
        state: Option<&State>,
    ) {
        let report = Report {
            env: self.settings.env.clone(),
            host: self.settings.host.clone(),
            revision: revision.map(str::to_owned),
            state: outcome.kind(),
            message: outcome.message().to_owned(),
            at: now(),
            apps,
            drift_events: self.memory.drift_events,
        };
        if let Err(e) = write_json(&self.settings.state_dir.join("status.json"), &report, false) {
            tracing::warn!("cannot write status.json: {e}");
        }
        // Statuses are set on commits: an artifact without one has nowhere to report.
        let tip = revision.and_then(|r| Oid::from_str(r).ok());
        if let (Some(tip), Some(reporter)) = (tip, &self.reporter) {
            let env = &self.settings.env;
            // A host with no app to deploy (none placed on it, or none pinned yet) idles: it
            // is not part of the rollout.
            let placed = state
                .and_then(|s| s.environments.get(env))
                .is_some_and(|e| e.apps.is_some());
            let idle = placed && report.apps.is_empty();
            match host_status(outcome, &report).filter(|_| !idle) {
                None => {}
                Some(status) => {
                    let check = rollout::host_check(env, &self.settings.host);
                    let host = self.settings.host.as_str();
                    // What the statuses read back after this report say (the last read wins).
                    let finished = std::cell::Cell::new(false);
                    let aggregate = |statuses: &Statuses| {
                        finished.set(wave_finished(env, state, host, statuses));
                        aggregate_of(env, state, outcome, statuses)
                    };
                    if let Err(e) = reporter.report(tip, &check, status, &aggregate) {
                        tracing::warn!("cannot report {check}: {e}");
                    } else if finished.get()
                        && let (Some(nudge), Some(settings)) = (
                            &self.settings.nudge,
                            state.and_then(|s| s.environments.get(env)),
                        )
                    {
                        let revision = tip.to_string();
                        nudge.wave_finished(env, host, &revision, &settings.agent.trigger_urls);
                    }
                }
            }
        }
        self.last = Some(report);
    }
}

/// Whether `statuses` finish the wave `host` is in, of some app's rollout on `env` that has
/// a wave after it and did not halt: the next wave's hosts may go (after the pause).
fn wave_finished(env: &str, state: Option<&State>, host: &str, statuses: &Statuses) -> bool {
    let Some(settings) = state.and_then(|s| s.environments.get(env)) else {
        return false;
    };
    let now = now();
    settings.apps.iter().flatten().any(|(name, app)| {
        let plan = rollout::Plan::new(env, name, app, settings.rollout.as_ref(), statuses);
        let Some(wave) = plan.wave_of(host) else {
            return false;
        };
        let progress = rollout::progress_seen(env, &plan, statuses, now, &|_| None);
        !progress.halted && progress.finished > wave && wave + 1 < progress.waves
    })
}

/// This host's status for `report`; `None` when there is nothing to say (a transient
/// failure, retried; a host no app names).
fn host_status(outcome: &Outcome, report: &Report) -> Option<Status> {
    let at = report.at;
    let (state, description) = match outcome {
        Outcome::Transient(_) => return None,
        Outcome::Converged => {
            let versions: Vec<String> = report
                .apps
                .iter()
                .map(|(name, app)| format!("{name} {}", app.version))
                .collect();
            (
                CheckState::Success,
                report::first_line(&format!("deployed {}", versions.join(", "))),
            )
        }
        Outcome::Waiting(_) => (CheckState::Pending, report::first_line(outcome.message())),
        _ => (CheckState::Failure, report::first_line(outcome.message())),
    };
    let mut status = Status::new(state, description, "", at);
    for (name, app) in &report.apps {
        let state = match app.state {
            AppState::Deployed => RolloutState::Deployed,
            AppState::Failed => RolloutState::Failed,
            AppState::RolledBack => RolloutState::RolledBack,
            AppState::Waiting => RolloutState::Waiting,
            AppState::Unreachable | AppState::Retrying => RolloutState::Pending,
        };
        status.apps.insert(
            name.clone(),
            AppStatus {
                state,
                version: app.version.clone(),
                wave: app.wave,
                message: report::first_line(&app.message),
                since: at,
            },
        );
    }
    Some(status)
}

/// The environment's aggregate to write on a commit with `statuses` (this host's report
/// among them), when it is final and says something new.
fn aggregate_of(
    env: &str,
    state: Option<&State>,
    outcome: &Outcome,
    statuses: &Statuses,
) -> Vec<(String, Status)> {
    let computed = match state {
        Some(state) => {
            let Some(settings) = state.environments.get(env) else {
                return Vec::new();
            };
            let plans: Vec<rollout::Plan<'_>> = settings
                .apps
                .iter()
                .flatten()
                .filter(|(name, _)| state.manifest.artifacts.contains_key(*name))
                .map(|(name, app)| {
                    rollout::Plan::new(env, name, app, settings.rollout.as_ref(), statuses)
                })
                .collect();
            rollout::aggregate(env, &plans, statuses, now())
        }
        // An invalid desired state fails wherever it is read.
        None => match outcome {
            Outcome::Stalled(why) => Some((CheckState::Failure, report::first_line(why))),
            _ => None,
        },
    };
    let check = rollout::env_check(env);
    match computed {
        Some((state, description))
            if statuses
                .get(&check)
                .is_none_or(|s| s.state != state || s.description != description) =>
        {
            vec![(check, Status::new(state, description, "", now()))]
        }
        _ => Vec::new(),
    }
}

/// Saves the agent's memory in `state_dir` (warning when it cannot).
fn save_memory(state_dir: &Path, memory: &Memory) {
    if let Err(e) = write_json(&state_dir.join("agent.json"), memory, true) {
        tracing::warn!("cannot save the agent's memory: {e}");
    }
}

/// Writes `value` to `path` atomically: a whole old file or a whole new one, whenever the
/// process is killed (a temporary file renamed over it). `durable`: synced to the disk before
/// the rename, so that it survives a power loss too.
fn write_json(path: &Path, value: &impl Serialize, durable: bool) -> Result<(), AgentError> {
    let mut text = serde_json::to_string_pretty(value).expect("serializes");
    text.push('\n');
    let temp = path.with_extension("json.tmp");
    let io = |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    if durable {
        file.sync_all().map_err(io)?;
    }
    drop(file);
    std::fs::rename(&temp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::source::{Desired, Invalid, SourceError};
    use super::*;
    use crate::store::StoreError;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A source that says what the test queues, once each.
    struct Queued(Vec<Result<Desired, SourceError>>);

    impl DesiredSource for Queued {
        fn desired(&mut self, _: &str, _: &Cache) -> Result<Desired, SourceError> {
            self.0.remove(0)
        }
    }

    /// A status asked for: the commit, the check, its state and description.
    type Said = (Oid, String, CheckState, String);

    /// A reporter that notes what it is asked to say.
    #[derive(Clone, Default)]
    struct Noted(Rc<RefCell<Vec<Said>>>);

    impl Reporter for Noted {
        fn statuses(&self, _: Oid) -> Result<Statuses, report::ReportError> {
            Ok(Statuses::new())
        }

        fn report(
            &self,
            commit: Oid,
            check: &str,
            status: Status,
            then: &dyn Fn(&Statuses) -> Vec<(String, Status)>,
        ) -> Result<(), report::ReportError> {
            let mut statuses = Statuses::new();
            statuses.insert(check.to_owned(), status.clone());
            let mut noted = self.0.borrow_mut();
            noted.push((commit, check.to_owned(), status.state, status.description));
            for (check, status) in then(&statuses) {
                noted.push((commit, check, status.state, status.description));
            }
            Ok(())
        }
    }

    fn invalid(revision: &str, why: &str) -> Result<Desired, SourceError> {
        Ok(Desired {
            revision: revision.to_owned(),
            state: Err(Invalid(why.to_owned())),
            signature: None,
        })
    }

    fn agent<'s>(
        dir: &Path,
        queued: Vec<Result<Desired, SourceError>>,
        noted: &Noted,
    ) -> Agent<'s> {
        Agent::new(
            Box::new(Queued(queued)),
            Some(Box::new(noted.clone())),
            Cache::new(dir.join("state/artifacts")),
            Settings {
                env: "dev".to_owned(),
                root: dir.join("root"),
                state_dir: dir.join("state"),
                host: "h1".to_owned(),
                keep: 3,
                limits: Limits::default(),
                nudge: None,
            },
        )
        .unwrap()
    }

    fn status(dir: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("state/status.json")).unwrap()).unwrap()
    }

    #[test]
    fn a_source_out_of_reach_is_retried_and_one_that_refuses_stalls_with_nothing_reported() {
        let dir = tempfile::tempdir().unwrap();
        let noted = Noted::default();
        let unreachable = StoreError::Unreachable {
            remote: "https://git.example.com/deploy.git".to_owned(),
            message: "timed out".to_owned(),
            transient: true,
        };
        let mut agent = agent(
            dir.path(),
            vec![
                Err(unreachable.into()),
                Err(SourceError::Refused("no such tag".to_owned())),
            ],
            &noted,
        );
        let outcome = agent.reconcile();
        assert_eq!(
            outcome,
            Outcome::Transient(
                "cannot reach `https://git.example.com/deploy.git`: timed out".to_owned()
            )
        );
        assert_eq!(status(dir.path())["state"], "retrying");
        assert_eq!(
            agent.reconcile(),
            Outcome::Stalled("no such tag".to_owned())
        );
        let status = status(dir.path());
        assert_eq!(status["state"], "stalled");
        assert_eq!(status["revision"], serde_json::Value::Null);
        assert!(noted.0.borrow().is_empty(), "no revision to report on");
        assert!(
            !dir.path().join("state/agent.json").exists(),
            "nothing to remember"
        );
    }

    #[test]
    fn an_invalid_state_stalls_and_is_reported_once_on_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let noted = Noted::default();
        let why = "the desired state on `dev` is invalid\n  manifest.json: …";
        let mut agent = agent(
            dir.path(),
            vec![invalid(COMMIT, why), invalid(COMMIT, why)],
            &noted,
        );
        assert_eq!(agent.reconcile(), Outcome::Stalled(why.to_owned()));
        assert_eq!(agent.last_report().unwrap().state, EnvState::Stalled);
        let said = noted.0.borrow().clone();
        // The host's status, and the environment's: invalid wherever it is read.
        let said_on = |check: &str| {
            (
                Oid::from_str(COMMIT).unwrap(),
                check.to_owned(),
                CheckState::Failure,
                "the desired state on `dev` is invalid".to_owned(),
            )
        };
        assert_eq!(
            said,
            [said_on("ferry/deploy/dev/h1"), said_on("ferry/deploy/dev")]
        );
        // Not failed: stalled until the branch moves, and tried again each time.
        assert_eq!(agent.reconcile(), Outcome::Stalled(why.to_owned()));
        assert_eq!(agent.memory.failed, None);
    }

    #[test]
    fn a_failed_revision_waits_until_retried() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let memory = Memory {
            failed: Some(COMMIT.to_owned()),
            failed_reason: "web: HTTP 500".to_owned(),
            ..Memory::default()
        };
        write_json(&state_dir.join("agent.json"), &memory, true).unwrap();
        let noted = Noted::default();
        let mut agent = agent(
            dir.path(),
            vec![invalid(COMMIT, "x"), invalid(COMMIT, "x")],
            &noted,
        );
        let Outcome::Failed(message) = agent.reconcile() else {
            panic!("waiting");
        };
        assert!(message.contains("waiting for a new one"), "{message}");
        assert!(noted.0.borrow().is_empty(), "said already");
        assert!(!state_dir.join("status.json").exists(), "said already");
        // `ferry agent retry`, from another process: the next reconcile tries it again.
        assert_eq!(Agent::retry(&state_dir).unwrap(), Some(COMMIT.to_owned()));
        assert_eq!(agent.reconcile(), Outcome::Stalled("x".to_owned()));
        assert_eq!(Agent::retry(&state_dir).unwrap(), None);
    }
}
