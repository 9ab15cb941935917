//! A transport error's chain in words a person can act on: the name did not resolve, the
//! connection was refused or timed out, TLS failed (and why), each with the host; else the
//! chain itself, each cause once. hyper's own message is only `client error (Connect)`, and
//! reqwest's `error sending request`: the cause that matters is deep in their chains.

use std::error::Error;

/// Where a request went, for the words: `host:port` and whether it was https.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    pub port: u16,
    pub https: bool,
}

impl Peer {
    /// The peer of `uri` (port 443 or 80 when it names none).
    pub fn of(uri: &http::Uri) -> Peer {
        let https = uri.scheme_str() == Some("https");
        Peer {
            host: uri.host().unwrap_or("?").to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            https,
        }
    }

    /// The peer of `url` as text (`?` when it does not parse).
    pub fn of_url(url: &str) -> Peer {
        url.parse::<http::Uri>()
            .map(|uri| Peer::of(&uri))
            .unwrap_or(Peer {
                host: "?".to_owned(),
                port: 0,
                https: false,
            })
    }
}

/// Why an exchange with `peer` failed, from `error` and its causes.
pub fn explain(error: &(dyn Error + 'static), peer: &Peer) -> String {
    let Peer { host, port, https } = peer;
    let mut chain: Vec<&(dyn Error + 'static)> = vec![error];
    let mut next = error.source();
    while let Some(e) = next.filter(|_| chain.len() < 16) {
        chain.push(e);
        next = e.source();
    }
    let innermost = chain.last().map(|e| e.to_string()).unwrap_or_default();
    for e in &chain {
        let io = e.downcast_ref::<std::io::Error>();
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            io.and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return format!("TLS with {host}:{port} failed: {tls}");
        }
        match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                return format!("connection to {host}:{port} refused (is the server up?)");
            }
            Some(std::io::ErrorKind::TimedOut) => {
                return format!("connection to {host}:{port} timed out");
            }
            _ => {}
        }
        if e.to_string() == "dns error" {
            return format!("cannot resolve `{host}` (DNS): {innermost}");
        }
    }
    // hyper-util's client error says whether connecting failed (reqwest's wraps it).
    let connect = chain.iter().any(|e| {
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
    });
    // Past DNS and TCP (whose errors hyper names), an https connection fails in TLS.
    let tcp = chain.iter().any(|e| e.to_string() == "tcp connect error");
    if connect && !tcp && *https {
        return format!("TLS with {host}:{port} failed: {innermost}");
    }
    if connect {
        return format!("cannot connect to {host}:{port}: {innermost}");
    }
    format!("request to {host}:{port} failed: {}", in_a_line(error))
}

/// An error and its causes in one line, each said once (a cause that its effect already
/// quotes is not repeated).
pub fn in_a_line(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a cause, as the clients' chains are.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<dyn Error + Send + Sync + 'static>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn peer(https: bool) -> Peer {
        Peer::of(
            &format!("{}://r.example/x", if https { "https" } else { "http" })
                .parse()
                .unwrap(),
        )
    }

    #[test]
    fn refused_timed_out_dns_and_tls_are_said_with_the_host() {
        let refused = Wrapped(
            "error sending request",
            Some(Box::new(Wrapped(
                "tcp connect error",
                Some(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
            ))),
        );
        assert_eq!(
            explain(&refused, &peer(false)),
            "connection to r.example:80 refused (is the server up?)"
        );
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            explain(&timed_out, &peer(true)),
            "connection to r.example:443 timed out"
        );
        let dns = Wrapped(
            "dns error",
            Some(Box::new(Wrapped("failed to lookup address", None))),
        );
        assert_eq!(
            explain(&dns, &peer(true)),
            "cannot resolve `r.example` (DNS): failed to lookup address"
        );
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let words = explain(&tls, &peer(true));
        assert!(
            words.starts_with("TLS with r.example:443 failed: invalid peer certificate"),
            "{words}"
        );
    }

    #[test]
    fn anything_else_is_its_chain_in_a_line() {
        let broken = Wrapped(
            "error reading a body from connection",
            Some(Box::new(Wrapped(
                "unexpected end of file",
                Some(Box::new(Wrapped("unexpected end of file", None))),
            ))),
        );
        assert_eq!(
            explain(&broken, &Peer::of_url("http://127.0.0.1:5000/v2/")),
            "request to 127.0.0.1:5000 failed: error reading a body from connection: unexpected end of file"
        );
        assert_eq!(in_a_line(&Wrapped("alone", None)), "alone");
        assert_eq!(Peer::of_url("not a url").host, "?");
    }
}
