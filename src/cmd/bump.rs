//! `ferry bump`: the CI bot's command. One artifact pin changes on one environment's branch,
//! validated, committed and pushed with compare-and-swap; a branch that moved meanwhile is
//! re-read and the bump re-applied on its new tip, so concurrent bots never lose an update.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cmd::shared::{
    branch_of, identity, invalid_state, open_store, short, signature, signature_as,
};
use crate::diag::Problem;
use crate::error::{Error, Outcome, Result};
use crate::json;
use crate::json::Document;
use crate::model::{Artifact, Manifest, Pin};
use crate::output::{Format, Output};
use crate::plan::bump::{self, BumpPlan, BumpRefusal, BumpRequest, Decision};
use crate::plan::edit;
use crate::plan::textdiff;
use crate::render;
use crate::store::{History, Oid, RefUpdate, RemoteArgs, Store, UpdateOutcome};
use crate::validate::{self, MANIFEST};
use crate::verdict::Summary;

/// How long a bump keeps re-applying itself while other writers move the branch under it:
/// each lost race is one more writer landed, so with N writers at once a bump may lose N - 1
/// times (30 CI runners over HTTP take about a minute to all land on 2 cores).
const RETRY_FOR: Duration = Duration::from_secs(180);

/// Pin a new version of one app in one environment (what CI runs after a build).
///
/// Changes exactly one artifact pin on the environment's branch, validates the whole
/// resulting state (an invalid state is never committed), commits with a message from the
/// `bump.hbs` template plus `Ferry-App`, `Ferry-Version` and `Ferry-Previous` trailers, and
/// pushes with compare-and-swap: if the branch moved meanwhile, the bump is re-applied on its
/// new tip (bounded retries, jittered backoff). Bumping to the version already pinned changes
/// nothing. A downgrade is refused unless `--allow-downgrade`; a prerelease is refused where
/// the environment's policy forbids it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry bump web 2.1.0 --env dev --artifact target/web-2.1.0.tar.gz
  ferry bump web 2.2.0-rc.1 --env dev --artifact web.tgz --dry-run   # the diff; nothing pushed
  ferry bump search 0.1.0 --env dev --add --url https://example.com/search.tgz --artifact search.tgz")]
pub struct BumpArgs {
    /// The app whose pin changes.
    pub app: String,

    /// Its new version (a semantic version, such as `2.1.0`).
    #[arg(id = "new_version", value_name = "VERSION", value_parser = parse_version)]
    pub version: semver::Version,

    /// The environment whose branch changes.
    #[arg(long, short)]
    pub env: String,

    /// Where the new artifact is fetched from. Default: the current URL with the old version
    /// replaced by the new one.
    #[arg(long)]
    pub url: Option<String>,

    /// The new artifact's SHA-256 (64 hex characters).
    #[arg(long, value_parser = parse_sha256, required_unless_present = "artifact", conflicts_with = "artifact")]
    pub sha256: Option<String>,

    /// Compute the SHA-256 from this local file (the artifact CI just built).
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,

    /// The app may be new to the manifest: add it.
    #[arg(long)]
    pub add: bool,

    /// Allow a version lower than the one pinned.
    #[arg(long)]
    pub allow_downgrade: bool,

    /// Print the change as a diff and push nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

fn parse_version(text: &str) -> Result<semver::Version, Problem> {
    semver::Version::parse(text.trim_start_matches('v')).map_err(|e| {
        Problem(format!(
            "`{text}` is not a semantic version ({e}); such as `2.1.0`"
        ))
    })
}

fn parse_sha256(text: &str) -> Result<String, Problem> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.len() != 64 {
        return Err(Problem::from(format!(
            "a SHA-256 digest is 64 hex characters, this is {}",
            hex.len()
        )));
    }
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Problem::from(
            "a SHA-256 digest has only hex characters (0-9, a-f)".to_owned(),
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

#[derive(Serialize)]
struct BumpReport<'a> {
    env: &'a str,
    app: &'a str,
    from: Option<&'a str>,
    to: &'a str,
    commit: Option<String>,
    /// Whether a commit was made (or, for a dry run, would be).
    changed: bool,
    /// The pin's fields that changed: `version`, `url`, `sha256`.
    fields: Vec<&'static str>,
    dry_run: bool,
}

#[derive(Serialize)]
struct MessageData<'a> {
    env: &'a str,
    app: &'a str,
    from: Option<&'a str>,
    to: &'a str,
    url: &'a str,
    sha256: &'a str,
}

