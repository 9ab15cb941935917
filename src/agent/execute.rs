//! Carries out what [`decide`](super::decide) chose for one app: observes this host (the live
//! link, the release last deployed, the live release's files), then heals, fetches, unpacks,
//! switches, activates, checks, prunes and remembers, step by step. A failed step becomes a
//! [`StepError`] that `decide::failed` judges; a fallback (a rollback) is carried out here and
//! judged by `decide::rolled_back`.
//!
//! The memory is saved once, at the end of the reconcile (`Agent::reconcile`), and only when
//! it changed, except before a switch: the release switched to must be known as pending on
//! disk before the live link moves, so that an agent killed between the switch and the health
//! check finishes the job (activates and checks it) instead of taking the release as
//! deployed. Killed anywhere else, the next reconcile starts from what is on disk: before the
//! switch, it deploys again (an interrupted unpack is cleared); after the check but before the
//! end, the release is still pending and is activated and checked once more; a link healed but
//! not yet saved is only a drift event not counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::decide::{self, Action, Drift, Fallback, Observed, Recovery, StepError, Want, decide};
use super::release::{self, Place, Recorded, version_of};
use super::{AppReport, Memory, Settings, write_json};
use crate::deploy::fetch::{Cache, FetchError};
use crate::identity::now;
use crate::model::{App, Artifact, Pin};
use crate::net::probe;

/// Carries out the steps of one reconcile.
pub(super) struct Executor<'a> {
    pub settings: &'a Settings,
    pub cache: &'a Cache,
    pub memory: &'a mut Memory,
    /// A step found the disk full: the next reconcile waits longer.
    pub disk_full: bool,
    /// The memory was saved midway (before a switch).
    pub wrote: bool,
}

/// One app being deployed.
struct Job<'a> {
    name: &'a str,
    pin: &'a Pin,
    app: &'a App,
    place: Place,
}

/// What the steps made so far.
#[derive(Default)]
struct Made {
    /// The verified artifact in the cache.
    artifact: Option<PathBuf>,
    /// The release made live (unpacked, or resumed).
    release: Option<PathBuf>,
}

