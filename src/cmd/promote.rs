//! `ferry promote`: propose moving what runs in one environment into the next, as a request
//! that policy gates, people approve and `ferry merge` lands.

use serde::Serialize;

use crate::cmd::shared::{branch_of, identity, load_at, load_env, now, open_store, short};
use crate::error::{Error, Outcome, Result};
use crate::forge::{CloseReason, Forge, ForgeError, ForgeKind, OpenRequest, RequestState};
use crate::output::{Format, Output};
use crate::plan::promote::{self, GateResult, Move};
use crate::promotion::{self, Application, Ask, Inputs, Target, Templates, gather};
use crate::store::{History, RemoteArgs};

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
  ferry promote dev staging --dry-run --format json
  GITHUB_TOKEN=… ferry promote staging prod --forge github --remote https://github.com/acme/deploy")]
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

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,

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
    moves: Vec<Move>,
    gates: Vec<GateResult>,
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
    #[serde(skip)]
    head: String,
}

pub fn run(args: PromoteArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = args.forge.open(&store)?;
    let forge = forge.as_ref();
    let now = now();

    // Gather: each state loaded and validated once, then what the moves need read once.
    let from_branch = branch_of(&store, &args.from)?;
    let to = load_env(&store, &args.to, History::Tip)?;
    let source = store.tip(&from_branch, History::Full)?;
    let from = load_at(&store, &args.from, &from_branch, source)?;
    let ask = Ask {
        from: args.from.clone(),
        to: args.to.clone(),
        apps: args.apps.clone(),
        rollback: args.rollback,
        write: !args.dry_run,
    };
    let moves = promotion::moves(&ask, &from.state.manifest, &to.state.manifest).map_err(|e| {
        Error::failure(format!("{}: {e}", args.from)).hint(from_apps_hint(&from.state.manifest))
    })?;
    let target_env = to
        .state
        .environments
        .get(&args.to)
        .expect("load_env checked it")
        .clone();
    let soak = target_env.policy.soak.is_some();
    let (mut since, mut changelog, mut checks) = Default::default();
    let (mut templates, mut open) = (Templates::default(), None);
    if !moves.is_empty() {
        (since, changelog) = gather::history(&store, source, &moves, soak, ask.write)?;
        checks = gather::checks_on(&store, forge, source)?;
        if ask.write {
            open = forge
                .open_request(&args.from, &args.to, &to.branch)
                .map_err(Error::from)?;
            templates = gather::templates(&store, &to.branch, to.tip)?;
        }
    }
    let inputs = Inputs {
        ask,
        source,
        from: from.state.manifest,
        target: Target {
            branch: to.branch,
            tip: to.tip,
            files: to.files,
            state: to.state,
        },
        now,
        since,
        checks,
        changelog,
        templates,
    };
    let to_branch = &inputs.target.branch;

    // Plan.
    let plan = promotion::plan(&inputs)?;
    let report =
        |moves: &[Move], gates: &[GateResult], request: Option<RequestRef>| PromoteReport {
            from: &args.from,
            to: &args.to,
            source: source.to_string(),
            base: inputs.target.tip.to_string(),
            rollback: args.rollback,
            moves: moves.to_vec(),
            gates: gates.to_vec(),
            request,
            dry_run: args.dry_run,
        };

    if plan.moves.is_empty() {
        // Promotions follow the graph even when nothing would move.
        if let Some(gate) = plan.refused().first() {
            return Err(Error::failure(format!(
                "promotion {} → {} refused: {}",
                args.from, args.to, gate.message
            ))
            .hint(format!(
                "`promotes_from` in `environments/{}.json` on `{}` says where it takes promotions from",
                args.to, to_branch
            )));
        }
        out.status(format!(
            "nothing to promote: `{}` already runs what `{}` runs",
            args.to, args.from
        ));
        if !args.dry_run {
            let who = identity(&store, args.actor.as_name.as_deref());
            close_stale(forge, &args, to_branch, &who, now, out)?;
        }
        if out.format == Format::Json {
            out.json(&report(&[], &[], None));
        }
        return Ok(Outcome::Success);
    }

    let (moves, gates) = (&plan.moves, &plan.gates);
    let refused = plan.refused();
    if args.dry_run || !refused.is_empty() {
        match out.format {
            Format::Json => out.json(&report(moves, gates, None)),
            Format::Text => print_plan(out, &args.from, &args.to, moves, gates),
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
            return Err(gate_hints(error, &refused, &args.from, &args.to, to_branch));
        }
        out.status("dry run: no request was opened or changed");
        return Ok(Outcome::Success);
    }

    // Apply.
    let texts = plan.texts.as_ref().expect("made when every gate passed");
    let application = Application::new(&inputs, texts);
    let author = identity(&store, args.actor.as_name.as_deref());
    let parent_tree = store.tree_of(inputs.target.tip)?;
    let branch_exists = store
        .refs()?
        .contains_key(&format!("refs/heads/{}", application.branch));
    let published = forge
        .publish(
            &promotion::proposal_of(&application, &author, now, parent_tree, branch_exists),
            open.as_ref(),
        )
        .map_err(|e| match e {
            ForgeError::RequestMoved { id } => {
                Error::failure(format!("request #{id} changed while it was being updated"))
                    .hint("run `ferry promote` again")
            }
            e => Error::from(e),
        })?;
    let local = forge.kind() == ForgeKind::Local;
    out.status(format!(
        "{} {} #{}",
        if published.updated {
            "updated"
        } else {
            "opened"
        },
        forge.kind().request_noun(),
        published.id
    ));
    let reference = RequestRef {
        id: published.id,
        branch: application.branch.clone(),
        state: RequestState::Open,
        title: published.title.clone(),
        url: published.url.clone(),
        head: published.head.map(|h| h.to_string()).unwrap_or_default(),
    };

    match out.format {
        Format::Json => out.json(&report(moves, gates, Some(reference))),
        Format::Text => {
            out.data(format!("#{}  {}", reference.id, reference.title));
            if local {
                out.data(format!(
                    "    branch {} at {} (on {} {})",
                    application.branch,
                    crate::output::abbrev(&reference.head, 7),
                    args.to,
                    short(inputs.target.tip)
                ));
                let needed = target_env.protection().required_approvals;
                let checks = &target_env.protection().required_checks;
                if !checks.is_empty() {
                    out.status(format!(
                        "`{}` requires {} green on the request's head {}",
                        args.to,
                        checks.join(", "),
                        crate::output::abbrev(&reference.head, 7)
                    ));
                }
                out.status(format!(
                    "next: {}`ferry merge {}`",
                    if needed > 0 {
                        format!(
                            "{needed} approval{} (`ferry approve {}`), then ",
                            if needed == 1 { "" } else { "s" },
                            reference.id
                        )
                    } else {
                        String::new()
                    },
                    reference.id
                ));
            } else {
                out.data(format!("    {}", reference.url));
            }
        }
    }
    Ok(Outcome::Success)
}

