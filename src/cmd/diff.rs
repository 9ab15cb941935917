//! `ferry diff`: per app, what runs in two environments and which way a promotion would move.

use serde::Serialize;

use crate::cmd::shared::{branch_of, manifest_at, open_store, short, table};
use crate::error::{Error, Outcome, Result};
use crate::output::{Format, Output};
use crate::plan::compare::{self, AppComparison, Change};
use crate::store::{History, RemoteArgs};

/// Compare two environments app by app: each side's version, and whether promoting FROM into
/// TO would move it up, down, add it, or leave it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry diff dev staging
  ferry diff staging prod --format json")]
pub struct DiffArgs {
    /// The environment promoted from.
    pub from: String,
    /// The environment promoted into.
    pub to: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct DiffReport<'a> {
    from: &'a str,
    to: &'a str,
    from_commit: String,
    to_commit: String,
    apps: &'a [AppComparison],
}

pub fn run(args: DiffArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let from_branch = branch_of(&store, &args.from)?;
    let to_branch = branch_of(&store, &args.to)?;
    let tips = store.fetch(&[&from_branch, &to_branch], History::Tip)?;
    let tip = |branch: &str| {
        tips.get(branch)
            .copied()
            .flatten()
            .expect("branch_of found it")
    };
    let (from_tip, to_tip) = (tip(&from_branch), tip(&to_branch));
    let read = |env: &str, commit| {
        manifest_at(&store, commit)?.ok_or_else(|| {
            Error::failure(format!(
                "`{env}` has no readable `manifest.json` at {}",
                short(commit)
            ))
            .hint("run `ferry validate` on the branch's files")
        })
    };
    let comparison = compare::compare(&read(&args.from, from_tip)?, &read(&args.to, to_tip)?);

    match out.format {
        Format::Json => out.json(&DiffReport {
            from: &args.from,
            to: &args.to,
            from_commit: from_tip.to_string(),
            to_commit: to_tip.to_string(),
            apps: &comparison,
        }),
        Format::Text => {
            let mut rows = vec![vec![
                "APP".into(),
                args.from.to_uppercase(),
                args.to.to_uppercase(),
                "PROMOTION".into(),
            ]];
            for c in &comparison {
                let side = |a: &Option<crate::model::Artifact>| {
                    a.as_ref()
                        .map_or("-".to_owned(), crate::model::Artifact::shown_version)
                };
                let change = match c.change {
                    Change::Same => "same".to_owned(),
                    Change::Up => "up".to_owned(),
                    Change::Down => "down (rollback)".to_owned(),
                    Change::Repinned => "same version, other artifact".to_owned(),
                    Change::Added => "added".to_owned(),
                    Change::OnlyInTarget => format!("only in {}", args.to),
                };
                rows.push(vec![c.app.clone(), side(&c.from), side(&c.to), change]);
            }
            if comparison.is_empty() {
                out.data("(no artifacts in either environment)");
            } else {
                for line in table(&rows) {
                    out.data(line);
                }
            }
        }
    }
    Ok(Outcome::Success)
}
