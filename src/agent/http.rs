//! The agent's HTTP endpoint (`--listen`, off by default): `/metrics` in Prometheus' text
//! format, `/healthz` (the process answers), `/readyz` (the last reconcile converged), and
//! `POST /trigger` to reconcile now: a webhook, which with a secret must carry GitHub's
//! `X-Hub-Signature-256` (an HMAC-SHA256 of the body, `sha256=HEX`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{KeyInit, Mac};

/// The largest webhook body read (GitHub's push events are at most 25 MB; ferry's are small).
const MAX_BODY: usize = 25 << 20;

/// What the endpoint and the agent's loop share.
pub struct Shared {
    env: String,
    secret: Option<Vec<u8>>,
    trigger: AtomicBool,
    ready: AtomicBool,
    metrics: Mutex<Metrics>,
}

/// The agent's counters, since it started.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Reconciles by outcome (`deployed`, `failed`, `stalled`, `retrying`).
    pub reconciles: std::collections::BTreeMap<String, u64>,
    pub seconds_sum: f64,
    pub drift_events: u64,
    pub artifact_bytes: u64,
    pub revision: Option<String>,
    pub triggers: u64,
}

impl Shared {
    pub fn new(env: &str, secret: Option<String>) -> Arc<Shared> {
        Arc::new(Shared {
            env: env.to_owned(),
            secret: secret.map(String::into_bytes),
            trigger: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            metrics: Mutex::new(Metrics::default()),
        })
    }

    /// Whether a trigger came since the last call.
    pub fn take_trigger(&self) -> bool {
        self.trigger.swap(false, Ordering::SeqCst)
    }

    /// Records one reconcile.
    pub fn record(
        &self,
        outcome: &str,
        seconds: f64,
        revision: Option<String>,
        drift: u64,
        bytes: u64,
    ) {
        self.ready.store(outcome == "deployed", Ordering::SeqCst);
        let mut m = self.metrics.lock().expect("metrics lock");
        *m.reconciles.entry(outcome.to_owned()).or_default() += 1;
        m.seconds_sum += seconds;
        m.drift_events = drift;
        m.artifact_bytes = bytes;
        if revision.is_some() {
            m.revision = revision;
        }
    }

    fn metrics_text(&self) -> String {
        let m = self.metrics.lock().expect("metrics lock").clone();
        let env = &self.env;
        let count: u64 = m.reconciles.values().sum();
        let mut out = String::new();
        out.push_str("# HELP ferry_agent_reconciles_total Reconciles, by outcome.\n");
        out.push_str("# TYPE ferry_agent_reconciles_total counter\n");
        for outcome in ["deployed", "failed", "stalled", "retrying"] {
            let n = m.reconciles.get(outcome).copied().unwrap_or(0);
            out.push_str(&format!(
                "ferry_agent_reconciles_total{{env=\"{env}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP ferry_agent_reconcile_duration_seconds Time spent reconciling.\n");
        out.push_str("# TYPE ferry_agent_reconcile_duration_seconds summary\n");
        out.push_str(&format!(
            "ferry_agent_reconcile_duration_seconds_sum{{env=\"{env}\"}} {:.6}\n",
            m.seconds_sum
        ));
        out.push_str(&format!(
            "ferry_agent_reconcile_duration_seconds_count{{env=\"{env}\"}} {count}\n"
        ));
        out.push_str(
            "# HELP ferry_agent_errors_total Reconciles that did not converge, by class.\n",
        );
        out.push_str("# TYPE ferry_agent_errors_total counter\n");
        for class in ["failed", "stalled", "retrying"] {
            let n = m.reconciles.get(class).copied().unwrap_or(0);
            out.push_str(&format!(
                "ferry_agent_errors_total{{env=\"{env}\",class=\"{class}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP ferry_agent_drift_events_total Drift found and healed.\n");
        out.push_str("# TYPE ferry_agent_drift_events_total counter\n");
        out.push_str(&format!(
            "ferry_agent_drift_events_total{{env=\"{env}\"}} {}\n",
            m.drift_events
        ));
        out.push_str("# HELP ferry_agent_artifact_bytes_total Artifact bytes downloaded.\n");
        out.push_str("# TYPE ferry_agent_artifact_bytes_total counter\n");
        out.push_str(&format!(
            "ferry_agent_artifact_bytes_total{{env=\"{env}\"}} {}\n",
            m.artifact_bytes
        ));
        out.push_str("# HELP ferry_agent_triggers_total Webhook triggers accepted.\n");
        out.push_str("# TYPE ferry_agent_triggers_total counter\n");
        out.push_str(&format!(
            "ferry_agent_triggers_total{{env=\"{env}\"}} {}\n",
            m.triggers
        ));
        if let Some(revision) = &m.revision {
            out.push_str(
                "# HELP ferry_agent_applied_revision_info The revision last reconciled.\n",
            );
            out.push_str("# TYPE ferry_agent_applied_revision_info gauge\n");
            out.push_str(&format!(
                "ferry_agent_applied_revision_info{{env=\"{env}\",revision=\"{revision}\"}} 1\n"
            ));
        }
        out
    }
}

/// Serves the endpoint on `addr` in a thread; the address it is bound to.
pub fn serve(addr: &str, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    serve_on(listener, move |stream| handle(stream, &shared));
    Ok(bound)
}

/// Answers each connection `listener` accepts with `handler`, in a thread of its own; the
/// accepting loop is a thread too, which ends with the process.
pub(crate) fn serve_on(
    listener: TcpListener,
    handler: impl Fn(TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
) {
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || {
                let _ = handler(stream);
            });
        }
    });
}

/// A request's method, path (without its query) and headers (names in lower case), and the
/// reader, at the start of its body.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: BufReader<TcpStream>,
}

