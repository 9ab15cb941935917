//! From a request to a [`Route`], on the runtime, without the store: the method (only `GET`
//! and `HEAD`), the `Host` (a server on loopback answers only loopback names, so a web page
//! elsewhere cannot read it through DNS rebinding), the path (each segment percent-decoded,
//! then only ever compared with names: no path reaches a file), the query. Static assets are
//! answered here; the rest waits on the store's thread.

use std::sync::mpsc::{SyncSender, TrySendError};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::Job;
use crate::agent::server::{Reply, reply};

/// The stylesheet and the script of every page, served from memory.
const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/live.js");

/// What pages may load: their own stylesheet and script, and requests to their own origin
/// (the script's poll); no inline script or style, no frame, no plugin, no other origin.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Which requests get through, by who asked.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// The server listens on loopback: only requests naming a loopback host are answered.
    pub loopback_only: bool,
}

/// A page or a document of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`: the matrix, the promotion graph, each environment's deploy.
    Overview { page: usize, q: String, json: bool },
    /// `/requests`: the requests in a state, into or out of an environment.
    Requests {
        state: String,
        env: Option<String>,
        json: bool,
    },
    /// `/requests/ID`.
    Request { id: u64, json: bool },
    /// `/env/NAME`: status, protection, timeline, DORA.
    Environment { env: String, page: usize },
    /// `/diff/FROM/TO`.
    Diff {
        from: String,
        to: String,
        json: bool,
    },
    /// `/api/status[?env=]`: `ferry status --format json`.
    Status { env: Option<String> },
    /// `/api/history/ENV[?app=&limit=]`: `ferry history ENV --format json`.
    History {
        env: String,
        app: Option<String>,
        limit: Option<usize>,
    },
    /// `/api/audit/ENV[?since=]`: `ferry audit ENV --format json`.
    Audit { env: String, since: Option<String> },
    /// `/api/dora/ENV[?since=]`: `ferry dora ENV --format json`.
    Dora { env: String, since: Option<String> },
    /// `/api/fingerprint`: what the refs are now, in a few bytes.
    Fingerprint,
    /// Anything else.
    NotFound { path: String, json: bool },
}

/// The answer to `request`: from here, or from the store's thread through `jobs`.
pub async fn answer(request: Request<Incoming>, gate: Gate, jobs: &SyncSender<Job>) -> Reply {
    let mut reply = route_and_answer(&request, gate, jobs).await;
    harden(&mut reply);
    reply
}

async fn route_and_answer(
    request: &Request<Incoming>,
    gate: Gate,
    jobs: &SyncSender<Job>,
) -> Reply {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "ferry serve is read-only: GET and HEAD only\n",
            "text/plain; charset=utf-8",
        );
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    let host = match requested_host(request) {
        Ok(host) => host,
        Err(why) => return reply(StatusCode::BAD_REQUEST, why, "text/plain; charset=utf-8"),
    };
    if gate.loopback_only && !host.as_deref().is_none_or(loopback_host) {
        return reply(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers requests for 127.0.0.1 or localhost only\n",
            "text/plain; charset=utf-8",
        );
    }
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    match path {
        "/static/app.css" => return cached(reply(StatusCode::OK, CSS, "text/css; charset=utf-8")),
        "/static/live.js" => {
            return cached(reply(StatusCode::OK, JS, "text/javascript; charset=utf-8"));
        }
        _ => {}
    }
    let route = parse(path, query);
    let (answer, answered) = tokio::sync::oneshot::channel();
    match jobs.try_send(Job { route, answer }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            let mut busy = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: too many requests wait for the repository; try again\n",
                "text/plain; charset=utf-8",
            );
            busy.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return busy;
        }
        Err(TrySendError::Disconnected(_)) => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping\n",
                "text/plain; charset=utf-8",
            );
        }
    }
    answered.await.unwrap_or_else(|_| {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be built\n",
            "text/plain; charset=utf-8",
        )
    })
}

/// A static asset: the same for as long as the process runs.
fn cached(mut answer: Reply) -> Reply {
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    answer
}

