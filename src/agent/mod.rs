//! The pull agent: inside an environment, make what runs match the environment's branch.
//!
//! One reconcile: read the branch's tip (one ref advertisement; a shallow fetch only when it
//! moved), or with an OCI source the artifact's digest (one `HEAD`; a pull only when it
//! changed), validate the whole desired state (an invalid one is never deployed), then for each
//! app this host runs: fetch the pinned artifact into the cache while verifying its digest,
//! unpack it as a new release, switch the live link atomically, run `activate`, wait for
//! `healthcheck_url` to answer 2xx, and on failure switch back to the previous release. When
//! nothing is to deploy, check each release for drift (metadata first) and heal it. The result
//! is written to `status.json` in the state dir and reported as the commit status
//! `ferry/deploy/<env>` through the forge.

pub mod http;
pub mod release;
pub mod server;
pub mod signal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::cmd::shared::{identity, load_at, now, signature, validate_files};
use crate::deploy::fetch::{Cache, FetchError, probe};
use crate::deploy::unpack::Limits;
use crate::forge::local::LocalForge;
use crate::forge::{CheckState, Status};
use crate::model::{App, Artifact};
use crate::oci::{OciError, OciUrl, Registry, state as oci_state};
use crate::store::{History, Store, TreeSource};
use crate::validate::State;
use release::{Place, Recorded, is_release};

/// What one reconcile came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every app runs its pinned release, healthy.
    Converged,
    /// This revision failed to deploy (rolled back where possible): it is not tried again
    /// until the branch moves or `ferry agent retry`.
    Failed(String),
    /// The desired state cannot be deployed as it is (invalid): waiting for a fix.
    Stalled(String),
    /// The state store or an artifact server could not be reached, or the host could not
    /// write (a full disk): retried with backoff, the running release kept.
    Transient(String),
}

impl Outcome {
    /// How `status.json` and the metrics name it.
    pub fn state(&self) -> &'static str {
        match self {
            Outcome::Converged => "deployed",
            Outcome::Failed(_) => "failed",
            Outcome::Stalled(_) => "stalled",
            Outcome::Transient(_) => "retrying",
        }
    }
}

/// How the agent runs.
#[derive(Debug)]
pub struct Settings {
    pub env: String,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    /// Only the apps whose `host` is this.
    pub host: Option<String>,
    /// Releases kept per app (the live one and the previous included).
    pub keep: usize,
    pub limits: Limits,
    /// Where `ferry/deploy/<env>` is reported.
    pub report: Reporting,
}

/// Where the agent reports its deploys.
pub enum Reporting {
    None,
    /// The local forge's records in the deployment repository.
    Local,
    /// GitHub's statuses API, with the agent's own token.
    GitHub(Box<crate::forge::github::GitHub>),
}

impl std::fmt::Debug for Reporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reporting::None => "none",
            Reporting::Local => "local",
            Reporting::GitHub(_) => "github",
        })
    }
}

/// The agent's memory between reconciles (`agent.json` in the state dir).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
}

