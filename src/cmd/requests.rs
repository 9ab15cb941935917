//! `ferry requests`: the promotion requests on the forge (the embedded one's records, or
//! GitHub's promotion pull requests), with their state, approvals and checks.

use crate::cmd::shared::{open_store, table};
use crate::error::{Outcome, Result};
use crate::forge::{Forge, Request, RequestState, Statuses};
use crate::output::{Format, Output};
use crate::plan::promote::timestamp;
use crate::store::RemoteArgs;
pub use crate::view::requests::StateFilter;
use crate::view::requests::{self as view, Listed, approvals, for_people};

/// List promotion requests (id, state, environments, apps, approvals, checks), or show one.
///
/// On a hosted forge the requests are the pull or merge requests of promotion branches
/// (`ferry/promote/…`): environments, apps and versions come from the block for bots in
/// their body, approvals from their reviews (GitLab: approvals), checks from their head's
/// statuses. The list costs a call per page of requests and two per open one (approvals,
/// checks), whatever the number of apps; one request costs three.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry requests                     # open requests
  ferry requests 3                   # one request: its moves, approvals, checks and body
  ferry requests 3 --raw             # its body as stored, the block for bots included
  ferry requests --env prod --all
  ferry requests --format json
  GITHUB_TOKEN=… ferry requests --forge github --remote https://github.com/acme/deploy")]
pub struct RequestsArgs {
    /// Show this request in full.
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: Option<u64>,

    /// Only requests into or out of this environment.
    #[arg(long)]
    pub env: Option<String>,

    /// Which requests to list.
    #[arg(long, value_enum, default_value_t = StateFilter::Open)]
    pub state: StateFilter,

    /// Every request, whatever its state (`--state all`).
    #[arg(long, conflicts_with = "state")]
    pub all: bool,

    /// With ID: the body exactly as stored, the `<!-- ferry:promotion … -->` block for bots
    /// included (hidden on a terminal, as a forge's web page hides it; `--format json` has it).
    #[arg(long, requires = "id")]
    pub raw: bool,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `ci/test success, lint pending`.
fn checks_line(checks: Option<&Statuses>) -> String {
    match checks {
        None => "-".to_owned(),
        Some(checks) if checks.is_empty() => "none".to_owned(),
        Some(checks) => checks
            .iter()
            .map(|(name, s)| format!("{} {}", printable(name), s.state.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A forge's text, one line of printable characters.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn run(mut args: RequestsArgs, out: Output) -> Result<Outcome> {
    if args.all {
        args.state = StateFilter::All;
    }
    let store = open_store(&args.remote)?;
    let forge = args.forge.open(&store)?;
    let forge: &dyn Forge = forge.as_ref();
    if let Some(id) = args.id {
        let listed = view::one(forge, id)?;
        match out.format {
            Format::Json => out.json(&listed),
            Format::Text => show(&listed.request, listed.checks.as_ref(), args.raw, out),
        }
        return Ok(Outcome::Success);
    }
    let listed = view::list(forge, args.env.as_deref(), args.state)?;
    match out.format {
        Format::Json => out.json(&listed),
        Format::Text => {
            if listed.is_empty() {
                out.status(match args.state {
                    StateFilter::Open => "no open requests (`--state all` lists every request)",
                    _ => "no requests",
                });
                return Ok(Outcome::Success);
            }
            let mut rows = vec![
                [
                    "ID",
                    "STATE",
                    "PROMOTION",
                    "APPS",
                    "APPROVED BY",
                    "CHECKS",
                    "AUTHOR",
                    "UPDATED",
                ]
                .map(str::to_owned)
                .to_vec(),
            ];
            for Listed { request: r, checks } in &listed {
                let apps: Vec<String> = r
                    .moves
                    .iter()
                    .map(|m| format!("{} {}", m.app, m.to))
                    .collect();
                let approvers = approvals(r);
                rows.push(vec![
                    format!("#{}", r.id),
                    r.state.as_str().to_owned(),
                    format!(
                        "{} → {}{}",
                        r.from,
                        r.to,
                        if r.rollback { " (rollback)" } else { "" }
                    ),
                    apps.join(", "),
                    if approvers.is_empty() {
                        "-".to_owned()
                    } else {
                        approvers
                    },
                    checks_line(checks.as_ref()),
                    r.author.clone(),
                    timestamp(r.updated_at),
                ]);
            }
            for line in table(&rows) {
                out.data(line);
            }
        }
    }
    Ok(Outcome::Success)
}

/// One request in full.
fn show(request: &Request, checks: Option<&Statuses>, raw: bool, out: Output) {
    out.data(format!("#{}  {}", request.id, request.title));
    out.data(format!(
        "state:      {}{}",
        request.state.as_str(),
        match (&request.merged_by, &request.closed_by) {
            (Some(by), _) => format!(
                " by {by} at {}",
                timestamp(request.merged_at.unwrap_or_default())
            ),
            (_, Some(by)) => format!(
                " by {by} at {}",
                timestamp(request.closed_at.unwrap_or_default())
            ),
            _ => String::new(),
        }
    ));
    out.data(format!(
        "promotion:  {} → {}{}",
        request.from,
        request.to,
        if request.rollback { " (rollback)" } else { "" }
    ));
    out.data(format!(
        "author:     {} at {}",
        request.author,
        timestamp(request.created_at)
    ));
    out.data(format!(
        "branch:     {} at {}",
        request.branch,
        crate::output::abbrev(&request.head, 7)
    ));
    let approvals = approvals(request);
    out.data(format!(
        "approvals:  {}",
        if approvals.is_empty() {
            "none".to_owned()
        } else {
            approvals
        }
    ));
    if request.state == RequestState::Open {
        out.data(format!("checks:     {}", checks_line(checks)));
    }
    if let Some(mergeable) = request.mergeable {
        out.data(format!(
            "mergeable:  {}",
            if mergeable {
                "yes"
            } else {
                "no (conflicts, or GitHub's protection)"
            }
        ));
    }
    if let Some(url) = &request.url {
        out.data(format!("url:        {url}"));
    }
    out.data(format!("labels:     {}", request.labels.join(", ")));
    // What the request lands, from its record (the body below is its author's text).
    out.data("moves:");
    for m in &request.moves {
        let (sha256, url) = match m.pin.pin() {
            Some(pin) => (crate::output::abbrev(&pin.sha256, 12), pin.url.as_str()),
            None => (
                "-",
                "(the body does not carry the pin: see the head commit)",
            ),
        };
        out.data(format!(
            "  {} {} → {} ({})  sha256:{sha256}  {url}",
            m.app,
            m.from.as_deref().unwrap_or("(new)"),
            m.to,
            m.kind.as_str()
        ));
    }
    out.data("");
    if raw {
        out.data(&request.body);
    } else {
        out.data(for_people(&request.body));
    }
}