impl Executor<'_> {
    /// Makes app `name` run `artifact`.
    pub fn deploy_app(&mut self, name: &str, artifact: &Artifact, app: &App) -> AppReport {
        let Some(pin) = artifact.pin() else {
            return decide::unpinned(&artifact.shown_version());
        };
        let want = Want::new(name, &pin.version, &pin.sha256);
        let place = match Place::new(&self.settings.root, &app.deployment_path) {
            Ok(place) => place,
            Err(why) => return AppReport::failed(&pin.version, why.to_string()),
        };
        let job = Job {
            name,
            pin,
            app,
            place,
        };
        let mut seen = self.observe(&job);
        let mut plan = decide(&want, &seen, self.memory);
        if plan == [Action::Inspect] {
            seen.drift = self.inspect(&job, &want, &seen);
            plan = decide(&want, &seen, self.memory);
        }
        let mut made = Made {
            artifact: None,
            release: seen.live.as_ref().ok().cloned().flatten(),
        };
        for action in &plan {
            if let Action::Report(report) = action {
                return report.clone();
            }
            let Err(error) = self.act(action, &job, &want, &mut made) else {
                continue;
            };
            return match decide::failed(action, error, &want, &seen) {
                Recovery::Report(report) => report,
                Recovery::FallBack(fallback, why) => {
                    let result = self.fall_back(&job, &fallback, made.release.as_deref());
                    decide::rolled_back(&want, &why, &fallback, result)
                }
            };
        }
        unreachable!("a plan ends in a report: {plan:?}")
    }

    /// What this host shows of the app: its live link, and whether the releases it points at
    /// and was last deployed are there.
    fn observe(&self, job: &Job) -> Observed {
        let live = job.place.current();
        let live_present = matches!(&live, Ok(Some(live)) if live.is_dir());
        let deployed_present = self
            .memory
            .deployed
            .get(job.name)
            .is_some_and(|d| job.place.releases.join(d).is_dir());
        Observed {
            live,
            live_present,
            deployed_present,
            drift: Drift::Unchecked,
        }
    }

    /// The live release's files against the record made when release `want.id` was unpacked:
    /// metadata first, content only where it differs.
    fn inspect(&self, job: &Job, want: &Want, seen: &Observed) -> Drift {
        let Ok(Some(live)) = &seen.live else {
            return Drift::Intact;
        };
        let recorded: Option<Recorded> =
            std::fs::read(self.records(job).join(format!("{}.json", want.id)))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        let drift = match &recorded {
            Some(recorded) if live.is_dir() => recorded.drift(live),
            Some(_) => vec!["the release directory is gone".to_owned()],
            None => Vec::new(), // deployed by an older agent: nothing to compare with
        };
        if drift.is_empty() {
            Drift::Intact
        } else {
            Drift::Found(drift)
        }
    }

    /// Where the records of the app's releases are kept.
    fn records(&self, job: &Job) -> PathBuf {
        self.settings.state_dir.join("releases").join(job.name)
    }

    fn act(
        &mut self,
        action: &Action,
        job: &Job,
        want: &Want,
        made: &mut Made,
    ) -> Result<(), StepError> {
        let name = job.name;
        let place = &job.place;
        match action {
            Action::Inspect | Action::Report(_) => {}
            Action::HealLink { release, was } => {
                self.memory.drift_events += 1;
                tracing::warn!(app = name, "drift: the live link was {was}; healing");
                self.record_event(name, &format!("drift healed: the live link was {was}"));
                place
                    .switch(&place.releases.join(release))
                    .map_err(refused)?;
            }
            Action::NoteDrift(drift) => {
                self.memory.drift_events += 1;
                tracing::warn!(app = name, drift = ?drift, "drift: healing");
                self.record_event(name, &format!("drift healed: {}", drift.join(", ")));
            }
            Action::Fetch => made.artifact = Some(self.fetch(job)?),
            Action::Unpack => {
                let artifact = made.artifact.as_deref().expect("fetched before unpacking");
                made.release = Some(self.unpack(job, want, artifact)?);
            }
            Action::Switch => {
                let release = made.release.as_deref().expect("unpacked before the switch");
                if let Some(id) = name_of(release) {
                    self.memory.pending.insert(name.to_owned(), id);
                    // Saved now, before the link moves: see the module's doc.
                    self.save_memory();
                }
                place.switch(release).map_err(refused)?;
                tracing::info!(app = name, release = %release.display(), "switched");
            }
            Action::Activate(_) => activate(name, &job.pin.version, &place.live, job.app)?,
            Action::Check(_) => health(job.app, &self.settings.host)?,
            Action::Prune { previous, drifted } => {
                let release = made.release.as_deref();
                let keep: Vec<&Path> = [release, previous.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                place.prune(self.settings.keep.max(2), &keep);
                if let Some(drifted) = drifted.as_deref().filter(|d| Some(*d) != release) {
                    let _ = std::fs::remove_dir_all(drifted);
                }
            }
            Action::Remember => {
                self.memory.pending.remove(name);
                if let Some(id) = made.release.as_deref().and_then(name_of) {
                    self.memory.deployed.insert(name.to_owned(), id);
                }
            }
        }
        Ok(())
    }

    /// Fetches and verifies the pinned artifact into the cache.
    fn fetch(&mut self, job: &Job) -> Result<PathBuf, StepError> {
        let pin = job.pin;
        let started = Instant::now();
        let before = self.cache.fetched_bytes();
        let path = match self.cache.get(&pin.url, &pin.sha256, job.app.max_size()) {
            Ok(path) => path,
            // This host could not keep it (a full disk, permissions): not the revision's fault.
            Err(e @ FetchError::Cache { .. }) => {
                if let FetchError::Cache { source, .. } = &e {
                    self.disk_full |= release::disk_full(source);
                }
                return Err(StepError::Host(e.to_string()));
            }
            Err(e @ (FetchError::Transfer { .. } | FetchError::Status { .. })) => {
                return Err(StepError::Unreachable(e.to_string()));
            }
            Err(e) => return Err(StepError::Refused(e.to_string())),
        };
        let bytes = self.cache.fetched_bytes() - before;
        if bytes > 0 {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(app = job.name, bytes, seconds, "fetched and verified");
        }
        Ok(path)
    }

    /// Unpacks the artifact as a new release, and records what it holds.
    fn unpack(&mut self, job: &Job, want: &Want, artifact: &Path) -> Result<PathBuf, StepError> {
        let started = Instant::now();
        let file_name = self.cache.file_name(&job.pin.url, &job.pin.sha256);
        let (release, recorded) = job
            .place
            .unpack(artifact, &file_name, &want.id, self.settings.limits)
            .map_err(|e| match e {
                release::Unpacking::Refused(_) => StepError::Refused(format!("unpacking: {e}")),
                release::Unpacking::Io(_) | release::Unpacking::Full(_) => {
                    self.disk_full |= matches!(e, release::Unpacking::Full(_));
                    StepError::Host(format!("unpacking: {e}"))
                }
            })?;
        let written: u64 = recorded.entries.iter().map(|e| e.size).sum();
        tracing::info!(
            app = job.name,
            files = recorded.entries.len(),
            bytes = written,
            seconds = started.elapsed().as_secs_f64(),
            "unpacked"
        );
        let records = self.records(job);
        let saved = std::fs::create_dir_all(&records)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                write_json(&records.join(format!("{}.json", want.id)), &recorded, false)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            // The state dir could not be written (a full disk): retried, as unpacking.
            let _ = std::fs::remove_dir_all(&release);
            return Err(StepError::Host(format!("recording the release: {e}")));
        }
        Ok(release)
    }

    /// Falls back after the new `release` failed: back to what ran before (activated again),
    /// or, when nothing did, no live link at all.
    fn fall_back(
        &mut self,
        job: &Job,
        fallback: &Fallback,
        release: Option<&Path>,
    ) -> Result<(), StepError> {
        self.memory.pending.remove(job.name);
        let place = &job.place;
        match fallback {
            Fallback::Previous(previous) => {
                place.switch(previous).map_err(refused)?;
                activate(job.name, &version_of(previous), &place.live, job.app)
            }
            Fallback::Unlink => match release {
                Some(release) => place.unlink_live(release).map_err(refused),
                None => Ok(()),
            },
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

    fn save_memory(&mut self) {
        self.wrote = true;
        super::save_memory(&self.settings.state_dir, self.memory);
    }
}

fn refused(e: impl std::fmt::Display) -> StepError {
    StepError::Refused(e.to_string())
}

fn name_of(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Runs the app's `activate` command, if it has one, with `FERRY_APP`, `FERRY_VERSION` and
/// `FERRY_PATH`; at most five minutes.
fn activate(name: &str, version: &str, live: &Path, app: &App) -> Result<(), StepError> {
    let Some(argv) = app.activate.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let failed = |e: std::io::Error| StepError::Refused(format!("activate `{}`: {e}", argv[0]));
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("FERRY_APP", name)
        .env("FERRY_VERSION", version)
        .env("FERRY_PATH", live)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(failed)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match child.try_wait().map_err(failed)? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                return Err(StepError::Refused(format!(
                    "activate `{}` failed ({status})",
                    argv.join(" ")
                )));
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StepError::Refused(format!(
                    "activate `{}` took over 5 minutes",
                    argv.join(" ")
                )));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits for the app's `healthcheck_url` on `host` (`{host}` replaced) to answer 2xx:
/// `healthcheck_retries` tries (10 by default), each within `healthcheck_timeout` (30s by
/// default), a second apart.
fn health(app: &App, host: &str) -> Result<(), StepError> {
    let Some(url) = app.healthcheck_url_on(host) else {
        return Ok(());
    };
    let url = &url;
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
    Err(StepError::Refused(format!(
        "health check {url} failed {tries} time(s): {last}"
    )))
}

#[cfg(test)]
mod tests {
    //! The executor on a real file system (a temporary root): what a kill between steps
    //! leaves, and how the next reconcile carries on from it.

    use super::*;
    use crate::agent::AppState;
    use crate::deploy::unpack::Limits;

    struct Host {
        dir: tempfile::TempDir,
        settings: Settings,
        cache: Cache,
        memory: Memory,
    }

    impl Host {
        fn new() -> Host {
            let dir = tempfile::tempdir().unwrap();
            let settings = Settings {
                env: "dev".to_owned(),
                root: dir.path().join("root"),
                state_dir: dir.path().join("state"),
                host: "h1".to_owned(),
                keep: 3,
                limits: Limits::default(),
                nudge: None,
            };
            std::fs::create_dir_all(&settings.root).unwrap();
            let cache = Cache::new(dir.path().join("state/artifacts"));
            Host {
                dir,
                settings,
                cache,
                memory: Memory::default(),
            }
        }

        /// `web-VERSION.tgz`, holding `index.html`, pinned by its digest.
        fn artifact(&self, version: &str) -> Artifact {
            let pkg = self.dir.path().join(format!("pkg-{version}"));
            std::fs::create_dir_all(&pkg).unwrap();
            std::fs::write(pkg.join("index.html"), format!("web {version}\n")).unwrap();
            let file = self.dir.path().join(format!("web-{version}.tgz"));
            let made = std::process::Command::new("tar")
                .arg("czf")
                .arg(&file)
                .arg("-C")
                .arg(&pkg)
                .arg(".")
                .status()
                .unwrap();
            assert!(made.success());
            Artifact::Pinned(Pin {
                version: version.to_owned(),
                url: format!("file://{}", file.display()),
                sha256: crate::digest::sha256_file(&file).unwrap(),
            })
        }

        /// `web` at `/srv/web`, its activation noted in `activated`.
        fn app(&self) -> App {
            let noted = self.dir.path().join("activated");
            serde_json::from_value(serde_json::json!({
                "deployment_path": "/srv/web",
                "activate": ["sh", "-c", format!("echo $FERRY_VERSION >> {}", noted.display())],
            }))
            .unwrap()
        }

        fn deploy(&mut self, artifact: &Artifact) -> AppReport {
            let app = self.app();
            let mut executor = Executor {
                settings: &self.settings,
                cache: &self.cache,
                memory: &mut self.memory,
                disk_full: false,
                wrote: false,
            };
            executor.deploy_app("web", artifact, &app)
        }

        fn live(&self) -> PathBuf {
            self.settings.root.join("srv/web")
        }

        fn activations(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("activated"))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        /// The memory as saved on disk.
        fn saved(&self) -> Memory {
            Memory::load(&self.settings.state_dir).unwrap_or_default()
        }
    }

    #[test]
    fn a_deploy_then_nothing_to_do() {
        let mut host = Host::new();
        let v1 = host.artifact("1.0.0");
        let report = host.deploy(&v1);
        assert_eq!(report.state, AppState::Deployed, "{report:?}");
        let id = report.release.clone().unwrap();
        assert_eq!(
            std::fs::read_to_string(host.live().join("index.html")).unwrap(),
            "web 1.0.0\n"
        );
        assert_eq!(host.memory.deployed["web"], id);
        assert!(host.memory.pending.is_empty());
        assert_eq!(host.activations(), ["1.0.0"]);
        // Saved as pending before the switch, and only then: the rest is saved once, at the
        // end of the reconcile (by the agent).
        assert_eq!(host.saved().pending["web"], id);
        // Nothing moved: nothing done, nothing activated again.
        assert_eq!(host.deploy(&v1), report);
        assert_eq!(host.activations(), ["1.0.0"]);
    }

    #[test]
    fn killed_after_the_switch_the_next_reconcile_activates_and_checks() {
        let mut host = Host::new();
        let v1 = host.artifact("1.0.0");
        host.deploy(&v1);
        let v2 = host.artifact("2.0.0");
        host.deploy(&v2);
        // What a kill right after the switch to 2.0.0 leaves: the memory saved before it.
        let saved = host.saved();
        host.memory = saved;
        assert!(host.memory.pending.contains_key("web"));
        let report = host.deploy(&v2);
        assert_eq!(report.state, AppState::Deployed, "{report:?}");
        assert_eq!(host.activations(), ["1.0.0", "2.0.0", "2.0.0"]);
        assert!(host.memory.pending.is_empty());
        assert_eq!(Some(&host.memory.deployed["web"]), report.release.as_ref());
    }

    #[test]
    fn killed_before_the_switch_the_next_reconcile_deploys_again() {
        let mut host = Host::new();
        let v1 = host.artifact("1.0.0");
        host.deploy(&v1);
        let v2 = host.artifact("2.0.0");
        // A kill after 2.0.0 was marked pending, before the link moved.
        let id = Want::new("web", "2.0.0", &v2.pin().unwrap().sha256).id;
        host.memory.pending.insert("web".to_owned(), id.clone());
        let report = host.deploy(&v2);
        assert_eq!(report, AppReport::deployed("2.0.0", &id));
        assert_eq!(
            std::fs::read_to_string(host.live().join("index.html")).unwrap(),
            "web 2.0.0\n"
        );
        assert_eq!(host.activations(), ["1.0.0", "2.0.0"]);
    }

    #[test]
    fn a_failed_activation_rolls_back_and_activates_the_previous_release() {
        let mut host = Host::new();
        let v1 = host.artifact("1.0.0");
        let before = host.deploy(&v1).release.unwrap();
        let v2 = host.artifact("2.0.0");
        let mut app = host.app();
        let noted = host.dir.path().join("activated");
        app.activate = Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo $FERRY_VERSION >> {}; test $FERRY_VERSION = 1.0.0",
                noted.display()
            ),
        ]);
        let mut executor = Executor {
            settings: &host.settings,
            cache: &host.cache,
            memory: &mut host.memory,
            disk_full: false,
            wrote: false,
        };
        let report = executor.deploy_app("web", &v2, &app);
        assert_eq!(report.state, AppState::RolledBack, "{report:?}");
        assert_eq!(report.version, "1.0.0");
        assert_eq!(report.release.as_deref(), Some(before.as_str()));
        assert!(
            report.message.starts_with("2.0.0 failed: activate"),
            "{}",
            report.message
        );
        assert_eq!(host.activations(), ["1.0.0", "2.0.0", "1.0.0"]);
        assert_eq!(
            std::fs::read_to_string(host.live().join("index.html")).unwrap(),
            "web 1.0.0\n"
        );
        assert!(host.memory.pending.is_empty());
        assert_eq!(host.memory.deployed["web"], before);
    }
}