pub fn run(args: BumpArgs, out: Output) -> Result<Outcome> {
    // Everything about the arguments is settled before the first network access.
    let sha256 = match (&args.sha256, &args.artifact) {
        (Some(hex), _) => hex.clone(),
        (None, Some(path)) => crate::digest::sha256_file(path).map_err(|e| {
            Error::usage(format!("cannot read `--artifact {}`", path.display())).with_source(e)
        })?,
        (None, None) => unreachable!("clap requires one of them"),
    };
    if let Some(url) = &args.url
        && !["https://", "http://", "file://", "oci://"]
            .iter()
            .any(|s| url.starts_with(s))
    {
        return Err(Error::usage(format!(
            "`--url {url}` is not an https://, http://, file:// or oci:// URL"
        )));
    }
    let request = BumpRequest {
        app: args.app.clone(),
        version: args.version.clone(),
        url: args.url.clone(),
        sha256,
        add: args.add,
        allow_downgrade: args.allow_downgrade,
    };

    let store = open_store(&args.remote)?;
    let branch = branch_of(&store, &args.env)?;
    let to = request.version.to_string();
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        attempt += 1;
        let tip = store.tip(&branch, History::Tip)?;
        let Some(Prepared {
            change,
            manifest,
            message: commit_message,
            summary,
        }) = prepare(&store, &args, &branch, tip, &request, out)?
        else {
            return Ok(Outcome::Success);
        };
        if args.dry_run {
            report(out, &args, &change, None, true);
            return Ok(Outcome::Success);
        }
        // The author is who is acting (CI's bot, as the transport knows it); the committer is
        // who git says is committing (`user.name`, else ferry).
        let author = signature_as(&store, &identity(&store, None))?;
        let committer = signature(&store)?;
        let commit = store.write_commit(
            Some(tip),
            &[(MANIFEST.to_owned(), manifest)],
            &commit_message,
            &author,
            &committer,
        )?;
        let update = RefUpdate::branch(&branch, Some(tip), commit);
        match store.update(&[update], false, &format!("ferry bump {} {to}", args.app))? {
            UpdateOutcome::Updated => {
                // The new tree is valid: the next bump on it checks only its own pin.
                store.verdicts().record(store.tree_of(commit)?, &summary);
                report(out, &args, &change, Some(commit), false);
                return Ok(Outcome::Success);
            }
            UpdateOutcome::Moved { actual, .. } if started.elapsed() < RETRY_FOR => {
                let wait = backoff(attempt);
                tracing::info!(
                    attempt,
                    ?actual,
                    wait_ms = wait.as_millis() as u64,
                    "`{branch}` moved; re-applying the bump on its new tip"
                );
                std::thread::sleep(wait);
                store.refresh();
            }
            UpdateOutcome::Moved { .. } => {
                return Err(Error::failure(format!(
                    "`{branch}` kept moving: gave up after {attempt} attempts in {}s",
                    RETRY_FOR.as_secs()
                ))
                    .hint("nothing was changed; many writers are racing on this branch, run the bump again"));
            }
        }
    }
}

/// What a bump changes in one pin.
struct Change {
    /// The previous pin; `None` for a new app.
    previous: Option<Artifact>,
    pin: Pin,
}

