//! The agent's decisions, as values. From what the desired state pins, what this host shows
//! and what the agent remembers, [`decide`] returns the steps one app needs; [`failed`] and
//! [`rolled_back`] say what a failed step comes to; [`outcome`] sums up a reconcile and
//! [`Backoff`] says how long to wait before the next one. Nothing here reads a file, the
//! network or the clock (randomness is an input too): the executor (`execute.rs`) observes and
//! acts, and the tests below drive every transition without I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::release::{ReleaseError, is_release, version_of};
use super::{AppReport, Memory};
use crate::model::{App, Artifact};

/// What one app came to in a reconcile, as `status.json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppState {
    /// It runs its pinned release, healthy.
    Deployed,
    /// The pinned release cannot be deployed (a digest mismatch, an unsafe archive, a failed
    /// check after an interruption): the revision fails.
    Failed,
    /// The new release failed its activation or health check: back to what ran before.
    RolledBack,
    /// Its artifact could not be fetched (a server down): retried.
    Unreachable,
    /// It could not be written here (a full disk, a live path in the way): retried.
    Retrying,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Deployed => "deployed",
            AppState::Failed => "failed",
            AppState::RolledBack => "rolled-back",
            AppState::Unreachable => "unreachable",
            AppState::Retrying => "retrying",
        }
    }

    /// Retried by itself, without failing the revision.
    pub fn is_transient(self) -> bool {
        matches!(self, AppState::Unreachable | AppState::Retrying)
    }
}

impl std::fmt::Display for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the environment came to in a reconcile, as `status.json` and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvState {
    Deployed,
    Failed,
    Stalled,
    Retrying,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Deployed => "deployed",
            EnvState::Failed => "failed",
            EnvState::Stalled => "stalled",
            EnvState::Retrying => "retrying",
        }
    }
}

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
    pub fn kind(&self) -> EnvState {
        match self {
            Outcome::Converged => EnvState::Deployed,
            Outcome::Failed(_) => EnvState::Failed,
            Outcome::Stalled(_) => EnvState::Stalled,
            Outcome::Transient(_) => EnvState::Retrying,
        }
    }

    /// How `status.json` and the metrics name it.
    pub fn state(&self) -> &'static str {
        self.kind().as_str()
    }

    /// What it says (empty when converged).
    pub fn message(&self) -> &str {
        match self {
            Outcome::Converged => "",
            Outcome::Failed(m) | Outcome::Stalled(m) | Outcome::Transient(m) => m,
        }
    }
}

/// The release one app should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want<'a> {
    pub app: &'a str,
    pub version: &'a str,
    /// Its release directory's name: `VERSION-DIGEST12` (`…~N` when unpacked again).
    pub id: String,
}

impl<'a> Want<'a> {
    pub fn new(app: &'a str, version: &'a str, sha256: &str) -> Want<'a> {
        Want {
            app,
            version,
            id: format!("{version}-{}", crate::output::abbrev(sha256, 12)),
        }
    }
}

/// What this host shows of one app.
#[derive(Debug)]
pub struct Observed {
    /// The release the live link points at (`None`: there is no link), or why it cannot be
    /// read (not a link: the operator moves it away).
    pub live: Result<Option<PathBuf>, ReleaseError>,
    /// Whether the live link's target is a directory (a release still there).
    pub live_present: bool,
    /// Whether the release last deployed (the agent's memory) is still on disk.
    pub deployed_present: bool,
    /// The live release against its record, once inspected.
    pub drift: Drift,
}

/// The live release's files against what was unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Not looked at yet (it costs a walk of the release).
    Unchecked,
    /// As unpacked (or deployed by an older agent, with no record to compare with).
    Intact,
    /// Modified, added or missing paths.
    Found(Vec<String>),
}

