//! The document of `ferry status`: each environment's tip, pins, deploy and, for fleets, each
//! host's report and each app's rollout.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::forge::{Forge, Status};
use crate::identity::now;
use crate::state::branch_of;
use crate::store::{History, Oid, Store};

/// One environment, as `ferry status --format json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    pub env: String,
    pub branch: String,
    pub commit: String,
    pub apps: BTreeMap<String, String>,
    pub deploy: Option<Status>,
    /// Where each app placed on hosts stands in its rollout of the tip.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, AppRollout>,
    /// Each host's report on the tip, app by app (`--hosts`, and always in JSON).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRow>,
}

/// `7/10 hosts at 1.4.0, wave 2 of 3`.
#[derive(Debug, Clone, Serialize)]
pub struct AppRollout {
    pub version: String,
    pub hosts: usize,
    pub deployed: usize,
    pub failed: usize,
    pub wave: usize,
    pub waves: usize,
    pub halted: bool,
    /// What the rollout waits for, or why it halted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl AppRollout {
    /// The rollout in a few words: `7/10 hosts at 1.4.0, wave 2 of 3`.
    pub fn said(&self) -> String {
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
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    pub app: String,
    pub version: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<(usize, usize)>,
    /// Unix seconds; none when the host has not reported on the tip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The environments of `store` in promotion order (dev, staging, prod), from the first
/// environment branch that validates; an error when none does.
pub fn environments(store: &Store) -> Result<Vec<String>> {
    Ok(graph(store)?.order)
}

/// The environments and who promotes into whom.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// In promotion order (dev, staging, prod).
    pub order: Vec<String>,
    /// `(from, to)`: each environment that `promotes_from` another, in `order`.
    pub edges: Vec<(String, String)>,
}

/// The promotion graph, as the first environment branch that validates declares it; an error
/// when none does.
pub fn graph(store: &Store) -> Result<Graph> {
    let paths = crate::state::promotion_paths(store)?;
    let order = crate::state::environments(&paths);
    if order.is_empty() {
        return Err(Error::failure(format!(
            "`{}` has no valid environment branch",
            store.remote().shown
        ))
        .hint("`ferry init` creates a deployment repository"));
    }
    let mut edges: Vec<(String, String)> = Vec::new();
    for path in &paths {
        for pair in path.windows(2) {
            let edge = (pair[0].clone(), pair[1].clone());
            if !edges.contains(&edge) {
                edges.push(edge);
            }
        }
    }
    // In the order of the environments promoted into.
    edges.sort_by_key(|(_, to)| order.iter().position(|e| e == to));
    Ok(Graph { order, edges })
}

/// Every environment's status (or only `only`'s), in promotion order.
pub fn status(store: &Store, forge: &dyn Forge, only: Option<&str>) -> Result<Vec<EnvStatus>> {
    let order = environments(store)?;
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
        let manifest =
            crate::state::manifest_at(store, tip)?.unwrap_or_else(|| crate::model::Manifest {
                version: None,
                description: None,
                artifacts: Default::default(),
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
    Ok(envs)
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
