//! The process's one HTTP client: hyper-util's pooled client over rustls (ring), with the
//! system's TLS roots loaded once, at the first `https` handshake ([`super::tls`]), speaking
//! plain `http` too. Built on first use and shared: a health check tried ten times loads the
//! roots once at most, and a connection to the same host is reused.
//!
//! [`probe`] and [`post`] are the small exchanges (a health check, a trigger): only the status
//! counts, and at most 64 KiB of an answer's body is read, so an endless answer neither grows
//! the process nor holds it until the timeout.

use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::BodyExt;

use super::NetError;
use super::words::{Peer, explain};

/// A request's body: whole, in memory (ferry sends small ones).
pub type Body = http_body_util::Full<hyper::body::Bytes>;

pub type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// The largest part of an answer's body [`probe`] and [`post`] read.
const DRAINED: usize = 64 << 10;

/// The shared client.
pub fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::tls::client_config())
            .https_or_http()
            .enable_http1()
            .build();
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https)
    })
}

/// A request to `url` with ferry's user agent.
pub fn request(
    method: hyper::Method,
    url: &str,
) -> Result<hyper::http::request::Builder, NetError> {
    let uri: hyper::Uri = url.parse().map_err(|e| NetError::Url(format!("{e}")))?;
    Ok(hyper::Request::builder().method(method).uri(uri).header(
        hyper::header::USER_AGENT,
        concat!("ferry/", env!("CARGO_PKG_VERSION")),
    ))
}

/// Sends `request` on the shared client: the answer's head, or why there is none, in words.
pub async fn send(
    request: hyper::Request<Body>,
) -> Result<hyper::Response<hyper::body::Incoming>, NetError> {
    let peer = Peer::of(request.uri());
    client()
        .request(request)
        .await
        .map_err(|e| NetError::Transport(explain(&e, &peer)))
}

/// The status of `request`, answered within `timeout` (at most [`DRAINED`] bytes of its body
/// read and dropped; redirects not followed).
fn status_of(request: hyper::Request<Body>, timeout: Duration) -> Result<u16, NetError> {
    super::block_on(async {
        let answer = async {
            let response = send(request).await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut read = 0usize;
            while read < DRAINED {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            Ok(status)
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| NetError::Timeout(timeout))?
    })
}

/// The status of a `GET url` answered within `timeout` (a health check).
pub fn probe(url: &str, timeout: Duration) -> Result<u16, NetError> {
    let request = request(hyper::Method::GET, url)?
        .body(Body::default())
        .map_err(|e| NetError::Request(e.to_string()))?;
    status_of(request, timeout)
}

/// `POST url` with a JSON `body` and `headers`, answered within `timeout`: the status.
pub fn post(
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<u16, NetError> {
    let mut builder =
        request(hyper::Method::POST, url)?.header(hyper::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let request = builder
        .body(Body::new(hyper::body::Bytes::from(body)))
        .map_err(|e| NetError::Request(e.to_string()))?;
    status_of(request, timeout)
}

/// How many of [`post_each`]'s requests are in flight at once.
pub const POSTS_AT_ONCE: usize = 64;

/// Posts `body` to each of `urls`, [`POSTS_AT_ONCE`] at a time, each within `timeout`: what
/// each answered, in their order. A URL that never answers holds up its own request only, not
/// those listed after it: a list of hundreds of dead agents costs a few timeouts, not one each.
pub fn post_each(
    urls: &[String],
    body: &[u8],
    headers: &[(&str, String)],
    timeout: Duration,
) -> Vec<Result<u16, NetError>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let answers: Vec<Mutex<Option<Result<u16, NetError>>>> =
        urls.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..urls.len().min(POSTS_AT_ONCE) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(url) = urls.get(i) else { break };
                    let answer = post(url, body.to_vec(), headers, timeout);
                    *answers[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
                }
            });
        }
    });
    answers
        .into_iter()
        .map(|a| {
            a.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(NetError::Request("not sent".to_owned())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A health check that answers without end is judged by its status, at once, without
    /// reading (or holding) the rest.
    #[test]
    fn a_probe_reads_no_endless_body() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                // The request first (a response before it is a protocol error to hyper).
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n");
                let chunk = vec![b'x'; 1 << 16];
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_secs(20) {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
        });
        let started = std::time::Instant::now();
        let status = probe(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(15),
        );
        assert_eq!(status.unwrap(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// An https server whose certificate no system root signed: refused, in words, with the
    /// host.
    #[test]
    fn an_unknown_issuer_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        crate::net::tls::tests::make_certs(dir.path(), "IP:127.0.0.1");
        let mut server = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/git_http.py"
            ))
            .args([".", "--tls", "server.pem", "server.key"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (installed by .ci/run)");
        let mut port = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let host = format!("127.0.0.1:{}", port.trim());
        let err = probe(&format!("https://{host}/files/a"), Duration::from_secs(10));
        let _ = server.kill();
        let _ = server.wait();
        let err = err.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("TLS with {host} failed: invalid peer certificate")),
            "{err}"
        );
    }

    #[test]
    fn probes_share_one_client_and_say_why_they_failed() {
        assert!(std::ptr::eq(client(), client()));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).unwrap_err();
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            format!("connection to 127.0.0.1:{port} refused (is the server up?)")
        );
        // Accepted, never answered: the timeout.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let err = probe(&url, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.to_string(), "no answer within 0.2s");
        let err = probe("http://exa mple/", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, NetError::Url(_)), "{err}");
    }
}