/// One step of a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look at the live release's files against its record, then decide again.
    Inspect,
    /// The live link was changed by hand (or removed) while the release last deployed is
    /// still there: point it back at that release (`release`, a directory name), a drift event.
    HealLink { release: String, was: String },
    /// The live release drifted from its record (a drift event): a fresh one replaces it.
    NoteDrift(Vec<String>),
    /// Fetch the pinned artifact into the cache, verifying its digest.
    Fetch,
    /// Unpack it as a new release directory, and record what it holds.
    Unpack,
    /// Remember the new release as pending (saved at once: a crash after the switch resumes
    /// it), then point the live link at it.
    Switch,
    /// Run the app's `activate` in the live release; on failure, `Fallback`.
    Activate(Fallback),
    /// Wait for the app's health check to answer 2xx; on failure, `Fallback`.
    Check(Fallback),
    /// Remove older releases beyond the number kept (never the new one nor `previous`) and
    /// the drifted release.
    Prune {
        previous: Option<PathBuf>,
        drifted: Option<PathBuf>,
    },
    /// Remember the live release as deployed; nothing is pending any more.
    Remember,
    /// Report this about the app: the last step.
    Report(AppReport),
}

/// What a failed activation or health check falls back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Switch back to the release that ran before, and activate it.
    Previous(PathBuf),
    /// Nothing ran before: remove the live link, so that nothing that failed is served.
    Unlink,
    /// A release resumed after an interruption (what ran before is not known): it stays, and
    /// the revision fails.
    Stay,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// This host could not do it now (a full disk, permissions): retried.
    #[error("{0}")]
    Host(String),
    /// A server could not be reached: retried with backoff.
    #[error("{0}")]
    Unreachable(String),
    /// This revision cannot be deployed (a digest mismatch, an unsafe archive, a failed
    /// check): it fails until the branch moves.
    #[error("{0}")]
    Refused(String),
}

/// What a failed step comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Report this about the app, and stop.
    Report(AppReport),
    /// Fall back (`Previous` or `Unlink`), then report what [`rolled_back`] says.
    FallBack(Fallback, String),
}

/// The apps of the desired state this host runs (with `host`, only those placed on it), in
/// name order; `Err` when the environment says nowhere to deploy.
pub fn apps<'a>(
    env: &str,
    artifacts: &'a BTreeMap<String, Artifact>,
    settings: Option<&'a BTreeMap<String, App>>,
    host: Option<&str>,
) -> Result<Vec<(&'a str, &'a Artifact, &'a App)>, Outcome> {
    let Some(settings) = settings else {
        return Err(Outcome::Stalled(format!(
            "`environments/{env}.json` has no `apps`: the agent does not know where to deploy (add `\"apps\": {{\"APP\": {{\"deployment_path\": \"/srv/APP\"}}}}` to it on the environment's branch)"
        )));
    };
    Ok(artifacts
        .iter()
        .filter_map(|(name, artifact)| Some((name.as_str(), artifact, settings.get(name)?)))
        .filter(|(_, _, app)| host.is_none() || app.host.as_deref() == host)
        .collect())
}

/// Whether `revision` is the one that failed and was not retried: then nothing is done, and
/// nothing reported again, until the branch moves.
pub fn waiting(revision: &str, memory: &Memory) -> Option<Outcome> {
    (memory.failed.as_deref() == Some(revision)).then(|| {
        Outcome::Failed(format!(
            "revision {} failed to deploy ({}); waiting for a new one (or `ferry agent retry`)",
            crate::output::abbrev(revision, 7),
            memory.failed_reason
        ))
    })
}

/// An artifact pinned without a digest: never deployed.
pub fn unpinned(version: &str) -> AppReport {
    AppReport::failed(
        version,
        "pinned by file name only, with no digest to verify: pin it with `ferry bump`",
    )
}

