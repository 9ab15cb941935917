//! `ferry protect check|apply`: each environment's declared `protection` (read from its own
//! branch) against a hosted forge's branch protection (GitHub's, Gitea's, GitLab's): drift
//! field by field, or set and confirmed; on the embedded forge, the repository's own hooks.
//! Every environment's declaration is made holdable (the forge asked what it has, the names
//! looked up) before any is applied.

use serde::Serialize;

use crate::cmd::shared::{branch_of, load_env, open_store};
use crate::error::{Error, Outcome, Result};
use crate::forge::github::GitHubError;
use crate::forge::local::LocalForge;
use crate::forge::{ForgeError, ForgeKind};
use crate::output::{Format, Output};
use crate::plan::protection::{Drift, Rules, drift};
use crate::store::{History, RemoteArgs, Store};

/// Branch protection as code: compare it with the forge, or apply it.
///
/// On the local forge (the default), protection is enforced by hooks in the deployment
/// repository itself (a path on this machine): `check` reports them, `apply` installs them.
/// On a hosted forge, each environment's declaration is compared with, or written to, the
/// branch's protection (GitHub's branch protection, Gitea's branch protections, GitLab's
/// protected branches, and on GitLab Premium its approval rules). A rule the forge has no field
/// for (Gitea: code-owner review, linear history, force pushes, deletions, admins; GitLab:
/// checks by name, linear history) or whose field its plan lacks (GitLab Free: approvals,
/// people, code owners) is said, in a warning, not to be enforced there. Every person and team
/// named is looked up before anything is written.
///
/// Each environment's `protection` block, read from that environment's own branch, is
/// translated, on GitHub, into its branch protection of that branch: required approvals, code-owner
/// review, stale-review dismissal, required checks (strict: up to date), who may push without
/// a pull request (`allowed_pushers`), who may update the branch at all (`allowed_mergers`,
/// pushers included), linear history, force pushes, deletions, and whether admins are bound.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry protect check --remote /srv/git/deploy.git         # the local repository's hooks
  ferry protect apply --remote /srv/git/deploy.git         # (re)install them
  GITHUB_TOKEN=… ferry protect check --forge github --remote https://github.com/acme/deploy
  GITHUB_TOKEN=… ferry protect apply --forge github --env prod   # needs an admin token
  GITEA_TOKEN=… ferry protect check --forge gitea --remote https://codeberg.org/acme/deploy")]
pub struct ProtectArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print the drift between each environment's declared protection and the forge's, field
    /// by field; exit 1 on any drift or missing protection.
    #[command(after_help = "Examples:
  ferry protect check --remote /srv/git/deploy.git          # the local repository's hooks
  GITHUB_TOKEN=… ferry protect check --forge github --env prod
  ferry protect check --forge github --repo acme/deploy --format json")]
    Check(Target),
    /// Set each environment's branch protection on the forge, then read it back to confirm.
    /// Idempotent. Needs a token with admin rights on the repository.
    #[command(after_help = "Examples:
  ferry protect apply --remote /srv/git/deploy.git          # (re)install the enforcing hooks
  GITHUB_TOKEN=… ferry protect apply --forge github          # every environment's branch
  GITHUB_TOKEN=… ferry protect apply --forge github --env staging,prod")]
    Apply(Target),
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// Only these environments (default: every environment).
    #[arg(long, short, value_delimiter = ',')]
    pub env: Vec<String>,

    /// The forge whose branch protection is checked or set: the embedded one is the
    /// repository's own `pre-receive` hook (a path on this machine), GitHub its branch
    /// protection API.
    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct EnvReport {
    env: String,
    branch: String,
    /// `in-sync`, `drift`, `missing` (the branch is not protected on the forge) or
    /// `undeclared` (the environment declares no protection: nothing to compare).
    state: &'static str,
    drift: Vec<Drift>,
}

