//! `ferry agent`: the pull agent of one environment (see [`crate::agent`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::agent::report::{ForgeStatuses, Reporter};
use crate::agent::source::{DesiredSource, GitBranch, OciTag};
use crate::agent::{Agent, Backoff, Outcome, Settings, http, signal};
use crate::cmd::shared::{branch_of, identity, open_store};
use crate::deploy::fetch::Cache;
use crate::deploy::unpack::Limits;
use crate::error::{Error, Outcome as Exit, Result};
use crate::forge::local::LocalForge;
use crate::oci::{OciUrl, Registries};
use crate::output::{Format, Output};
use crate::store::RemoteArgs;

/// Run an environment's pull agent: deploy the artifacts its branch pins, here, continuously.
///
/// Every interval the agent reads the environment's branch (one ref advertisement; a shallow
/// fetch only when it moved) and validates the whole desired state: an invalid one is never
/// deployed. Each app this host runs is fetched into the state dir's cache while its SHA-256 is
/// verified, unpacked into a new release beside its live path (`--root` + `deployment_path`),
/// and the live path, a link, is switched to it atomically; then `activate` runs and
/// `healthcheck_url` must answer 2xx. A failure switches back to the previous release and is
/// not retried until the branch moves (or `ferry agent retry`). When nothing is to deploy, each
/// release is checked for drift (a changed link, a modified, added or deleted file) and
/// healed. The outcome goes to `status.json` in the state dir and, as the commit status
/// `ferry/deploy/ENV`, to the forge. SIGTERM finishes the step in flight, then exits.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:
  ferry agent --env prod --remote https://git.example.com/deploy.git --root /
  ferry agent --env dev --remote /srv/git/deploy.git --root /tmp/sandbox --once
  ferry agent --env prod --root / --host web-1 --interval 1m
  ferry agent --env prod --root / --listen 0.0.0.0:9480 --webhook-secret-env HOOK_SECRET
  ferry agent retry --env prod        # try a revision that failed again"
)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub action: Option<AgentAction>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentAction {
    /// Forget the revision that failed, so the running agent tries it again.
    #[command(after_help = "Examples:
  ferry agent retry --env prod
  ferry agent retry --env dev --state-dir /var/lib/ferry-agent/dev")]
    Retry {
        /// The environment.
        #[arg(long, short)]
        env: String,
        /// The agent's state dir (default: as the agent's).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The environment to deploy.
    #[arg(long, short, required = true)]
    pub env: Option<String>,

    /// Prefixes every `deployment_path`: `/` on a real host; an existing directory to sandbox
    /// the agent.
    #[arg(long, value_name = "DIR", required = true)]
    pub root: Option<PathBuf>,

    /// Where the agent keeps its cache, releases' records and `status.json`. Default:
    /// `$XDG_STATE_HOME/ferry/agent/ENV` (`~/.local/state/ferry/agent/ENV`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Time between reconciles (`30s`, `5m`). Default: the environment's `agent.interval`.
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<crate::model::Duration>,

    /// Reconcile once and exit: 0 when converged, 1 otherwise (for cron and CI).
    #[arg(long)]
    pub once: bool,

    /// The host this agent serves: it deploys the apps whose `hosts` name it (and those that
    /// name no host), and reports as `ferry/deploy/ENV/NAME`. Default: the machine's hostname.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Releases kept per app, the live and the previous one included.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep: usize,

    /// Longest one artifact download may take in all (`30m`, `2h`); a download also stops when
    /// it makes under 30 KiB in 30s, or nothing in 60s.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub download_timeout: crate::model::Duration,

    /// Do not report `ferry/deploy/ENV` to the forge (for a read-only remote).
    #[arg(long)]
    pub no_report: bool,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    /// Serve `/metrics`, `/healthz`, `/readyz` and `POST /trigger` on this address
    /// (`127.0.0.1:9480`, `0.0.0.0:9480`). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// The variable holding the secret `POST /trigger` must be signed with (GitHub's
    /// `X-Hub-Signature-256`), or `NAME_FILE` naming a file that holds it. Default:
    /// `FERRY_WEBHOOK_SECRET` (or `FERRY_WEBHOOK_SECRET_FILE`), else triggers are unsigned.
    /// Never the secret itself: a command line is visible to every user in `ps`.
    #[arg(long, value_name = "NAME")]
    pub webhook_secret_env: Option<String>,

    /// Refused: the secret on the command line is visible in `ps` (see
    /// `--webhook-secret-env`).
    #[arg(long, hide = true, value_name = "SECRET")]
    pub webhook_secret: Option<String>,

    /// Read the desired state from a registry instead of git: the artifact `ferry publish`
    /// pushes, at a tag (`oci://HOST/REPO:ENV`; the tag defaults to ENV). One manifest `HEAD`
    /// per interval; a pull only when its digest changed. Statuses still go to the forge:
    /// `--remote` for the local one, or `--forge github --repo OWNER/NAME`.
    #[arg(long, value_name = "oci://HOST/REPO:TAG")]
    pub source: Option<String>,

    /// Deploy only commits signed by a key in FILE: an ssh `allowed_signers` list
    /// (`PRINCIPALS KEYTYPE BASE64` per line, as `git verify-commit` reads with
    /// `gpg.ssh.allowedSignersFile`) and/or armored OpenPGP public keys (`gpg --armor
    /// --export`). A tip that is unsigned, badly signed or signed by another key is not
    /// deployed: the running release stays, and the agent reports why. With `--source`, the
    /// published state must carry its signed commit, and its files must make that commit's
    /// tree.
    #[arg(long, value_name = "FILE")]
    pub trusted_keys: Option<PathBuf>,

    #[command(flatten)]
    pub registry: crate::oci::RegistryArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

fn default_state_dir(env: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ferry").join("agent").join(env)
}

pub fn run(args: AgentArgs, out: Output) -> Result<Exit> {
    if let Some(AgentAction::Retry { env, state_dir }) = args.action {
        let state_dir = state_dir.unwrap_or_else(|| default_state_dir(&env));
        if !state_dir.join("agent.json").exists() {
            return Err(Error::failure(format!(
                "no agent state in `{}`: has an agent for `{env}` run with this state dir?",
                state_dir.display()
            ))
            .hint("pass the agent's `--state-dir`"));
        }
        let failed = Agent::retry(&state_dir).map_err(|e| Error::failure(e.to_string()))?;
        out.data(match failed {
            Some(revision) => format!(
                "{env}: revision {} will be tried again",
                crate::output::abbrev(&revision, 7)
            ),
            None => format!("{env}: no failed revision to retry"),
        });
        return Ok(Exit::Success);
    }
    let args = args.run;
    let Some(env) = args.env.clone() else {
        return Err(Error::usage(
            "`--env ENV` is needed: the environment this agent deploys",
        ));
    };
    let host = match args.host.clone().or_else(crate::identity::hostname) {
        Some(host) => host,
        None => {
            return Err(
                Error::usage("`--host NAME` is needed: this machine has no hostname")
                    .hint("the host's name as the environment's apps list it in `hosts`"),
            );
        }
    };
    let check = format!("ferry/deploy/{env}/{host}");
    if check.chars().count() > crate::model::CHECK_NAME_LIMIT {
        return Err(Error::usage(format!(
            "`{host}` cannot name a host of `{env}`: its deploy status `{check}` is longer than a check name may be ({} characters)",
            crate::model::CHECK_NAME_LIMIT
        ))
        .hint("name the host by a shorter name, in `--host` and in the environment's `hosts`"));
    }
    if !crate::model::is_host_name(&host) {
        return Err(Error::usage(format!(
            "`{host}` cannot name a host: it names the host's deploy status, `ferry/deploy/ENV/HOST`"
        ))
        .hint("letters, digits, `.`, `_`, `:` and `-`, starting with a letter or digit, at most 100; pass `--host NAME`"));
    }
    let Some(root) = args.root.clone() else {
        return Err(
            Error::usage("`--root DIR` is needed: it prefixes every `deployment_path`")
                .hint("`--root /` on a real host; a directory to sandbox the agent"),
        );
    };
    // The root must exist: a typo must not deploy into a new tree nobody serves from. Links
    // to releases are absolute: so is the root.
    let root = match std::fs::metadata(&root) {
        Ok(meta) if meta.is_dir() => std::fs::canonicalize(&root)
            .map_err(|e| Error::usage(format!("`--root {}`: {e}", root.display())))?,
        Ok(_) => {
            return Err(
                Error::usage(format!("`--root {}` is not a directory", root.display()))
                    .hint("`--root /` on a real host; an existing directory to sandbox the agent"),
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::usage(format!(
                "`--root {}` does not exist",
                root.display()
            ))
            .hint(format!(
                "`--root /` on a real host; to sandbox the agent in a directory, create it first: `mkdir -p {}`",
                root.display()
            )));
        }
        Err(e) => {
            return Err(Error::usage(format!("`--root {}`: {e}", root.display())));
        }
    };
    if let Some(interval) = args.interval
        && interval.as_std() < crate::model::MIN_INTERVAL
    {
        return Err(Error::usage(format!(
            "`--interval {interval}` is under a second: the agent would poll without a pause"
        ))
        .hint("such as `30s` or `5m`"));
    }
    if args.webhook_secret.is_some() {
        return Err(Error::usage(
            "`--webhook-secret` would show the secret to every user in `ps`",
        )
        .hint(
            "put it in `FERRY_WEBHOOK_SECRET`, or in a file `FERRY_WEBHOOK_SECRET_FILE` names; `--webhook-secret-env NAME` reads another variable",
        ));
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&env));
    // The agent's own cache: it holds the store for its whole life.
    let mut remote = args.remote.clone();
    if remote.cache_dir.is_none() {
        remote.cache_dir = Some(state_dir.join("git"));
    }
    signal::install();
    // A long-running process that idles: small pages keep its resident memory to what it
    // uses (transparent huge pages round every arena up to 2 MiB).
    // SAFETY: prctl with constant arguments changes only this process's settings.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // The secret triggers are signed with: this agent's `POST /trigger` takes it, and the
    // nudges it sends its fleet's agents when its report finishes a wave carry it.
    let secret = match &args.listen {
        Some(_) => webhook_secret(args.webhook_secret_env.as_deref())?,
        None => webhook_secret(args.webhook_secret_env.as_deref())
            .ok()
            .flatten(),
    };
    let endpoint = match &args.listen {
        Some(addr) => {
            let open = secret.is_none();
            let shared = http::Shared::new(&env, secret.clone());
            let bound = http::serve(addr, shared.clone()).map_err(|e| {
                Error::usage(format!("cannot listen on `{addr}`: {e}"))
                    .hint("an address and port such as `127.0.0.1:9480`")
            })?;
            tracing::info!("{env}: listening on http://{bound}");
            if open && !bound.ip().is_loopback() {
                tracing::warn!(
                    "{env}: `POST /trigger` on http://{bound} takes unsigned requests from anyone who reaches it (each only makes the agent reconcile now); set FERRY_WEBHOOK_SECRET or FERRY_WEBHOOK_SECRET_FILE to require GitHub's signature"
                );
            }
            Some(shared)
        }
        None => None,
    };
    let registries = std::sync::Arc::new(Registries::new(args.registry.access()));
    let source = match &args.source {
        Some(source) => {
            let mut url = OciUrl::parse(source).map_err(|e| {
                Error::usage(format!("`--source`: {e}"))
                    .hint(format!("such as `oci://registry.example.com/deploy:{env}`"))
            })?;
            if url.tag.is_none() && url.digest.is_none() {
                url = url.at_tag(&env);
            }
            Some(url)
        }
        None => None,
    };
    // With a registry source, the git store is only where local statuses go: opened only
    // when named.
    let store = match &source {
        Some(_) if args.remote.remote.is_none() => None,
        _ => Some(open_store(&remote)?),
    };
    let reporter: Option<Box<dyn Reporter>> = match (
        args.no_report,
        args.forge
            .kind(store.as_ref().map(|s| s.remote().url.as_str())),
        &store,
    ) {
        (true, ..) => None,
        (false, crate::forge::ForgeKind::Local, Some(store)) => Some(Box::new(ForgeStatuses::new(
            Box::new(LocalForge::new(store)),
            identity(store, None),
        ))),
        (false, crate::forge::ForgeKind::Local, None) => {
            tracing::info!(
                "{env}: statuses are not reported (no `--remote` for the local forge, nor `--forge github`)"
            );
            None
        }
        (false, crate::forge::ForgeKind::Github, store) => {
            let repo = match (store, args.forge.repo.as_deref()) {
                (_, Some(repo)) => repo.to_owned(),
                (Some(store), None) => crate::forge::github::repo_of(store, None)?,
                (None, None) => {
                    return Err(Error::usage(
                        "`--forge github` with `--source` needs `--repo OWNER/NAME`",
                    ));
                }
            };
            let github = crate::forge::github::GitHub::new(&repo).map_err(Error::from)?;
            Some(Box::new(ForgeStatuses::new(Box::new(github), "github")))
        }
        (false, kind, Some(store)) => Some(Box::new(ForgeStatuses::new(
            crate::forge::open(store, kind, args.forge.repo.as_deref())?,
            kind.name(),
        ))),
        (false, kind, None) => {
            return Err(Error::usage(format!(
                "reporting to {} needs `--remote` (the repository's URL)",
                kind.name()
            )));
        }
    };
    let trusted = match &args.trusted_keys {
        Some(path) => {
            let trusted = crate::cmd::shared::trusted_keys(path)?;
            if trusted.is_empty() {
                return Err(Error::usage(format!(
                    "{} lists no key for git commits: no commit could be deployed",
                    path.display()
                ))
                .hint("add `PRINCIPAL ssh-ed25519 AAAA…` lines (an entry with `namespaces=` must include `git`), or an armored OpenPGP public key"));
            }
            Some(trusted)
        }
        None => None,
    };
    let source: Box<dyn DesiredSource> = match source {
        Some(url) => {
            let registry = registries.get(&url.registry).map_err(Error::from)?;
            tracing::info!("{env}: reading the desired state from {url}");
            let tag = OciTag::new(url, registry);
            Box::new(match trusted {
                Some(trusted) => tag.trusting(trusted),
                None => tag,
            })
        }
        None => {
            let store = store.as_ref().expect("opened without --source");
            let branch = GitBranch::new(store, branch_of(store, &env)?);
            Box::new(match trusted {
                Some(trusted) => branch.trusting(trusted),
                None => branch,
            })
        }
    };
    let mut cache = Cache::new(state_dir.join("artifacts")).with_registries(registries.clone());
    cache.bounds.deadline = args.download_timeout.as_std();
    cache.bounds.stop = signal::stopping;
    let purged = cache.purge_temporaries();
    if purged > 0 {
        tracing::info!("{env}: removed {purged} partial download(s) a killed agent left");
    }
    let mut agent = Agent::new(
        source,
        reporter,
        cache,
        Settings {
            env: env.clone(),
            root,
            state_dir,
            host: host.clone(),
            keep: args.keep,
            limits: Limits::default(),
            nudge: Some(crate::agent::nudge::Nudge::new(secret)),
        },
    )
    .map_err(|e| Error::failure(e.to_string()))?;

    let mut backoff = Backoff::default();
    loop {
        let started = std::time::Instant::now();
        let outcome = agent.reconcile();
        if let Some(shared) = &endpoint {
            let revision = agent.last_report().and_then(|r| r.revision.clone());
            shared.record(
                outcome.state(),
                started.elapsed().as_secs_f64(),
                revision,
                agent.drift_events(),
                agent.artifact_bytes(),
            );
            shared.record_signature(agent.signature().map(crate::sign::Verdict::state));
        }
        match &outcome {
            Outcome::Converged => tracing::info!("{env}: converged"),
            Outcome::Failed(m) => tracing::warn!("{env}: failed: {m}"),
            Outcome::Stalled(m) => tracing::warn!("{env}: stalled: {m}"),
            Outcome::Transient(m) => tracing::warn!("{env}: retrying: {m}"),
            Outcome::Waiting(m) => tracing::info!("{env}: {m}"),
        }
        if args.once {
            if out.format == Format::Json {
                if let Some(report) = agent.last_report() {
                    out.json(report);
                }
            } else {
                out.data(match &outcome {
                    Outcome::Converged => format!("{env}: deployed"),
                    Outcome::Failed(m) => format!("{env}: failed: {m}"),
                    Outcome::Stalled(m) => format!("{env}: stalled: {m}"),
                    Outcome::Transient(m) => format!("{env}: retrying: {m}"),
                    Outcome::Waiting(m) => format!("{env}: {m}"),
                });
            }
            return Ok(if outcome == Outcome::Converged {
                Exit::Success
            } else {
                Exit::Failure
            });
        }
        let interval = args
            .interval
            .map(|d| d.as_std())
            .or(agent.interval)
            .unwrap_or(Duration::from_secs(30));
        // A host waiting for its wave reads again at half the interval, counted from when this
        // reconcile began (its report may have queued behind a whole wave's at the server):
        // the wave opens when the reports land, and polling no sooner would add up to an
        // interval per wave.
        let wait = if agent.wave_ahead() {
            backoff
                .next(&outcome, agent.disk_full(), interval / 2, random())
                .saturating_sub(started.elapsed())
        } else {
            // Each retry on a full disk fills it again: a longer wait, whatever the interval.
            backoff.next(&outcome, agent.disk_full(), interval, random())
        };
        let wake = || endpoint.as_ref().is_some_and(|s| s.take_trigger());
        if !signal::sleep(wait, &wake) {
            tracing::info!("{env}: stopping");
            return Ok(Exit::Success);
        }
    }
}

/// The variable a trigger's secret is read from when `--webhook-secret-env` names none.
const WEBHOOK_SECRET: &str = "FERRY_WEBHOOK_SECRET";

/// The secret `POST /trigger` must be signed with: in the variable `name` (default
/// [`WEBHOOK_SECRET`]) or the file `name_FILE` names. None when the default is unset; a
/// variable named on purpose and unset is an error, not an unsigned endpoint.
fn webhook_secret(name: Option<&str>) -> Result<Option<String>> {
    let secret = crate::secret::from_env(name.unwrap_or(WEBHOOK_SECRET))
        .map_err(|e| Error::usage(e.to_string()))?;
    match (name, &secret) {
        (Some(name), None) => Err(Error::usage(format!(
            "`--webhook-secret-env {name}`: neither `{name}` nor `{name}_FILE` is set"
        ))
        .hint(format!(
            "set `{name}` to the secret, or `{name}_FILE` to a file holding it"
        ))),
        _ => Ok(secret),
    }
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