/// Nothing differs any more: an open request for this promotion is stale.
fn close_stale(
    forge: &dyn Forge,
    args: &PromoteArgs,
    to_branch: &str,
    who: &str,
    now: i64,
    out: Output,
) -> Result<()> {
    let Some(OpenRequest { id, .. }) = forge
        .open_request(&args.from, &args.to, to_branch)
        .map_err(Error::from)?
    else {
        return Ok(());
    };
    match forge.close(id, who, now, CloseReason::NothingToPromote) {
        Ok(()) => out.status(format!(
            "closed {} #{id}: nothing left to promote",
            forge.kind().request_noun()
        )),
        // Closed or merged meanwhile: nothing left to do.
        Err(ForgeError::NotOpen { .. }) => {}
        Err(e) => return Err(Error::from(e)),
    }
    Ok(())
}

/// The apps a source environment pins, for hints.
fn from_apps_hint(manifest: &crate::model::Manifest) -> String {
    let apps: Vec<&str> = manifest.artifacts.keys().map(String::as_str).collect();
    if apps.len() > 20 {
        format!(
            "its apps include {}, … ({} in all)",
            apps[..20].join(", "),
            apps.len()
        )
    } else {
        format!("its apps: {}", apps.join(", "))
    }
}

/// What to do about each kind of refused gate.
fn gate_hints(
    mut error: Error,
    refused: &[&GateResult],
    from: &str,
    to: &str,
    to_branch: &str,
) -> Error {
    use promote::Gate;
    let has = |gate: Gate| refused.iter().any(|g| g.gate == gate);
    if has(Gate::PromotesFrom) {
        error = error.hint(format!("`promotes_from` in `environments/{to}.json` on `{to_branch}` says where `{to}` takes promotions from"));
    }
    if has(Gate::RequiredChecks) {
        let missing: Vec<&str> = refused
            .iter()
            .filter(|g| g.gate == Gate::RequiredChecks)
            .filter_map(|g| g.message.split('`').nth(1))
            .collect();
        let check = missing.first().copied().unwrap_or("CHECK");
        error = error.hint(match check.strip_prefix("ferry/deploy/") {
            // Only an agent's deploy may turn it green: say where to look, not how to fake it.
            Some(env) => format!(
                "`{check}` is reported by {env}'s agent once it has deployed the commit (not when it runs with `--no-report`): `ferry status` shows its last deploy, its `status.json` and log say why"
            ),
            None => format!("CI reports checks on `{from}`'s commit: `ferry status set {from} {check} success`"),
        });
    }
    if has(Gate::Soak) || has(Gate::Prerelease) {
        error = error.hint(format!(
            "soak and prereleases are `policy` in `environments/{to}.json` on `{to_branch}`"
        ));
    }
    error
}

fn print_plan(out: Output, from: &str, to: &str, moves: &[Move], gates: &[GateResult]) {
    // As `ferry diff` shows them: the source, then the target.
    let mut rows = vec![vec![
        "APP".to_owned(),
        from.to_uppercase(),
        to.to_uppercase(),
        "CHANGE".to_owned(),
    ]];
    for m in moves {
        rows.push(vec![
            m.app.clone(),
            m.version(),
            m.current
                .as_ref()
                .map_or("-".to_owned(), crate::model::Artifact::shown_version),
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
