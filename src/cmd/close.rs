//! `ferry close`: close a promotion request without merging it.

use crate::cmd::shared::{identity, now, open_store, signature};
use crate::error::{Error, Outcome, Result};
use crate::forge::RequestState;
use crate::forge::local::LocalForge;
use crate::output::{Format, Output};
use crate::store::RemoteArgs;

/// Close a promotion request without merging it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry close 3
  ferry close 3 --as alice
  ferry requests --state open      # what is still open")]
pub struct CloseArgs {
    /// The request's id.
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: u64,

    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: CloseArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = LocalForge::new(&store);
    let who = identity(&store, args.actor.as_name.as_deref());
    let signature = signature(&store)?;
    let request = forge.modify(args.id, &signature, |request| {
        if request.state != RequestState::Open {
            return Err(Error::failure(format!(
                "request #{} is already {}",
                request.id,
                request.state.as_str()
            )));
        }
        request.state = RequestState::Closed;
        request.closed_by = Some(who.clone());
        request.closed_at = Some(now());
        Ok(Some(format!("request #{} closed by {who}", request.id)))
    })?;
    match out.format {
        Format::Json => out
            .json(&serde_json::json!({"id": request.id, "state": request.state, "closed_by": who})),
        Format::Text => out.data(format!("#{} closed", request.id)),
    }
    Ok(Outcome::Success)
}
