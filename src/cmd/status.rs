//! `ferry status`: what each environment runs and how its last deploy went; `ferry status
//! set` lets CI systems and agents report checks on commits.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Oid;
use serde::Serialize;

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

#[derive(Serialize)]
struct EnvStatus {
    env: String,
    branch: String,
    commit: String,
    apps: BTreeMap<String, String>,
    deploy: Option<Status>,
    /// Where each app placed on hosts stands in its rollout of the tip.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    rollouts: BTreeMap<String, AppRollout>,
    /// Each host's report on the tip, app by app (`--hosts`, and always in JSON).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<HostRow>,
}

/// `7/10 hosts at 1.4.0, wave 2 of 3`.
#[derive(Serialize)]
struct AppRollout {
    version: String,
    hosts: usize,
    deployed: usize,
    failed: usize,
    wave: usize,
    waves: usize,
    halted: bool,
    /// What the rollout waits for, or why it halted.
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

impl AppRollout {
    fn said(&self) -> String {
        let at = format!("{}/{} hosts at {}", self.deployed, self.hosts, self.version);
        if self.halted {
            format!("{at}, {}", self.message)
        } else if self.deployed + self.failed == self.hosts && self.wave == self.waves {
            match self.failed {
                0 => at,
                n => format!("{at}, {n} failed"),
            }
        } else {
            format!("{at}, wave {} of {}", self.wave, self.waves)
        }
    }
}

/// One app on one host, as the host's status on the tip says.
#[derive(Serialize)]
struct HostRow {
    host: String,
    app: String,
    version: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    wave: Option<(usize, usize)>,
    /// Unix seconds; none when the host has not reported on the tip.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

/// `text` as a terminal shows it safely: what reporters wrote may hold control characters
/// (the hook refuses them in new reports, not in old ones).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The rollouts of `env`'s apps on `tip` and each host's rows, from the statuses on it.
fn fleet(
    store: &Store,
    env: &str,
    branch: &str,
    tip: Oid,
    statuses: &crate::forge::Statuses,
) -> (BTreeMap<String, AppRollout>, Vec<HostRow>) {
    use crate::agent::rollout;
    let mut rollouts = BTreeMap::new();
    let mut rows = Vec::new();
    // An environment whose state does not load has no rollout to show: `validate` says why.
    let Ok(loaded) = crate::state::load_at(store, env, branch, tip) else {
        return (rollouts, rows);
    };
    let state = &loaded.state;
    let settings = &state.environments[env];
    let now = now();
    for (name, app) in settings.apps.iter().flatten() {
        let Some(artifact) = state.manifest.artifacts.get(name) else {
            continue;
        };
        let plan = rollout::Plan::new(env, name, app, settings.rollout.as_ref(), statuses);
        if plan.hosts.is_empty() {
            continue;
        }
        let progress = rollout::progress(env, &plan, statuses, now);
        let waves = plan.waves();
        rollouts.insert(
            name.clone(),
            AppRollout {
                version: artifact.shown_version(),
                hosts: progress.hosts,
                deployed: progress.deployed,
                failed: progress.failed.len(),
                wave: progress.open,
                waves: progress.waves,
                halted: progress.halted,
                message: if progress.halted {
                    progress
                        .halt_message(name)
                        .trim_start_matches(&format!("{name}: "))
                        .to_owned()
                } else {
                    String::new()
                },
            },
        );
        for host in plan.hosts.iter() {
            let wave = waves
                .iter()
                .position(|w| w.contains(host))
                .map(|w| (w + 1, waves.len()));
            let reported = statuses
                .get(&rollout::host_check(env, host))
                .and_then(|s| s.apps.get(name).map(|a| (s, a)));
            rows.push(match reported {
                Some((_, a)) => HostRow {
                    host: host.clone(),
                    app: name.clone(),
                    version: a.version.clone(),
                    state: a.state.as_str().to_owned(),
                    wave: a.wave.or(wave),
                    since: Some(a.since),
                    message: a.message.clone(),
                },
                None => {
                    let (state, since, message) = rollout::app_state(env, statuses, host, name)
                        .map(|(s, at, m)| (s.as_str().to_owned(), Some(at), m.to_owned()))
                        .unwrap_or_else(|| ("not reported".to_owned(), None, String::new()));
                    HostRow {
                        host: host.clone(),
                        app: name.clone(),
                        version: String::new(),
                        state,
                        wave,
                        since,
                        message,
                    }
                }
            });
        }
    }
    rows.sort_by(|a, b| (&a.host, &a.app).cmp(&(&b.host, &b.app)));
    (rollouts, rows)
}

fn run_matrix(
    store: &Store,
    forge: &dyn Forge,
    only: Option<&str>,
    show_hosts: bool,
    out: Output,
) -> Result<Outcome> {
    // The environments and their order, from the first environment branch that validates.
    let order = crate::state::environments(&crate::state::promotion_paths(store)?);
    if order.is_empty() {
        return Err(Error::failure(format!(
            "`{}` has no valid environment branch",
            store.remote().shown
        ))
        .hint("`ferry init` creates a deployment repository"));
    }
    if let Some(env) = only
        && !order.iter().any(|e| e == env)
    {
        return Err(Error::usage(format!(
            "`{env}` is not an environment of `{}`",
            store.remote().shown
        ))
        .hint(format!("its environments: {}", order.join(", "))));
    }
    let mut envs = Vec::new();
    for env in order
        .iter()
        .filter(|e| only.is_none_or(|o| o == e.as_str()))
    {
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
        // A deploy counts only from its environment's reporters (warned about otherwise).
        let statuses = crate::promotion::gather::trusted_statuses(store, forge.statuses(tip)?)?;
        let deploy = statuses.get(&format!("ferry/deploy/{env}")).cloned();
        let (rollouts, hosts) = fleet(store, env, &branch, tip, &statuses);
        envs.push(EnvStatus {
            rollouts,
            hosts,
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
