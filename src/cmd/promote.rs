//! `ferry promote`: propose moving what runs in one environment into the next, as a request
//! that policy gates, people approve and `ferry merge` lands.

use serde::Serialize;

use crate::cmd::promotion::{self, request_branch};
use crate::cmd::shared::{branch_of, identity, load_at, load_env, now, open_store, short};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{Request, RequestState};
use crate::output::{Format, Output};
use crate::plan::promote::{self, GateInputs, GateResult, Move};
use crate::store::{self, History, RefUpdate, RemoteArgs, UpdateOutcome};

/// Where promotion requests live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForgeKind {
    /// The embedded forge: requests, approvals and statuses stored in the deployment
    /// repository under `refs/ferry/` (no server, no account).
    #[default]
    Local,
}

/// Propose promoting FROM into TO: a request whose branch holds TO's state with FROM's pins.
///
/// Every artifact whose pin differs between FROM and TO (or only those in `--apps`) moves to
/// FROM's pin; environment files and everything else on TO stay. The gates come from TO's
/// own branch: TO must promote from FROM, no version goes down unless `--rollback`, each pin
/// must have soaked in FROM for `policy.soak`, FROM's commit must have every
/// `policy.required_checks` green, and prereleases only where `policy.allow_prerelease`. A
/// failed gate refuses (exit 1) and says which, for which app, and when it will pass. There is
/// one open request per FROM → TO: promoting again updates it in place.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry promote dev staging
  ferry promote staging prod --apps web,api
  ferry promote staging prod --rollback       # prod goes back to what staging runs
  ferry promote dev staging --dry-run --format json")]
pub struct PromoteArgs {
    /// The environment promoted from.
    pub from: String,
    /// The environment promoted into.
    pub to: String,

    /// Only these apps.
    #[arg(long, value_delimiter = ',')]
    pub apps: Option<Vec<String>>,

    /// Allow versions to go down (the request says it is a rollback).
    #[arg(long)]
    pub rollback: bool,

    /// Print the plan and the gates; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Where the request lives.
    #[arg(long, value_enum, default_value_t = ForgeKind::Local)]
    pub forge: ForgeKind,

    /// Who is promoting. Default: git's `user.name`.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct PromoteReport<'a> {
    from: &'a str,
    to: &'a str,
    source: String,
    base: String,
    rollback: bool,
    moves: &'a [Move],
    gates: &'a [GateResult],
    request: Option<RequestRef>,
    dry_run: bool,
}

#[derive(Serialize)]
struct RequestRef {
    id: u64,
    branch: String,
    state: RequestState,
    title: String,
    /// Where the record lives.
    url: String,
}

