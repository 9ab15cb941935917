//! `ferry close`: close a promotion request without merging it.

use crate::cmd::shared::{identity, now, open_store};
use crate::error::{Error, Outcome, Result};
use crate::forge::{CloseReason, Forge, ForgeError, RequestState};
use crate::output::{Format, Output};
use crate::store::RemoteArgs;

/// Close a promotion request without merging it.
///
/// On a hosted forge the request is the promotion's pull or merge request: its number is the
/// id, and only an open request of a promotion branch (`ferry/promote/…`) is closed.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry close 3
  ferry close 3 --as alice
  GITHUB_TOKEN=… ferry close 12 --forge github --remote https://github.com/acme/deploy
  ferry requests --state open      # what is still open")]
pub struct CloseArgs {
    /// The request's id.
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: u64,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: CloseArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = args.forge.open(&store)?;
    let forge: &dyn Forge = forge.as_ref();
    let who = identity(&store, args.actor.as_name.as_deref());
    forge
        .close(args.id, &who, now(), CloseReason::ByHand)
        .map_err(|e| match e {
            ForgeError::NotOpen { id, state } => {
                Error::failure(format!("request #{id} is already {}", state.as_str()))
            }
            e => e.into(),
        })?;
    match out.format {
        Format::Json => out.json(
            &serde_json::json!({"id": args.id, "state": RequestState::Closed, "closed_by": who}),
        ),
        Format::Text => out.data(format!("#{} closed", args.id)),
    }
    Ok(Outcome::Success)
}
