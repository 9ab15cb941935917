//! `ferry status`: what each environment runs and how its last deploy went; `ferry status
//! set` lets CI systems and agents report checks on commits.

use std::collections::BTreeSet;

use crate::store::Oid;

use crate::cmd::shared::{branch_of, identity, now, open_store, short, table};
use crate::error::{Error, Outcome, Result};
use crate::forge::{CheckState, Forge, Status};
use crate::output::{Format, Output};
use crate::plan::promote::human;
use crate::store::{History, RemoteArgs, Store};

/// Show the matrix of apps × environments: pinned versions, each environment's deploy
/// (`ferry/deploy/<env>` on its branch's tip) and, for fleets, where each app's rollout is.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  ferry status
  ferry status prod --hosts
  ferry status --format json
  ferry status set dev ci/test success --description \"412 tests passed\"
  GITHUB_TOKEN=… ferry status --forge github --remote https://github.com/acme/deploy"
)]
pub struct StatusArgs {
    #[command(subcommand)]
    pub action: Option<StatusAction>,

    /// Only this environment.
    #[arg(value_name = "ENV")]
    pub env: Option<String>,

    /// List each host: app, version, state, wave, since when (its `ferry/deploy/ENV/HOST`
    /// report on the environment's tip).
    #[arg(long)]
    pub hosts: bool,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum StatusAction {
    Set(SetArgs),
}

/// Report a check's state on a commit: an environment's tip, or a revision.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry status set dev ci/test success
  ferry status set 4f2c9e1d… ci/test failure --url https://ci.example.com/run/7")]
pub struct SetArgs {
    /// An environment (its branch's tip) or a commit.
    pub target: String,
    /// The check's name, such as `ci/test`.
    pub check: String,
    /// The check's state.
    #[arg(value_enum)]
    pub state: CheckState,
    /// A short description, shown beside the state.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Where the details are, such as the CI run's page.
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,
}

pub fn run(args: StatusArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = args.forge.open(&store)?;
    match args.action {
        Some(StatusAction::Set(set)) => run_set(&store, forge.as_ref(), set, out),
        None => run_matrix(&store, forge.as_ref(), args.env.as_deref(), args.hosts, out),
    }
}

fn run_set(store: &Store, forge: &dyn Forge, args: SetArgs, out: Output) -> Result<Outcome> {
    crate::forge::check_name(&args.check).map_err(|why| {
        Error::usage(why.to_string()).hint("such as `ci/test` or `ferry/deploy/staging`")
    })?;
    let commit = resolve(store, &args.target)?;
    let by = identity(store, args.actor.as_name.as_deref());
    let status = Status {
        apps: Default::default(),
        state: args.state,
        description: args.description,
        url: args.url,
        by,
        at: now(),
    };
    let reported = serde_json::to_value(&status).expect("JSON");
    forge.set_status(commit, &args.check, &status)?;
    match out.format {
        Format::Json => out.json(&serde_json::json!({
            "target": args.target,
            "commit": commit.to_string(),
            "check": args.check,
            "status": reported,
        })),
        Format::Text => out.data(format!(
            "{}: {} {} on {}",
            args.target,
            args.check,
            args.state.as_str(),
            short(commit)
        )),
    }
    Ok(Outcome::Success)
}

/// An environment's tip, or a commit id.
fn resolve(store: &Store, target: &str) -> Result<Oid> {
    if let Ok(branch) = branch_of(store, target) {
        return Ok(store.tip(&branch, History::Tip)?);
    }
    if let Ok(id) = Oid::from_str(target)
        && target.len() == 40
    {
        return Ok(id);
    }
    store.resolve_revision(target).ok_or_else(|| {
        Error::usage(format!("`{target}` is neither an environment nor a commit"))
            .hint("give an environment name or a full commit id")
    })
}

/// `text` as a terminal shows it safely: what reporters wrote may hold control characters
/// (the hook refuses them in new reports, not in old ones).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn run_matrix(
    store: &Store,
    forge: &dyn Forge,
    only: Option<&str>,
    show_hosts: bool,
    out: Output,
) -> Result<Outcome> {
    let envs = crate::view::status::status(store, forge, only)?;
    match out.format {
        Format::Json => out.json(&envs),
        Format::Text => {
            let apps: BTreeSet<&String> = envs.iter().flat_map(|e| e.apps.keys()).collect();
            let mut rows = vec![
                std::iter::once("APP".to_owned())
                    .chain(envs.iter().map(|e| e.env.to_uppercase()))
                    .collect::<Vec<_>>(),
            ];
            for app in apps {
                rows.push(
                    std::iter::once(app.clone())
                        .chain(
                            envs.iter().map(|e| {
                                e.apps.get(app).cloned().unwrap_or_else(|| "-".to_owned())
                            }),
                        )
                        .collect(),
                );
            }
            for line in table(&rows) {
                out.data(line);
            }
            out.data("");
            let now = now();
            for e in &envs {
                let deploy = match &e.deploy {
                    Some(s) => format!(
                        "{} {} ago by {}{}",
                        s.state.as_str(),
                        human(now.saturating_sub(s.at)),
                        s.by,
                        if s.description.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", printable(&s.description))
                        }
                    ),
                    None => "not reported".to_owned(),
                };
                out.data(format!(
                    "{}: {} at {}, deploy {deploy}",
                    e.env,
                    e.branch,
                    short(Oid::from_str(&e.commit).expect("an id"))
                ));
                for (app, rollout) in &e.rollouts {
                    out.data(format!("  {app}: {}", printable(&rollout.said())));
                }
            }
            if show_hosts {
                for e in &envs {
                    out.data("");
                    out.data(format!("{} hosts:", e.env));
                    let mut rows = vec![
                        ["HOST", "APP", "VERSION", "STATE", "WAVE", "SINCE", ""]
                            .map(str::to_owned)
                            .to_vec(),
                    ];
                    for h in &e.hosts {
                        rows.push(vec![
                            h.host.clone(),
                            h.app.clone(),
                            if h.version.is_empty() {
                                "-".to_owned()
                            } else {
                                printable(&h.version)
                            },
                            h.state.clone(),
                            h.wave.map_or("-".to_owned(), |(k, n)| format!("{k}/{n}")),
                            h.since.map_or("-".to_owned(), |t| {
                                format!("{} ago", human(now.saturating_sub(t)))
                            }),
                            printable(&h.message),
                        ]);
                    }
                    if e.hosts.is_empty() {
                        out.data(
                            "  no app of it is placed on hosts (`hosts` in its environment file)",
                        );
                        continue;
                    }
                    for line in table(&rows) {
                        out.data(format!("  {}", line.trim_end()));
                    }
                }
            }
        }
    }
    Ok(Outcome::Success)
}
