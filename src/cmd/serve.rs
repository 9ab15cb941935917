//! `ferry serve`: the web dashboard over the deployment repository (see [`crate::serve`]).

use std::net::SocketAddr;

use crate::error::{Outcome, Result};
use crate::output::{Format, Output};
use crate::store::{Remote, RemoteArgs, Store};

/// Serve a read-only web dashboard of the deployment repository: the matrix of apps ×
/// environments with the promotion graph and each environment's deploy, the promotion
/// requests with their gates, approvals and body, and each environment's timeline, protection
/// and DORA charts; behind every page, the JSON documents `--format json` prints
/// (`/api/status`, `/api/requests`, `/api/history/ENV`, `/api/audit/ENV`, `/api/diff/FROM/TO`,
/// `/api/dora/ENV`).
///
/// No login: it listens on loopback unless told otherwise, answers only GET and HEAD, and
/// reads the embedded forge's records. Pages work without JavaScript; with it they reload
/// when the repository's refs move. Ctrl-C stops it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry serve                                   # http://127.0.0.1:8080/
  ferry serve --listen 127.0.0.1:0              # a free port, printed on stdout
  ferry serve --remote /srv/git/deploy.git --listen 127.0.0.1:9000")]
pub struct ServeArgs {
    /// The address to listen on. Anyone who reaches it reads the repository's state: an
    /// address other than loopback shares it with the network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: ServeArgs, out: Output) -> Result<Outcome> {
    // A network remote's cache is locked by whoever uses it: the server, which runs for days,
    // keeps one of its own (`serve/` under the cache directory), so that commands run beside it.
    let remote = Remote::resolve(&args.remote)?;
    let cache = Remote::cache_root(&args.remote).join("serve");
    let store = Store::open(&remote, &cache)?;
    // A repository with no environment has nothing to show: say so now, not on every page.
    crate::view::status::environments(&store)?;
    let listener = crate::serve::bind(args.listen)?;
    let bound = listener.local_addr().unwrap_or(args.listen);
    let url = crate::serve::url_of(bound);
    tracing::info!("serving {} on {url}", store.remote().shown);
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "{url} is reachable beyond this machine: anyone who reaches it reads the repository's state"
        );
    }
    match out.format {
        Format::Json => out.json(&serde_json::json!({ "url": url })),
        Format::Text => out.data(&url),
    }
    out.status(format!(
        "serving {} on {url} (Ctrl-C stops it)",
        store.remote().shown
    ));
    let settings = crate::serve::Settings::for_store(&store);
    // DORA's figures are computed beside the pages, with a store of their own.
    let reopen = move || Ok(Store::open(&remote, &cache.join("dora"))?);
    crate::serve::run(store, reopen, listener, settings)?;
    Ok(Outcome::Success)
}