/// `status.json`: what the agent last did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub env: String,
    pub revision: Option<String>,
    /// `deployed`, `failed`, `stalled` or `retrying`.
    pub state: String,
    pub message: String,
    /// Unix seconds.
    pub at: i64,
    pub apps: BTreeMap<String, AppReport>,
    pub drift_events: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppReport {
    pub version: String,
    pub release: Option<String>,
    /// `deployed`, `failed`, `rolled-back`, `unreachable` (its artifact could not be fetched)
    /// or `retrying` (it could not be written here, such as on a full disk); the last two are
    /// retried.
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl AppReport {
    fn deployed(version: &str, release: String) -> AppReport {
        AppReport {
            version: version.to_owned(),
            release: Some(release),
            state: "deployed".to_owned(),
            message: String::new(),
        }
    }
}

/// Where the agent reads the desired state from.
pub enum Origin<'s> {
    /// The environment's branch in the git store.
    Git { store: &'s Store, branch: String },
    /// The artifact `ferry publish` pushes to a registry, at a tag (`oci://HOST/REPO:ENV`).
    Oci(OciOrigin),
}

/// An OCI source: the tag, its registry, and the state last pulled from it.
pub struct OciOrigin {
    url: OciUrl,
    registry: std::sync::Arc<Registry>,
    pulled: Option<Pulled>,
}

impl OciOrigin {
    pub fn new(url: OciUrl, registry: std::sync::Arc<Registry>) -> OciOrigin {
        OciOrigin {
            url,
            registry,
            pulled: None,
        }
    }
}

/// A state pulled from a registry (or why it cannot be deployed): kept while the tag's digest
/// stays the same.
struct Pulled {
    digest: String,
    revision: String,
    state: Result<std::rc::Rc<State>, String>,
}

/// The desired state one reconcile works from.
struct Desired {
    /// The commit (or, for an artifact without one, its digest).
    revision: String,
    state: Result<std::rc::Rc<State>, String>,
}

pub struct Agent<'s> {
    origin: Origin<'s>,
    /// Where the local forge's statuses are recorded (the deployment repository).
    store: Option<&'s Store>,
    settings: Settings,
    cache: Cache,
    memory: Memory,
    /// The environment's `agent.interval`, as last read.
    pub interval: Option<Duration>,
    /// The last status reported to GitHub, not to repeat it every interval.
    reported: std::cell::RefCell<Option<(Oid, CheckState, String)>>,
    /// What `status.json` holds: the last report, written or found at start.
    last: Option<Report>,
    /// The last reconcile found the disk full: the next waits longer (a retry refills it).
    disk_full: bool,
    /// The state layer last pulled from a registry, kept in the artifact cache.
    state_layer: Option<String>,
}

impl Agent<'_> {
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
}

