//! `ferry approve`: approve a promotion request (not one's own).

use crate::cmd::shared::{identity, now, open_store};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{Approved, Forge, ForgeError};
use crate::output::{Format, Output};
use crate::store::RemoteArgs;

/// Approve a promotion request.
///
/// Authors cannot approve their own requests; an approval is of the request's current head,
/// and recorded with who and when.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry approve 3
  ferry approve 3 --as alice")]
pub struct ApproveArgs {
    /// The request's id (`ferry requests` lists them).
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: u64,

    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: ApproveArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let local = LocalForge::new(&store);
    let forge: &dyn Forge = &local;
    let who = identity(&store, args.actor.as_name.as_deref());
    let Approved { request, already } =
        forge.approve(args.id, &who, now()).map_err(|e| match e {
            e @ ForgeError::OwnRequest { .. } => {
                Error::failure(e.to_string()).hint("ask someone else to run `ferry approve`")
            }
            e => e.into(),
        })?;
    let n = request.approvers(false).len();
    match out.format {
        Format::Json => out.json(&serde_json::json!({
            "id": request.id,
            "approved_by": who,
            "head": request.head,
            "approvals": request.approvals,
            "already_approved": already,
        })),
        Format::Text if already => {
            out.status(format!("`{who}` already approved request #{}", request.id))
        }
        Format::Text => out.data(format!(
            "#{} approved by {who} ({n} approval{})",
            request.id,
            if n == 1 { "" } else { "s" }
        )),
    }
    Ok(Outcome::Success)
}
