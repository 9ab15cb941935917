//! `ferry dora`: DORA's four keys per environment, from git and the embedded forge's records
//! (computed by [`crate::dora`]; this prints them).

use crate::cmd::shared::{format_time, open_store, parse_since};
use crate::dora::Report;
use crate::error::{Outcome, Result};
use crate::output::{Format, Output};
use crate::plan::promote::human;
use crate::store::RemoteArgs;

/// Show DORA's four keys for each environment: deployment frequency, lead time for changes,
/// change failure rate and time to restore, each with how it was derived.
///
/// From git and the embedded forge's records alone: a deploy is a change of the environment's
/// branch with a `success` of `ferry/deploy/ENV` (its agents' aggregate); a lead time runs
/// from the commit that pinned an app's version in the first environment (its bump) to the
/// first deploy in ENV of a change pinning it; a deployment failed when a `failure` or `error`
/// report (the aggregate's or a host's) names it, when an agent rolled it back, or when a
/// `--rollback` promotion undid it; time to restore runs from a failure to the next success.
/// Median and p90 are nearest-rank percentiles. A figure with no event says `no data`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry dora prod
  ferry dora prod --since 2026-10-01
  ferry dora --format json")]
pub struct DoraArgs {
    /// The environment. Default: every environment, in promotion order.
    #[arg(value_name = "ENV")]
    pub env: Option<String>,

    /// Only events from this date (`2026-10-14`) or time (`2026-10-14T09:00:00Z`) on; the
    /// rates are over the days from then (or from the branch's first commit or report, when
    /// later) to now.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: DoraArgs, out: Output) -> Result<Outcome> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let store = open_store(&args.remote)?;
    let crate::view::dora::Reports {
        reports,
        notes,
        reported,
    } = crate::view::dora::reports(
        &store,
        args.env.as_deref(),
        since,
        crate::cmd::shared::now(),
    )?;
    for note in &notes {
        out.status(format!("note: {note}"));
    }
    if !reported && crate::forge::detect(&store.remote().url) != crate::forge::ForgeKind::Local {
        out.status(
            "note: no deploy report in the repository's `refs/ferry/` records: `ferry dora` reads the embedded forge's, not a hosted forge's statuses",
        );
    }
    match out.format {
        Format::Json => out.json(&reports),
        Format::Text => {
            for (i, report) in reports.iter().enumerate() {
                if i > 0 {
                    out.data("");
                }
                for line in text(report) {
                    out.data(line);
                }
            }
        }
    }
    Ok(Outcome::Success)
}

/// A report for people: a heading, one line per figure, then how each was derived.
pub fn text(r: &Report) -> Vec<String> {
    let mut lines = vec![format!(
        "{} (branch `{}`): {} to {} ({:.1} days)",
        r.env,
        r.branch,
        format_time(r.from),
        format_time(r.until),
        r.days
    )];
    let f = &r.deployment_frequency;
    let frequency = match (f.per_day, f.per_week) {
        (Some(day), Some(week)) => format!(
            "{day:.2} a day ({week:.2} a week): {} deploy{}",
            f.deploys,
            plural(f.deploys)
        ),
        _ => "no data: no successful deploy in the period".to_owned(),
    };
    let l = &r.lead_time;
    let mut lead = match (l.median_seconds, l.p90_seconds) {
        (Some(median), Some(p90)) => format!(
            "median {}, p90 {}: {} app version{}",
            human(median),
            human(p90),
            l.count,
            plural(l.count)
        ),
        _ => "no data: no app version deployed in the period".to_owned(),
    };
    if l.without_bump > 0 {
        lead.push_str(&format!(
            " ({} more without a bump in {})",
            l.without_bump, r.first_env
        ));
    }
    let c = &r.change_failure_rate;
    let failure = match c.rate {
        Some(rate) => format!(
            "{:.1}%: {} of {} deployment{} failed",
            rate * 100.0,
            c.failed,
            c.deployments,
            plural(c.deployments)
        ),
        None => "no data: no deployment in the period".to_owned(),
    };
    let t = &r.time_to_restore;
    let mut restore = match (t.median_seconds, t.p90_seconds) {
        (Some(median), Some(p90)) => format!(
            "median {}, p90 {}: {} restore{}",
            human(median),
            human(p90),
            t.restored,
            plural(t.restored)
        ),
        _ => "no data: no failure restored in the period".to_owned(),
    };
    if let Some(open) = r.series.incidents.iter().find(|i| i.restored_at.is_none()) {
        restore.push_str(&format!(
            "; failing since {} ({})",
            format_time(open.failed_at),
            open.cause.said()
        ));
    }
    let rows = [
        ("deployment frequency", frequency, &f.derivation),
        ("lead time for changes", lead, &l.derivation),
        ("change failure rate", failure, &c.derivation),
        ("time to restore", restore, &t.derivation),
    ];
    for (n, (name, figure, _)) in rows.iter().enumerate() {
        lines.push(format!("  {name:<22} {figure} [{}]", n + 1));
    }
    for (n, (_, _, derivation)) in rows.iter().enumerate() {
        lines.push(format!("  [{}] {derivation}", n + 1));
    }
    lines
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
