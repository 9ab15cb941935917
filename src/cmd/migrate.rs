//! `ferry migrate`: converts a deployment repository of the seed layout (bare file-name pins,
//! `*-env.json` at the root) into ferry's own, in place: one commit per environment branch,
//! all branches moved together with compare-and-swap, nothing written on any error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::store::Oid;
use serde::Serialize;

use crate::cmd::shared::{Actor, identity, open_store, short, signature_as};
use crate::deploy::fetch;
use crate::diag::Diagnostic;
use crate::error::{Error, Outcome, Result};
use crate::output::{Format, Output};
use crate::plan::migrate::{self, Analysis, Found, Planned};
use crate::store::{History, RefUpdate, RemoteArgs, UpdateOutcome};
use crate::verdict::Summary;

/// The environments of the seed layout, in promotion order.
const ENVS: [&str; 3] = ["dev", "staging", "prod"];

/// How long a download may stall before hashing it fails.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Convert a repository of the seed layout into ferry's, in place.
///
/// The seed layout pins each artifact by file name only (`"my-api": "my-api-1.0.4.zip"`) and
/// describes environments in `dev-env.json`, `staging-env.json` and `prod-env.json` (or
/// `production-env.json`) at the root of every branch. Each environment branch (`dev`,
/// `staging`, `prod` or `production`) gets one commit that converts its own files: every
/// file-name pin becomes `{version, url, sha256}` (the version read from the file name, the URL
/// the artifact base joined with it, the digest computed from the artifact's bytes as they
/// stream in), and each `*-env.json` becomes `environments/<name>.json` with its branch and
/// `promotes_from` (dev → staging → prod). Every invalid value of the old files is reported
/// with its file, line and column, and nothing is written; `--drop-invalid` drops the invalid
/// optional fields instead, and says which. The result is validated before anything is
/// written, and all branches move together, each only if it is still where it was read. A
/// repository in ferry's layout already has nothing to migrate.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry migrate --remote ./deploy.git --artifact-base ./artifacts --dry-run   # the diff per branch; nothing written
  ferry migrate --remote ./deploy.git --artifact-base https://artifacts.example.com/releases
  ferry migrate --remote ./deploy.git --artifact-base /srv/artifacts --drop-invalid --format json")]
pub struct MigrateArgs {
    /// Where the artifacts the manifests name are: a directory (pinned as `file://` URLs), or
    /// an `https://`, `http://` or `file://` URL each file name is appended to.
    #[arg(long, value_name = "URL|DIR")]
    pub artifact_base: String,

    /// Print each branch's change as a diff, and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Drop each invalid optional field (a mistyped `healthcheck_url`, an unknown field), and
    /// say so, instead of stopping. An app whose `deployment_path` or version is invalid still
    /// stops the migration.
    #[arg(long)]
    pub drop_invalid: bool,

    #[command(flatten)]
    pub actor: Actor,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// The artifact base as a URL: a directory becomes `file:///absolute/dir`.
fn base_url(base: &str) -> Result<String> {
    let base = base.trim();
    if let Some((scheme, rest)) = base.split_once("://") {
        return match scheme {
            "https" | "http" if !rest.is_empty() => Ok(base.to_owned()),
            "file" if rest.starts_with('/') => Ok(base.to_owned()),
            "file" => Err(Error::usage(format!(
                "`--artifact-base {base}` is not a local URL such as `file:///srv/artifacts`"
            ))),
            _ => Err(Error::usage(format!(
                "`--artifact-base {base}` is not a directory or an https://, http:// or file:// URL"
            ))),
        };
    }
    let dir = std::fs::canonicalize(Path::new(base)).map_err(|e| {
        Error::usage(format!("cannot read `--artifact-base {base}`")).with_source(e)
    })?;
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "`--artifact-base {base}` is not a directory"
        )));
    }
    let text = dir
        .to_str()
        .ok_or_else(|| Error::usage(format!("`--artifact-base {base}` is not UTF-8")))?;
    Ok(format!("file://{text}"))
}

#[derive(Serialize)]
struct Report<'a> {
    remote: &'a str,
    artifact_base: &'a str,
    dry_run: bool,
    /// Whether any branch changed (or, for a dry run, would).
    changed: bool,
    branches: Vec<BranchReport>,
}

