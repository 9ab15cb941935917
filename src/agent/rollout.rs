//! Rollouts across a fleet, with no controller: every agent reads the per-host statuses on
//! the commit it deploys (`ferry/deploy/ENV/HOST`, written by each host's agent) and works out
//! the same answer from them: which waves are open, whether the rollout halted, and, once it
//! completed or halted, the environment's aggregate `ferry/deploy/ENV`. Nothing here does I/O
//! or reads the clock: the statuses and `now` are inputs, and the tests below drive waves,
//! pauses, failures and halts as values.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::forge::{CheckState, RolloutState, Statuses};
use crate::model::{App, Rollout};

/// The aggregate deploy status of an environment, which promotions out of it may require.
pub fn env_check(env: &str) -> String {
    format!("ferry/deploy/{env}")
}

/// The deploy status of one host of an environment.
pub fn host_check(env: &str, host: &str) -> String {
    format!("ferry/deploy/{env}/{host}")
}

/// The hosts that reported on a commit, from its statuses.
pub fn reporting_hosts<'s>(env: &str, statuses: &'s Statuses) -> Vec<&'s str> {
    let prefix = format!("ferry/deploy/{env}/");
    statuses
        .keys()
        .filter_map(|check| check.strip_prefix(&prefix))
        .collect()
}

/// How one app rolls out on one commit.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub app: &'a str,
    /// Its hosts, in rollout order: those it names, or (naming none: it runs on every host)
    /// the hosts that reported on the commit.
    pub hosts: Cow<'a, [String]>,
    pub rollout: Rollout,
}

impl<'a> Plan<'a> {
    pub fn new(
        env: &str,
        app: &'a str,
        settings: &'a App,
        env_rollout: Option<&Rollout>,
        statuses: &Statuses,
    ) -> Plan<'a> {
        let hosts = if settings.hosts().is_empty() {
            Cow::Owned(
                reporting_hosts(env, statuses)
                    .into_iter()
                    .filter(|host| app_state(env, statuses, host, app).is_some())
                    .map(str::to_owned)
                    .collect(),
            )
        } else {
            Cow::Borrowed(settings.hosts())
        };
        Plan {
            app,
            hosts,
            rollout: settings.rollout(env_rollout),
        }
    }

    pub fn waves(&self) -> Vec<&[String]> {
        self.rollout.split(&self.hosts)
    }

    /// `host`'s wave, from 0.
    pub fn wave_of(&self, host: &str) -> Option<usize> {
        self.waves()
            .iter()
            .position(|wave| wave.iter().any(|h| h == host))
    }
}

/// What `host`'s status on the commit says of `app`: its state, since when, and why. A
/// host's status from a forge that keeps only its state and description (GitHub) says the
/// same of every app of the host.
pub fn app_state<'s>(
    env: &str,
    statuses: &'s Statuses,
    host: &str,
    app: &str,
) -> Option<(RolloutState, i64, &'s str)> {
    let status = statuses.get(&host_check(env, host))?;
    if let Some(one) = status.apps.get(app) {
        return Some((one.state, one.since, &one.message));
    }
    if !status.apps.is_empty() {
        return None; // the host said where its apps are, and this is not one of them
    }
    let state = match status.state {
        CheckState::Success => RolloutState::Deployed,
        CheckState::Failure | CheckState::Error => RolloutState::Failed,
        CheckState::Pending => RolloutState::Pending,
    };
    Some((state, status.at, &status.description))
}

/// Where one app's rollout of a commit stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Waves open (from 1; 0 when the app has no host).
    pub open: usize,
    pub waves: usize,
    pub hosts: usize,
    pub deployed: usize,
    /// Hosts that failed, with why.
    pub failed: Vec<(String, String)>,
    /// More hosts failed than `max_failures` allows: no further wave opens.
    pub halted: bool,
    /// When the next wave opens, if all it waits for is the pause (Unix seconds).
    pub opens_at: Option<i64>,
    /// Waves whose hosts have all finished, from the first (whether or not the next is open).
    pub finished: usize,
}

impl Progress {
    /// Every host has deployed or failed, and every wave is open.
    pub fn finished(&self) -> bool {
        self.open == self.waves && self.deployed + self.failed.len() == self.hosts
    }

