//! `ferry show`: an environment's manifest, now or as it was at a date or revision.

use crate::store::Oid;
use serde::Serialize;

use crate::cmd::shared::{branch_of, format_time, manifest_at, open_store, short, table};
use crate::error::{Error, Outcome, Result};
use crate::model::{Artifact, Manifest};
use crate::output::{Format, Output};
use crate::store::{History, RemoteArgs, Store};

/// Show what an environment runs: its manifest, now or at a point in its history.
///
/// `--at` takes a date (`2026-10-14`: the state at the end of that day, UTC), a time
/// (`2026-10-14T12:00:00Z`, `2026-10-14 12:00`), or a revision of the environment's branch
/// (a commit id, `HEAD~3`).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry show prod                        # what production runs now
  ferry show prod --at 2026-10-14        # what it ran on October 14th
  ferry show prod --at HEAD~1 --format json")]
pub struct ShowArgs {
    /// The environment.
    pub env: String,

    /// A date, a time or a revision.
    #[arg(long, value_name = "DATE|REV")]
    pub at: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct ShowReport<'a> {
    env: &'a str,
    branch: &'a str,
    commit: String,
    time: String,
    author: String,
    subject: String,
    manifest: &'a Manifest,
}

/// When `--at` means a moment, not a revision.
enum At {
    Time(i64),
    Rev(String),
}

fn parse_at(text: &str) -> At {
    let text = text.trim();
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && let Ok(end) = date.at(23, 59, 59, 0).to_zoned(jiff::tz::TimeZone::UTC)
    {
        return At::Time(end.timestamp().as_second());
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return At::Time(ts.as_second());
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>()
        && let Ok(zoned) = dt.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return At::Time(zoned.timestamp().as_second());
    }
    At::Rev(text.to_owned())
}

pub fn run(args: ShowArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let branch = branch_of(&store, &args.env)?;
    let commit = match &args.at {
        None => store.tip(&branch, History::Tip)?,
        Some(at) => {
            let tip = store.tip(&branch, History::Full)?;
            resolve_at(&store, &branch, tip, at)?
        }
    };
    let manifest = manifest_at(&store, commit)?.ok_or_else(|| {
        Error::failure(format!(
            "`{branch}` at {} has no readable `manifest.json`",
            short(commit)
        ))
    })?;
    let info = store.commit(commit)?;
    let time = format_time(info.committer.time);
    let subject = info.subject();
    let author = info.author.name;

    match out.format {
        Format::Json => out.json(&ShowReport {
            env: &args.env,
            branch: &branch,
            commit: commit.to_string(),
            time,
            author,
            subject,
            manifest: &manifest,
        }),
        Format::Text => {
            out.data(format!(
                "{} at {} ({time}, {author}: {subject})",
                args.env,
                short(commit)
            ));
            let mut rows = vec![vec![
                "APP".into(),
                "VERSION".into(),
                "SHA256".into(),
                "URL".into(),
            ]];
            for (app, artifact) in &manifest.artifacts {
                rows.push(match artifact {
                    Artifact::Pinned(pin) => {
                        vec![
                            app.clone(),
                            pin.version.clone(),
                            crate::output::abbrev(&pin.sha256, 12).to_owned(),
                            pin.url.clone(),
                        ]
                    }
                    Artifact::Bare(_) => vec![
                        app.clone(),
                        artifact.shown_version(),
                        "-".into(),
                        "(file name only)".into(),
                    ],
                });
            }
            if manifest.artifacts.is_empty() {
                out.data("(no artifacts pinned)");
            } else {
                for line in table(&rows) {
                    out.data(line);
                }
            }
        }
    }
    Ok(Outcome::Success)
}

fn resolve_at(store: &Store, branch: &str, tip: Oid, at: &str) -> Result<Oid> {
    match parse_at(at) {
        At::Time(seconds) => {
            let history = store.first_parents(tip)?;
            for id in &history {
                if store.commit(*id)?.committer.time <= seconds {
                    return Ok(*id);
                }
            }
            let first = history
                .last()
                .and_then(|id| store.commit(*id).ok())
                .map(|c| format_time(c.committer.time))
                .unwrap_or_default();
            Err(
                Error::failure(format!("`{branch}` did not exist yet at `{at}`"))
                    .hint(format!("its first commit is from {first}")),
            )
        }
        At::Rev(rev) => {
            let spec = match rev.strip_prefix("HEAD").or_else(|| rev.strip_prefix('@')) {
                Some(rest) => format!("{tip}{rest}"),
                None => rev.clone(),
            };
            let commit = store.resolve_revision(&spec).ok_or_else(|| {
                Error::usage(format!("`{rev}` is neither a date nor a revision of `{branch}`"))
                    .hint("dates look like `2026-10-14` or `2026-10-14T12:00:00Z`; revisions like a commit id or `HEAD~2`")
            })?;
            let in_history = store.holds(tip, commit);
            if !in_history {
                return Err(Error::failure(format!(
                    "{} is not in the history of `{branch}`",
                    short(commit)
                )));
            }
            Ok(commit)
        }
    }
}