pub fn run(args: PromoteArgs, out: Output) -> Result<Outcome> {
    let ForgeKind::Local = args.forge;
    let store = open_store(&args.remote)?;
    let forge = LocalForge::new(&store);
    let from_branch = branch_of(&store, &args.from)?;
    let to = load_env(&store, &args.to, History::Tip)?;
    let source = store.tip(&from_branch, History::Full)?;
    let from = load_at(&store, &args.from, &from_branch, source)?;
    let target = to
        .state
        .environments
        .get(&args.to)
        .expect("load_env checked it");

    let moves = promote::plan(
        &from.state.manifest,
        &to.state.manifest,
        args.apps.as_deref(),
    )
    .map_err(|e| Error::failure(format!("{}: {e}", args.from)))?;
    let open = forge.requests()?.into_iter().find(|r| {
        r.value.state == RequestState::Open && r.value.from == args.from && r.value.to == args.to
    });

    if moves.is_empty() {
        out.status(format!(
            "nothing to promote: `{}` already runs what `{}` runs",
            args.to, args.from
        ));
        if let (Some(record), false) = (open, args.dry_run) {
            let mut request = record.value;
            request.state = RequestState::Closed;
            request.closed_by = Some(identity(&store, args.as_name.as_deref()));
            request.closed_at = Some(now());
            let signature = store::signature(store.repo())
                .map_err(|e| Error::failure(e.message().to_owned()))?;
            if forge.save(
                &request,
                record.tip,
                &format!("request #{} closed: nothing left to promote", request.id),
                &signature,
            )? {
                out.status(format!(
                    "closed request #{}: nothing left to promote",
                    request.id
                ));
            }
        }
        if out.format == Format::Json {
            out.json(&PromoteReport {
                from: &args.from,
                to: &args.to,
                source: source.to_string(),
                base: to.tip.to_string(),
                rollback: args.rollback,
                moves: &[],
                gates: &[],
                request: None,
                dry_run: args.dry_run,
            });
        }
        return Ok(Outcome::Success);
    }

    let since = promotion::soak_since(&store, source, &moves)?;
    let checks = forge
        .statuses(source)?
        .into_iter()
        .map(|(k, s)| (k, s.state.as_str().to_owned()))
        .collect();
    let gates = promote::gates(
        &moves,
        &GateInputs {
            from: &args.from,
            target,
            rollback: args.rollback,
            now: now(),
            since: &since,
            checks: &checks,
        },
    );
    let refused: Vec<&GateResult> = gates.iter().filter(|g| !g.passed).collect();

    let report = |request: Option<RequestRef>| PromoteReport {
        from: &args.from,
        to: &args.to,
        source: source.to_string(),
        base: to.tip.to_string(),
        rollback: args.rollback,
        moves: &moves,
        gates: &gates,
        request,
        dry_run: args.dry_run,
    };
    if args.dry_run || !refused.is_empty() {
        match out.format {
            Format::Json => out.json(&report(None)),
            Format::Text => print_plan(out, &args.from, &args.to, &moves, &gates),
        }
        if !refused.is_empty() {
            let mut error = Error::failure(format!(
                "promotion {} → {} refused by {} gate{}",
                args.from,
                args.to,
                refused.len(),
                if refused.len() == 1 { "" } else { "s" }
            ));
            for g in &refused {
                error = error.detail(format!("  {}: {}", g.gate.as_str(), g.message));
            }
            return Err(error.hint(format!(
                "the gates are `policy` in `environments/{}.json` on `{}`",
                args.to, to.branch
            )));
        }
        out.status("dry run: no request was opened or changed");
        return Ok(Outcome::Success);
    }

    // The proposal: TO's tip with FROM's pins, on the request branch.
    let changelog = promotion::changelog(&store, source, &moves)?;
    let (title, body) = promotion::render_request(
        &store,
        &to.branch,
        to.tip,
        &args.from,
        &args.to,
        source,
        &moves,
        args.rollback,
        &gates,
        changelog,
    )?;
    let head = promotion::build_commit(&store, &to, (&args.from, &args.to), &moves, &title)?;
    let branch = request_branch(&args.from, &args.to);
    let current = store.refs()?.get(&format!("refs/heads/{branch}")).copied();
    match store.update(
        &[RefUpdate::branch(&branch, current, head)],
        true,
        "ferry promote",
    )? {
        UpdateOutcome::Updated => {}
        UpdateOutcome::Moved { .. } => unreachable!("a forced update does not check"),
    }

    let author = identity(&store, args.as_name.as_deref());
    let signature =
        store::signature(store.repo()).map_err(|e| Error::failure(e.message().to_owned()))?;
    let now = now();
    let requested = promotion::requested(&moves);
    let request = match open {
        Some(record) => {
            let mut request = record.value;
            request.title = title;
            request.body = body;
            request.base = to.tip.to_string();
            request.head = head.to_string();
            request.source = source.to_string();
            request.rollback = args.rollback;
            request.moves = requested;
            request.updated_at = now;
            let event = format!("request #{} updated by {author}", request.id);
            if !forge.save(&request, record.tip, &event, &signature)? {
                return Err(Error::failure(format!(
                    "request #{} changed while it was being updated",
                    request.id
                ))
                .hint("run `ferry promote` again"));
            }
            out.status(format!("updated request #{}", request.id));
            request
        }
        None => {
            let request = forge.create(
                Request {
                    id: 0,
                    from: args.from.clone(),
                    to: args.to.clone(),
                    branch: branch.clone(),
                    state: RequestState::Open,
                    title,
                    body,
                    labels: vec!["promotion".to_owned(), format!("env:{}", args.to)],
                    author,
                    created_at: now,
                    updated_at: now,
                    base: to.tip.to_string(),
                    head: head.to_string(),
                    source: source.to_string(),
                    rollback: args.rollback,
                    moves: requested,
                    approvals: Vec::new(),
                    merged_by: None,
                    merged_at: None,
                    merge_commit: None,
                    closed_by: None,
                    closed_at: None,
                },
                &signature,
            )?;
            out.status(format!("opened request #{}", request.id));
            request
        }
    };

    let reference = RequestRef {
        id: request.id,
        branch: branch.clone(),
        state: request.state,
        title: request.title.clone(),
        url: format!(
            "{}#{}",
            store.remote().shown,
            crate::forge::local::REQUESTS.to_owned() + &request.id.to_string()
        ),
    };
    match out.format {
        Format::Json => out.json(&report(Some(reference))),
        Format::Text => {
            out.data(format!("#{}  {}", request.id, request.title));
            out.data(format!(
                "    branch {branch} at {} (on {} {})",
                short(head),
                args.to,
                short(to.tip)
            ));
            let needed = target.protection.required_approvals;
            out.status(format!(
                "next: {}`ferry merge {}`",
                if needed > 0 {
                    format!(
                        "{needed} approval{} (`ferry approve {}`), then ",
                        if needed == 1 { "" } else { "s" },
                        request.id
                    )
                } else {
                    String::new()
                },
                request.id
            ));
        }
    }
    Ok(Outcome::Success)
}

fn print_plan(out: Output, from: &str, to: &str, moves: &[Move], gates: &[GateResult]) {
    let mut rows = vec![vec![
        "APP".to_owned(),
        to.to_uppercase(),
        from.to_uppercase(),
        "CHANGE".to_owned(),
    ]];
    for m in moves {
        rows.push(vec![
            m.app.clone(),
            m.current
                .as_ref()
                .map_or("-".to_owned(), crate::model::Artifact::shown_version),
            m.version(),
            m.kind.as_str().to_owned(),
        ]);
    }
    for line in crate::cmd::shared::table(&rows) {
        out.data(line);
    }
    for g in gates {
        out.data(format!(
            "{} {}: {}",
            if g.passed { "pass" } else { "FAIL" },
            g.gate.as_str(),
            g.message
        ));
    }
}
