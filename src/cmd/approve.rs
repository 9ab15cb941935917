//! `ferry approve`: approve a promotion request (not one's own).

use crate::cmd::shared::{identity, now, open_store, signature};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{Approval, RequestState};
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
    let forge = LocalForge::new(&store);
    let who = identity(&store, args.actor.as_name.as_deref());
    let signature = signature(&store)?;
    let mut already = false;
    let request = forge.modify(args.id, &signature, |request| {
        if request.state != RequestState::Open {
            return Err(Error::failure(format!(
                "request #{} is {}",
                request.id,
                request.state.as_str()
            )));
        }
        if request.author == who {
            return Err(Error::failure(format!(
                "`{who}` opened request #{}: authors cannot approve their own requests",
                request.id
            ))
            .hint("ask someone else to run `ferry approve`"));
        }
        if request
            .approvals
            .iter()
            .any(|a| a.by == who && a.head == request.head)
        {
            already = true;
            return Ok(None);
        }
        request.approvals.push(Approval {
            by: who.clone(),
            at: now(),
            head: request.head.clone(),
        });
        Ok(Some(format!("request #{} approved by {who}", request.id)))
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