    /// `halted at wave 1: web-1 health check HTTP 500`.
    pub fn halt_message(&self, app: &str) -> String {
        let failures: Vec<String> = self
            .failed
            .iter()
            .map(|(host, why)| format!("{host} {why}"))
            .collect();
        format!(
            "{app}: halted at wave {} of {}: {}",
            self.open,
            self.waves,
            failures.join("; ")
        )
    }
}

/// Where `plan`'s rollout stands in `statuses`, at `now`.
pub fn progress(env: &str, plan: &Plan<'_>, statuses: &Statuses, now: i64) -> Progress {
    progress_seen(env, plan, statuses, now, &|_| None)
}

/// [`progress`], where `seen(k)` is when the one asking first saw the first `k` waves finished:
/// the pause runs from the later of that and the last report, so that a reporting host whose
/// clock is behind cannot shorten it. A report dated in the future counts as made `now`.
pub fn progress_seen(
    env: &str,
    plan: &Plan<'_>,
    statuses: &Statuses,
    now: i64,
    seen: &dyn Fn(usize) -> Option<i64>,
) -> Progress {
    let waves = plan.waves();
    let state = |host: &str| app_state(env, statuses, host, plan.app);
    let mut failed = Vec::new();
    let mut deployed = 0;
    for host in plan.hosts.iter() {
        match state(host) {
            Some((RolloutState::Deployed, ..)) => deployed += 1,
            Some((s, _, why)) if s.is_failure() => failed.push((host.clone(), why.to_owned())),
            _ => {}
        }
    }
    let max_failures = plan.rollout.max_failures() as usize;
    let halted = failed.len() > max_failures;
    let failed_in = |waves: &[&[String]]| {
        waves
            .iter()
            .flat_map(|w| w.iter())
            .filter(|host| failed.iter().any(|(h, _)| h == *host))
            .count()
    };
    let mut open = usize::from(!waves.is_empty());
    let mut opens_at = None;
    // A wave opens only while the open ones failed within `max_failures`: a halt freezes the
    // rollout at the wave it happened in.
    while open < waves.len() && failed_in(&waves[..open]) <= max_failures {
        // Every host of the open waves has finished (a failure within `max_failures` too),
        // and the pause has passed since the last of them.
        let mut last = i64::MIN;
        let finished = waves[..open]
            .iter()
            .flat_map(|w| w.iter())
            .all(|host| match state(host) {
                Some((s, since, _)) if s == RolloutState::Deployed || s.is_failure() => {
                    last = last.max(since.min(now));
                    true
                }
                _ => false,
            });
        if !finished {
            break;
        }
        let last = seen(open).map_or(last, |seen| last.max(seen.min(now)));
        let at = last.saturating_add(plan.rollout.pause().as_secs() as i64);
        if now < at {
            opens_at = Some(at);
            break;
        }
        open += 1;
    }
    let finished = (0..waves.len())
        .take_while(|k| {
            waves[*k].iter().all(|host| {
                state(host).is_some_and(|(s, ..)| s == RolloutState::Deployed || s.is_failure())
            })
        })
        .count();
    Progress {
        finished,
        open,
        waves: waves.len(),
        hosts: plan.hosts.len(),
        deployed,
        failed,
        halted,
        opens_at,
    }
}

/// What `host`'s agent does with `plan`'s app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Its wave is open: deploy.
    Go,
    /// Keep the release it runs: its wave (from 1) of `of` is not open, and why.
    Wait { wave: usize, of: usize, why: String },
}

pub fn turn(plan: &Plan<'_>, progress: &Progress, host: &str) -> Turn {
    // A host an app does not name (it runs everywhere) is in no wave: it goes at once.
    let Some(wave) = plan.wave_of(host) else {
        return Turn::Go;
    };
    if wave < progress.open {
        return Turn::Go;
    }
    let why = if progress.halted {
        progress.halt_message(plan.app)
    } else if let Some(at) = progress.opens_at {
        format!(
            "wave {} opens at {}",
            progress.open + 1,
            crate::output::format_time(at)
        )
    } else if wave == 1 {
        // Neither a count of the hosts deployed so far nor the wave in progress: this reason
        // is the host's status, rewritten whenever it changes, and either would have every
        // waiting host of a fleet rewrite it (a push each, on the record the wave before it
        // reports to) while that wave lands or when it opens. It changes only with a halt or
        // a pause.
        "wave 1 not finished".to_owned()
    } else {
        format!("waves 1 to {wave} not finished")
    };
    Turn::Wait {
        wave: wave + 1,
        of: progress.waves,
        why,
    }
}

