//! `ferry approve`: approve a promotion request (not one's own).

use crate::cmd::shared::{identity, now, open_store};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{Approval, RequestState};
use crate::output::Output;
use crate::store::{self, RemoteArgs};

/// Approve a promotion request. Authors cannot approve their own requests; an approval is of
/// the request's current head, and recorded with who and when.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry approve 3
  ferry approve 3 --as alice")]
pub struct ApproveArgs {
    /// The request's id (`ferry requests` lists them).
    pub id: u64,

    /// Who approves. Default: git's `user.name`.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: ApproveArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let forge = LocalForge::new(&store);
    let who = identity(&store, args.as_name.as_deref());
    let signature =
        store::signature(store.repo()).map_err(|e| Error::failure(e.message().to_owned()))?;
    for _ in 0..10 {
        let record = forge.request(args.id)?;
        let mut request = record.value;
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
            out.status(format!("`{who}` already approved request #{}", request.id));
            return Ok(Outcome::Success);
        }
        request.approvals.push(Approval {
            by: who.clone(),
            at: now(),
            head: request.head.clone(),
        });
        let event = format!("request #{} approved by {who}", request.id);
        if forge.save(&request, record.tip, &event, &signature)? {
            out.data(format!(
                "#{} approved by {who} ({} approval{})",
                request.id,
                request.approvers(false).len(),
                if request.approvers(false).len() == 1 {
                    ""
                } else {
                    "s"
                }
            ));
            return Ok(Outcome::Success);
        }
        store.refresh();
    }
    Err(Error::failure(format!(
        "request #{} kept changing: try again",
        args.id
    )))
}