/// The headers every answer carries.
fn harden(answer: &mut Reply) {
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// The host `request` names (RFC 9112 §3.2): the request target's when it is in absolute form,
/// else its one `Host` line; none for HTTP/1.0 without one. Two `Host` lines, or none in
/// HTTP/1.1, make a malformed request, which a server must refuse rather than pick one.
fn requested_host(request: &Request<Incoming>) -> Result<Option<String>, &'static str> {
    let mut lines = request.headers().get_all(header::HOST).iter();
    let line = lines.next();
    if lines.next().is_some() {
        return Err("a request names one host: two `Host` lines\n");
    }
    if let Some(authority) = request.uri().authority() {
        return Ok(Some(authority.as_str().to_owned()));
    }
    match line {
        Some(value) => match value.to_str() {
            Ok(host) => Ok(Some(host.to_owned())),
            Err(_) => Err("a `Host` line that is not text\n"),
        },
        None if request.version() == hyper::Version::HTTP_10 => Ok(None),
        None => Err("an HTTP/1.1 request names its host: no `Host` line\n"),
    }
}

/// Whether `host` is a loopback host (`localhost`, `127.0.0.1`, `[::1]`, with any port), as a
/// browser names it for a page it loaded from one.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The route `path` and `query` name.
pub fn parse(path: &str, query: &str) -> Route {
    let not_found = |json: bool| Route::NotFound {
        path: path.to_owned(),
        json,
    };
    let Some(segments) = segments(path) else {
        return not_found(path.starts_with("/api/"));
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let page = param("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let words: Vec<&str> = segments.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => Route::Overview {
            page,
            q: param("q").unwrap_or_default(),
            json: false,
        },
        ["requests"] | ["api", "requests"] => Route::Requests {
            state: param("state").unwrap_or_else(|| "open".to_owned()),
            env: param("env"),
            json: words[0] == "api",
        },
        ["requests", id] | ["api", "requests", id] => {
            match id.trim_start_matches('#').parse::<u64>() {
                Ok(id) => Route::Request {
                    id,
                    json: words[0] == "api",
                },
                Err(_) => not_found(words[0] == "api"),
            }
        }
        ["env", env] => Route::Environment {
            env: (*env).to_owned(),
            page,
        },
        ["diff", from, to] | ["api", "diff", from, to] => Route::Diff {
            from: (*from).to_owned(),
            to: (*to).to_owned(),
            json: words[0] == "api",
        },
        ["api", "overview"] => Route::Overview {
            page,
            q: param("q").unwrap_or_default(),
            json: true,
        },
        ["api", "status"] => Route::Status { env: param("env") },
        ["api", "history", env] => Route::History {
            env: (*env).to_owned(),
            app: param("app"),
            limit: param("limit").and_then(|l| l.parse().ok()),
        },
        ["api", "audit", env] => Route::Audit {
            env: (*env).to_owned(),
            since: param("since"),
        },
        ["api", "dora", env] => Route::Dora {
            env: (*env).to_owned(),
            since: param("since"),
        },
        ["api", "fingerprint"] => Route::Fingerprint,
        _ => not_found(words.first() == Some(&"api")),
    }
}

/// The path's segments, each percent-decoded; `None` for one that is not UTF-8, empty inside
/// the path, or `.`/`..` (which name nothing here).
fn segments(path: &str) -> Option<Vec<String>> {
    let trimmed = path.strip_prefix('/')?;
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    trimmed
        .split('/')
        .map(|segment| {
            let decoded = decode(segment)?;
            (!decoded.is_empty() && decoded != "." && decoded != "..").then_some(decoded)
        })
        .collect()
}

/// `%XX` escapes decoded; `None` when the bytes are not UTF-8 or an escape is broken.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::{Route, parse};

    #[test]
    fn paths_route_to_pages_and_documents() {
        assert_eq!(
            parse("/", "page=3&q=we"),
            Route::Overview {
                page: 3,
                q: "we".into(),
                json: false
            }
        );
        assert_eq!(
            parse("/api/requests/%233", ""),
            Route::Request { id: 3, json: true }
        );
        assert_eq!(
            parse("/env/prod", "page=0"),
            Route::Environment {
                env: "prod".into(),
                page: 1
            }
        );
        assert_eq!(
            parse("/api/audit/prod", "since=2026-10-14"),
            Route::Audit {
                env: "prod".into(),
                since: Some("2026-10-14".into())
            }
        );
    }

    #[test]
    fn traversals_and_broken_escapes_name_nothing() {
        for path in [
            "/env/..%2f..",
            "/env/%2e%2e",
            "/env/..",
            "/env//prod",
            "/env/%ff",
            "/env/%zz",
            "/env/%2",
            "/static/../Cargo.toml",
        ] {
            match parse(path, "") {
                Route::NotFound { .. } => {}
                // A decoded `/` stays inside one segment: a name no environment has.
                Route::Environment { env, .. } => assert!(env.contains('/'), "{path}: {env}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}
