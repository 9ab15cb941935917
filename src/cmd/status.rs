//! `ferry status`: what each environment runs and how its last deploy went; `ferry status
//! set` lets CI systems and agents report checks on commits.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Oid;
use serde::Serialize;

use crate::cmd::shared::{branch_of, identity, now, open_store, short, table};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{CheckState, Forge, Status};
use crate::output::{Format, Output};
use crate::plan::promote::human;
use crate::store::{History, RemoteArgs, Store};
use crate::validate;

/// Show the matrix of apps × environments: pinned versions and each environment's last
/// reported deploy (`ferry/deploy/<env>` on its branch's tip).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry status
  ferry status --format json
  ferry status set dev ci/test success --description \"412 tests passed\"")]
pub struct StatusArgs {
    #[command(subcommand)]
    pub action: Option<StatusAction>,

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
    match args.action {
        Some(StatusAction::Set(set)) => run_set(&store, set, out),
        None => run_matrix(&store, out),
    }
}

fn run_set(store: &Store, args: SetArgs, out: Output) -> Result<Outcome> {
    crate::forge::check_name(&args.check).map_err(|why| {
        Error::usage(why.to_string()).hint("such as `ci/test` or `ferry/deploy/staging`")
    })?;
    let commit = resolve(store, &args.target)?;
    let local = LocalForge::new(store);
    let forge: &dyn Forge = &local;
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

#[derive(Serialize)]
struct EnvStatus {
    env: String,
    branch: String,
    commit: String,
    apps: BTreeMap<String, String>,
    deploy: Option<Status>,
}

fn run_matrix(store: &Store, out: Output) -> Result<Outcome> {
    // The environments and their order, from the first environment branch that validates.
    let heads = store.heads()?;
    let branches: Vec<&String> = heads.keys().filter(|b| !b.starts_with("ferry/")).collect();
    let mut order: Vec<String> = Vec::new();
    for branch in &branches {
        let tip = store.tip(branch, History::Tip)?;
        if let Some(state) = validate::check(&store.tree_source(tip, branch)?).state {
            for path in state.promotion_paths() {
                for env in path {
                    if !order.iter().any(|e| e == env) {
                        order.push(env.to_owned());
                    }
                }
            }
            break;
        }
    }
    if order.is_empty() {
        return Err(Error::failure(format!(
            "`{}` has no valid environment branch",
            store.remote().shown
        ))
        .hint("`ferry init` creates a deployment repository"));
    }
    let local = LocalForge::new(store);
    let forge: &dyn Forge = &local;
    let mut envs = Vec::new();
    for env in &order {
        // Where each lives, as every command finds it (never by a branch's name alone).
        let Ok(branch) = branch_of(store, env) else {
            continue;
        };
        let tip = store.tip(&branch, History::Tip)?;
        let manifest = crate::cmd::shared::manifest_at(store, tip)?.unwrap_or_else(|| {
            crate::model::Manifest {
                version: None,
                description: None,
                artifacts: Default::default(),
            }
        });
        let deploy = forge.statuses(tip)?.remove(&format!("ferry/deploy/{env}"));
        envs.push(EnvStatus {
            env: env.clone(),
            branch: branch.clone(),
            commit: tip.to_string(),
            apps: manifest
                .artifacts
                .iter()
                .map(|(a, p)| (a.clone(), p.shown_version()))
                .collect(),
            deploy,
        });
    }
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
                        human(now - s.at),
                        s.by,
                        if s.description.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", s.description)
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
            }
        }
    }
    Ok(Outcome::Success)
}
