//! `ferry history`: each change of an environment's branch, and which apps it moved.

use crate::cmd::shared::{open_store, table, trusted_keys};
use crate::error::{Outcome, Result};
use crate::output::{Format, Output};
use crate::plan::history::shown;
use crate::sign::{AllowedSigners, Verdict};
use crate::store::RemoteArgs;
use crate::view::history::{Query, history};

/// List the changes of an environment's branch, newest first: when, who, the commit, who
/// signed it, and which apps moved from which version to which.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry history prod
  ferry history dev --app web --limit 20
  ferry history staging --format json")]
pub struct HistoryArgs {
    /// The environment.
    pub env: String,

    /// Only the changes that moved this app.
    #[arg(long)]
    pub app: Option<String>,

    /// At most this many changes.
    #[arg(long, short = 'n')]
    pub limit: Option<usize>,

    /// Check each change's signature against the keys in FILE (an ssh `allowed_signers` list
    /// and/or armored OpenPGP public keys) and show who signed it (a SIGNED column). Without it, signatures are still checked, and a signed
    /// change shows its key as untrusted.
    #[arg(long, value_name = "FILE")]
    pub trusted_keys: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: HistoryArgs, out: Output) -> Result<Outcome> {
    let trusted = match &args.trusted_keys {
        Some(path) => trusted_keys(path)?,
        None => AllowedSigners::default(),
    };
    let store = open_store(&args.remote)?;
    let query = Query {
        app: args.app.as_deref(),
        limit: args.limit,
    };
    let (branch, entries) = history(&store, &args.env, &query, &trusted)?;

    match out.format {
        Format::Json => out.json(&entries),
        Format::Text => {
            // Who signed, when asked or when any change is signed.
            let signatures = args.trusted_keys.is_some()
                || entries.iter().any(|e| e.signature != Verdict::Unsigned);
            let mut header = vec!["TIME".into(), "COMMIT".into(), "AUTHOR".into()];
            if signatures {
                header.push("SIGNED".into());
            }
            header.push("CHANGES".into());
            let mut rows = vec![header];
            for e in &entries {
                let changes = if e.changes.is_empty() {
                    format!("(no artifact moved) {}", e.subject)
                } else {
                    shown(&e.changes)
                };
                let mut row = vec![e.time.clone(), e.commit[..7].to_owned(), e.author.clone()];
                if signatures {
                    row.push(e.signature.short());
                }
                row.push(changes);
                rows.push(row);
            }
            if entries.is_empty() {
                out.status(format!("no change of `{branch}` matches"));
            } else {
                for line in table(&rows) {
                    out.data(line);
                }
            }
        }
    }
    Ok(Outcome::Success)
}