#[derive(Serialize)]
struct BranchReport {
    env: String,
    branch: String,
    /// `migrated`, `planned` (a dry run) or `already-migrated`.
    status: &'static str,
    /// The commit the branch was at.
    previous: String,
    /// The migration's commit (`null` for a dry run); the tip when migrated already.
    commit: Option<String>,
    pins_converted: usize,
    pins: Vec<PinReport>,
    dropped: Vec<DroppedReport>,
}

#[derive(Serialize)]
struct PinReport {
    app: String,
    version: String,
    url: String,
    sha256: String,
}

#[derive(Serialize)]
struct DroppedReport {
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    pointer: String,
    message: String,
}

pub fn run(args: MigrateArgs, out: Output) -> Result<Outcome> {
    let base = base_url(&args.artifact_base)?;
    let store = open_store(&args.remote)?;
    let shown = store.remote().shown.clone();

    // The environment branches: dev, staging, and prod (or production).
    let heads = store.heads()?;
    let mut envs: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<(&str, String)> = Vec::new();
    for env in ENVS {
        let branch = if heads.contains_key(env) {
            env
        } else if env == "prod" && heads.contains_key("production") {
            "production"
        } else {
            continue;
        };
        envs.insert(env.to_owned(), branch.to_owned());
        order.push((env, branch.to_owned()));
    }
    if order.is_empty() {
        return Err(Error::failure(format!(
            "`{shown}` has no environment branch: the seed layout has `dev`, `staging` and `prod` (or `production`)"
        ))
        .hint("nothing was changed; `ferry init` creates a repository in ferry's layout"));
    }
    for env in ENVS.iter().filter(|env| !envs.contains_key(**env)) {
        out.stderr(format!(
            "warning: `{shown}` has no branch for `{env}`: its environment file is written on the others, but nothing reaches `{env}` until the branch exists (push the environment before it there)"
        ));
    }
    if base.starts_with("file://") {
        out.stderr(format!(
            "warning: the artifacts are pinned as `{base}/…`: only agents on this machine can fetch them (an https:// `--artifact-base` serves hosts elsewhere)"
        ));
    }
    let names: Vec<&str> = order.iter().map(|(_, b)| b.as_str()).collect();
    let tips = store.fetch(&names, History::Tip)?;

    // Read and check every branch before anything else.
    let mut reports = Vec::new();
    let mut analyses: Vec<(&str, Oid, Analysis)> = Vec::new();
    for (env, branch) in &order {
        let tip = tips
            .get(branch)
            .copied()
            .flatten()
            .ok_or_else(|| Error::failure(format!("`{shown}` has no branch `{branch}`")))?;
        let files = store.tree_source(tip, branch)?.files();
        if migrate::layout(&files) == Found::Native {
            reports.push(BranchReport {
                env: (*env).to_owned(),
                branch: branch.clone(),
                status: "already-migrated",
                previous: tip.to_string(),
                commit: Some(tip.to_string()),
                pins_converted: 0,
                pins: Vec::new(),
                dropped: Vec::new(),
            });
            continue;
        }
        analyses.push((
            env,
            tip,
            migrate::analyse(branch, Some(env), &files, args.drop_invalid),
        ));
    }
    if analyses.is_empty() {
        out.status(format!(
            "nothing to migrate: every environment branch of `{shown}` is in ferry's layout already"
        ));
        report(out, &shown, &base, args.dry_run, reports);
        return Ok(Outcome::Success);
    }
    let errors: Vec<&Diagnostic> = analyses.iter().flat_map(|(_, _, a)| &a.errors).collect();
    if !errors.is_empty() {
        return Err(refusal(&errors, args.drop_invalid));
    }
    for (_, _, analysis) in &analyses {
        for dropped in &analysis.dropped {
            let d = &dropped.diagnostic;
            out.stderr(format!(
                "{}: warning: dropped {}: {}",
                d.location(),
                dropped.what(),
                d.message
            ));
        }
    }

    // The digests, from the artifacts' bytes (each file once).
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    for (_, _, analysis) in &analyses {
        for pin in &analysis.pins {
            let url = migrate::artifact_url(&base, &pin.file_name);
            if digests.contains_key(&url) {
                continue;
            }
            let (sha256, bytes) = fetch::digest(&url, IDLE_TIMEOUT).map_err(|e| {
                // A server that could not be reached or answered 5xx may answer later (exit 3).
                let unavailable = url.starts_with("http")
                    && matches!(
                        &e,
                        fetch::FetchError::Transfer { .. }
                            | fetch::FetchError::Status { status: 500.., .. }
                    );
                let message = format!(
                    "cannot hash `{}`, which `{}` pins on `{}`",
                    pin.file_name, pin.app, analysis.branch
                );
                if unavailable {
                    Error::unavailable(message)
                } else {
                    Error::failure(message)
                }
                .with_source(e)
                .hint("nothing was changed")
                .hint("every file-name pin's artifact must be under `--artifact-base`: its digest is computed from its bytes")
            })?;
            tracing::info!(%url, bytes, %sha256, "hashed");
            digests.insert(url, sha256);
        }
    }

    // Every branch planned and validated before anything is written.
    let mut planned: Vec<(&str, Oid, &Analysis, Planned)> = Vec::new();
    for (env, tip, analysis) in &analyses {
        let plan = migrate::build(analysis, &base, &digests, &envs).map_err(|errors| {
            let mut error = Error::failure(format!(
                "the migrated state of `{}` would be invalid",
                analysis.branch
            ));
            for d in errors.iter().take(20) {
                error = error.detail(format!("  {}: error: {}", d.location(), d.message));
            }
            error
                .hint("nothing was changed")
                .hint("`--dry-run` shows the planned files")
        })?;
        planned.push((env, *tip, analysis, plan));
    }

    if args.dry_run {
        if out.format == Format::Text {
            for (env, _, _, plan) in &planned {
                out.data(format!("# {} ({env})", plan.branch));
                out.data(plan.diff.trim_end());
            }
        }
        for (env, tip, analysis, plan) in &planned {
            reports.push(branch_report(env, *tip, None, analysis, plan));
        }
        out.status(format!("dry run: nothing was written to `{shown}`"));
        report(out, &shown, &base, true, reports);
        return Ok(Outcome::Success);
    }

    let who = identity(&store, args.actor.as_name.as_deref());
    let signature = signature_as(&store, &who)?;
    let mut updates = Vec::new();
    let mut commits = Vec::new();
    for (env, tip, analysis, plan) in &planned {
        let message = message(env, analysis, plan);
        let commit = store.write_commit_changes(
            Some(*tip),
            &plan.files,
            &plan.removed,
            &message,
            &signature,
            &signature,
        )?;
        updates.push(RefUpdate::branch(&plan.branch, Some(*tip), commit));
        commits.push(commit);
    }
    match store.update(&updates, false, "ferry migrate")? {
        UpdateOutcome::Updated => {}
        UpdateOutcome::Moved { refname, .. } => {
            return Err(Error::failure(format!(
                "`{}` moved while migrating",
                refname.trim_start_matches("refs/heads/")
            ))
            .hint("nothing was changed; run `ferry migrate` again"));
        }
    }
    for ((env, tip, analysis, plan), commit) in planned.iter().zip(&commits) {
        if let Ok(tree) = store.tree_of(*commit) {
            store.verdicts().record(tree, &Summary::of(&plan.state));
        }
        if out.format == Format::Text {
            out.data(format!(
                "{}: migrated ({}): {} pin{} converted, {} environment file{}{}",
                plan.branch,
                short(*commit),
                plan.pins.len(),
                if plan.pins.len() == 1 { "" } else { "s" },
                plan.removed.len(),
                if plan.removed.len() == 1 { "" } else { "s" },
                match analysis.dropped.len() {
                    0 => String::new(),
                    1 => ", 1 field dropped".to_owned(),
                    n => format!(", {n} fields dropped"),
                }
            ));
        }
        if out.format == Format::Text {
            // The digests as pinned, to compare with a dry run's (the bytes may have changed).
            for (app, pin) in &plan.pins {
                out.data(format!(
                    "  {app} {}  sha256:{}  {}",
                    pin.version, pin.sha256, pin.url
                ));
            }
        }
        reports.push(branch_report(env, *tip, Some(*commit), analysis, plan));
    }
    out.status(
        "next: declare each environment's `policy` and `protection` in `environments/ENV.json` on its branch (`ferry validate` checks them); on a server, `ferry protect apply --forge local --remote PATH` installs the hook that enforces them",
    );
    report(out, &shown, &base, false, reports);
    Ok(Outcome::Success)
}