impl Change {
    /// The previous version (or file name); `None` for a new app.
    fn from(&self) -> Option<String> {
        self.previous.as_ref().map(Artifact::shown_version)
    }
}

/// A bump ready to commit.
struct Prepared {
    change: Change,
    /// The new `manifest.json` (empty for a dry run).
    manifest: Vec<u8>,
    /// The commit message, trailers included (empty for a dry run).
    message: String,
    /// What the resulting (valid) state's environments say, for its verdict.
    summary: Summary,
}

/// A bump planned on one tip and validated.
enum Planned {
    /// The app is already pinned to exactly this.
    Unchanged { version: String },
    Change {
        change: Change,
        before: String,
        after: String,
        summary: Summary,
    },
}

/// Plans the bump on `tip` and validates the result. `None` when there is nothing to do
/// (already reported).
fn prepare(
    store: &Store,
    args: &BumpArgs,
    branch: &str,
    tip: Oid,
    request: &BumpRequest,
    out: Output,
) -> Result<Option<Prepared>> {
    let planned = match plan_on_verdict(store, args, branch, tip, request)? {
        Some(planned) => planned,
        None => plan_in_full(store, args, branch, tip, request)?,
    };
    let (change, before, after, summary) = match planned {
        Planned::Unchanged { version } => {
            out.status(format!(
                "{}: {} is already at {version}; nothing to do",
                args.env, args.app
            ));
            if out.format == Format::Json {
                out.json(&BumpReport {
                    env: &args.env,
                    app: &args.app,
                    from: Some(&version),
                    to: &version,
                    commit: Some(tip.to_string()),
                    changed: false,
                    fields: Vec::new(),
                    dry_run: args.dry_run,
                });
            }
            return Ok(None);
        }
        Planned::Change {
            change,
            before,
            after,
            summary,
        } => (change, before, after, summary),
    };
    let from = change.from();
    let pin = &change.pin;

    // The environment's policy, read from its own branch, must allow the version.
    let Some(env) = summary.environments.get(&args.env) else {
        return Err(Error::failure(format!(
            "branch `{branch}` has no environment `{}`",
            args.env
        )));
    };
    if !request.version.pre.is_empty() && !env.allow_prerelease {
        return Err(Error::failure(format!(
            "{}: prerelease {} is not allowed: `policy.allow_prerelease` is false",
            args.env, request.version
        ))
        .hint(format!(
            "set `\"allow_prerelease\": true` in `environments/{}.json` on `{branch}` to allow it",
            args.env
        )));
    }

    if args.dry_run {
        let diff = textdiff::unified(
            &before,
            &after,
            &format!("a/{MANIFEST}"),
            &format!("b/{MANIFEST}"),
        );
        if out.format == Format::Text {
            out.data(diff.trim_end());
        }
        out.status(format!(
            "dry run: nothing was pushed to `{}`",
            store.remote().shown
        ));
        return Ok(Some(Prepared {
            change,
            manifest: Vec::new(),
            message: String::new(),
            summary,
        }));
    }

    let template = store.read_file(tip, &format!("templates/{}", render::BUMP.file))?;
    let template = template
        .as_deref()
        .map(|t| String::from_utf8_lossy(t).into_owned());
    let origin = format!("{branch}:templates/{}", render::BUMP.file);
    let data = MessageData {
        env: &args.env,
        app: &args.app,
        from: from.as_deref(),
        to: &pin.version,
        url: &pin.url,
        sha256: &pin.sha256,
    };
    let subject = render::render(
        render::BUMP,
        template.as_deref().map(|t| (t, origin.as_str())),
        &data,
    )
    .map_err(|e| {
        Error::failure(e.to_string())
            .hint("fix the template on the branch, or remove it to use ferry's")
    })?;
    let message = format!(
        "{subject}\n\nFerry-App: {}\nFerry-Version: {}\nFerry-Previous: {}\n",
        args.app,
        pin.version,
        from.as_deref().unwrap_or("none")
    );
    Ok(Some(Prepared {
        change,
        manifest: after.into_bytes(),
        message,
        summary,
    }))
}

