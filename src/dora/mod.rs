//! DORA's four keys for one environment, from git and the embedded forge's records:
//! deployment frequency, lead time for changes, change failure rate and time to restore.
//!
//! The core is pure: [`Events`] (the environment's changes, the deploy reports on them, the
//! bumps of the first environment of its promotion path) and a [`Window`] in, a serializable
//! [`Report`] out, with each figure's derivation and the series a chart draws (deploys and
//! failures per day, each lead time, each failure and its restore). [`load`] gathers the
//! events from a [`crate::store::Store`]; the commands and a dashboard only print or draw.
//!
//! The words, as every figure uses them:
//!
//! - a **deploy** is a change of the environment's branch with a `success` of
//!   `ferry/deploy/ENV` (the aggregate its agents write when a rollout completes), counted once,
//!   at its first success;
//! - a **deployment** is a change the agents reported on (a final `success`, `failure` or
//!   `error` of `ferry/deploy/ENV` or of a host's `ferry/deploy/ENV/HOST`), at its first such
//!   report: deploys, and the attempts that never succeeded;
//! - a deployment **failed** when a failed report names it (whenever it came), when an agent
//!   rolled one of its apps back, or when a `--rollback` promotion lands after it before any
//!   other deployment (the rollback undoes it);
//! - **median** and **p90** are nearest-rank percentiles: of n values sorted ascending, the
//!   value at rank ⌈p·n/100⌉ (the median of 2 values is the lower one).

pub mod load;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

/// One change of the environment's branch: a commit of its first-parent history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub commit: String,
    /// When it was committed (Unix seconds).
    pub at: i64,
    /// The apps it pinned, each with the version it pinned.
    pub pinned: Vec<(String, String)>,
    /// The apps it removed.
    pub removed: Vec<String>,
    /// The `--rollback` promotion it landed, if it is one.
    pub rollback: Option<Rollback>,
}

/// A merged `--rollback` promotion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollback {
    pub request: u64,
    /// When the request was opened (Unix seconds): the first record of someone acting on
    /// a failure.
    pub opened_at: i64,
}

/// A final deploy report on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    pub commit: String,
    /// When it was reported (Unix seconds).
    pub at: i64,
    pub success: bool,
    /// The host of a host's report (`ferry/deploy/ENV/HOST`); `None` for the environment's
    /// aggregate (`ferry/deploy/ENV`).
    pub host: Option<String>,
    /// The apps the host's agent rolled back.
    pub rolled_back: Vec<String>,
    pub description: String,
}

/// A change of the first environment that pinned a version: where a version's lead time
/// starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bump {
    pub app: String,
    pub version: String,
    pub commit: String,
    pub at: i64,
}

/// What the figures of one environment are computed from.
#[derive(Debug, Clone, Default)]
pub struct Events {
    pub env: String,
    pub branch: String,
    /// The first environment of its promotion path (itself when it is the first).
    pub first_env: String,
    /// The environment's changes, oldest first.
    pub changes: Vec<Change>,
    /// The final deploy reports on them, in any order.
    pub reports: Vec<DeployReport>,
    /// The first environment's changes that pinned a version, in any order.
    pub bumps: Vec<Bump>,
}

/// The period the figures cover: events from `since` (all when `None`) to `until` (Unix
/// seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: i64,
}

impl Window {
    fn holds(&self, at: i64) -> bool {
        self.since.is_none_or(|since| at >= since) && at <= self.until
    }
}

/// The four keys of one environment, how each was derived, and the series behind them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub env: String,
    pub branch: String,
    pub first_env: String,
    /// The period (Unix seconds): from `--since`, or from the branch's earliest commit or
    /// report when later (or when no `--since`), to now.
    pub from: i64,
    pub until: i64,
    /// Its length in days, at least one (what the rates divide by).
    pub days: f64,
    pub deployment_frequency: Frequency,
    pub lead_time: Spread,
    pub change_failure_rate: FailureRate,
    pub time_to_restore: Restore,
    pub series: Series,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Frequency {
    pub deploys: usize,
    /// `None`: no deploy in the period ("no data", not zero).
    pub per_day: Option<f64>,
    pub per_week: Option<f64>,
    pub derivation: String,
}

