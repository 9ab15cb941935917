//! `ferry promote`: propose moving what runs in one environment into the next, as a request
//! that policy gates, people approve and `ferry merge` lands.

use std::collections::BTreeMap;

use git2::Oid;
use serde::Serialize;

use crate::cmd::promotion::{self, request_branch};
use crate::cmd::shared::{
    Loaded, branch_of, identity, load_at, load_env, now, open_store, short, signature,
};
use crate::error::{Error, Outcome, Result};
use crate::forge::github::{GitHub, GitHubError, Proposal, PullRequest, repo_of_remote};
use crate::forge::local::{LocalForge, REQUESTS, Record};
use crate::forge::{Request, RequestState};
use crate::output::{Format, Output};
use crate::plan::promote::{self, GateInputs, GateResult, Move};
use crate::store::{History, RefUpdate, RemoteArgs, Store};
use crate::validate::MANIFEST;

/// Where promotion requests live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForgeKind {
    /// The embedded forge: requests, approvals and statuses stored in the deployment
    /// repository under `refs/ferry/` (no server, no account).
    #[default]
    Local,
    /// GitHub: a pull request per promotion, commit statuses as checks. Needs GITHUB_TOKEN;
    /// GITHUB_API_URL points at GitHub Enterprise.
    Github,
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

    /// Where the request lives.
    #[arg(long, value_enum, default_value_t = ForgeKind::Local)]
    pub forge: ForgeKind,

    /// The GitHub repository, `owner/name`. Default: parsed from the remote's URL.
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repo: Option<String>,

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

/// Where this promotion's request lives.
enum Backend<'s> {
    Local(LocalForge<'s>),
    GitHub(Box<GitHub>),
}

/// The open request for this FROM → TO, wherever it lives.
enum Open {
    Local(Box<Record<Request>>),
    Pull(PullRequest),
}

impl Backend<'_> {
    fn checks(&self, commit: Oid) -> Result<BTreeMap<String, String>> {
        Ok(match self {
            Backend::Local(forge) => {
                promotion::trusted_checks(forge.store(), forge.statuses(commit)?)?
            }
            Backend::GitHub(github) => {
                github.statuses(&commit.to_string()).map_err(github_error)?
            }
        })
    }

    fn open(&self, from: &str, to: &str, to_branch: &str) -> Result<Option<Open>> {
        Ok(match self {
            Backend::Local(forge) => forge
                .requests()?
                .into_iter()
                .find(|r| {
                    r.value.state == RequestState::Open && r.value.from == from && r.value.to == to
                })
                .map(|record| Open::Local(Box::new(record))),
            Backend::GitHub(github) => github
                .open_pull(&request_branch(from, to), to_branch)
                .map_err(github_error)?
                .map(Open::Pull),
        })
    }
}

/// GitHub's errors as user errors.
/// The GitHub repository (`owner/name`): `--github-repo`, else parsed from the remote's URL.
pub fn github_repo(store: &Store, given: Option<&str>) -> Result<String> {
    match given {
        Some(repo) => Ok(repo.to_owned()),
        None => repo_of_remote(&store.remote().shown).ok_or_else(|| {
            Error::usage(format!("`{}` is not a GitHub URL", store.remote().shown))
                .hint("pass `--github-repo owner/name`")
        }),
    }
}

