//! `ferry init`: create a deployment repository with one branch per environment.

use serde::Serialize;
use serde_json::json;

use crate::cmd::shared::{short, signature};
use crate::error::{Error, Outcome, Result};
use crate::output::{Format, Output};
use crate::schema::FILES;
use crate::store::{RefUpdate, Remote, RemoteArgs, Store, UpdateOutcome};
use crate::validate::{self, check_branch_name};

/// Create a deployment repository: one branch per environment, each holding a valid
/// `manifest.json`, the environment files and the schemas.
///
/// If the remote is a path that does not exist, a new bare repository is created there (the
/// embedded default: no server, no account). A network remote must exist and may be empty.
/// Refuses to overwrite existing branches (exit 1, nothing changed) unless `--force`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry init --remote ./deploy.git                      # dev, staging, prod
  ferry init --remote ./deploy.git --envs dev,qa,prod
  ferry init --remote git@github.com:acme/deploy.git")]
pub struct InitArgs {
    /// The environments, in promotion order (each promotes from the one before it).
    #[arg(long, value_delimiter = ',', default_value = "dev,staging,prod")]
    pub envs: Vec<String>,

    /// Overwrite environment branches that already exist.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct InitReport<'a> {
    remote: &'a str,
    environments: &'a [String],
    commit: String,
    created_repository: bool,
    /// The pre-receive hook installed in a repository on this machine.
    hook: Option<String>,
}

pub fn run(args: InitArgs, out: Output) -> Result<Outcome> {
    let envs = check_envs(&args.envs)?;
    let remote = Remote::resolve(&args.remote)?;
    let create = remote.path.as_ref().is_some_and(|p| !p.exists());
    let store = if create {
        Store::init_local(&remote, &envs[0], &Remote::cache_root(&args.remote))?
    } else {
        Store::open(&remote, &Remote::cache_root(&args.remote))?
    };

    let heads = store.heads()?;
    let existing: Vec<&String> = envs.iter().filter(|e| heads.contains_key(*e)).collect();
    if !existing.is_empty() && !args.force {
        let names: Vec<&str> = existing.iter().map(|s| s.as_str()).collect();
        return Err(Error::failure(format!(
            "`{}` already has branch{} {}",
            remote.shown,
            if names.len() == 1 { "" } else { "es" },
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("nothing was changed; `--force` overwrites them"));
    }

    let files = initial_files(&envs);
    let signature = signature(&store)?;
    let message = format!(
        "ferry init: {}\n\nOne branch per environment, each with manifest.json, the environment files\nand the JSON Schemas.",
        envs.join(" → ")
    );
    let commit = store.write_commit(None, &files, &message, &signature, &signature)?;

    // What is about to land must validate, like anything ferry commits.
    let checked = validate::check(&store.tree_source(commit, &envs[0])?);
    if let Some(error) = checked.report.errors.first() {
        return Err(Error::failure(format!(
            "internal error: the initial state is invalid: {}",
            error.message
        )));
    }

    // A repository on this machine enforces the declared protection on every push (and logs
    // it, this first one included).
    let hook = match &remote.path {
        Some(path) if store.is_bare() => Some(store.install_hook().map_err(|e| {
            Error::failure(format!(
                "the branches are initialized, but the pre-receive hook could not be installed: {e}"
            ))
            .hint(format!(
                "fix it, then `ferry protect apply --forge local --remote {}`",
                path.display()
            ))
        })?),
        _ => None,
    };

    let updates: Vec<RefUpdate> = envs
        .iter()
        .map(|env| RefUpdate::branch(env, heads.get(env).copied(), commit))
        .collect();
    match store.update(&updates, args.force, "ferry init")? {
        UpdateOutcome::Updated => {}
        UpdateOutcome::Moved { refname, .. } => {
            let branch = refname.trim_start_matches("refs/heads/");
            return Err(
                Error::failure(format!("branch `{branch}` appeared while initializing")).hint(
                    "someone else is initializing the same repository; run `ferry init` again",
                ),
            );
        }
    }

    // A bare repository made with `git init --bare` points HEAD at a branch nobody will
    // create: point it at the first environment, so a clone checks that out.
    if remote.path.is_some() {
        store.default_head(&envs[0]);
    }

    match out.format {
        Format::Json => out.json(&InitReport {
            remote: &remote.shown,
            environments: &envs,
            commit: commit.to_string(),
            created_repository: create,
            hook: hook.as_ref().map(|h| h.display().to_string()),
        }),
        Format::Text => {
            out.data(format!(
                "initialized `{}`: {} ({})",
                remote.shown,
                envs.join(" → "),
                short(commit)
            ));
            if hook.is_some() {
                out.status("every push to it is checked by its pre-receive hook against each environment's `protection`");
            }
            out.status(format!(
                "next: say where each app runs (`apps` in environments/ENV.json, on every branch), then pin one in {first}:  ferry bump web 1.0.0 --env {first} --add --url URL --sha256 HEX --remote {remote}",
                first = envs[0],
                remote = remote.shown
            ));
        }
    }
    Ok(Outcome::Success)
}

fn check_envs(envs: &[String]) -> Result<Vec<String>> {
    let envs: Vec<String> = envs
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if envs.is_empty() {
        return Err(
            Error::usage("`--envs` names no environment").hint("such as `--envs dev,staging,prod`")
        );
    }
    for (i, env) in envs.iter().enumerate() {
        let valid_name = env.len() <= 63
            && env
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_name {
            return Err(
                Error::usage(format!("`{env}` is not a valid environment name"))
                    .hint("letters, digits, `.`, `_` and `-`, starting with a letter or digit"),
            );
        }
        if let Err(problem) = check_branch_name(env) {
            return Err(Error::usage(format!(
                "`{env}` cannot be a branch: it {problem}"
            )));
        }
        if envs[..i].contains(env) {
            return Err(Error::usage(format!("`{env}` is listed twice in `--envs`")));
        }
    }
    Ok(envs)
}

/// The files of a new deployment repository: an empty manifest, one environment file per
/// environment (each promoting from the previous), and the schemas.
fn initial_files(envs: &[String]) -> Vec<(String, Vec<u8>)> {
    let pretty = |value: serde_json::Value| {
        let mut text = serde_json::to_string_pretty(&value).expect("JSON serializes");
        text.push('\n');
        text.into_bytes()
    };
    let mut files = vec![(
        validate::MANIFEST.to_owned(),
        pretty(json!({
            "$schema": "schemas/manifest.schema.json",
            "description": format!("Desired state of {}", envs.join(", ")),
            "artifacts": {}
        })),
    )];
    for (i, env) in envs.iter().enumerate() {
        let mut file = json!({
            "$schema": "../schemas/environment.schema.json",
            "name": env,
            "branch": env,
        });
        if i > 0 {
            file["promotes_from"] = json!(envs[i - 1]);
        }
        file["policy"] = json!({ "allow_prerelease": i == 0 });
        file["agent"] = json!({ "interval": "30s" });
        files.push((
            format!("{}/{env}.json", validate::ENVIRONMENTS_DIR),
            pretty(file),
        ));
    }
    for (name, text) in FILES {
        files.push((format!("schemas/{name}"), text.as_bytes().to_vec()));
    }
    files
}