/// Every problem of the old files, as one error.
fn refusal(errors: &[&Diagnostic], drop_invalid: bool) -> Error {
    let mut error = Error::failure(format!(
        "cannot migrate: {} invalid value{} in the seed files",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    ));
    for d in errors {
        error = error.detail(format!("{}: error: {}", d.location(), d.message));
        if !d.pointer.is_empty() {
            error = error.detail(format!("  pointer: {}", d.pointer));
        }
        if let Some(hint) = &d.hint {
            error = error.detail(format!("  hint: {hint}"));
        }
    }
    error = error.hint("nothing was changed");
    if !drop_invalid {
        error = error.hint(
            "fix them on their branches, or run again with `--drop-invalid` to drop the invalid optional fields (each dropped one is named)",
        );
    }
    error
}

/// The commit message of one branch's migration.
fn message(env: &str, analysis: &Analysis, plan: &Planned) -> String {
    let mut text = format!(
        "ferry migrate: {env} to ferry's layout\n\n{} pin{} by file name now pinned by version, URL and sha256; {} moved to environments/.\n",
        plan.pins.len(),
        if plan.pins.len() == 1 { "" } else { "s" },
        plan.removed.join(", ")
    );
    for (app, pin) in &plan.pins {
        text.push_str(&format!("\n  {app} {} {}", pin.version, pin.url));
    }
    if !plan.pins.is_empty() {
        text.push('\n');
    }
    if !analysis.dropped.is_empty() {
        text.push_str("\nDropped (invalid):\n");
        for dropped in &analysis.dropped {
            let d = &dropped.diagnostic;
            text.push_str(&format!(
                "  {}: {}: {}\n",
                d.location(),
                dropped.what(),
                d.message
            ));
        }
    }
    text.push_str(&format!("\nFerry-Migrated: {}\n", plan.pins.len()));
    text
}

