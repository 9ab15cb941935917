//! The one network layer: everything ferry sends over HTTP goes through here.
//!
//! - [`runtime`]: one tokio runtime per process, built on first use; [`block_on`] runs a
//!   future on it from any thread that is not one of its own.
//! - [`http`]: one HTTP/1.1 client (hyper-util's, TLS by rustls with the system's roots loaded
//!   once, at the first https handshake: [`tls`]), shared by artifact downloads, health checks, the hook's triggers and the registry
//!   manifests; [`probe`] and [`post`] for the small exchanges.
//! - [`redirect`]: a `Location` joined as RFC 3986 says, http(s) only, at most
//!   [`redirect::MAX_REDIRECTS`].
//! - [`pace`]: how long a transfer may go on (deadline, idle time, minimum rate, a stop).
//! - [`retry`]: the one backoff policy (exponential, jittered, `Retry-After` honoured) for the
//!   agent's loop, bump's compare-and-swap and the GitHub client.
//! - [`words`]: a transport error chain said in words a person can act on.
//!
//! Not here: `oci-client` and octocrab keep their own (reqwest and hyper) clients, which run on
//! this runtime; libgit2 speaks HTTP itself.

pub mod http;
pub mod pace;
pub mod redirect;
pub mod retry;
pub mod runtime;
pub mod tls;
pub mod words;

use std::time::Duration;

pub use self::http::{Body, Client, client, post, probe, request};
pub use self::pace::{Abandoned, Bounds, Pace};
pub use self::runtime::{block_on, runtime};

/// Why an exchange over the network did not happen, or broke off.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// What was to be requested is not a URL.
    #[error("not a URL: {0}")]
    Url(String),
    /// The request could not be made (a header value that is not one).
    #[error("{0}")]
    Request(String),
    /// Connecting or exchanging failed, in [`words`].
    #[error("{0}")]
    Transport(String),
    /// No answer within the time allowed.
    #[error("no answer within {}s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The transfer went on too long, too slowly, or the process is stopping.
    #[error(transparent)]
    Abandoned(#[from] Abandoned),
    /// A redirect that cannot be followed.
    #[error(transparent)]
    Redirect(#[from] redirect::RedirectError),
    /// A local file could not be read (a `file://` artifact).
    #[error("{0}")]
    Io(std::io::Error),
}

impl NetError {
    /// Whether trying again later may succeed without anyone changing anything: the other
    /// end could not be reached, did not answer in time, or broke off.
    pub fn is_transient(&self) -> bool {
        match self {
            NetError::Transport(_) | NetError::Timeout(_) => true,
            NetError::Abandoned(abandoned) => !matches!(abandoned, Abandoned::Stopping),
            _ => false,
        }
    }
}

impl From<NetError> for crate::error::Error {
    /// Exit 3 when retrying may help, else exit 1.
    fn from(error: NetError) -> crate::error::Error {
        if error.is_transient() {
            crate::error::Error::unavailable(error.to_string())
        } else {
            crate::error::Error::failure(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_map_to_exit_3() {
        let down =
            NetError::Transport("connection to 127.0.0.1:1 refused (is the server up?)".into());
        assert!(down.is_transient());
        assert_eq!(crate::error::Error::from(down).exit_code(), 3);
        let slow = NetError::Timeout(Duration::from_millis(1500));
        assert_eq!(slow.to_string(), "no answer within 1.5s");
        assert_eq!(crate::error::Error::from(slow).exit_code(), 3);
        let bad = NetError::Url("invalid format".into());
        assert!(!bad.is_transient());
        assert_eq!(crate::error::Error::from(bad).exit_code(), 1);
        assert!(!NetError::Abandoned(Abandoned::Stopping).is_transient());
    }
}