/// The steps that make app `want.app` run its pinned release, given what this host shows and
/// what the agent remembers. The last step is always a [`Action::Report`], or the plan is
/// `[Inspect]` (look at the live release, then decide again).
pub fn decide(want: &Want, seen: &Observed, memory: &Memory) -> Vec<Action> {
    use Action::*;
    let live = match &seen.live {
        Ok(live) => live.as_deref(),
        // The operator moves it away; then this converges by itself.
        Err(e) => {
            return vec![Report(AppReport {
                version: want.version.to_owned(),
                release: None,
                state: AppState::Retrying,
                message: e.to_string(),
            })];
        }
    };
    let live_name = live.and_then(name_of);
    let deployed = AppReport::deployed(want.version, &want.id);
    // The live link changed by hand (or removed) while the pinned release is still there:
    // drift, healed by pointing it back.
    if let Some(release) = memory.deployed.get(want.app)
        && is_release(Path::new(release), &want.id)
        && live_name.as_ref() != Some(release)
        && seen.deployed_present
    {
        let was = live.map_or("removed".to_owned(), |c| {
            format!("pointed at {}", c.display())
        });
        return vec![
            HealLink {
                release: release.clone(),
                was,
            },
            Report(AppReport::deployed(want.version, release)),
        ];
    }
    let mut plan = Vec::new();
    let mut drifted = None;
    if let Some(live) = live.filter(|live| is_release(live, &want.id)) {
        if memory.pending.get(want.app) == live_name.as_ref() {
            // Switched to, then interrupted before it was activated and checked: finish.
            return vec![
                Activate(Fallback::Stay),
                Check(Fallback::Stay),
                Remember,
                Report(deployed),
            ];
        }
        // Running the pinned release: is it intact?
        match &seen.drift {
            Drift::Unchecked => return vec![Inspect],
            Drift::Intact => return vec![Report(deployed)],
            Drift::Found(what) => {
                plan.push(NoteDrift(what.clone()));
                drifted = Some(live.to_path_buf());
            }
        }
    }
    // What to roll back to: what ran before, unless that is the release being healed.
    let previous = live
        .filter(|_| seen.live_present && drifted.is_none())
        .map(Path::to_path_buf);
    let fallback = previous
        .clone()
        .map_or(Fallback::Unlink, Fallback::Previous);
    plan.extend([
        Fetch,
        Unpack,
        Switch,
        Activate(fallback.clone()),
        Check(fallback),
        Prune { previous, drifted },
        Remember,
        Report(deployed),
    ]);
    plan
}

/// What `action` failing with `error` comes to: a report, or a fallback first. What stays live
/// is what `seen` showed.
pub fn failed(action: &Action, error: StepError, want: &Want, seen: &Observed) -> Recovery {
    let running = || {
        seen.live
            .as_ref()
            .ok()
            .and_then(|live| live.as_deref())
            .and_then(name_of)
    };
    let report = |state, message| {
        Recovery::Report(AppReport {
            version: want.version.to_owned(),
            release: running(),
            state,
            message,
        })
    };
    match (action, error) {
        (
            Action::Activate(fallback @ (Fallback::Previous(_) | Fallback::Unlink))
            | Action::Check(fallback @ (Fallback::Previous(_) | Fallback::Unlink)),
            StepError::Refused(why),
        ) => Recovery::FallBack(fallback.clone(), why),
        // This host could not keep it (a full disk, permissions): not the revision's fault.
        (_, StepError::Host(message)) => report(AppState::Retrying, message),
        (_, StepError::Unreachable(message)) => report(AppState::Unreachable, message),
        (_, StepError::Refused(message)) => {
            Recovery::Report(AppReport::failed(want.version, message))
        }
    }
}