impl<'s> Agent<'s> {
    /// An agent deploying from `origin`, recording local statuses in `store` (when reporting
    /// to the local forge).
    pub fn new(
        origin: Origin<'s>,
        store: Option<&'s Store>,
        cache: Cache,
        settings: Settings,
    ) -> Result<Agent<'s>, String> {
        std::fs::create_dir_all(&settings.state_dir)
            .map_err(|e| format!("{}: {e}", settings.state_dir.display()))?;
        let memory = std::fs::read(settings.state_dir.join("agent.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let last = std::fs::read(settings.state_dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Agent {
            origin,
            store,
            cache,
            settings,
            memory,
            interval: None,
            reported: Default::default(),
            last,
            disk_full: false,
            state_layer: None,
        })
    }

    /// Forgets a failed revision, so the next reconcile tries it again (`ferry agent retry`).
    pub fn retry(state_dir: &Path) -> Result<Option<String>, String> {
        let path = state_dir.join("agent.json");
        let mut memory: Memory = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let failed = memory.failed.take();
        write_json(&path, &memory)?;
        Ok(failed)
    }

    /// The desired state now: `Err` when it cannot be read at all.
    fn desired(&mut self) -> Result<Desired, Outcome> {
        let env = self.settings.env.clone();
        match &mut self.origin {
            Origin::Git { store, branch } => {
                store.refresh();
                let tip = store
                    .tip(branch, History::Tip)
                    .map_err(|e| Outcome::Transient(e.to_string()))?;
                let state = load_at(store, &env, branch, tip)
                    .map(|loaded| std::rc::Rc::new(loaded.state))
                    .map_err(|e| e.message_with_details());
                Ok(Desired {
                    revision: tip.to_string(),
                    state,
                })
            }
            Origin::Oci(oci) => {
                let digest = oci.registry.head(&oci.url).map_err(outcome_of)?.ok_or_else(|| {
                    Outcome::Stalled(format!(
                        "{}: no such tag in the registry (has `ferry publish {env} --to oci://{}/{}` run?)",
                        oci.url, oci.url.registry, oci.url.repository
                    ))
                })?;
                if let Some(pulled) = oci.pulled.as_ref().filter(|p| p.digest == digest) {
                    return Ok(Desired {
                        revision: pulled.revision.clone(),
                        state: pulled.state.clone(),
                    });
                }
                let (revision, state, layer) = pull_state(oci, &digest, &env, &self.cache)?;
                self.state_layer = Some(layer);
                let state = state.map(std::rc::Rc::new);
                tracing::info!(digest, revision, "pulled the desired state");
                // An invalid state is kept too: it is not pulled again until the tag moves.
                oci.pulled = Some(Pulled {
                    digest,
                    revision: revision.clone(),
                    state: state.clone(),
                });
                Ok(Desired { revision, state })
            }
        }
    }

    /// One reconcile, reported.
    pub fn reconcile(&mut self) -> Outcome {
        self.disk_full = false;
        let desired = match self.desired() {
            Ok(desired) => desired,
            Err(outcome) => {
                self.write_report(None, &outcome, BTreeMap::new());
                return outcome;
            }
        };
        let revision = desired.revision.clone();
        // `ferry agent retry` clears the failed revision in the state dir, while this runs.
        let on_disk: Option<Memory> = std::fs::read(self.settings.state_dir.join("agent.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if on_disk.is_some_and(|m| m.failed.is_none()) {
            self.memory.failed = None;
        }
        if self.memory.failed.as_deref() == Some(revision.as_str()) {
            // Already reported; nothing new until the branch moves.
            return Outcome::Failed(format!(
                "revision {} failed to deploy ({}); waiting for a new one (or `ferry agent retry`)",
                crate::output::abbrev(&revision, 7),
                self.memory.failed_reason
            ));
        }
        let (outcome, apps) = match &desired.state {
            Ok(state) => self.deploy(state),
            Err(message) => (Outcome::Stalled(message.clone()), BTreeMap::new()),
        };
        if let Outcome::Failed(reason) = &outcome {
            self.memory.failed = Some(revision.clone());
            self.memory.failed_reason = reason.clone();
        }
        self.save_memory();
        self.write_report(Some(&revision), &outcome, apps);
        outcome
    }

    fn deploy(&mut self, state: &State) -> (Outcome, BTreeMap<String, AppReport>) {
        let mut apps = BTreeMap::new();
        let env = &state.environments[&self.settings.env];
        self.interval = Some(env.agent.interval.as_std());
        let Some(settings) = &env.apps else {
            return (
                Outcome::Stalled(format!(
                    "`environments/{env}.json` has no `apps`: the agent does not know where to deploy (add `\"apps\": {{\"APP\": {{\"deployment_path\": \"/srv/APP\"}}}}` to it on the environment's branch)",
                    env = self.settings.env
                )),
                apps,
            );
        };
        let mut failures = Vec::new();
        let mut unreachable = Vec::new();
        for (name, artifact) in &state.manifest.artifacts {
            let Some(app) = settings.get(name) else {
                continue;
            };
            if let Some(host) = &self.settings.host
                && app.host.as_deref() != Some(host.as_str())
            {
                continue;
            }
            let report = self.deploy_app(name, artifact, app);
            match report.state.as_str() {
                "deployed" => {}
                "unreachable" | "retrying" => {
                    unreachable.push(format!("{name}: {}", report.message))
                }
                _ => failures.push(format!("{name}: {}", report.message)),
            }
            apps.insert(name.clone(), report);
        }
        self.prune_cache(state, settings);
        if apps.is_empty()
            && let Some(host) = &self.settings.host
        {
            return (
                Outcome::Stalled(format!(
                    "no app of `{}` runs on host `{host}` (each app's `host` in `environments/{}.json`)",
                    self.settings.env, self.settings.env
                )),
                apps,
            );
        }
        if !failures.is_empty() {
            failures.extend(unreachable);
            (Outcome::Failed(failures.join("; ")), apps)
        } else if !unreachable.is_empty() {
            // The artifact server may come back, the disk may be freed: retried with backoff,
            // the revision not failed.
            (Outcome::Transient(unreachable.join("; ")), apps)
        } else {
            (Outcome::Converged, apps)
        }
    }

    /// Deletes the cached artifacts that neither a pin of this host's apps nor a release kept
    /// on disk needs (a release directory ends in its digest's first 12 digits), nor the state
    /// layer last pulled.
    fn prune_cache(&self, state: &State, settings: &BTreeMap<String, App>) {
        let mut pinned: Vec<String> = self.state_layer.iter().cloned().collect();
        let mut kept: Vec<String> = Vec::new();
        for (name, app) in settings {
            if let Some(host) = &self.settings.host
                && app.host.as_deref() != Some(host.as_str())
            {
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

    /// Makes app `name` run `artifact`.
    fn deploy_app(&mut self, name: &str, artifact: &Artifact, app: &App) -> AppReport {
        let failed = |version: &str, message: String| AppReport {
            version: version.to_owned(),
            release: None,
            state: "failed".to_owned(),
            message,
        };
        let Some(pin) = artifact.pin() else {
            return failed(
                &artifact.shown_version(),
                "pinned by file name only, with no digest to verify: pin it with `ferry bump`"
                    .to_owned(),
            );
        };
        let id = format!("{}-{}", pin.version, crate::output::abbrev(&pin.sha256, 12));
        let place = match Place::new(&self.settings.root, &app.deployment_path) {
            Ok(place) => place,
            Err(why) => return failed(&pin.version, why),
        };
        let current = match place.current() {
            Ok(current) => current,
            // The operator moves it away; then this converges by itself.
            Err(e) => {
                return AppReport {
                    version: pin.version.clone(),
                    release: None,
                    state: "retrying".to_owned(),
                    message: e,
                };
            }
        };
        let records = self.settings.state_dir.join("releases").join(name);
        let live_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        // The live link changed by hand (or removed) while the pinned release is still there:
        // drift, healed by pointing it back.
        if let Some(deployed) = self.memory.deployed.get(name).cloned()
            && is_release(Path::new(&deployed), &id)
            && current.as_ref().and_then(|c| live_name(c)).as_ref() != Some(&deployed)
        {
            let release = place.releases.join(&deployed);
            if release.is_dir() {
                let was = current.as_ref().map_or("removed".to_owned(), |c| {
                    format!("pointed at {}", c.display())
                });
                self.memory.drift_events += 1;
                tracing::warn!(app = name, "drift: the live link was {was}; healing");
                self.record_event(name, &format!("drift healed: the live link was {was}"));
                if let Err(e) = place.switch(&release) {
                    return failed(&pin.version, e);
                }
                self.save_memory();
                return AppReport::deployed(&pin.version, deployed);
            }
        }
        let mut drifted = None;
        if let Some(live) = current.as_ref().filter(|live| is_release(live, &id))
            && self.memory.pending.get(name) == live_name(live).as_ref()
        {
            // Switched to, then interrupted before it was activated and checked: finish.
            let checked = activate(name, &pin.version, &place.live, app).and_then(|()| health(app));
            return match checked {
                Ok(()) => {
                    self.memory.pending.remove(name);
                    self.save_memory();
                    AppReport::deployed(&pin.version, id)
                }
                Err(why) => failed(&pin.version, why),
            };
        }
        if let Some(live) = current.as_ref().filter(|live| is_release(live, &id)) {
            // Running the pinned release: is it intact?
            let recorded: Option<Recorded> = std::fs::read(records.join(format!("{id}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let drift = match &recorded {
                Some(recorded) if live.is_dir() => recorded.drift(live),
                Some(_) => vec!["the release directory is gone".to_owned()],
                None => Vec::new(), // deployed by an older agent: nothing to compare with
            };
            if drift.is_empty() {
                return AppReport::deployed(&pin.version, id);
            }
            self.memory.drift_events += 1;
            tracing::warn!(app = name, drift = ?drift, "drift: healing");
            self.record_event(name, &format!("drift healed: {}", drift.join(", ")));
            drifted = Some(live.clone());
        }
        // Fetch and verify, unpack, switch.
        let fetching = std::time::Instant::now();
        let fetched_before = self.cache.fetched_bytes();
        let artifact_path = match self.cache.get(&pin.url, &pin.sha256, app.max_size()) {
            Ok(path) => path,
            // This host could not keep it (a full disk, permissions): not the revision's fault.
            Err(FetchError::Cache { path, source }) => {
                self.disk_full |= release::disk_full(&source);
                return AppReport {
                    version: pin.version.clone(),
                    release: current.and_then(|c| live_name(&c)),
                    state: "retrying".to_owned(),
                    message: format!("the artifact cache `{path}`: {source}"),
                };
            }
            Err(e @ (FetchError::Transfer { .. } | FetchError::Status { .. })) => {
                return AppReport {
                    version: pin.version.clone(),
                    release: current.and_then(|c| live_name(&c)),
                    state: "unreachable".to_owned(),
                    message: e.to_string(),
                };
            }
            Err(e) => return failed(&pin.version, e.to_string()),
        };
        let file_name = self.cache.file_name(&pin.url, &pin.sha256);
        let bytes = self.cache.fetched_bytes() - fetched_before;
        if bytes > 0 {
            let seconds = fetching.elapsed().as_secs_f64();
            tracing::info!(app = name, bytes, seconds, "fetched and verified");
        }
        let unpacking = std::time::Instant::now();
        let (release, recorded) =
            match place.unpack(&artifact_path, &file_name, &id, self.settings.limits) {
                Ok(done) => done,
                Err(e @ (release::Unpacking::Io(_) | release::Unpacking::Full(_))) => {
                    self.disk_full |= matches!(e, release::Unpacking::Full(_));
                    return AppReport {
                        version: pin.version.clone(),
                        release: current.and_then(|c| live_name(&c)),
                        state: "retrying".to_owned(),
                        message: format!("unpacking: {e}"),
                    };
                }
                Err(e) => return failed(&pin.version, format!("unpacking: {e}")),
            };
        let written: u64 = recorded.entries.iter().map(|e| e.size).sum();
        tracing::info!(
            app = name,
            files = recorded.entries.len(),
            bytes = written,
            seconds = unpacking.elapsed().as_secs_f64(),
            "unpacked"
        );
        if let Err(e) = std::fs::create_dir_all(&records)
            .map_err(|e| e.to_string())
            .and_then(|()| write_json(&records.join(format!("{id}.json")), &recorded))
        {
            // The state dir could not be written (a full disk): retried, as unpacking.
            let _ = std::fs::remove_dir_all(&release);
            return AppReport {
                version: pin.version.clone(),
                release: current.and_then(|c| live_name(&c)),
                state: "retrying".to_owned(),
                message: format!("recording the release: {e}"),
            };
        }
        // What to roll back to: what ran before, unless that is the release being healed.
        let previous = current.filter(|p| p.is_dir() && drifted.as_ref() != Some(p));
        if let Some(release) = live_name(&release) {
            self.memory.pending.insert(name.to_owned(), release);
            self.save_memory();
        }
        if let Err(e) = place.switch(&release) {
            return failed(&pin.version, e);
        }
        tracing::info!(app = name, release = %release.display(), "switched");
        let checked = activate(name, &pin.version, &place.live, app).and_then(|()| health(app));
        self.memory.pending.remove(name);
        self.save_memory();
        match checked {
            Ok(()) => {
                let keep: Vec<&Path> = [Some(release.as_path()), previous.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                place.prune(self.settings.keep.max(2), &keep);
                if let Some(drifted) = drifted.as_ref().filter(|d| **d != release) {
                    let _ = std::fs::remove_dir_all(drifted);
                }
                if let Some(release) = live_name(&release) {
                    self.memory.deployed.insert(name.to_owned(), release);
                    self.save_memory();
                }
                AppReport::deployed(&pin.version, id)
            }
            Err(why) => {
                // Back to what ran before, if anything did.
                let message = match &previous {
                    Some(previous) => {
                        let back = place.switch(previous).and_then(|()| {
                            activate(name, &release::version_of(previous), &place.live, app)
                        });
                        match back {
                            Ok(()) => format!("{why}; rolled back to {}", previous.display()),
                            Err(e) => format!("{why}; the rollback failed too: {e}"),
                        }
                    }
                    // Nothing ran before: nothing failed is left live either.
                    None => match place.unlink_live(&release) {
                        Ok(()) => format!(
                            "{why}; nothing ran before, so the live link was removed (nothing is served)"
                        ),
                        Err(e) => format!(
                            "{why}; nothing ran before, and the live link could not be removed: {e}"
                        ),
                    },
                };
                // What runs now: the previous release, and its version.
                AppReport {
                    version: previous
                        .as_deref()
                        .map_or(pin.version.clone(), release::version_of),
                    release: previous.as_deref().and_then(live_name),
                    state: "rolled-back".to_owned(),
                    message: format!("{} failed: {message}", pin.version),
                }
            }
        }
    }

    fn record_event(&self, app: &str, what: &str) {
        let line = serde_json::json!({ "at": now(), "app": app, "event": what }).to_string();
        let path = self.settings.state_dir.join("events.jsonl");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
    }

    fn save_memory(&self) {
        if let Err(e) = write_json(&self.settings.state_dir.join("agent.json"), &self.memory) {
            tracing::warn!("cannot save the agent's memory: {e}");
        }
    }

    fn write_report(
        &mut self,
        revision: Option<&str>,
        outcome: &Outcome,
        apps: BTreeMap<String, AppReport>,
    ) {
        let message = match outcome {
            Outcome::Converged => String::new(),
            Outcome::Failed(m) | Outcome::Stalled(m) | Outcome::Transient(m) => m.clone(),
        };
        let report = Report {
            env: self.settings.env.clone(),
            revision: revision.map(str::to_owned),
            state: outcome.state().to_owned(),
            message: message.clone(),
            at: now(),
            apps,
            drift_events: self.memory.drift_events,
        };
        if let Err(e) = write_json(&self.settings.state_dir.join("status.json"), &report) {
            tracing::warn!("cannot write status.json: {e}");
        }
        self.last = Some(report);
        // Statuses are set on commits: an artifact without one has nowhere to report.
        let Some(tip) = revision.and_then(|r| Oid::from_str(r).ok()) else {
            return;
        };
        let (state, description) = match outcome {
            Outcome::Converged => (CheckState::Success, "deployed".to_owned()),
            Outcome::Transient(_) => return,
            _ => (CheckState::Failure, first_line(&message)),
        };
        if let Err(e) = self.report_status(tip, state, description) {
            tracing::warn!("cannot report ferry/deploy/{}: {e}", self.settings.env);
        }
    }

    fn report_status(
        &self,
        tip: Oid,
        state: CheckState,
        description: String,
    ) -> Result<(), String> {
        let check = format!("ferry/deploy/{}", self.settings.env);
        let github = match &self.settings.report {
            Reporting::None => return Ok(()),
            Reporting::GitHub(github) => Some(github),
            Reporting::Local => None,
        };
        if let Some(github) = github {
            let said = (tip, state, description.clone());
            if self.reported.borrow().as_ref() == Some(&said) {
                return Ok(()); // said already
            }
            github
                .create_status(&tip.to_string(), state.as_str(), &check, &description)
                .map_err(|e| e.to_string())?;
            *self.reported.borrow_mut() = Some(said);
            return Ok(());
        }
        let Some(store) = self.store else {
            return Ok(());
        };
        let forge = LocalForge::new(store);
        let current = forge.statuses(tip).map_err(|e| e.to_string())?;
        if current
            .get(&check)
            .is_some_and(|s| s.state == state && s.description == description)
        {
            return Ok(()); // said already
        }
        let by = identity(store, None);
        let signature = signature(store).map_err(|e| e.message)?;
        forge
            .set_status(
                tip,
                &check,
                Status {
                    state,
                    description,
                    url: None,
                    by,
                    at: now(),
                },
                &signature,
            )
            .map_err(|e| e.to_string())
    }
}

/// Pulls the state artifact `digest` of `oci`'s repository: its revision, and the state,
/// validated (`Err` inside: why it cannot be deployed). The layer is kept in the artifact
/// cache, so a restarted agent fetches only the manifest.
fn pull_state(
    oci: &OciOrigin,
    digest: &str,
    env: &str,
    cache: &Cache,
) -> Result<(String, Result<State, String>, String), Outcome> {
    let at = oci.url.at_digest(digest);
    let (manifest, _) = oci.registry.manifest(&at).map_err(outcome_of)?;
    let parsed =
        oci_state::parse(&manifest).map_err(|e| Outcome::Stalled(format!("{}: {e}", oci.url)))?;
    let revision = parsed.revision.clone().unwrap_or_else(|| digest.to_owned());
    let hex = parsed.layer.digest.trim_start_matches("sha256:").to_owned();
    let path = cache.path(&hex);
    let layer = match std::fs::read(&path) {
        Ok(bytes) if crate::digest::sha256_hex(&bytes) == hex => bytes,
        _ => {
            let mut bytes = Vec::new();
            // At most its declared size (which `parse` bounds), held in memory.
            oci.registry
                .blob(&at, &parsed.layer, &mut cache.pace(), &mut |data| {
                    bytes.extend_from_slice(data);
                    Ok(())
                })
                .map_err(outcome_of)?;
            cache.store(&hex, &bytes);
            bytes
        }
    };
    let label = oci.url.to_string();
    let state = oci_state::unpack(&layer)
        .map_err(|e| format!("{label}: {e}"))
        .and_then(|files| {
            validate_files(&TreeSource::from_files(&label, files), env, &label)
                .map_err(|e| e.message_with_details())
        });
    Ok((revision, state, hex))
}

/// A registry that cannot be reached is retried; any other refusal waits for someone to act.
fn outcome_of(error: OciError) -> Outcome {
    if error.is_transient() {
        Outcome::Transient(error.to_string())
    } else {
        Outcome::Stalled(error.to_string())
    }
}

/// The first line of `text`, within GitHub's 140 characters for a status, marked when cut.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= 140 {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(139).collect();
    cut.push('…');
    cut
}

/// Runs the app's `activate` command, if it has one, with `FERRY_APP`, `FERRY_VERSION` and
/// `FERRY_PATH`; at most five minutes.
fn activate(name: &str, version: &str, live: &Path, app: &App) -> Result<(), String> {
    let Some(argv) = app.activate.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("FERRY_APP", name)
        .env("FERRY_VERSION", version)
        .env("FERRY_PATH", live)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("activate `{}`: {e}", argv[0]))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!("activate `{}` failed ({status})", argv.join(" ")));
            }
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("activate `{}` took over 5 minutes", argv.join(" ")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("activate `{}`: {e}", argv[0])),
        }
    }
}

/// Waits for the app's `healthcheck_url` to answer 2xx: `healthcheck_retries` tries (10 by
/// default), each within `healthcheck_timeout` (30s by default), a second apart.
fn health(app: &App) -> Result<(), String> {
    let Some(url) = &app.healthcheck_url else {
        return Ok(());
    };
    let timeout = app
        .healthcheck_timeout
        .map_or(Duration::from_secs(30), |d| d.as_std());
    let tries = app.healthcheck_retries.unwrap_or(10).max(1);
    let mut last = String::new();
    for attempt in 1..=tries {
        match probe(url, timeout) {
            Ok(status) if (200..300).contains(&status) => return Ok(()),
            Ok(status) => last = format!("HTTP {status}"),
            Err(e) => last = e.to_string(),
        }
        if attempt < tries {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Err(format!("health check {url} failed {tries} time(s): {last}"))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).expect("serializes");
    text.push('\n');
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}
