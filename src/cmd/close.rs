//! `ferry close`: close a promotion request without merging it.

use crate::cmd::shared::{identity, now, open_store};
use crate::error::{Error, Outcome, Result};
use crate::forge::RequestState;
use crate::forge::local::LocalForge;
use crate::output::Output;
use crate::store::{self, RemoteArgs};

/// Close a promotion request without merging it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry close 3")]
pub struct CloseArgs {
    /// The request's id.
    pub id: u64,

    /// Who closes it. Default: git's `user.name`.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: CloseArgs, out: Output) -> Result<Outcome> {
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
                "request #{} is already {}",
                request.id,
                request.state.as_str()
            )));
        }
        request.state = RequestState::Closed;
        request.closed_by = Some(who.clone());
        request.closed_at = Some(now());
        if forge.save(
            &request,
            record.tip,
            &format!("request #{} closed by {who}", request.id),
            &signature,
        )? {
            out.data(format!("#{} closed", request.id));
            return Ok(Outcome::Success);
        }
        store.refresh();
    }
    Err(Error::failure(format!(
        "request #{} kept changing: try again",
        args.id
    )))
}