pub fn run(args: ProtectArgs, out: Output) -> Result<Outcome> {
    let (apply, target) = match args.action {
        Action::Check(t) => (false, t),
        Action::Apply(t) => (true, t),
    };
    let store = open_store(&target.remote)?;
    let kind = target.forge.kind(Some(&store.remote().url));
    if kind == ForgeKind::Local {
        return local(&store, apply, &target.env, out);
    }
    let forge = target.forge.open(&store)?;
    let name = kind.name();
    let repo = match kind {
        ForgeKind::Gitea => crate::forge::gitea::locate(&store, target.forge.repo.as_deref())?.0,
        ForgeKind::Gitlab => crate::forge::gitlab::locate(&store, target.forge.repo.as_deref())?.0,
        _ => crate::forge::github::repo_of(&store, target.forge.repo.as_deref())?,
    };
    let owner = forge.owner().unwrap_or_default();
    let envs = environments_of(&store, &target.env)?;

    // Every environment's declaration, as the forge can hold it, before anything is written:
    // a name the forge does not know stops the run with nothing changed.
    let mut planned = Vec::new();
    for env in &envs {
        let loaded = load_env(&store, env, History::Tip)?;
        let declared_env = &loaded.state.environments[env];
        let Some(protection) = &declared_env.protection else {
            planned.push((env, loaded.branch, None));
            continue;
        };
        let declared = Rules::declared(protection, owner).map_err(|e| {
            Error::failure(format!("{env}: {e}")).hint(format!(
                "fix `protection` in `environments/{env}.json` on `{}`",
                loaded.branch
            ))
        })?;
        let branch = loaded.branch;
        let (declared, notes) = forge
            .holdable(&branch, &declared)
            .map_err(|e| match e {
                e @ ForgeError::NoSuchPrincipal { .. } => Error::failure(format!("{env}: {e}"))
                    .hint(format!(
                        "fix `protection` in `environments/{env}.json` on `{branch}` (nothing was changed on {name})"
                    )),
                e => rights_error(e, &repo, &branch, apply),
            })?;
        for note in notes {
            out.stderr(format!("warning: {env}: {note}"));
        }
        planned.push((env, branch, Some(declared)));
    }

    let mut reports = Vec::new();
    for (env, branch, declared) in planned {
        let Some(declared) = declared else {
            reports.push(EnvReport {
                env: env.clone(),
                branch,
                state: "undeclared",
                drift: Vec::new(),
            });
            continue;
        };
        let branch = &branch;
        let refused = |e: ForgeError| rights_error(e, &repo, branch, apply);
        if apply {
            forge.apply_protection(branch, &declared).map_err(refused)?;
        }
        let actual = forge.protection(branch).map_err(refused)?;
        let report = match actual {
            None => EnvReport {
                env: env.clone(),
                branch: branch.clone(),
                state: "missing",
                drift: Vec::new(),
            },
            Some(actual) => {
                let drift = drift(&declared, &actual);
                EnvReport {
                    env: env.clone(),
                    branch: branch.clone(),
                    state: if drift.is_empty() { "in-sync" } else { "drift" },
                    drift,
                }
            }
        };
        if apply && report.state != "in-sync" {
            let fields = if report.drift.is_empty() {
                "the branch is not protected".to_owned()
            } else {
                report
                    .drift
                    .iter()
                    .map(|d| format!("`{}` is {}, not {}", d.field, d.actual, d.declared))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(Error::failure(format!(
                "{env}: {name} did not keep the protection of `{branch}` as set: on reading it back, {fields}"
            ))
            .hint(format!("a rule ferry does not manage may override it (a ruleset, a wildcard rule, an approval rule made by hand) or a plan limit; see the branch's settings on {name}")));
        }
        reports.push(report);
    }

    let failed = reports
        .iter()
        .any(|r| r.state == "missing" || r.state == "drift");
    match out.format {
        Format::Json => out.json(&reports),
        Format::Text => {
            for r in &reports {
                match r.state {
                    "undeclared" => out.data(format!(
                        "{} (`{}`): declares no `protection`: nothing to {}",
                        r.env,
                        r.branch,
                        if apply { "apply" } else { "check" }
                    )),
                    "missing" => out.data(format!(
                        "{} (`{}`): not protected on {name} (run `ferry protect apply --env {}`)",
                        r.env, r.branch, r.env
                    )),
                    "in-sync" if apply => out.data(format!(
                        "{} (`{}`): protection applied and confirmed",
                        r.env, r.branch
                    )),
                    "in-sync" => out.data(format!("{} (`{}`): in sync", r.env, r.branch)),
                    _ => {
                        out.data(format!(
                            "{} (`{}`): {} field(s) drifted",
                            r.env,
                            r.branch,
                            r.drift.len()
                        ));
                        let mut rows = vec![vec![
                            "  field".to_owned(),
                            "declared".to_owned(),
                            format!("on {name}"),
                        ]];
                        rows.extend(r.drift.iter().map(|d| {
                            vec![
                                format!("  {}", d.field),
                                d.declared.clone(),
                                d.actual.clone(),
                            ]
                        }));
                        for line in crate::cmd::shared::table(&rows) {
                            out.data(line);
                        }
                    }
                }
            }
        }
    }
    Ok(if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// The environments to look at: those asked for (each must exist), else all of them, as the
/// first environment's branch lists them.
fn environments_of(store: &Store, asked: &[String]) -> Result<Vec<String>> {
    if !asked.is_empty() {
        for env in asked {
            branch_of(store, env)?;
        }
        return Ok(asked.to_vec());
    }
    let heads = store.heads()?;
    let first = heads
        .keys()
        .find(|b| !b.starts_with("ferry/"))
        .cloned()
        .ok_or_else(|| {
            Error::failure(format!("`{}` has no branches", store.remote().shown))
                .hint("`ferry init` creates a deployment repository")
        })?;
    let tip = store.tip(&first, History::Tip)?;
    let files = store.tree_source(tip, &first)?;
    let state = crate::validate::check(&files).state.ok_or_else(|| {
        Error::failure(format!("the desired state on `{first}` is invalid"))
            .hint("run `ferry validate` on its files, or name the environments with `--env`")
    })?;
    Ok(state.environments.keys().cloned().collect())
}

/// A refusal, said in terms of rights where that is what it means.
fn rights_error(e: ForgeError, repo: &str, branch: &str, apply: bool) -> Error {
    let denied = match &e {
        ForgeError::GitHub(GitHubError::Refused { status, .. }) => matches!(status, 403 | 404),
        ForgeError::Rest(rest) => matches!(rest.status(), Some(403 | 404)),
        _ => false,
    };
    match &e {
        _ if denied => {
            Error::failure(e.to_string()).hint(if apply {
                format!("setting branch protection needs a token with admin rights on `{repo}` (and the branch `{branch}` must exist)")
            } else {
                format!("reading branch protection needs a token with admin rights on `{repo}` (and the branch `{branch}` must exist)")
            })
        }
        _ => Error::from(e),
    }
}

#[derive(Serialize)]
struct LocalReport {
    repository: String,
    /// Where git runs the repository's hooks from.
    hooks: String,
    /// `installed`, `missing`, `foreign` (another program's hook), `not-executable` (git
    /// ignores it) or `broken` (its ferry is gone and none is on PATH).
    hook: &'static str,
    binary: Option<String>,
    /// Whether accepted pushes are logged (ferry's post-receive hook), for `ferry audit`.
    logging: bool,
    environments: Vec<LocalEnv>,
}

#[derive(Serialize)]
struct LocalEnv {
    env: String,
    branch: String,
    protected: bool,
    /// Teams named in `allowed_mergers` / `allowed_pushers`: the local forge has none, so they
    /// match nobody.
    teams: Vec<String>,
}

/// The local forge: the hooks in the repository itself.
fn local(store: &Store, apply: bool, asked: &[String], out: Output) -> Result<Outcome> {
    use crate::store::hook::{self, Installed};
    let forge = LocalForge::new(store);
    let Some(hooks) = forge.hooks() else {
        return Err(Error::usage(format!(
            "`{}` is not a repository on this machine: the local forge's hook lives in the repository itself",
            store.remote().shown
        ))
        .hint("run `ferry protect … --forge local --remote /path/to/deploy.git` on the server that holds it, or pass `--forge github`"));
    };
    let path = hooks.path.clone();
    if !hooks.bare {
        return Err(Error::usage(format!(
            "`{}` is not a bare repository: pushes to it are not received",
            path.display()
        ))
        .hint("protect the bare repository that people push to"));
    }
    let hooks = if apply {
        forge
            .install_hooks()
            .map_err(|e| Error::failure(format!("cannot install the hooks: {e}")))?;
        forge.hooks().expect("on this machine")
    } else {
        hooks
    };
    let usable = |p: &std::path::Path| hook::is_executable(p);
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| usable(&d.join("ferry"))));
    let (state, binary) = match hooks.pre_receive {
        Installed::None => ("missing", None),
        Installed::Foreign => ("foreign", None),
        Installed::NotExecutable => ("not-executable", None),
        Installed::Ferry { binary } => {
            let state = if usable(&binary) || on_path {
                "installed"
            } else {
                "broken"
            };
            (state, Some(binary.display().to_string()))
        }
    };
    let logging = matches!(hooks.post_receive, Installed::Ferry { .. });
    let mut environments = Vec::new();
    for env in environments_of(store, asked)? {
        let loaded = load_env(store, &env, History::Tip)?;
        let protection = &loaded.state.environments[&env].protection;
        let teams = protection
            .iter()
            .flat_map(|p| p.allowed_mergers.iter().chain(&p.allowed_pushers))
            .filter(|name| name.contains('/'))
            .cloned()
            .collect();
        environments.push(LocalEnv {
            protected: protection.is_some(),
            branch: loaded.branch,
            env,
            teams,
        });
    }
    let report = LocalReport {
        repository: path.display().to_string(),
        hooks: hooks.dir.display().to_string(),
        hook: state,
        binary,
        logging,
        environments,
    };
    let ok = report.hook == "installed" && report.logging;
    match out.format {
        Format::Json => out.json(&report),
        Format::Text => {
            let binary = report.binary.as_deref().unwrap_or("ferry");
            out.data(match report.hook {
                "installed" => format!(
                    "{}: pre-receive hook installed in {} (runs {binary})",
                    report.repository, report.hooks
                ),
                "missing" => format!(
                    "{}: no pre-receive hook in {}: pushes are not checked",
                    report.repository, report.hooks
                ),
                "foreign" => format!(
                    "{}: the pre-receive hook in {} is another program's: make it run `ferry hook pre-receive` with the same input",
                    report.repository, report.hooks
                ),
                "not-executable" => format!(
                    "{}: the pre-receive hook in {} is not executable: git ignores it, and pushes are not checked",
                    report.repository, report.hooks
                ),
                _ => format!(
                    "{}: the pre-receive hook runs {binary}, which is gone, and no `ferry` is on PATH: every push is refused",
                    report.repository
                ),
            });
            if !report.logging {
                out.data("  pushes are not logged for `ferry audit` (no ferry post-receive hook)");
            }
            for e in &report.environments {
                out.data(format!(
                    "  {} (`{}`): {}",
                    e.env,
                    e.branch,
                    if e.protected {
                        "protected as its file declares"
                    } else {
                        "declares no `protection`: anyone who can push may change it"
                    }
                ));
                if !e.teams.is_empty() {
                    out.data(format!(
                        "    teams match nobody on the local forge, which has none: {}; list people",
                        e.teams.join(", ")
                    ));
                }
            }
            if !ok {
                out.status("`ferry protect apply --forge local` installs ferry's hooks");
            }
        }
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}