impl Request {
    /// Reads the request line and the headers, waiting at most `timeout` for each read.
    pub(crate) fn read(stream: &TcpStream, timeout: Duration) -> std::io::Result<Request> {
        stream.set_read_timeout(Some(timeout))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("/");
        let path = path.split('?').next().unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Ok(Request {
            method,
            path,
            headers,
            body: reader,
        })
    }

    /// The value of the header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut request = Request::read(&stream, Duration::from_secs(10))?;
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let signature = request.header("x-hub-signature-256").map(str::to_owned);
    let mut stream = stream;
    if length > MAX_BODY {
        return respond(&mut stream, 413, "body too large\n", "text/plain");
    }
    let mut body = vec![0u8; length];
    request.body.read_exact(&mut body)?;
    let (method, path) = (request.method, request.path.as_str());
    match (method.as_str(), path) {
        ("GET", "/healthz") => respond(&mut stream, 200, "ok\n", "text/plain"),
        ("GET", "/readyz") => {
            if shared.ready.load(Ordering::SeqCst) {
                respond(&mut stream, 200, "ready\n", "text/plain")
            } else {
                respond(&mut stream, 503, "not converged\n", "text/plain")
            }
        }
        ("GET", "/metrics") => respond(
            &mut stream,
            200,
            shared.metrics_text(),
            "text/plain; version=0.0.4",
        ),
        ("POST", "/trigger") => {
            if let Some(secret) = &shared.secret
                && !signed(secret, &body, signature.as_deref())
            {
                return respond(
                    &mut stream,
                    401,
                    "missing or wrong X-Hub-Signature-256\n",
                    "text/plain",
                );
            }
            shared.trigger.store(true, Ordering::SeqCst);
            shared.metrics.lock().expect("metrics lock").triggers += 1;
            respond(&mut stream, 202, "reconciling\n", "text/plain")
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/trigger") => {
            respond(&mut stream, 405, "method not allowed\n", "text/plain")
        }
        _ => respond(&mut stream, 404, "not found\n", "text/plain"),
    }
}

/// Whether `header` (`sha256=HEX`) is the HMAC-SHA256 of `body` with `secret`, compared in
/// constant time.
pub fn signed(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The `X-Hub-Signature-256` header value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!(
        "sha256={}",
        crate::deploy::fetch::hex(&mac.finalize().into_bytes())
    )
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes a whole response and closes the exchange (`Connection: close`).
pub(crate) fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: impl AsRef<[u8]>,
    kind: &str,
) -> std::io::Result<()> {
    let body = body.as_ref();
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Service Unavailable",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_as_github_makes_them() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload
        // "Hello, World!".
        let sig = signature(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(signed(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(&sig)
        ));
        assert!(!signed(b"another secret", b"Hello, World!", Some(&sig)));
        assert!(!signed(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            None
        ));
        assert!(!signed(
            b"It's a Secret to Everybody",
            b"Hello",
            Some("sha256=zz")
        ));
    }
}
