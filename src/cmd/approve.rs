//! `ferry approve`: approve a promotion request (not one's own).

use crate::cmd::shared::{acting, now, open_store};
use crate::error::{Error, Outcome, Result};
use crate::forge::{Approved, Forge, ForgeError};
use crate::output::{Format, Output};
use crate::store::RemoteArgs;

/// Approve a promotion request.
///
/// Authors cannot approve their own requests; an approval is of the request's current head,
/// and recorded with who and when. On a hosted forge it is the token's user's approval of the
/// request's head (GitHub and Gitea: a review approving it; GitLab: the approvals API): three
/// calls (who the token is, the request, the approval), and one's own request is refused
/// before any write.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry approve 3
  ferry approve 3 --as alice
  GITHUB_TOKEN=… ferry approve 12 --forge github --remote https://github.com/acme/deploy
  GITLAB_TOKEN=… ferry approve 7 --remote https://gitlab.com/acme/deploy")]
pub struct ApproveArgs {
    /// The request's id (`ferry requests` lists them).
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: u64,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: ApproveArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = args.forge.open(&store)?;
    let forge: &dyn Forge = forge.as_ref();
    let who = acting(&store, forge, &args.actor)?;
    let Approved {
        request,
        already,
        complete,
    } = forge.approve(args.id, &who, now()).map_err(|e| match e {
        e @ (ForgeError::OwnRequest { .. } | ForgeError::OwnProposal { .. }) => {
            Error::failure(e.to_string()).hint("ask someone else to run `ferry approve`")
        }
        ForgeError::NotOpen { id, state } => Error::failure(format!(
            "request #{id} is {}: nothing to approve",
            state.as_str()
        )),
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
            "approvals_complete": complete,
        })),
        Format::Text if already => {
            out.status(format!("`{who}` already approved request #{}", request.id))
        }
        Format::Text if complete => out.data(format!(
            "#{} approved by {who} ({n} approval{})",
            request.id,
            if n == 1 { "" } else { "s" }
        )),
        Format::Text => out.data(format!(
            "#{} approved by {who} (at {})",
            request.id,
            crate::output::abbrev(&request.head, 7)
        )),
    }
    Ok(Outcome::Success)
}
