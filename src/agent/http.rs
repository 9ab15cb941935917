//! The agent's HTTP endpoint (`--listen`, off by default): `/metrics` in Prometheus' text
//! format, `/healthz` (the process answers), `/readyz` (the last reconcile converged), and
//! `POST /trigger` to reconcile now: a webhook, which with a secret must carry GitHub's
//! `X-Hub-Signature-256` (an HMAC-SHA256 of the body, `sha256=HEX`).
//!
//! It runs on [`super::server`], which bounds heads, deadlines and connections. A trigger's
//! body is refused past [`MAX_BODY`] and is never held: it streams into the HMAC, and a missing
//! signature is refused before any of it is read. Label values are escaped as the text
//! exposition format says.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{KeyInit, Mac};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::server::{self, Limits, Reply, reply};

/// The largest trigger body read: ferry's push events are a few hundred bytes, GitHub's
/// rarely over a hundred kilobytes (it lists at most 20 commits).
pub const MAX_BODY: usize = 1 << 20;

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
    /// Reconciles by outcome (`deployed`, `failed`, `stalled`, `retrying`, `waiting`).
    pub reconciles: std::collections::BTreeMap<String, u64>,
    pub seconds_sum: f64,
    pub drift_events: u64,
    pub artifact_bytes: u64,
    pub revision: Option<String>,
    pub triggers: u64,
    /// The state of the desired revision's signature, when the agent checks it.
    pub signature: Option<&'static str>,
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

    /// Records what the desired revision's signature said (`None`: not checked).
    pub fn record_signature(&self, state: Option<&'static str>) {
        self.metrics.lock().expect("metrics lock").signature = state;
    }

    fn metrics_text(&self) -> String {
        let m = self.metrics.lock().expect("metrics lock").clone();
        let env = label(&self.env);
        let count: u64 = m.reconciles.values().sum();
        let mut out = String::new();
        out.push_str("# HELP ferry_agent_reconciles_total Reconciles, by outcome.\n");
        out.push_str("# TYPE ferry_agent_reconciles_total counter\n");
        for outcome in ["deployed", "failed", "stalled", "retrying", "waiting"] {
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
        if let Some(signature) = m.signature {
            out.push_str(
                "# HELP ferry_agent_desired_signature The desired revision's signature, by state (1: the current one).\n",
            );
            out.push_str("# TYPE ferry_agent_desired_signature gauge\n");
            for state in crate::sign::Verdict::STATES {
                out.push_str(&format!(
                    "ferry_agent_desired_signature{{env=\"{env}\",state=\"{state}\"}} {}\n",
                    u8::from(state == signature)
                ));
            }
        }
        if let Some(revision) = m.revision.as_deref().map(label) {
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

/// A label value as the text exposition format writes it: `\\`, `"` and a line feed escaped,
/// so that no value can end its label or its line.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Serves the endpoint on `addr` in a thread, on [`server`]'s guarded server; the address it
/// is bound to.
pub fn serve(addr: &str, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    server::serve_on(listener, Limits::default(), move |request| {
        answer(request, shared.clone())
    })?;
    Ok(bound)
}

async fn answer(request: Request<Incoming>, shared: Arc<Shared>) -> Reply {
    let text = "text/plain";
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => reply(StatusCode::OK, "ok\n", text),
        ("GET", "/readyz") => {
            if shared.ready.load(Ordering::SeqCst) {
                reply(StatusCode::OK, "ready\n", text)
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "not converged\n", text)
            }
        }
        ("GET", "/metrics") => reply(
            StatusCode::OK,
            shared.metrics_text(),
            "text/plain; version=0.0.4",
        ),
        ("POST", "/trigger") => match trigger(request, &shared).await {
            Ok(()) => {
                shared.trigger.store(true, Ordering::SeqCst);
                shared.metrics.lock().expect("metrics lock").triggers += 1;
                reply(StatusCode::ACCEPTED, "reconciling\n", text)
            }
            Err(refused) => refused,
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/trigger") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n", text)
        }
        _ => reply(StatusCode::NOT_FOUND, "not found\n", text),
    }
}

/// Checks a trigger: with a secret, its signature over the body, which is streamed into the
/// HMAC as it arrives and never held; without, the body is only counted. A body declared or
/// found larger than [`MAX_BODY`] is refused (413), as is a missing or wrong signature (401)
/// — the first before any of the body is read.
async fn trigger(request: Request<Incoming>, shared: &Shared) -> Result<(), Reply> {
    let text = "text/plain";
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a trigger's body is at most {MAX_BODY} bytes\n"),
            text,
        )
    };
    let unsigned = || {
        reply(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-Hub-Signature-256\n",
            text,
        )
    };
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut mac = match &shared.secret {
        Some(secret) => {
            let expected = request
                .headers()
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("sha256="))
                .and_then(|hex| hex::decode(hex).ok())
                .ok_or_else(unsigned)?;
            let mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                .expect("HMAC takes any key length");
            Some((mac, expected))
        }
        None => None,
    };
    let mut body = request.into_body();
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(reply(StatusCode::BAD_REQUEST, "unreadable body\n", text));
        };
        if let Some(data) = frame.data_ref() {
            read += data.len();
            if read > MAX_BODY {
                return Err(too_large());
            }
            if let Some((mac, _)) = &mut mac {
                mac.update(data);
            }
        }
    }
    match mac {
        Some((mac, expected)) => mac.verify_slice(&expected).map_err(|_| unsigned()),
        None => Ok(()),
    }
}

/// Whether `header` (`sha256=HEX`) is the HMAC-SHA256 of `body` with `secret`, compared in
/// constant time.
pub fn signed(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex) else {
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
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
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

    #[test]
    fn label_values_cannot_break_out_of_their_label() {
        assert_eq!(label("prod"), "prod");
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let shared = Shared::new("x\"} 1\nevil{a=\"", None);
        shared.record("deployed", 1.0, Some("r\\1".into()), 0, 0);
        let text = shared.metrics_text();
        assert!(
            text.contains("ferry_agent_triggers_total{env=\"x\\\"} 1\\nevil{a=\\\"\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("revision=\"r\\\\1\"} 1\n"), "{text}");
        // Every line is a comment or one sample: no value started a line of its own.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("ferry_agent_"),
                "{line}"
            );
        }
    }
}