/// The bump on a tree this build of ferry found valid before (see [`crate::verdict`]): the
/// pin is found and replaced in the manifest's text without parsing the rest, and only the
/// new pin is checked. `None` whenever that does not apply (a new app, no verdict, a pin the
/// check refuses): the full validation then decides, and explains.
///
/// A tip with no verdict (the first bump on a machine) is validated whole first, as it is:
/// once it is valid, the same one-pin argument holds, and the manifest is parsed once instead
/// of twice (once to edit, once to validate the result).
fn plan_on_verdict(
    store: &Store,
    args: &BumpArgs,
    branch: &str,
    tip: Oid,
    request: &BumpRequest,
) -> Result<Option<Planned>> {
    if request.add {
        return Ok(None);
    }
    let tree = store.tree_of(tip)?;
    let (summary, text) = match store.verdicts().get(tree) {
        Some(summary) => (summary, store.read_file(tip, MANIFEST)?),
        None => {
            tracing::debug!("no verdict for the tip: validating it in full");
            let files = store.tree_source(tip, branch)?;
            let mut checked = validate::check(&files);
            let state = checked.state.take();
            let Some(state) = state else {
                // The full plan explains what is wrong.
                return Ok(None);
            };
            let summary = Summary::of(&state);
            set_aside((checked, state));
            store.verdicts().record(tree, &summary);
            (summary, files.get(MANIFEST).map(<[u8]>::to_vec))
        }
    };
    let Some(text) = text.and_then(|bytes| String::from_utf8(bytes).ok()) else {
        return Ok(None);
    };
    let Some(member) = json::find_member(&text, &["artifacts", &request.app]) else {
        return Ok(None);
    };
    let Ok(current) = serde_json::from_str::<Artifact>(&text[member.value.clone()]) else {
        return Ok(None);
    };
    let pin = match bump::decide(Some(&current), request) {
        Ok(Decision::Unchanged { version }) => return Ok(Some(Planned::Unchanged { version })),
        Ok(Decision::Change { pin, .. }) => pin,
        Err(refusal) => return Err(refused(args, &refusal)),
    };
    if !validate::artifacts_are_valid([(request.app.as_str(), &Artifact::Pinned(pin.clone()))]) {
        return Ok(None);
    }
    tracing::debug!("bumping on a tree validated before: checking only the new pin");
    let after = edit::replace_pin(&text, &member, &pin);
    Ok(Some(Planned::Change {
        change: Change {
            previous: Some(current),
            pin,
        },
        before: text,
        after,
        summary,
    }))
}

/// Megabytes of small allocations (a validated state's documents) out of the bump's way:
/// freeing them costs as much as a third of the bump, and the exit returns them at once. The
/// first is kept until the exit; those of later attempts (the branch moved) are freed on a
/// thread of their own, so a long race holds one at most in memory.
fn set_aside<T: Send + 'static>(value: T) {
    static KEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if KEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        std::thread::spawn(move || drop(value));
    } else {
        std::mem::forget(value);
    }
}

