//! `ferry serve`: a read-only web dashboard over the state store, and the JSON API behind it.
//!
//! The shape: hyper's connections are served by [`crate::agent::server`] (bounded: a
//! connection cap, head and request deadlines, no body ever read); each request is routed
//! there, on the runtime, into a [`routes::Route`] without touching the store. Only `GET` and
//! `HEAD` pass (any other method is answered 405), static assets are answered from memory,
//! and everything else becomes a job on a bounded queue (full: 503) for the one thread that
//! owns the [`Store`]: it lists the refs at most every [`Settings::relist`], keeps the
//! documents it built while their fingerprint (a hash of every branch and `refs/ferry/…`
//! ref) holds, and renders pages from them with the embedded templates. The pages carry
//! that fingerprint; their script polls `/api/fingerprint` and reloads when it changes.
//!
//! Every document is the one the CLI prints with `--format json` ([`crate::view`]): the same
//! function builds both.

mod background;
mod markdown;
mod pages;
mod routes;
pub mod svg;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use crate::agent::server::{Limits, Reply, serve_on};
use crate::error::{Error, Result};
use crate::store::Store;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the refs are listed again at most (a page or a poll in between reuses the
    /// last listing): cheap on a path, an `ls-remote` on a network remote.
    pub relist: Duration,
    /// What a client may do (connections, head size, deadlines).
    pub limits: Limits,
    /// Requests waiting for the store's thread; past it, 503.
    pub queue: usize,
}

impl Settings {
    /// The settings for `store`: its refs listed again every 250 ms on a path, every 10 s over
    /// the network.
    pub fn for_store(store: &Store) -> Settings {
        Settings {
            relist: if store.is_local() {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(10)
            },
            limits: Limits {
                max_connections: 128,
                header_bytes: 16 << 10,
                header_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(30),
            },
            queue: 64,
        }
    }
}

/// A listener on `addr`; an address in use is a clear error.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        let error = Error::failure(format!("cannot listen on `{addr}`: {e}"));
        if e.kind() == std::io::ErrorKind::AddrInUse {
            error.hint(format!(
                "another process serves port {}: choose another with `--listen 127.0.0.1:PORT` (`127.0.0.1:0` picks a free one)",
                addr.port()
            ))
        } else {
            error.hint("an address and port such as `127.0.0.1:8080`")
        }
    })
}

/// A request for the store's thread, and where its answer goes.
struct Job {
    route: routes::Route,
    answer: tokio::sync::oneshot::Sender<Reply>,
}

/// Serves the dashboard of `store` on `listener` until the process ends: the connections on
/// the runtime, the store on this thread, DORA's figures on a thread of their own with the
/// store `reopen` gives (the same repository).
pub fn run(
    store: Store,
    reopen: impl FnOnce() -> Result<Store> + Send + 'static,
    listener: TcpListener,
    settings: Settings,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| Error::failure(format!("cannot listen: {e}")))?;
    let (jobs, queue) = mpsc::sync_channel::<Job>(settings.queue.max(1));
    let gate = routes::Gate {
        loopback_only: local.ip().is_loopback(),
    };
    serve_on(listener, settings.limits, move |request| {
        let jobs = jobs.clone();
        async move { routes::answer(request, gate, &jobs).await }
    })
    .map_err(|e| Error::failure(format!("cannot serve on `{local}`: {e}")))?;
    let reports = background::Reports::start(reopen, |store| {
        store.refs().map(|refs| pages::fingerprint(&refs))
    });
    let mut dashboard = pages::Dashboard::new(store, settings.relist, reports);
    for job in queue {
        let reply = dashboard.answer(&job.route);
        // A client that went away no longer waits for it.
        let _ = job.answer.send(reply);
    }
    Ok(())
}

/// The URL people open for a server listening on `addr`.
pub fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let error = super::bind(taken.local_addr().unwrap()).unwrap_err();
        assert!(
            error.message.starts_with("cannot listen on `127.0.0.1:"),
            "{error}"
        );
        assert!(error.hints[0].contains("127.0.0.1:0"), "{error}");
    }
}