/// What runs after a failed activation or health check (`why`) fell back: the previous
/// release and its version, rolled back (or with nothing served).
pub fn rolled_back(
    want: &Want,
    why: &str,
    fallback: &Fallback,
    result: Result<(), StepError>,
) -> AppReport {
    let message = match (fallback, result) {
        (Fallback::Previous(previous), Ok(())) => {
            format!("{why}; rolled back to {}", previous.display())
        }
        (Fallback::Previous(_), Err(e)) => format!("{why}; the rollback failed too: {e}"),
        (Fallback::Unlink, Ok(())) => {
            format!("{why}; nothing ran before, so the live link was removed (nothing is served)")
        }
        (Fallback::Unlink, Err(e)) => {
            format!("{why}; nothing ran before, and the live link could not be removed: {e}")
        }
        (Fallback::Stay, _) => why.to_owned(),
    };
    let previous = match fallback {
        Fallback::Previous(previous) => Some(previous.as_path()),
        _ => None,
    };
    AppReport {
        version: previous.map_or(want.version.to_owned(), version_of),
        release: previous.and_then(name_of),
        state: AppState::RolledBack,
        message: format!("{} failed: {message}", want.version),
    }
}

/// What a reconcile that reported `apps` came to.
pub fn outcome(env: &str, host: Option<&str>, apps: &BTreeMap<String, AppReport>) -> Outcome {
    if apps.is_empty()
        && let Some(host) = host
    {
        return Outcome::Stalled(format!(
            "no app of `{env}` runs on host `{host}` (each app's `host` in `environments/{env}.json`)"
        ));
    }
    let said = |(name, report): (&String, &AppReport)| format!("{name}: {}", report.message);
    let mut failures: Vec<String> = apps
        .iter()
        .filter(|(_, r)| r.state != AppState::Deployed && !r.state.is_transient())
        .map(said)
        .collect();
    let unreachable: Vec<String> = apps
        .iter()
        .filter(|(_, r)| r.state.is_transient())
        .map(said)
        .collect();
    if !failures.is_empty() {
        failures.extend(unreachable);
        Outcome::Failed(failures.join("; "))
    } else if !unreachable.is_empty() {
        // The artifact server may come back, the disk may be freed: retried with backoff,
        // the revision not failed.
        Outcome::Transient(unreachable.join("; "))
    } else {
        Outcome::Converged
    }
}

/// How long to wait between reconciles: the interval (jittered) after one that did not hit a
/// transient failure; after transient ones in a row, an exponential backoff (a longer one on
/// a full disk, which each retry fills again).
#[derive(Debug, Default)]
pub struct Backoff {
    /// Transient outcomes in a row.
    streak: u32,
}

impl Backoff {
    /// The wait after `outcome` (`disk_full`: it found the disk full), given the `interval`
    /// and a `random` number.
    pub fn next(
        &mut self,
        outcome: &Outcome,
        disk_full: bool,
        interval: Duration,
        random: u64,
    ) -> Duration {
        match outcome {
            Outcome::Transient(_) => {
                self.streak += 1;
                if disk_full {
                    disk_full_backoff(self.streak, random)
                } else {
                    backoff(self.streak, interval, random)
                }
            }
            _ => {
                self.streak = 0;
                jitter(interval, random)
            }
        }
    }
}

/// The interval, ±10%, so that agents started together do not poll together.
fn jitter(interval: Duration, random: u64) -> Duration {
    let spread = interval.as_millis() as u64 / 10;
    if spread == 0 {
        return interval;
    }
    let offset = random % (2 * spread + 1);
    Duration::from_millis(interval.as_millis() as u64 - spread + offset)
}

/// After `attempt` reconciles in a row found the disk full: 10s × 2^(n-1), up to 10 minutes,
/// half of it jittered (never a retry right away: each refills the disk).
fn disk_full_backoff(attempt: u32, random: u64) -> Duration {
    let base = 10_000u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(600_000);
    Duration::from_millis(base / 2 + random % (base / 2 + 1))
}

/// Exponential backoff with full jitter after `attempt` failures in a row: up to 1s × 2^n,
/// never longer than the interval.
fn backoff(attempt: u32, interval: Duration, random: u64) -> Duration {
    let ceiling = 1000u64
        .saturating_mul(1 << attempt.min(10))
        .min(interval.as_millis().max(1) as u64);
    Duration::from_millis(random % (ceiling + 1))
}

/// A release directory's name.
fn name_of(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}
