//! `ferry diff`: per app, what runs in two environments and which way a promotion would move.

use crate::cmd::shared::{open_store, table};
use crate::error::{Outcome, Result};
use crate::output::{Format, Output};
use crate::plan::compare::Change;
use crate::store::RemoteArgs;

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

pub fn run(args: DiffArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let report = crate::view::diff::diff(&store, &args.from, &args.to)?;
    let comparison = &report.apps;

    match out.format {
        Format::Json => out.json(&report),
        Format::Text => {
            let mut rows = vec![vec![
                "APP".into(),
                args.from.to_uppercase(),
                args.to.to_uppercase(),
                "PROMOTION".into(),
            ]];
            for c in comparison {
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
