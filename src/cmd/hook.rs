//! `ferry hook pre-receive`: what the hook ferry installs in a local deployment repository
//! runs, for git, on every push (see [`crate::enforce`]).

use std::io::Read;

use crate::enforce::{self, HookRepository, Update};
use crate::error::{Error, Outcome, Result};
use crate::output::Output;

/// Git hooks that enforce branch protection in a deployment repository (run by git).
///
/// `ferry init` and `ferry protect apply --forge local` install a `pre-receive` hook that runs
/// `ferry hook pre-receive`. It reads git's `OLD NEW REF` lines on stdin and refuses the whole
/// push, saying why to the pusher, when an update breaks the protection declared on the
/// environment's branch or rewrites ferry's records. The pusher is `REMOTE_USER` (HTTP),
/// `FERRY_PUSHER` (ssh, set per key in authorized_keys) or the local login (a path).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry protect apply --forge local --remote /srv/git/deploy.git   # installs the hook
  # a hook of your own can call ferry's:
  ferry hook pre-receive < /dev/stdin || exit 1")]
pub struct HookArgs {
    #[command(subcommand)]
    pub hook: HookKind,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum HookKind {
    /// Judge a push: git's `OLD NEW REF` lines on stdin; exit 1 refuses all of it.
    #[command(after_help = "Examples:
  ferry hook pre-receive            # as hooks/pre-receive, which git runs with the push on stdin
  REMOTE_USER=alice ferry hook pre-receive < push.txt   # judge a recorded push by hand")]
    PreReceive,
    /// Log an accepted push (who, when, which refs moved) under `refs/ferry/pushes`, for
    /// `ferry audit` (a push of statuses only is not: its records say who reported).
    #[command(after_help = "Examples:
  ferry hook post-receive           # as hooks/post-receive, after git accepted the push
  ferry audit prod                  # reads what it logged")]
    PostReceive,
}

pub fn run(args: HookArgs, _out: Output) -> Result<Outcome> {
    match args.hook {
        HookKind::PreReceive => pre_receive(),
        HookKind::PostReceive => post_receive(),
    }
}

fn post_receive() -> Result<Outcome> {
    let (repo, updates) = input()?;
    let pusher = enforce::pusher_of_this_push();
    let now = crate::cmd::shared::now();
    let login = enforce::login_of_this_push();
    // A push of statuses only (an agent's report, CI's check) is logged by its records: each
    // of their commits names its reporter, whom the pre-receive hook held to be the pusher.
    // Logging it again would make every host of a wave contend for the log.
    let reports_only = updates.iter().all(|u| {
        u.refname.starts_with(crate::forge::local::STATUSES)
            || u.refname.starts_with(crate::forge::local::HOSTS)
    });
    if reports_only {
        return Ok(Outcome::Success);
    }
    if let Err(e) = repo.record_push(pusher.as_deref(), login.as_deref(), &updates, now) {
        // The push has landed: say what could not be logged, and do not fail it.
        eprintln!("ferry: the push landed, but could not be logged: {e}");
    }
    trigger_agents(&repo, pusher.as_deref(), &updates);
    Ok(Outcome::Success)
}

/// Tells the agents of each environment whose branch moved (`agent.trigger_urls` in its file,
/// as it is now), with a GitHub-style push event signed with the secret in the variable its
/// `trigger_secret` names, or in the file `NAME_FILE` names (as the agent reads its own). A
/// trigger that cannot be delivered never fails the push: the agents' polling still converges.
fn trigger_agents(repo: &HookRepository, pusher: Option<&str>, updates: &[Update]) {
    for u in updates.iter().filter(|u| !u.new.is_zero()) {
        let Some(branch) = u.refname.strip_prefix("refs/heads/") else {
            continue;
        };
        let Some(env) = repo.environment_at(u.new, branch) else {
            continue;
        };
        if env.agent.trigger_urls.is_empty() {
            continue;
        }
        let repository = repo.name();
        let event = serde_json::json!({
            "ref": u.refname,
            "before": u.old.to_string(),
            "after": u.new.to_string(),
            "repository": { "name": repository, "full_name": repository },
            "pusher": { "name": pusher.unwrap_or("unknown") },
        });
        let body = serde_json::to_vec(&event).expect("events serialize");
        // As the agents read theirs: the variable, or the file `NAME_FILE` names.
        let secret = env
            .agent
            .trigger_secret
            .as_deref()
            .and_then(crate::secret::from_env_or_warn);
        let mut headers = vec![("X-GitHub-Event", "push".to_owned())];
        if let Some(secret) = &secret {
            headers.push((
                "X-Hub-Signature-256",
                crate::agent::http::signature(secret.as_bytes(), &body),
            ));
        }
        let timeout = std::time::Duration::from_secs(2);
        let answers =
            crate::net::http::post_each(&env.agent.trigger_urls, &body, &headers, timeout);
        for (url, answer) in env.agent.trigger_urls.iter().zip(answers) {
            match answer {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(status) => eprintln!(
                    "ferry: the {} agent at {url} answered HTTP {status}",
                    env.name
                ),
                Err(e) => eprintln!("ferry: could not tell the {} agent at {url}: {e}", env.name),
            }
        }
    }
}

/// The hook's input lines, and the repository git runs it in.
fn input() -> Result<(HookRepository, Vec<Update>)> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::usage("cannot read the hook's input").with_source(e))?;
    let mut updates = Vec::new();
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        updates.push(Update::parse(line).ok_or_else(|| {
            Error::usage(format!("`{line}` is not a pre-receive line")).hint(
                "git gives `OLD NEW REFNAME` per line; this command is meant to be run by git",
            )
        })?);
    }
    let repo = HookRepository::open_from_env().map_err(|e| {
        Error::usage(e.to_string()).hint("git runs this from the repository's hooks")
    })?;
    Ok((repo, updates))
}

fn pre_receive() -> Result<Outcome> {
    let (repo, updates) = input()?;
    let pusher = enforce::pusher_of_this_push();
    let refusals = repo.check(pusher.as_deref(), &updates);
    if refusals.is_empty() {
        return Ok(Outcome::Success);
    }
    eprintln!(
        "ferry: push refused ({} is pushing):",
        pusher.as_deref().unwrap_or("an unknown pusher")
    );
    for refusal in &refusals {
        eprintln!("  {refusal}");
    }
    Ok(Outcome::Failure)
}
