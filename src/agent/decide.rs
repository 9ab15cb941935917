//! The agent's decisions, as values. From what the desired state pins, what this host shows
//! and what the agent remembers, [`decide`] returns the steps one app needs; [`failed`] and
//! [`rolled_back`] say what a failed step comes to; [`outcome`] sums up a reconcile and
//! [`Backoff`] says how long to wait before the next one. Nothing here reads a file, the
//! network or the clock (randomness is an input too): the executor (`execute.rs`) observes and
//! acts, and the tests below drive every transition without I/O.

use crate::net::retry;
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
    /// Its host's wave of the rollout is not open: it keeps the release it runs.
    Waiting,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Deployed => "deployed",
            AppState::Failed => "failed",
            AppState::RolledBack => "rolled-back",
            AppState::Unreachable => "unreachable",
            AppState::Retrying => "retrying",
            AppState::Waiting => "waiting",
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
    Waiting,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Deployed => "deployed",
            EnvState::Failed => "failed",
            EnvState::Stalled => "stalled",
            EnvState::Retrying => "retrying",
            EnvState::Waiting => "waiting",
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
    /// Some app waits for its host's wave of the rollout (the others deployed): asked again
    /// every interval.
    Waiting(String),
}

impl Outcome {
    pub fn kind(&self) -> EnvState {
        match self {
            Outcome::Converged => EnvState::Deployed,
            Outcome::Failed(_) => EnvState::Failed,
            Outcome::Stalled(_) => EnvState::Stalled,
            Outcome::Transient(_) => EnvState::Retrying,
            Outcome::Waiting(_) => EnvState::Waiting,
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
            Outcome::Failed(m)
            | Outcome::Stalled(m)
            | Outcome::Transient(m)
            | Outcome::Waiting(m) => m,
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

/// The apps of the desired state host `host` runs (those that name it, and those that name
/// no host), in name order; `Err` when the environment says nowhere to deploy.
pub fn apps<'a>(
    env: &str,
    artifacts: &'a BTreeMap<String, Artifact>,
    settings: Option<&'a BTreeMap<String, App>>,
    host: &str,
) -> Result<Vec<(&'a str, &'a Artifact, &'a App)>, Outcome> {
    let Some(settings) = settings else {
        return Err(Outcome::Stalled(format!(
            "`environments/{env}.json` has no `apps`: the agent does not know where to deploy (add `\"apps\": {{\"APP\": {{\"deployment_path\": \"/srv/APP\"}}}}` to it on the environment's branch)"
        )));
    };
    let here: Vec<(&str, &Artifact, &App)> = artifacts
        .iter()
        .filter_map(|(name, artifact)| Some((name.as_str(), artifact, settings.get(name)?)))
        .filter(|(_, _, app)| app.runs_on(host))
        .collect();
    if here.is_empty() {
        // Placed here but not pinned yet is not the same as placed elsewhere.
        let unpinned: Vec<&str> = settings
            .iter()
            .filter(|(name, app)| app.runs_on(host) && !artifacts.contains_key(*name))
            .map(|(name, _)| name.as_str())
            .collect();
        if !unpinned.is_empty() {
            return Err(Outcome::Stalled(format!(
                "nothing to deploy on host `{host}` yet: {} not pinned on `{env}`'s branch",
                unpinned.join(", ")
            )));
        }
    }
    Ok(here)
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
                wave: None,
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
            // Switched to, then interrupted before it was activated and checked: finish, and on
            // failure go back to what ran before (the release last deployed, when it is still
            // there), as the uninterrupted deploy would have; a first deploy serves nothing.
            let fallback = match memory.deployed.get(want.app) {
                Some(before) if Some(before) != live_name.as_ref() && seen.deployed_present => {
                    Fallback::Previous(live.with_file_name(before))
                }
                _ => Fallback::Unlink,
            };
            return vec![
                Activate(fallback.clone()),
                Check(fallback),
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
            wave: None,
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
        wave: None,
    }
}

/// What a reconcile that reported `apps` came to.
pub fn outcome(env: &str, host: &str, apps: &BTreeMap<String, AppReport>) -> Outcome {
    if apps.is_empty() {
        return Outcome::Stalled(no_app(env, host));
    }
    let said = |(name, report): (&String, &AppReport)| format!("{name}: {}", report.message);
    let mut failures: Vec<String> = apps
        .iter()
        .filter(|(_, r)| {
            !matches!(r.state, AppState::Deployed | AppState::Waiting) && !r.state.is_transient()
        })
        .map(said)
        .collect();
    let unreachable: Vec<String> = apps
        .iter()
        .filter(|(_, r)| r.state.is_transient())
        .map(said)
        .collect();
    let waiting: Vec<String> = apps
        .iter()
        .filter(|(_, r)| r.state == AppState::Waiting)
        .map(said)
        .collect();
    if !failures.is_empty() {
        failures.extend(unreachable);
        Outcome::Failed(failures.join("; "))
    } else if !unreachable.is_empty() {
        // The artifact server may come back, the disk may be freed: retried with backoff,
        // the revision not failed.
        Outcome::Transient(unreachable.join("; "))
    } else if !waiting.is_empty() {
        Outcome::Waiting(waiting.join("; "))
    } else {
        Outcome::Converged
    }
}

/// What an agent whose host no app names says (it idles, and reports nothing).
pub fn no_app(env: &str, host: &str) -> String {
    format!(
        "no app of `{env}` runs on host `{host}` (each app's `hosts` in `environments/{env}.json`)"
    )
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
    retry::spread_with(interval, 10, random)
}

/// After `attempt` reconciles in a row found the disk full: 10s × 2^(n-1), up to 10 minutes,
/// half of it jittered (never a retry right away: each refills the disk).
fn disk_full_backoff(attempt: u32, random: u64) -> Duration {
    retry::Backoff::new(Duration::from_secs(5), Duration::from_secs(600))
        .jitter(retry::Jitter::Half)
        .delay_with(attempt, random)
}

/// Exponential backoff with full jitter after `attempt` failures in a row: up to 1s × 2^n,
/// never longer than the interval.
fn backoff(attempt: u32, interval: Duration, random: u64) -> Duration {
    retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(1024))
        .capped(interval.max(Duration::from_millis(1)))
        .delay_with(attempt, random)
}

/// A release directory's name.
fn name_of(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pin;

    const SHA_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SHA_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const RELEASES: &str = "/root/srv/.web.releases";

    fn want(version: &'static str, sha: &str) -> Want<'static> {
        Want::new("web", version, sha)
    }

    fn release(name: &str) -> PathBuf {
        Path::new(RELEASES).join(name)
    }

    /// A host whose live link points at `live` (a release there), nothing else known.
    fn seen(live: Option<&str>) -> Observed {
        Observed {
            live: Ok(live.map(release)),
            live_present: live.is_some(),
            deployed_present: false,
            drift: Drift::Unchecked,
        }
    }

    fn remembering(deployed: &str) -> Memory {
        Memory {
            deployed: BTreeMap::from([("web".to_owned(), deployed.to_owned())]),
            ..Memory::default()
        }
    }

    /// The whole deploy of 1.1.0, falling back to `fallback`.
    fn deploy(
        fallback: Fallback,
        previous: Option<PathBuf>,
        drifted: Option<PathBuf>,
    ) -> Vec<Action> {
        vec![
            Action::Fetch,
            Action::Unpack,
            Action::Switch,
            Action::Activate(fallback.clone()),
            Action::Check(fallback),
            Action::Prune { previous, drifted },
            Action::Remember,
            Action::Report(AppReport::deployed("1.1.0", "1.1.0-222222222222")),
        ]
    }

    #[test]
    fn a_release_is_named_by_version_and_digest() {
        assert_eq!(want("1.1.0", SHA_2).id, "1.1.0-222222222222");
    }

    #[test]
    fn a_first_deploy_does_every_step_and_unlinks_on_failure() {
        let plan = decide(&want("1.1.0", SHA_2), &seen(None), &Memory::default());
        assert_eq!(plan, deploy(Fallback::Unlink, None, None));
    }

    #[test]
    fn the_pinned_release_running_is_inspected_then_left_alone() {
        let want = want("1.0.0", SHA_1);
        let memory = remembering("1.0.0-111111111111");
        let mut seen = seen(Some("1.0.0-111111111111"));
        seen.deployed_present = true;
        assert_eq!(decide(&want, &seen, &memory), [Action::Inspect]);
        seen.drift = Drift::Intact;
        assert_eq!(
            decide(&want, &seen, &memory),
            [Action::Report(AppReport::deployed(
                "1.0.0",
                "1.0.0-111111111111"
            ))]
        );
    }

    #[test]
    fn a_new_version_is_deployed_with_the_running_release_to_fall_back_to() {
        let memory = remembering("1.0.0-111111111111");
        let mut seen = seen(Some("1.0.0-111111111111"));
        seen.deployed_present = true;
        let previous = release("1.0.0-111111111111");
        assert_eq!(
            decide(&want("1.1.0", SHA_2), &seen, &memory),
            deploy(Fallback::Previous(previous.clone()), Some(previous), None)
        );
    }

    #[test]
    fn a_live_link_to_a_release_that_is_gone_is_no_fallback() {
        let mut seen = seen(Some("1.0.0-111111111111"));
        seen.live_present = false;
        let plan = decide(&want("1.1.0", SHA_2), &seen, &Memory::default());
        assert_eq!(plan, deploy(Fallback::Unlink, None, None));
    }

    #[test]
    fn a_live_link_moved_by_hand_is_pointed_back() {
        let want = want("1.0.0", SHA_1);
        let memory = remembering("1.0.0-111111111111~1");
        let seen = Observed {
            live: Ok(Some(PathBuf::from("/elsewhere"))),
            live_present: true,
            deployed_present: true,
            drift: Drift::Unchecked,
        };
        assert_eq!(
            decide(&want, &seen, &memory),
            [
                Action::HealLink {
                    release: "1.0.0-111111111111~1".to_owned(),
                    was: "pointed at /elsewhere".to_owned(),
                },
                Action::Report(AppReport::deployed("1.0.0", "1.0.0-111111111111~1")),
            ]
        );
        // Removed: the same, said so.
        let removed = Observed {
            live: Ok(None),
            ..seen
        };
        assert!(matches!(
            &decide(&want, &removed, &memory)[0],
            Action::HealLink { was, .. } if was == "removed"
        ));
    }

    #[test]
    fn a_live_link_moved_while_the_release_is_gone_deploys_again() {
        let memory = remembering("1.0.0-111111111111");
        let mut seen = seen(None);
        seen.deployed_present = false;
        assert_eq!(
            decide(&want("1.0.0", SHA_1), &seen, &memory)[..3],
            [Action::Fetch, Action::Unpack, Action::Switch]
        );
    }

    #[test]
    fn a_link_to_another_version_than_remembered_is_a_new_deploy_not_drift() {
        // The memory says 1.0.0; the pin says 1.1.0: the live link is not healed back.
        let memory = remembering("1.0.0-111111111111");
        let mut seen = seen(Some("1.0.0-111111111111"));
        seen.deployed_present = true;
        let plan = decide(&want("1.1.0", SHA_2), &seen, &memory);
        assert!(!plan.iter().any(|a| matches!(a, Action::HealLink { .. })));
        assert_eq!(plan[0], Action::Fetch);
    }

    #[test]
    fn files_drifted_are_noted_and_a_fresh_release_replaces_them() {
        let memory = remembering("1.0.0-111111111111");
        let mut seen = seen(Some("1.0.0-111111111111"));
        seen.deployed_present = true;
        seen.drift = Drift::Found(vec!["index.html was modified".to_owned()]);
        let plan = decide(&want("1.0.0", SHA_1), &seen, &memory);
        assert_eq!(
            plan[0],
            Action::NoteDrift(vec!["index.html was modified".to_owned()])
        );
        // The drifted release is no fallback: a failed check leaves nothing live.
        assert_eq!(plan[4], Action::Activate(Fallback::Unlink));
        assert_eq!(
            plan[6],
            Action::Prune {
                previous: None,
                drifted: Some(release("1.0.0-111111111111")),
            }
        );
        assert_eq!(
            plan.last(),
            Some(&Action::Report(AppReport::deployed(
                "1.0.0",
                "1.0.0-111111111111"
            )))
        );
    }

    #[test]
    fn a_deploy_interrupted_after_the_switch_is_resumed() {
        let want = want("1.1.0", SHA_2);
        let mut memory = remembering("1.0.0-111111111111");
        memory
            .pending
            .insert("web".to_owned(), "1.1.0-222222222222".to_owned());
        let mut seen = seen(Some("1.1.0-222222222222"));
        seen.deployed_present = true;
        let previous = Fallback::Previous(release("1.0.0-111111111111"));
        assert_eq!(
            decide(&want, &seen, &memory),
            [
                Action::Activate(previous.clone()),
                Action::Check(previous.clone()),
                Action::Remember,
                Action::Report(AppReport::deployed("1.1.0", "1.1.0-222222222222")),
            ]
        );
        // Its check failing rolls back to what ran before, as without the interruption.
        let recovery = failed(
            &Action::Check(previous.clone()),
            StepError::Refused("health check failed".to_owned()),
            &want,
            &seen,
        );
        assert_eq!(
            recovery,
            Recovery::FallBack(previous, "health check failed".to_owned())
        );
        // The release before is gone (or there was none): nothing is left served.
        seen.deployed_present = false;
        assert_eq!(
            decide(&want, &seen, &memory)[..2],
            [
                Action::Activate(Fallback::Unlink),
                Action::Check(Fallback::Unlink)
            ]
        );
        assert_eq!(
            decide(
                &want,
                &seen,
                &Memory {
                    pending: memory.pending.clone(),
                    ..Memory::default()
                }
            )[0],
            Action::Activate(Fallback::Unlink)
        );
    }

    #[test]
    fn a_deploy_interrupted_before_the_switch_starts_again() {
        // Pending names a release the link does not point at: the switch never happened.
        let mut memory = remembering("1.0.0-111111111111");
        memory
            .pending
            .insert("web".to_owned(), "1.1.0-222222222222".to_owned());
        let mut seen = seen(Some("1.0.0-111111111111"));
        seen.deployed_present = true;
        let previous = release("1.0.0-111111111111");
        assert_eq!(
            decide(&want("1.1.0", SHA_2), &seen, &memory),
            deploy(Fallback::Previous(previous.clone()), Some(previous), None)
        );
    }

    #[test]
    fn a_live_path_that_is_not_a_link_is_retried_without_touching_it() {
        let seen = Observed {
            live: Err(ReleaseError::NotALink(PathBuf::from("/root/srv/web"))),
            live_present: false,
            deployed_present: false,
            drift: Drift::Unchecked,
        };
        let [Action::Report(report)] =
            &decide(&want("1.0.0", SHA_1), &seen, &Memory::default())[..]
        else {
            panic!("one report");
        };
        assert_eq!(report.state, AppState::Retrying);
        assert!(
            report.message.contains("move it away"),
            "{}",
            report.message
        );
    }

    #[test]
    fn a_digest_mismatch_fails_the_revision() {
        let seen = seen(Some("1.0.0-111111111111"));
        let recovery = failed(
            &Action::Fetch,
            StepError::Refused("not the pinned digest".to_owned()),
            &want("1.1.0", SHA_2),
            &seen,
        );
        assert_eq!(
            recovery,
            Recovery::Report(AppReport::failed("1.1.0", "not the pinned digest"))
        );
    }

    #[test]
    fn an_unreachable_server_or_a_full_disk_keeps_the_running_release() {
        let seen = seen(Some("1.0.0-111111111111"));
        for (error, state) in [
            (
                StepError::Unreachable("HTTP 503".to_owned()),
                AppState::Unreachable,
            ),
            (StepError::Host("disk full".to_owned()), AppState::Retrying),
        ] {
            let message = error.to_string();
            let Recovery::Report(report) =
                failed(&Action::Fetch, error, &want("1.1.0", SHA_2), &seen)
            else {
                panic!("a report");
            };
            assert_eq!(
                report,
                AppReport {
                    version: "1.1.0".to_owned(),
                    release: Some("1.0.0-111111111111".to_owned()),
                    state,
                    message,
                    wave: None,
                }
            );
            assert!(state.is_transient());
        }
    }

    #[test]
    fn a_failed_health_check_or_activation_rolls_back_to_the_previous_release() {
        let want = want("1.1.0", SHA_2);
        let seen = seen(Some("1.0.0-111111111111"));
        let previous = Fallback::Previous(release("1.0.0-111111111111"));
        for action in [
            Action::Activate(previous.clone()),
            Action::Check(previous.clone()),
        ] {
            let why = "health check failed 2 time(s): HTTP 500".to_owned();
            assert_eq!(
                failed(&action, StepError::Refused(why.clone()), &want, &seen),
                Recovery::FallBack(previous.clone(), why)
            );
        }
        let report = rolled_back(&want, "HTTP 500", &previous, Ok(()));
        assert_eq!(
            report,
            AppReport {
                version: "1.0.0".to_owned(),
                release: Some("1.0.0-111111111111".to_owned()),
                state: AppState::RolledBack,
                message: format!(
                    "1.1.0 failed: HTTP 500; rolled back to {RELEASES}/1.0.0-111111111111"
                ),
                wave: None,
            }
        );
        let report = rolled_back(
            &want,
            "HTTP 500",
            &previous,
            Err(StepError::Refused("activate `x` failed".to_owned())),
        );
        assert_eq!(
            report.message,
            "1.1.0 failed: HTTP 500; the rollback failed too: activate `x` failed"
        );
    }

    #[test]
    fn a_failed_first_deploy_is_unlinked() {
        let want = want("1.0.0", SHA_1);
        let recovery = failed(
            &Action::Check(Fallback::Unlink),
            StepError::Refused("HTTP 500".to_owned()),
            &want,
            &seen(None),
        );
        assert_eq!(
            recovery,
            Recovery::FallBack(Fallback::Unlink, "HTTP 500".to_owned())
        );
        let report = rolled_back(&want, "HTTP 500", &Fallback::Unlink, Ok(()));
        assert_eq!(report.version, "1.0.0");
        assert_eq!(report.release, None);
        assert_eq!(report.state, AppState::RolledBack);
        assert!(
            report.message.contains("the live link was removed"),
            "{}",
            report.message
        );
    }

    #[test]
    fn a_switch_that_fails_fails_the_revision() {
        let recovery = failed(
            &Action::Switch,
            StepError::Refused("permission denied".to_owned()),
            &want("1.1.0", SHA_2),
            &seen(Some("1.0.0-111111111111")),
        );
        assert_eq!(
            recovery,
            Recovery::Report(AppReport::failed("1.1.0", "permission denied"))
        );
    }

    #[test]
    fn a_failed_revision_waits_for_a_new_one() {
        let memory = Memory {
            failed: Some("abcdef0123".to_owned()),
            failed_reason: "web: HTTP 500".to_owned(),
            ..Memory::default()
        };
        let Some(Outcome::Failed(message)) = waiting("abcdef0123", &memory) else {
            panic!("waiting");
        };
        assert!(
            message.starts_with("revision abcdef0 failed to deploy (web: HTTP 500)"),
            "{message}"
        );
        assert_eq!(waiting("0123456789", &memory), None);
        assert_eq!(waiting("abcdef0123", &Memory::default()), None);
    }

    fn app(host: &str) -> App {
        serde_json::from_value(serde_json::json!({"host": host, "deployment_path": "/srv/x"}))
            .unwrap()
    }

    fn pinned(version: &str) -> Artifact {
        Artifact::Pinned(Pin {
            version: version.to_owned(),
            url: format!("https://example.com/{version}.tgz"),
            sha256: SHA_1.to_owned(),
        })
    }

    #[test]
    fn the_apps_of_this_host_are_those_pinned_and_placed_on_it() {
        let artifacts = BTreeMap::from([
            ("api".to_owned(), pinned("1.0.0")),
            ("web".to_owned(), pinned("2.0.0")),
            // Pinned, with no settings: not deployed here.
            ("batch".to_owned(), pinned("3.0.0")),
            ("cron".to_owned(), pinned("4.0.0")),
            ("edge".to_owned(), pinned("5.0.0")),
        ]);
        let everywhere: App =
            serde_json::from_value(serde_json::json!({"deployment_path": "/srv/y"})).unwrap();
        let fleet: App = serde_json::from_value(
            serde_json::json!({"hosts": ["h2", "h3"], "deployment_path": "/srv/z"}),
        )
        .unwrap();
        let settings = BTreeMap::from([
            ("api".to_owned(), app("h1")),
            ("web".to_owned(), app("h2")),
            // On every host.
            ("cron".to_owned(), everywhere),
            ("edge".to_owned(), fleet),
            // Removed from the manifest: nothing to deploy.
            ("old".to_owned(), app("h1")),
        ]);
        let names = |host| -> Vec<&str> {
            apps("dev", &artifacts, Some(&settings), host)
                .unwrap()
                .into_iter()
                .map(|(name, _, _)| name)
                .collect()
        };
        assert_eq!(names("h1"), ["api", "cron"]);
        assert_eq!(names("h2"), ["cron", "edge", "web"]);
        assert_eq!(names("h3"), ["cron", "edge"]);
        assert_eq!(names("h4"), ["cron"]);
        let Err(Outcome::Stalled(message)) = apps("dev", &artifacts, None, "h1") else {
            panic!("stalled");
        };
        assert!(
            message.contains("`environments/dev.json` has no `apps`"),
            "{message}"
        );
    }

    #[test]
    fn an_unpinned_artifact_is_never_deployed() {
        let report = unpinned("web-1.0.0.tgz");
        assert_eq!(report.state, AppState::Failed);
        assert!(report.message.contains("ferry bump"), "{}", report.message);
    }

    fn report(state: AppState, message: &str) -> AppReport {
        AppReport {
            version: "1.0.0".to_owned(),
            release: None,
            state,
            message: message.to_owned(),
            wave: None,
        }
    }

    #[test]
    fn a_reconcile_fails_if_one_app_failed_and_is_retried_if_one_was_unreachable() {
        let all = |reports: &[(&str, AppReport)]| -> BTreeMap<String, AppReport> {
            reports
                .iter()
                .map(|(n, r)| ((*n).to_owned(), r.clone()))
                .collect()
        };
        let deployed = report(AppState::Deployed, "");
        assert_eq!(
            outcome("dev", "h1", &all(&[("web", deployed.clone())])),
            Outcome::Converged
        );
        assert_eq!(
            outcome(
                "dev",
                "h1",
                &all(&[
                    ("api", report(AppState::Waiting, "waiting (wave 2 of 2)")),
                    ("web", deployed.clone())
                ])
            ),
            Outcome::Waiting("api: waiting (wave 2 of 2)".to_owned())
        );
        assert_eq!(
            outcome(
                "dev",
                "h1",
                &all(&[
                    ("api", report(AppState::Unreachable, "HTTP 503")),
                    ("web", deployed.clone())
                ])
            ),
            Outcome::Transient("api: HTTP 503".to_owned())
        );
        assert_eq!(
            outcome(
                "dev",
                "h1",
                &all(&[
                    ("api", report(AppState::Retrying, "disk full")),
                    ("web", report(AppState::RolledBack, "HTTP 500")),
                    ("x", report(AppState::Failed, "bad digest")),
                ])
            ),
            Outcome::Failed("web: HTTP 500; x: bad digest; api: disk full".to_owned())
        );
        // No app at all on this host: it says so.
        let Outcome::Stalled(message) = outcome("dev", "h9", &BTreeMap::new()) else {
            panic!("stalled");
        };
        assert!(message.contains("no app of `dev` runs on host `h9`"));
    }

    #[test]
    fn states_keep_their_names() {
        let names: Vec<String> = [
            AppState::Deployed,
            AppState::Failed,
            AppState::RolledBack,
            AppState::Unreachable,
            AppState::Retrying,
            AppState::Waiting,
        ]
        .iter()
        .map(|s| {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            s.to_string()
        })
        .collect();
        assert_eq!(
            names,
            [
                "deployed",
                "failed",
                "rolled-back",
                "unreachable",
                "retrying",
                "waiting"
            ]
        );
        for (outcome, name) in [
            (Outcome::Converged, "deployed"),
            (Outcome::Failed(String::new()), "failed"),
            (Outcome::Stalled(String::new()), "stalled"),
            (Outcome::Transient(String::new()), "retrying"),
        ] {
            assert_eq!(outcome.state(), name);
            assert_eq!(
                serde_json::to_string(&outcome.kind()).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn transient_failures_back_off_within_the_interval_and_a_success_resets() {
        let interval = Duration::from_secs(30);
        let transient = Outcome::Transient("HTTP 503".to_owned());
        // Each transient outcome in a row waits up to 2s, 4s, 8s, … and never over 30s.
        for random in [0, 999, 1_234_567, u64::MAX] {
            let mut backoff = Backoff::default();
            for attempt in 1..=8u32 {
                let wait = backoff.next(&transient, false, interval, random);
                let ceiling = Duration::from_secs(2u64.pow(attempt).min(30));
                assert!(wait <= ceiling, "{attempt}: {wait:?}");
            }
        }
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next(&transient, false, interval, 0), Duration::ZERO);
        assert_eq!(
            backoff.next(&transient, false, interval, 4000),
            Duration::from_secs(4),
            "the second one waits up to 4s"
        );
        // Converged: the interval, ±10%.
        for random in [0, 1234, u64::MAX] {
            let wait = backoff.next(&Outcome::Converged, false, interval, random);
            assert!(
                wait >= Duration::from_secs(27) && wait <= Duration::from_secs(33),
                "{wait:?}"
            );
        }
        // And the streak starts again.
        assert_eq!(
            backoff.next(&transient, false, interval, 4000),
            Duration::from_millis(4000 % 2001),
            "up to 2s again"
        );
    }

    #[test]
    fn a_full_disk_waits_longer_than_the_interval_and_never_retries_at_once() {
        let transient = Outcome::Transient("disk full".to_owned());
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10)
            .map(|_| backoff.next(&transient, true, Duration::from_secs(1), 0))
            .collect();
        assert_eq!(waits[0], Duration::from_secs(5));
        assert_eq!(waits[1], Duration::from_secs(10));
        assert_eq!(waits[9], Duration::from_secs(300), "half of 10 minutes");
    }
}