/// The bump with the whole resulting state validated.
fn plan_in_full(
    store: &Store,
    args: &BumpArgs,
    branch: &str,
    tip: Oid,
    request: &BumpRequest,
) -> Result<Planned> {
    let files = store.tree_source(tip, branch)?;
    let Some(text) = files.get(MANIFEST).map(<[u8]>::to_vec) else {
        return Err(
            Error::failure(format!("branch `{branch}` has no `{MANIFEST}`"))
                .hint("`ferry init` creates a deployment repository"),
        );
    };
    let doc = Document::parse(text.clone()).map_err(|e| {
        Error::failure(format!(
            "`{branch}:{MANIFEST}` is not valid JSON: {}",
            e.message
        ))
        .hint("run `ferry validate` on the branch's files")
    })?;
    let manifest = Manifest::deserialize(&doc.value).map_err(|e| {
        Error::failure(format!("`{branch}:{MANIFEST}` is invalid: {e}"))
            .hint("run `ferry validate` on the branch's files")
    })?;
    let (pin, after) = match bump::plan(&doc, &manifest, request) {
        Ok(BumpPlan::Unchanged { version }) => return Ok(Planned::Unchanged { version }),
        Ok(BumpPlan::Change { pin, manifest, .. }) => (pin, manifest),
        Err(refusal) => return Err(refused(args, &refusal)),
    };

    // The whole resulting state must be valid.
    let files = files.with_file(MANIFEST, after.clone().into_bytes());
    let checked = validate::check(&files);
    let Some(state) = checked.state else {
        // Was it the bump, or was the branch invalid already?
        let before = validate::check(&files.with_file(MANIFEST, text));
        let (report, what) = if before.state.is_none() {
            (
                &before.report,
                format!("branch `{branch}` is invalid already; bumping cannot fix that"),
            )
        } else {
            (
                &checked.report,
                format!("the bump would leave `{branch}` invalid"),
            )
        };
        return Err(invalid_state(report, &what));
    };
    let summary = Summary::of(&state);
    // The tip differs from this valid state by one pin only: it is valid too when its own pin
    // is, which gives the next bump on it a verdict (a retry, or the same bump run again).
    if let Some(old) = manifest.artifacts.get(&request.app)
        && validate::artifacts_are_valid([(request.app.as_str(), old)])
    {
        store.verdicts().record(store.tree_of(tip)?, &summary);
    }
    Ok(Planned::Change {
        change: Change {
            previous: manifest.artifacts.get(&request.app).cloned(),
            pin,
        },
        before: doc.text().to_owned(),
        after,
        summary,
    })
}

fn refused(args: &BumpArgs, refusal: &BumpRefusal) -> Error {
    let error = Error::failure(format!("{}: {refusal}", args.env));
    match refusal.hint() {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

fn report(out: Output, args: &BumpArgs, change: &Change, commit: Option<Oid>, dry_run: bool) {
    let from = change.from();
    let fields = bump::changed_fields(change.previous.as_ref(), &change.pin);
    let to = &change.pin.version;
    match out.format {
        Format::Json => out.json(&BumpReport {
            env: &args.env,
            app: &args.app,
            from: from.as_deref(),
            to,
            commit: commit.map(|c| c.to_string()),
            changed: commit.is_some() || dry_run,
            fields,
            dry_run,
        }),
        Format::Text if dry_run => {}
        Format::Text => {
            let commit = commit.map(short).unwrap_or_default();
            let line = match (&change.previous, fields.contains(&"version")) {
                // Same version, same digest, another place (a mirror moved).
                (Some(Artifact::Pinned(old)), false) => {
                    let mut what = Vec::new();
                    if old.url != change.pin.url {
                        what.push(format!("url {} → {}", old.url, change.pin.url));
                    }
                    if old.sha256 != change.pin.sha256 {
                        what.push(format!("sha256 {} → {}", old.sha256, change.pin.sha256));
                    }
                    format!(
                        "{}: {} {to}: {} ({commit})",
                        args.env,
                        args.app,
                        what.join(", ")
                    )
                }
                _ => format!(
                    "{}: {} {} → {to} ({commit})",
                    args.env,
                    args.app,
                    from.as_deref().unwrap_or("(new)"),
                ),
            };
            out.data(line);
        }
    }
}

/// Exponential backoff with full jitter: up to 25 ms × 2^attempt, at most 2 s.
fn backoff(attempt: u32) -> Duration {
    crate::net::retry::Backoff::new(Duration::from_millis(25), Duration::from_secs(2))
        .delay(attempt)
}
