//! `ferry requests`: the promotion requests of the embedded forge, with their state.

use serde::Serialize;

use crate::cmd::shared::{open_store, table};
use crate::error::{Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{Request, RequestState};
use crate::output::{Format, Output};
use crate::plan::promote::timestamp;
use crate::store::RemoteArgs;

/// Which requests to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFilter {
    Open,
    Merged,
    Closed,
    All,
}

/// List promotion requests: id, state, environments, apps, approvals.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry requests                     # open requests
  ferry requests --env prod --state all
  ferry requests --format json")]
pub struct RequestsArgs {
    /// Only requests into or out of this environment.
    #[arg(long)]
    pub env: Option<String>,

    #[arg(long, value_enum, default_value_t = StateFilter::Open)]
    pub state: StateFilter,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    request: &'a Request,
}

pub fn run(args: RequestsArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = LocalForge::new(&store);
    let requests: Vec<Request> = forge
        .requests()?
        .into_iter()
        .map(|r| r.value)
        .filter(|r| args.env.as_ref().is_none_or(|e| &r.to == e || &r.from == e))
        .filter(|r| match args.state {
            StateFilter::All => true,
            StateFilter::Open => r.state == RequestState::Open,
            StateFilter::Merged => r.state == RequestState::Merged,
            StateFilter::Closed => r.state == RequestState::Closed,
        })
        .collect();
    match out.format {
        Format::Json => out.json(
            &requests
                .iter()
                .map(|request| Listed { request })
                .collect::<Vec<_>>(),
        ),
        Format::Text => {
            if requests.is_empty() {
                out.status("no requests");
                return Ok(Outcome::Success);
            }
            let mut rows = vec![
                [
                    "ID",
                    "STATE",
                    "PROMOTION",
                    "APPS",
                    "APPROVED BY",
                    "AUTHOR",
                    "UPDATED",
                ]
                .map(str::to_owned)
                .to_vec(),
            ];
            for r in &requests {
                let apps: Vec<String> = r
                    .moves
                    .iter()
                    .map(|m| format!("{} {}", m.app, m.to))
                    .collect();
                let approvers = r.approvers(false);
                rows.push(vec![
                    format!("#{}", r.id),
                    r.state.as_str().to_owned(),
                    format!(
                        "{} → {}{}",
                        r.from,
                        r.to,
                        if r.rollback { " (rollback)" } else { "" }
                    ),
                    apps.join(", "),
                    if approvers.is_empty() {
                        "-".to_owned()
                    } else {
                        approvers.join(", ")
                    },
                    r.author.clone(),
                    timestamp(r.updated_at),
                ]);
            }
            for line in table(&rows) {
                out.data(line);
            }
        }
    }
    Ok(Outcome::Success)
}