/// A distribution of durations: how many, and their median and p90 (nearest rank).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Spread {
    pub count: usize,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    /// App versions deployed in the period whose bump was not found in the first
    /// environment's history (pinned there by hand with another version, or never there):
    /// no lead time.
    pub without_bump: usize,
    pub derivation: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureRate {
    pub deployments: usize,
    pub failed: usize,
    /// `failed / deployments`, from 0 to 1; `None` when there was no deployment.
    pub rate: Option<f64>,
    pub derivation: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Restore {
    /// Failures followed by a success.
    pub restored: usize,
    /// Failures not followed by a success yet (not in the median).
    pub unrestored: usize,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    pub derivation: String,
}

/// What a chart draws, each entry with its time (Unix seconds).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Series {
    /// Every day (UTC) of the period, with its deploys and failed deployments (the last
    /// [`MAX_DAYS`] days of a longer one).
    pub days: Vec<Day>,
    pub deploys: Vec<Deploy>,
    pub lead_times: Vec<LeadTime>,
    /// Each failed deployment, at its first failure.
    pub failures: Vec<Failure>,
    /// Each failure of the environment and its restore.
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Day {
    /// `2026-10-14`.
    pub date: String,
    pub deploys: usize,
    pub failures: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Deploy {
    pub commit: String,
    pub at: i64,
    /// `web 1.2.0`: the versions the change pinned.
    pub pinned: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeadTime {
    pub app: String,
    pub version: String,
    /// The first environment's change that pinned it.
    pub bump_commit: String,
    pub bumped_at: i64,
    /// The change of this environment whose deploy delivered it.
    pub commit: String,
    pub deployed_at: i64,
    pub seconds: i64,
}

/// Why a deployment counts as failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// A `failure` or `error` of `ferry/deploy/ENV` (`host: None`) or of a host's report,
    /// with what it said.
    FailedReport {
        host: Option<String>,
        #[serde(skip_serializing_if = "String::is_empty")]
        description: String,
    },
    /// A host's agent rolled these apps back.
    AgentRollback {
        host: String,
        apps: Vec<String>,
        #[serde(skip_serializing_if = "String::is_empty")]
        description: String,
    },
    /// This `--rollback` promotion landed after it, before any other deployment.
    RollbackPromotion { request: u64 },
}

impl Cause {
    pub fn said(&self) -> String {
        match self {
            Cause::FailedReport { host: None, .. } => "failed report".to_owned(),
            Cause::FailedReport { host: Some(h), .. } => format!("failed report from {h}"),
            Cause::AgentRollback { host, apps, .. } => {
                format!("{host} rolled back {}", apps.join(", "))
            }
            Cause::RollbackPromotion { request } => {
                format!("rolled back by request #{request}")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub commit: String,
    /// Its first failure signal.
    pub at: i64,
    pub causes: Vec<Cause>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Incident {
    /// The change that failed first.
    pub commit: String,
    pub failed_at: i64,
    pub cause: Cause,
    /// The next success of `ferry/deploy/ENV`, on whichever change.
    pub restored_at: Option<i64>,
    pub restored_by: Option<String>,
    pub seconds: Option<i64>,
}

/// The nearest-rank `p`th percentile of `sorted` (ascending): the value at rank ⌈p·n/100⌉;
/// `None` when empty.
pub fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// What the reports say of one change.
#[derive(Default)]
struct Reported {
    first_success: Option<i64>,
    first_final: Option<i64>,
    /// Failure signals: when, and why.
    failures: Vec<(i64, Cause)>,
}

/// The figures of `events` over `window`.
pub fn compute(events: &Events, window: Window) -> Report {
    let env = &events.env;
    let index: HashMap<&str, usize> = events
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.commit.as_str(), i))
        .collect();
    let mut reported: Vec<Reported> = events.changes.iter().map(|_| Reported::default()).collect();
    // Each aggregate success, on whichever change: what restores the environment.
    let mut successes: Vec<(i64, &str)> = Vec::new();
    for r in &events.reports {
        let Some(&i) = index.get(r.commit.as_str()) else {
            continue;
        };
        let seen = &mut reported[i];
        seen.first_final = Some(seen.first_final.map_or(r.at, |f| f.min(r.at)));
        if r.success {
            if r.host.is_none() {
                successes.push((r.at, r.commit.as_str()));
                seen.first_success = Some(seen.first_success.map_or(r.at, |f| f.min(r.at)));
            }
            continue;
        }
        let cause = match (&r.host, r.rolled_back.is_empty()) {
            (Some(host), false) => Cause::AgentRollback {
                host: host.clone(),
                apps: r.rolled_back.clone(),
                description: r.description.clone(),
            },
            (host, _) => Cause::FailedReport {
                host: host.clone(),
                description: r.description.clone(),
            },
        };
        seen.failures.push((r.at, cause));
    }
    // A `--rollback` promotion fails the deployment it follows (the last one before it).
    // When that deployment has no failed report, the failure starts when the rollback was
    // asked for.
    let mut asked_back: Vec<(usize, i64, Cause)> = Vec::new();
    let mut last_deployed: Option<usize> = None;
    for (i, change) in events.changes.iter().enumerate() {
        if let (Some(rollback), Some(j)) = (change.rollback, last_deployed) {
            asked_back.push((
                j,
                rollback.opened_at,
                Cause::RollbackPromotion {
                    request: rollback.request,
                },
            ));
        }
        if reported[i].first_final.is_some() {
            last_deployed = Some(i);
        }
    }
    let reported_failures: BTreeSet<usize> = reported
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.failures.is_empty())
        .map(|(i, _)| i)
        .collect();
    // Failure signals for the incidents: every failed report, and each rollback promotion
    // of a deployment no report said failed.
    let mut signals: Vec<(i64, usize, Cause)> = Vec::new();
    for (i, r) in reported.iter().enumerate() {
        for (at, cause) in &r.failures {
            signals.push((*at, i, cause.clone()));
        }
    }
    for (j, at, cause) in &asked_back {
        if !reported_failures.contains(j) {
            signals.push((*at, *j, cause.clone()));
        }
        reported[*j].failures.push((*at, cause.clone()));
    }

    // Deployment frequency.
    let mut deploys: Vec<Deploy> = events
        .changes
        .iter()
        .zip(&reported)
        .filter_map(|(change, r)| {
            let at = r.first_success?;
            window.holds(at).then(|| Deploy {
                commit: change.commit.clone(),
                at,
                pinned: change
                    .pinned
                    .iter()
                    .map(|(app, version)| format!("{app} {version}"))
                    .collect(),
            })
        })
        .collect();
    deploys.sort_by_key(|d| d.at);

    // Change failure rate.
    let mut deployments = 0;
    let mut failures: Vec<Failure> = Vec::new();
    for (change, r) in events.changes.iter().zip(&reported) {
        let Some(first) = r.first_final else { continue };
        if !window.holds(first) {
            continue;
        }
        deployments += 1;
        if r.failures.is_empty() {
            continue;
        }
        let mut causes: Vec<Cause> = r.failures.iter().map(|(_, c)| c.clone()).collect();
        causes.sort();
        causes.dedup();
        failures.push(Failure {
            commit: change.commit.clone(),
            at: r.failures.iter().map(|(at, _)| *at).min().unwrap_or(first),
            causes,
        });
    }
    failures.sort_by_key(|f| f.at);

    // Lead time for changes: each version a change pinned (not a rollback's), from its bump
    // in the first environment to the first deploy of a change that still pins it.
    let mut bumped: HashMap<(&str, &str), &Bump> = HashMap::new();
    for bump in &events.bumps {
        let key = (bump.app.as_str(), bump.version.as_str());
        if bumped.get(&key).is_none_or(|b| bump.at < b.at) {
            bumped.insert(key, bump);
        }
    }
    let mut pending: BTreeMap<&str, &str> = BTreeMap::new();
    let mut delivered: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut lead_times: Vec<LeadTime> = Vec::new();
    let mut without_bump = 0;
    for (change, r) in events.changes.iter().zip(&reported) {
        for app in &change.removed {
            pending.remove(app.as_str());
        }
        for (app, version) in &change.pinned {
            pending.remove(app.as_str());
            if change.rollback.is_none() && !delivered.contains(&(app.as_str(), version.as_str())) {
                pending.insert(app, version);
            }
        }
        let Some(at) = r.first_success else {
            continue;
        };
        for (app, version) in std::mem::take(&mut pending) {
            delivered.insert((app, version));
            if !window.holds(at) {
                continue;
            }
            match bumped.get(&(app, version)) {
                Some(bump) => lead_times.push(LeadTime {
                    app: app.to_owned(),
                    version: version.to_owned(),
                    bump_commit: bump.commit.clone(),
                    bumped_at: bump.at,
                    commit: change.commit.clone(),
                    deployed_at: at,
                    seconds: at.saturating_sub(bump.at),
                }),
                None => without_bump += 1,
            }
        }
    }
    lead_times.sort_by_key(|l| (l.deployed_at, l.app.clone()));

    // Time to restore: from a failure signal while the environment was well to the next
    // success of its aggregate.
    signals.sort_by_key(|(at, i, _)| (*at, *i));
    successes.sort();
    let mut incidents: Vec<Incident> = Vec::new();
    for (at, i, cause) in signals {
        // A failure while the environment is failing already is part of that incident.
        if let Some(last) = incidents.last() {
            match last.restored_at {
                None => continue,
                Some(end) if at < end => continue,
                Some(_) => {}
            }
        }
        // The first success strictly after the failure (a success at the same second does
        // not count: which came first is unknown).
        let restored = successes.get(successes.partition_point(|(s, _)| *s <= at));
        incidents.push(Incident {
            commit: events.changes[i].commit.clone(),
            failed_at: at,
            cause,
            restored_at: restored.map(|(s, _)| *s),
            restored_by: restored.map(|(_, c)| (*c).to_owned()),
            seconds: restored.map(|(s, _)| s.saturating_sub(at)),
        });
    }
    incidents.retain(|incident| window.holds(incident.failed_at));

    // The branch's history begins at its earliest commit or report (commit times need not
    // be in order: a commit's date is its author's clock).
    let first_change = events
        .changes
        .iter()
        .map(|c| c.at)
        .chain(
            events
                .reports
                .iter()
                .filter(|r| index.contains_key(r.commit.as_str()))
                .map(|r| r.at),
        )
        .min();
    let from = match (window.since, first_change) {
        (Some(since), Some(first)) => since.max(first),
        (Some(since), None) => since,
        (None, Some(first)) => first,
        (None, None) => window.until,
    }
    .min(window.until);
    let days = (window.until.saturating_sub(from) as f64 / 86_400.0).max(1.0);
    let days_series = day_series(from, window.until, &deploys, &failures);

    let mut leads: Vec<i64> = lead_times.iter().map(|l| l.seconds).collect();
    leads.sort_unstable();
    let mut restores: Vec<i64> = incidents.iter().filter_map(|i| i.seconds).collect();
    restores.sort_unstable();
    let unrestored = incidents.iter().filter(|i| i.seconds.is_none()).count();
    let deploy_check = format!("ferry/deploy/{env}");
    let per_day = (!deploys.is_empty()).then(|| deploys.len() as f64 / days);
    Report {
        env: env.clone(),
        branch: events.branch.clone(),
        first_env: events.first_env.clone(),
        from,
        until: window.until,
        days,
        deployment_frequency: Frequency {
            deploys: deploys.len(),
            per_day,
            per_week: per_day.map(|d| d * 7.0),
            derivation: format!(
                "changes of `{}` with a `success` of `{deploy_check}` (the aggregate its agents report when a rollout completes), each counted once at its first success, divided by the days of the period (at least one)",
                events.branch
            ),
        },
        lead_time: Spread {
            count: leads.len(),
            median_seconds: percentile(&leads, 50),
            p90_seconds: percentile(&leads, 90),
            without_bump,
            derivation: format!(
                "for each app version a change of `{}` pinned (rollbacks and versions deployed before excepted): from the commit that first pinned it in {} (its bump) to the first `success` of `{deploy_check}` on a change still pinning it; median and p90 by nearest rank",
                events.branch, events.first_env
            ),
        },
        change_failure_rate: FailureRate {
            deployments,
            failed: failures.len(),
            rate: (deployments > 0).then(|| failures.len() as f64 / deployments as f64),
            derivation: format!(
                "deployments (changes of `{}` with a final report of `{deploy_check}` or of a host's `{deploy_check}/HOST`, at the first) that a `failure` or `error` report named, that an agent rolled back, or that a `--rollback` promotion landing before the next deployment undid, over all deployments",
                events.branch
            ),
        },
        time_to_restore: Restore {
            restored: restores.len(),
            unrestored,
            median_seconds: percentile(&restores, 50),
            p90_seconds: percentile(&restores, 90),
            derivation: format!(
                "from the first failure signal while {env} was well (a failed report, an agent's rollback, or the opening of a `--rollback` promotion no report preceded) to the next `success` of `{deploy_check}`, on any change; median and p90 by nearest rank"
            ),
        },
        series: Series {
            days: days_series,
            deploys,
            lead_times,
            failures,
            incidents,
        },
    }
}

/// The most days [`Series::days`] holds: the last ten years of a longer period.
pub const MAX_DAYS: i64 = 3_660;

/// Deploys and failures per UTC day, every day from `from` to `until` (the last
/// [`MAX_DAYS`] of them).
fn day_series(from: i64, until: i64, deploys: &[Deploy], failures: &[Failure]) -> Vec<Day> {
    let day_of = |at: i64| at.div_euclid(86_400);
    let mut counts: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for d in deploys {
        counts.entry(day_of(d.at)).or_default().0 += 1;
    }
    for f in failures {
        counts.entry(day_of(f.at)).or_default().1 += 1;
    }
    let last = day_of(until);
    (day_of(from).max(last - MAX_DAYS + 1)..=last)
        .map(|day| {
            let (deploys, failures) = counts.get(&day).copied().unwrap_or_default();
            Day {
                date: crate::output::abbrev(&crate::output::format_time(day * 86_400), 10)
                    .to_owned(),
                deploys,
                failures,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(commit: &str, at: i64, pinned: &[(&str, &str)]) -> Change {
        Change {
            commit: commit.to_owned(),
            at,
            pinned: pinned
                .iter()
                .map(|(a, v)| ((*a).to_owned(), (*v).to_owned()))
                .collect(),
            removed: Vec::new(),
            rollback: None,
        }
    }

    fn report(commit: &str, at: i64, success: bool, host: Option<&str>) -> DeployReport {
        DeployReport {
            commit: commit.to_owned(),
            at,
            success,
            host: host.map(str::to_owned),
            rolled_back: Vec::new(),
            description: String::new(),
        }
    }

    fn bump(app: &str, version: &str, at: i64) -> Bump {
        Bump {
            app: app.to_owned(),
            version: version.to_owned(),
            commit: format!("dev-{app}-{version}"),
            at,
        }
    }

    const DAY: i64 = 86_400;

    /// staging: c1 deploys web 1.0; c2 (web 1.1, api 2.0) fails on h1 (rolled back) and in
    /// the aggregate, then succeeds on a retry; c3 deploys web 1.2; c4 is a `--rollback`
    /// promotion back to web 1.1, opened at 5000, deployed at 7000.
    fn history() -> Events {
        let mut rollback = change("c4", 400, &[("web", "1.1")]);
        rollback.rollback = Some(Rollback {
            request: 7,
            opened_at: 5_000,
        });
        let mut rolled = report("c2", 2_000, false, Some("h1"));
        rolled.rolled_back = vec!["web".to_owned()];
        rolled.description = "web 1.1 failed; rolled back".to_owned();
        Events {
            env: "staging".to_owned(),
            branch: "staging".to_owned(),
            first_env: "dev".to_owned(),
            changes: vec![
                change("c0", 0, &[]),
                change("c1", 100, &[("web", "1.0")]),
                change("c2", 200, &[("web", "1.1"), ("api", "2.0")]),
                change("c3", 300, &[("web", "1.2")]),
                rollback,
            ],
            reports: vec![
                report("c1", 1_000, true, None),
                rolled,
                report("c2", 2_000, false, None),
                report("c2", 3_000, true, None),
                report("c3", 4_000, true, Some("h1")),
                report("c3", 4_000, true, None),
                report("c4", 7_000, true, None),
                // Not a change of staging: not counted.
                report("elsewhere", 1_500, false, None),
            ],
            bumps: vec![
                bump("web", "1.0", 10),
                bump("web", "1.1", 50),
                bump("api", "2.0", 60),
                bump("web", "1.2", 250),
                // Pinned again later: the first bump counts.
                bump("web", "1.0", 9_000),
            ],
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&[1, 2], 50), Some(1));
        assert_eq!(percentile(&[1, 2], 90), Some(2));
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_four_keys_of_a_known_history() {
        let r = compute(
            &history(),
            Window {
                since: None,
                until: 10 * DAY,
            },
        );
        assert_eq!((r.from, r.until, r.days), (0, 10 * DAY, 10.0));
        // Four changes reached a success: 4 deploys over 10 days.
        let f = &r.deployment_frequency;
        assert_eq!(f.deploys, 4);
        assert_eq!(f.per_day, Some(0.4));
        assert_eq!(f.per_week, Some(4.0 / 10.0 * 7.0));
        let at: Vec<(&str, i64)> = r
            .series
            .deploys
            .iter()
            .map(|d| (d.commit.as_str(), d.at))
            .collect();
        assert_eq!(
            at,
            [("c1", 1_000), ("c2", 3_000), ("c3", 4_000), ("c4", 7_000)]
        );
        // Lead times: web 1.0 990, api 2.0 2940, web 1.1 2950, web 1.2 3750; the rollback's
        // web 1.1 is no new change.
        let leads: Vec<(&str, &str, i64)> = r
            .series
            .lead_times
            .iter()
            .map(|l| (l.app.as_str(), l.version.as_str(), l.seconds))
            .collect();
        assert_eq!(
            leads,
            [
                ("web", "1.0", 990),
                ("api", "2.0", 2_940),
                ("web", "1.1", 2_950),
                ("web", "1.2", 3_750)
            ]
        );
        assert_eq!(r.lead_time.count, 4);
        assert_eq!(r.lead_time.median_seconds, Some(2_940));
        assert_eq!(r.lead_time.p90_seconds, Some(3_750));
        assert_eq!(r.lead_time.without_bump, 0);
        // c2 failed (reports, h1's rollback); c3 was rolled back by request #7: 2 of 4.
        let c = &r.change_failure_rate;
        assert_eq!((c.deployments, c.failed, c.rate), (4, 2, Some(0.5)));
        assert_eq!(
            r.series.failures,
            [
                Failure {
                    commit: "c2".to_owned(),
                    at: 2_000,
                    causes: vec![
                        Cause::FailedReport {
                            host: None,
                            description: String::new()
                        },
                        Cause::AgentRollback {
                            host: "h1".to_owned(),
                            apps: vec!["web".to_owned()],
                            description: "web 1.1 failed; rolled back".to_owned()
                        }
                    ],
                },
                Failure {
                    commit: "c3".to_owned(),
                    at: 5_000,
                    causes: vec![Cause::RollbackPromotion { request: 7 }],
                }
            ]
        );
        // Restores: 2000 → 3000 (c2's retry), 5000 (rollback opened) → 7000.
        let t = &r.time_to_restore;
        assert_eq!((t.restored, t.unrestored), (2, 0));
        assert_eq!(
            (t.median_seconds, t.p90_seconds),
            (Some(1_000), Some(2_000))
        );
        let incidents: Vec<(&str, i64, Option<i64>, Option<&str>)> = r
            .series
            .incidents
            .iter()
            .map(|i| {
                (
                    i.commit.as_str(),
                    i.failed_at,
                    i.restored_at,
                    i.restored_by.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            incidents,
            [
                ("c2", 2_000, Some(3_000), Some("c2")),
                ("c3", 5_000, Some(7_000), Some("c4"))
            ]
        );
        // Every day of the period, the events on the first.
        assert_eq!(r.series.days.len(), 11);
        assert_eq!(
            r.series.days[0],
            Day {
                date: "1970-01-01".to_owned(),
                deploys: 4,
                failures: 2
            }
        );
        assert!(
            r.series.days[1..]
                .iter()
                .all(|d| d.deploys == 0 && d.failures == 0)
        );
        assert!(r.lead_time.derivation.contains("first pinned it in dev"));
        assert!(
            r.deployment_frequency
                .derivation
                .contains("`ferry/deploy/staging`")
        );
    }

    #[test]
    fn since_keeps_the_events_from_then_and_the_rates_over_the_days_since() {
        let since = 3_500;
        let r = compute(
            &history(),
            Window {
                since: Some(since),
                until: 10 * DAY,
            },
        );
        assert_eq!(r.from, since);
        assert_eq!(r.days, (10 * DAY - since) as f64 / 86_400.0);
        assert_eq!(r.deployment_frequency.deploys, 2);
        assert_eq!(r.deployment_frequency.per_day, Some(2.0 / r.days));
        // c2's versions were delivered before: only web 1.2.
        assert_eq!(r.lead_time.count, 1);
        assert_eq!(r.lead_time.median_seconds, Some(3_750));
        let c = &r.change_failure_rate;
        assert_eq!((c.deployments, c.failed, c.rate), (2, 1, Some(0.5)));
        assert_eq!(r.time_to_restore.restored, 1);
        assert_eq!(r.time_to_restore.median_seconds, Some(2_000));
        // A `since` before the branch existed counts from its first commit.
        let r = compute(
            &history(),
            Window {
                since: Some(-5 * DAY),
                until: 10 * DAY,
            },
        );
        assert_eq!((r.from, r.days), (0, 10.0));
    }

    #[test]
    fn the_period_begins_at_the_earliest_commit_or_report() {
        let mut events = history();
        // The first commit is dated after the others (its author's clock).
        events.changes[0].at = 50_000;
        let r = compute(
            &events,
            Window {
                since: None,
                until: 10 * DAY,
            },
        );
        assert_eq!(r.from, 100);
        events.changes.iter_mut().for_each(|c| c.at = 50_000);
        let r = compute(
            &events,
            Window {
                since: None,
                until: 10 * DAY,
            },
        );
        assert_eq!(r.from, 1_000); // c1's report
    }

    #[test]
    fn no_events_is_no_data_not_zero() {
        let empty = Events {
            env: "prod".to_owned(),
            branch: "prod".to_owned(),
            first_env: "dev".to_owned(),
            ..Events::default()
        };
        let r = compute(
            &empty,
            Window {
                since: None,
                until: 5 * DAY,
            },
        );
        assert_eq!((r.from, r.days), (5 * DAY, 1.0));
        assert_eq!(r.deployment_frequency.deploys, 0);
        assert_eq!(r.deployment_frequency.per_day, None);
        assert_eq!(r.deployment_frequency.per_week, None);
        assert_eq!(r.lead_time.count, 0);
        assert_eq!(r.lead_time.median_seconds, None);
        assert_eq!(r.change_failure_rate.rate, None);
        assert_eq!(r.time_to_restore.median_seconds, None);
        assert_eq!(r.series.days.len(), 1);
        // Changes without any report: no data either.
        let mut quiet = history();
        quiet.reports.clear();
        let r = compute(
            &quiet,
            Window {
                since: None,
                until: 5 * DAY,
            },
        );
        assert_eq!(r.deployment_frequency.per_day, None);
        assert_eq!(r.change_failure_rate.deployments, 0);
        assert_eq!(r.change_failure_rate.rate, None);
        // Deployments without a failure: a rate of 0, which is data.
        let mut fine = history();
        fine.reports.retain(|r| r.success);
        fine.changes[4].rollback = None;
        let r = compute(
            &fine,
            Window {
                since: None,
                until: 5 * DAY,
            },
        );
        assert_eq!(r.change_failure_rate.rate, Some(0.0));
        assert_eq!(r.time_to_restore.restored, 0);
        assert_eq!(r.time_to_restore.median_seconds, None);
    }

    #[test]
    fn a_failure_not_followed_by_a_success_is_unrestored() {
        let mut events = history();
        events.reports.push(report("c4", 8_000, false, None));
        let r = compute(
            &events,
            Window {
                since: None,
                until: 10 * DAY,
            },
        );
        let t = &r.time_to_restore;
        assert_eq!((t.restored, t.unrestored), (2, 1));
        assert_eq!(t.median_seconds, Some(1_000));
        let open = r.series.incidents.last().expect("an incident");
        assert_eq!((open.failed_at, open.restored_at), (8_000, None));
        // c4 deployed, then failed: 3 of 4.
        assert_eq!(r.change_failure_rate.failed, 3);
    }

    #[test]
    fn a_version_replaced_before_its_deploy_has_no_lead_time_and_one_unknown_to_the_first_env_is_counted()
     {
        let events = Events {
            env: "dev".to_owned(),
            branch: "dev".to_owned(),
            first_env: "dev".to_owned(),
            changes: vec![
                change("a", 0, &[("web", "1.0")]),
                change("b", 100, &[("web", "1.1")]),
                change("c", 200, &[("api", "3.0")]),
            ],
            reports: vec![report("c", 1_000, true, None)],
            bumps: vec![bump("web", "1.0", 0), bump("web", "1.1", 100)],
        };
        let r = compute(
            &events,
            Window {
                since: None,
                until: DAY,
            },
        );
        // web 1.0 never ran: web 1.1 only (900 s); api 3.0 has no bump.
        assert_eq!(r.lead_time.count, 1);
        assert_eq!(r.series.lead_times[0].version, "1.1");
        assert_eq!(r.lead_time.median_seconds, Some(900));
        assert_eq!(r.lead_time.without_bump, 1);
    }
}