/// The environment's aggregate on the commit, once it is final: success when every host of
/// every app deployed it; failure when a rollout halted, or finished with failed hosts.
/// `None` while it is under way (or nothing reported).
pub fn aggregate(
    env: &str,
    plans: &[Plan<'_>],
    statuses: &Statuses,
    now: i64,
) -> Option<(CheckState, String)> {
    let progress: Vec<(&Plan<'_>, Progress)> = plans
        .iter()
        .filter(|p| !p.hosts.is_empty())
        .map(|p| (p, progress(env, p, statuses, now)))
        .collect();
    if progress.is_empty() {
        return None;
    }
    let halted: Vec<String> = progress
        .iter()
        .filter(|(_, p)| p.halted)
        .map(|(plan, p)| p.halt_message(plan.app))
        .collect();
    if !halted.is_empty() {
        return Some((CheckState::Failure, halted.join("; ")));
    }
    if !progress.iter().all(|(_, p)| p.finished()) {
        return None;
    }
    let hosts: BTreeSet<&str> = progress
        .iter()
        .flat_map(|(plan, _)| plan.hosts.iter().map(String::as_str))
        .collect();
    let failed: BTreeMap<&str, Vec<String>> =
        progress.iter().fold(BTreeMap::new(), |mut acc, (plan, p)| {
            for (host, why) in &p.failed {
                acc.entry(host.as_str())
                    .or_default()
                    .push(format!("{}: {why}", plan.app));
            }
            acc
        });
    if failed.is_empty() {
        let n = hosts.len();
        return Some((
            CheckState::Success,
            format!("deployed on {n} host{}", if n == 1 { "" } else { "s" }),
        ));
    }
    let said: Vec<String> = failed
        .iter()
        .map(|(host, why)| format!("{host} {}", why.join(", ")))
        .collect();
    Some((
        CheckState::Failure,
        format!(
            "finished with {} of {} hosts failed: {}",
            failed.len(),
            hosts.len(),
            said.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::{AppStatus, Status};
    use serde_json::json;

    fn app(hosts: &[&str], rollout: serde_json::Value) -> App {
        serde_json::from_value(json!({
            "hosts": hosts, "deployment_path": "/srv/web", "rollout": rollout
        }))
        .unwrap()
    }

    /// `host` reports `web` in `state` since `since`.
    fn report(statuses: &mut Statuses, host: &str, state: RolloutState, since: i64) {
        let mut status = Status::new(
            match state {
                RolloutState::Deployed => CheckState::Success,
                s if s.is_failure() => CheckState::Failure,
                _ => CheckState::Pending,
            },
            state.as_str(),
            "agent",
            since,
        );
        status.apps.insert(
            "web".into(),
            AppStatus {
                state,
                version: "1.4.0".into(),
                wave: None,
                message: if state.is_failure() {
                    "health check HTTP 500".into()
                } else {
                    String::new()
                },
                since,
            },
        );
        statuses.insert(host_check("prod", host), status);
    }

    const FOUR: [&str; 4] = ["web-1", "web-2", "web-3", "web-4"];

    #[test]
    fn the_canary_goes_first_then_the_rest() {
        let settings = app(&FOUR, json!({"waves": [1, "100%"]}));
        let mut statuses = Statuses::new();
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        let p = progress("prod", &plan, &statuses, 100);
        assert_eq!((p.open, p.waves), (1, 2));
        assert_eq!(turn(&plan, &p, "web-1"), Turn::Go);
        let Turn::Wait { wave, of, why } = turn(&plan, &p, "web-3") else {
            panic!("web-3 waits")
        };
        assert_eq!((wave, of), (2, 2));
        assert_eq!(why, "wave 1 not finished");
        assert_eq!(
            aggregate("prod", std::slice::from_ref(&plan), &statuses, 100),
            None
        );
        // The canary reports: wave 2 opens.
        report(&mut statuses, "web-1", RolloutState::Deployed, 100);
        let p = progress("prod", &plan, &statuses, 100);
        assert_eq!(p.open, 2);
        assert_eq!(turn(&plan, &p, "web-4"), Turn::Go);
        assert_eq!(
            aggregate("prod", std::slice::from_ref(&plan), &statuses, 100),
            None
        );
        for host in &FOUR[1..] {
            report(&mut statuses, host, RolloutState::Deployed, 110);
        }
        assert_eq!(
            aggregate("prod", &[plan], &statuses, 110),
            Some((CheckState::Success, "deployed on 4 hosts".into()))
        );
    }

    /// bench/fleet.sh, 50 hosts: the reason carried how many hosts had deployed, so each
    /// waiting host's status changed with every report of the wave before it, and every one
    /// of them pushed it again each interval (213 writes to one record for 50 hosts); then it
    /// named the wave in progress, so the hosts of the last wave pushed it again when the
    /// wave before theirs opened, while that wave's hosts reported to the same record.
    #[test]
    fn a_waiting_hosts_reason_holds_from_the_first_wave_until_its_own_opens() {
        let hosts = ["web-1", "web-2", "web-3", "web-4", "web-5", "web-6"];
        let settings = app(&hosts, json!({"waves": [1, "50%", "100%"]}));
        let mut statuses = Statuses::new();
        let why = |statuses: &Statuses| {
            let plan = Plan::new("prod", "web", &settings, None, statuses);
            let p = progress("prod", &plan, statuses, 200);
            match turn(&plan, &p, "web-6") {
                Turn::Wait { why, .. } => why,
                Turn::Go => panic!("web-6 waits for wave 2"),
            }
        };
        let before = why(&statuses);
        assert_eq!(before, "waves 1 to 2 not finished");
        report(&mut statuses, "web-1", RolloutState::Deployed, 100);
        assert_eq!(why(&statuses), before, "wave 2 opened");
        report(&mut statuses, "web-2", RolloutState::Deployed, 110);
        assert_eq!(why(&statuses), before, "one more host of wave 2 deployed");
        report(&mut statuses, "web-3", RolloutState::Deployed, 120);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        assert_eq!(
            turn(&plan, &progress("prod", &plan, &statuses, 200), "web-6"),
            Turn::Go
        );
    }

    #[test]
    fn a_pause_holds_the_next_wave_after_the_last_success() {
        let settings = app(&FOUR, json!({"waves": [1, 2, "100%"], "pause": "1m"}));
        let mut statuses = Statuses::new();
        report(&mut statuses, "web-1", RolloutState::Deployed, 1_000);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        let p = progress("prod", &plan, &statuses, 1_030);
        assert_eq!((p.open, p.opens_at), (1, Some(1_060)));
        assert!(matches!(
            turn(&plan, &p, "web-2"),
            Turn::Wait { wave: 2, of: 3, .. }
        ));
        assert_eq!(progress("prod", &plan, &statuses, 1_060).open, 2);
        // Wave 2 reports at 1,100: wave 3 opens a minute after it.
        report(&mut statuses, "web-2", RolloutState::Deployed, 1_100);
        assert_eq!(progress("prod", &plan, &statuses, 1_159).open, 2);
        assert_eq!(progress("prod", &plan, &statuses, 1_160).open, 3);
    }

    #[test]
    fn the_pause_runs_from_when_the_asker_saw_the_wave_finish_and_never_from_the_future() {
        let settings = app(&FOUR, json!({"waves": [1, "100%"], "pause": "1h"}));
        let mut statuses = Statuses::new();
        // The canary's clock is two hours behind.
        report(
            &mut statuses,
            "web-1",
            RolloutState::Deployed,
            10_000 - 7_200,
        );
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        assert_eq!(
            progress("prod", &plan, &statuses, 10_000).open,
            2,
            "by its clock alone"
        );
        let p = progress_seen("prod", &plan, &statuses, 10_000, &|k| {
            (k == 1).then_some(10_000)
        });
        assert_eq!((p.open, p.opens_at, p.finished), (1, Some(13_600), 1));
        // A report dated in the future counts as made now.
        report(&mut statuses, "web-1", RolloutState::Deployed, i64::MAX);
        let p = progress("prod", &plan, &statuses, 10_000);
        assert_eq!(p.opens_at, Some(13_600));
    }

    #[test]
    fn a_failed_canary_halts_the_rollout() {
        let settings = app(&FOUR, json!({"waves": [1, "100%"]}));
        let mut statuses = Statuses::new();
        report(&mut statuses, "web-1", RolloutState::RolledBack, 100);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        let p = progress("prod", &plan, &statuses, 200);
        assert!(p.halted);
        assert_eq!(p.open, 1);
        let Turn::Wait { why, .. } = turn(&plan, &p, "web-2") else {
            panic!("web-2 waits")
        };
        assert_eq!(
            why,
            "web: halted at wave 1 of 2: web-1 health check HTTP 500"
        );
        assert_eq!(
            aggregate("prod", &[plan], &statuses, 200),
            Some((CheckState::Failure, why))
        );
    }

    #[test]
    fn a_halt_in_a_later_wave_is_said_there_and_stops_the_waves_after_it() {
        let settings = app(&FOUR, json!({"waves": [1, 2, "100%"]}));
        let mut statuses = Statuses::new();
        report(&mut statuses, "web-1", RolloutState::Deployed, 100);
        report(&mut statuses, "web-2", RolloutState::Failed, 110);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        let p = progress("prod", &plan, &statuses, 200);
        assert!(p.halted);
        assert_eq!((p.open, p.waves), (2, 3));
        assert_eq!(
            p.halt_message("web"),
            "web: halted at wave 2 of 3: web-2 health check HTTP 500"
        );
        assert!(matches!(
            turn(&plan, &p, "web-3"),
            Turn::Wait { wave: 3, of: 3, .. }
        ));
    }

    #[test]
    fn max_failures_lets_failures_through_and_the_aggregate_names_them() {
        let settings = app(&FOUR, json!({"waves": [1, "100%"], "max_failures": 1}));
        let mut statuses = Statuses::new();
        report(&mut statuses, "web-1", RolloutState::Failed, 100);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        let p = progress("prod", &plan, &statuses, 100);
        assert!(!p.halted);
        assert_eq!(p.open, 2, "a failure within max_failures finishes the wave");
        for host in &FOUR[1..] {
            report(&mut statuses, host, RolloutState::Deployed, 110);
        }
        assert_eq!(
            aggregate("prod", std::slice::from_ref(&plan), &statuses, 110),
            Some((
                CheckState::Failure,
                "finished with 1 of 4 hosts failed: web-1 web: health check HTTP 500".into()
            ))
        );
        // A second failure halts it.
        report(&mut statuses, "web-4", RolloutState::RolledBack, 120);
        assert!(progress("prod", &plan, &statuses, 120).halted);
    }

    #[test]
    fn an_app_on_every_host_counts_the_hosts_that_reported() {
        let settings: App = serde_json::from_value(json!({"deployment_path": "/srv/web"})).unwrap();
        let mut statuses = Statuses::new();
        let none = Plan::new("prod", "web", &settings, None, &statuses);
        assert_eq!(
            aggregate("prod", &[none], &statuses, 1),
            None,
            "nobody reported"
        );
        report(&mut statuses, "a", RolloutState::Deployed, 1);
        report(&mut statuses, "b", RolloutState::Pending, 1);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        assert_eq!(plan.hosts.len(), 2);
        assert_eq!(
            turn(&plan, &progress("prod", &plan, &statuses, 1), "c"),
            Turn::Go
        );
        assert_eq!(aggregate("prod", &[plan], &statuses, 1), None);
        report(&mut statuses, "b", RolloutState::Deployed, 2);
        let plan = Plan::new("prod", "web", &settings, None, &statuses);
        assert_eq!(
            aggregate("prod", &[plan], &statuses, 2),
            Some((CheckState::Success, "deployed on 2 hosts".into()))
        );
    }

    #[test]
    fn a_hosted_forges_status_speaks_for_every_app_of_its_host() {
        let mut statuses = Statuses::new();
        statuses.insert(
            host_check("prod", "web-1"),
            Status::new(CheckState::Success, "deployed", "github", 5),
        );
        assert_eq!(
            app_state("prod", &statuses, "web-1", "api"),
            Some((RolloutState::Deployed, 5, "deployed"))
        );
        assert_eq!(reporting_hosts("prod", &statuses), ["web-1"]);
        assert_eq!(reporting_hosts("pro", &statuses), Vec::<&str>::new());
    }
}