fn branch_report(
    env: &str,
    tip: Oid,
    commit: Option<Oid>,
    analysis: &Analysis,
    plan: &Planned,
) -> BranchReport {
    BranchReport {
        env: env.to_owned(),
        branch: plan.branch.clone(),
        status: if commit.is_some() {
            "migrated"
        } else {
            "planned"
        },
        previous: tip.to_string(),
        commit: commit.map(|c| c.to_string()),
        pins_converted: plan.pins.len(),
        pins: plan
            .pins
            .iter()
            .map(|(app, pin)| PinReport {
                app: app.clone(),
                version: pin.version.clone(),
                url: pin.url.clone(),
                sha256: pin.sha256.clone(),
            })
            .collect(),
        dropped: analysis
            .dropped
            .iter()
            .map(|d| DroppedReport {
                file: d.diagnostic.file.clone(),
                line: d.diagnostic.line,
                column: d.diagnostic.column,
                pointer: d.pointer.clone(),
                message: d.diagnostic.message.clone(),
            })
            .collect(),
    }
}

fn report(out: Output, remote: &str, base: &str, dry_run: bool, branches: Vec<BranchReport>) {
    if out.format != Format::Json {
        return;
    }
    let changed = branches.iter().any(|b| b.status != "already-migrated");
    out.json(&Report {
        remote,
        artifact_base: base,
        dry_run,
        changed,
        branches,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_base_is_a_directory_or_a_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = base_url(dir.path().to_str().unwrap()).unwrap();
        assert!(url.starts_with("file:///"), "{url}");
        for ok in [
            "https://a.example/rel",
            "http://127.0.0.1:8/x/",
            "file:///srv/a",
        ] {
            assert_eq!(base_url(ok).unwrap(), ok);
        }
        for bad in ["ftp://a.example/x", "file://host/x", "oci://r/x"] {
            assert_eq!(base_url(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        let missing = dir.path().join("missing");
        assert_eq!(
            base_url(missing.to_str().unwrap()).unwrap_err().exit_code(),
            2
        );
    }
}