pub fn github_error(err: GitHubError) -> Error {
    let hint = err.hint();
    let error = match &err {
        GitHubError::Unreachable { .. } => Error::unavailable(err.to_string()),
        _ => Error::failure(err.to_string()),
    };
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

pub fn run(args: PromoteArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let backend = match args.forge {
        ForgeKind::Local => Backend::Local(LocalForge::new(&store)),
        ForgeKind::Github => {
            let repo = github_repo(&store, args.github_repo.as_deref())?;
            Backend::GitHub(Box::new(GitHub::new(&repo).map_err(github_error)?))
        }
    };
    let from_branch = branch_of(&store, &args.from)?;
    let to = load_env(&store, &args.to, History::Tip)?;
    let source = store.tip(&from_branch, History::Full)?;
    let from = load_at(&store, &args.from, &from_branch, source)?;
    let target = to
        .state
        .environments
        .get(&args.to)
        .expect("load_env checked it");

    let known = || from_apps_hint(&from.state.manifest);
    let moves = promote::plan(
        &from.state.manifest,
        &to.state.manifest,
        args.apps.as_deref(),
    )
    .map_err(|e| Error::failure(format!("{}: {e}", args.from)).hint(known()))?;
    let report =
        |moves: &[Move], gates: &[GateResult], request: Option<RequestRef>| PromoteReport {
            from: &args.from,
            to: &args.to,
            source: source.to_string(),
            base: to.tip.to_string(),
            rollback: args.rollback,
            moves: moves.to_vec(),
            gates: gates.to_vec(),
            request,
            dry_run: args.dry_run,
        };

    // Promotions follow the graph even when nothing would move.
    if moves.is_empty() && target.promotes_from.as_deref() != Some(args.from.as_str()) {
        let gate = promote::gates(
            &[],
            &GateInputs {
                from: &args.from,
                target,
                rollback: args.rollback,
                now: now(),
                since: &BTreeMap::new(),
                checks: &BTreeMap::new(),
            },
        )
        .remove(0);
        return Err(Error::failure(format!(
            "promotion {} → {} refused: {}",
            args.from, args.to, gate.message
        ))
        .hint(format!(
            "`promotes_from` in `environments/{}.json` on `{}` says where it takes promotions from",
            args.to, to.branch
        )));
    }

    if moves.is_empty() {
        out.status(format!(
            "nothing to promote: `{}` already runs what `{}` runs",
            args.to, args.from
        ));
        if !args.dry_run {
            close_stale(&store, &backend, &args, &to.branch, out)?;
        }
        if out.format == Format::Json {
            out.json(&report(&[], &[], None));
        }
        return Ok(Outcome::Success);
    }

    let since = promotion::soak_since(&store, source, &moves)?;
    let checks = backend.checks(source)?;
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
    if args.dry_run || !refused.is_empty() {
        match out.format {
            Format::Json => out.json(&report(&moves, &gates, None)),
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
            return Err(gate_hints(
                error, &refused, &args.from, &args.to, &to.branch,
            ));
        }
        out.status("dry run: no request was opened or changed");
        return Ok(Outcome::Success);
    }

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
    let branch = request_branch(&args.from, &args.to);
    let labels = vec!["promotion".to_owned(), format!("env:{}", args.to)];
    let open = backend.open(&args.from, &args.to, &to.branch)?;
    let reference = match &backend {
        Backend::Local(forge) => {
            let author = identity(&store, args.actor.as_name.as_deref());
            let head = promotion::build_commit(
                &store,
                &to,
                (&args.from, &args.to),
                &moves,
                &title,
                (&author, &author),
            )?;
            // The request branch moves with its record, in one update.
            let current = store.refs()?.get(&format!("refs/heads/{branch}")).copied();
            let branch_update = RefUpdate::branch(&branch, current, head).rewriting();
            let open = match open {
                Some(Open::Local(record)) => Some(*record),
                _ => None,
            };
            let request = record_request(
                &store,
                forge,
                &args,
                open,
                &to,
                source,
                (head, branch_update),
                &moves,
                (title, body, labels),
                out,
            )?;
            RequestRef {
                id: request.id,
                branch: branch.clone(),
                state: request.state,
                title: request.title.clone(),
                url: format!("{}#{}{}", store.remote().shown, REQUESTS, request.id),
                head: head.to_string(),
            }
        }
        Backend::GitHub(github) => {
            let (text, message) = promotion::proposal(&to, (&args.from, &args.to), &moves, &title)?;
            let base_tree = store
                .repo()
                .find_commit(to.tip)
                .map(|c| c.tree_id().to_string())
                .map_err(|e| Error::failure(format!("git: {}", e.message())))?;
            let files = [(MANIFEST.to_owned(), text)];
            let existing = match open {
                Some(Open::Pull(pr)) => Some(pr),
                _ => None,
            };
            let updating = existing.is_some();
            let pr = github
                .publish(
                    &Proposal {
                        branch: &branch,
                        branch_exists: store.refs()?.contains_key(&format!("refs/heads/{branch}")),
                        base_branch: &to.branch,
                        base_commit: &to.tip.to_string(),
                        base_tree: &base_tree,
                        files: &files,
                        message: &message,
                        title: &title,
                        body: &body,
                        labels: &labels,
                    },
                    existing,
                )
                .map_err(github_error)?;
            out.status(format!(
                "{} pull request #{}",
                if updating { "updated" } else { "opened" },
                pr.number
            ));
            RequestRef {
                id: pr.number,
                branch: branch.clone(),
                state: RequestState::Open,
                title,
                url: pr.url,
                head: String::new(),
            }
        }
    };

    match out.format {
        Format::Json => out.json(&report(&moves, &gates, Some(reference))),
        Format::Text => {
            out.data(format!("#{}  {}", reference.id, reference.title));
            match &backend {
                Backend::Local(_) => {
                    out.data(format!(
                        "    branch {branch} at {} (on {} {})",
                        crate::output::abbrev(&reference.head, 7),
                        args.to,
                        short(to.tip)
                    ));
                    let needed = target.protection().required_approvals;
                    let checks = &target.protection().required_checks;
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
                }
                Backend::GitHub(_) => out.data(format!("    {}", reference.url)),
            }
        }
    }
    Ok(Outcome::Success)
}

/// Nothing differs any more: an open request for this promotion is stale.
fn close_stale(
    store: &Store,
    backend: &Backend<'_>,
    args: &PromoteArgs,
    to_branch: &str,
    out: Output,
) -> Result<()> {
    match (backend, backend.open(&args.from, &args.to, to_branch)?) {
        (Backend::Local(forge), Some(Open::Local(record))) => {
            let record = *record;
            let mut request = record.value;
            request.state = RequestState::Closed;
            request.closed_by = Some(identity(store, args.actor.as_name.as_deref()));
            request.closed_at = Some(now());
            let signature = signature(store)?;
            let event = format!("request #{} closed: nothing left to promote", request.id);
            if forge.save(&request, record.tip, &event, &signature, &[])? {
                out.status(format!(
                    "closed request #{}: nothing left to promote",
                    request.id
                ));
            }
        }
        (Backend::GitHub(github), Some(Open::Pull(pr))) => {
            github.close_pull(pr.number).map_err(github_error)?;
            out.status(format!(
                "closed pull request #{}: nothing left to promote",
                pr.number
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Opens the request on the embedded forge, or updates the open one in place.
#[allow(clippy::too_many_arguments)]
fn record_request(
    store: &Store,
    forge: &LocalForge<'_>,
    args: &PromoteArgs,
    open: Option<Record<Request>>,
    to: &Loaded,
    source: Oid,
    (head, branch): (Oid, RefUpdate),
    moves: &[Move],
    (title, body, labels): (String, String, Vec<String>),
    out: Output,
) -> Result<Request> {
    let author = identity(store, args.actor.as_name.as_deref());
    let signature = signature(store)?;
    let now = now();
    let requested = promotion::requested(moves);
    match open {
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
            if !forge.save(&request, record.tip, &event, &signature, &[branch])? {
                return Err(Error::failure(format!(
                    "request #{} changed while it was being updated",
                    request.id
                ))
                .hint("run `ferry promote` again"));
            }
            out.status(format!("updated request #{}", request.id));
            Ok(request)
        }
        None => {
            let request = forge.create(
                Request {
                    id: 0,
                    from: args.from.clone(),
                    to: args.to.clone(),
                    branch: request_branch(&args.from, &args.to),
                    state: RequestState::Open,
                    title,
                    body,
                    labels,
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
                &[branch],
            )?;
            out.status(format!("opened request #{}", request.id));
            Ok(request)
        }
    }
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
