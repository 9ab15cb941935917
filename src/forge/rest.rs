//! A JSON REST client for the hosted forges that have no client of their own in the tree
//! (Gitea and Forgejo): the process's HTTP client ([`crate::net::http`]), a token in one
//! header, answers read whole (bounded), pages followed by `Link: rel="next"` only on the
//! API's own origin (a token never goes to another host), and rate limits waited out:
//! `Retry-After`, else `RateLimit-Reset`/`X-RateLimit-Reset` when none remain, bounded.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::Value;

use crate::net::retry::{self, Backoff, Failure, Jitter};

/// The longest answer read (a page of pull requests with their bodies fits many times).
const MAX_ANSWER: usize = 32 << 20;
/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Rate-limited calls retried, and the longest wait.
const RETRIES: u32 = 4;
const MAX_WAIT: Duration = Duration::from_secs(300);
/// The most pages a list follows, and the most bytes they add up to.
const MAX_PAGES: usize = 1_000;
const MAX_LIST: usize = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("cannot reach the {forge} API at `{api}`: {message}")]
    Unreachable {
        forge: &'static str,
        api: String,
        message: String,
    },
    #[error("{forge} refused {method} {path}: {status} {message}")]
    Refused {
        forge: &'static str,
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{forge}'s rate limit held for too long on {path}")]
    RateLimited { forge: &'static str, path: String },
    #[error("{forge} answered {method} {path} with something ferry does not understand: {message}")]
    Unexpected {
        forge: &'static str,
        method: String,
        path: String,
        message: String,
    },
}

impl RestError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RestError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A forge's REST API: its base URL (`https://codeberg.org/api/v1`) and the header that
/// carries the token.
pub struct Rest {
    pub forge: &'static str,
    api: String,
    auth: (&'static str, String),
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        write!(f, "Rest({} at {})", self.forge, self.api)
    }
}

impl Rest {
    /// A password in `api` (`https://user:pass@host/api/v4`) is dropped: the token is the
    /// credential, and the URL is shown in messages and logs.
    pub fn new(forge: &'static str, api: &str, auth: (&'static str, String)) -> Rest {
        Rest {
            forge,
            api: without_userinfo(api.trim_end_matches('/')),
            auth,
        }
    }

    /// An answer ferry does not understand, on this forge.
    pub fn unexpected(&self, method: &str, path: &str, message: impl Into<String>) -> RestError {
        RestError::Unexpected {
            forge: self.forge,
            method: method.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// Who the token is: `field` of `GET /user` (`login` on Gitea, `username` on GitLab).
    pub fn user(&self, field: &str) -> Result<String, RestError> {
        let (_, _, user) = self.call("GET", "/user", None)?;
        user[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.unexpected("GET", "/user", format!("no `{field}` in the answer")))
    }

    pub fn api(&self) -> &str {
        &self.api
    }

    /// The origin (`scheme://host[:port]`) of a URL.
    fn origin(url: &str) -> Option<&str> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find('/').unwrap_or(rest.len());
        Some(&url[..scheme.len() + 3 + end])
    }

    /// One call to `path` (relative to the API base, or a next-page URL on its origin), rate
    /// limits waited out. The status, the next page's URL and the JSON answer (`null` when
    /// empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Option<String>, Value), RestError> {
        self.call_sized(method, path, body)
            .map(|(status, next, value, _)| (status, next, value))
    }

    /// [`Rest::call`], with the answer's size in bytes.
    fn call_sized(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Option<String>, Value, usize), RestError> {
        let url = if path.contains("://") {
            if Self::origin(path) != Self::origin(&self.api) {
                return Err(RestError::Unexpected {
                    forge: self.forge,
                    method: method.to_owned(),
                    path: path.to_owned(),
                    message: "a next page on another origin (the token is sent only to the API)"
                        .to_owned(),
                });
            }
            path.to_owned()
        } else if path.starts_with('/') {
            format!("{}{path}", self.api)
        } else {
            // A next page `@evil.example/…` or `.evil.example/…` appended to an API URL
            // without a path would name another host: only absolute URLs and API paths.
            return Err(RestError::Unexpected {
                forge: self.forge,
                method: method.to_owned(),
                path: path.to_owned(),
                message: "a next page that is not an absolute URL on the API's origin".to_owned(),
            });
        };
        let shown = url.strip_prefix(&self.api).unwrap_or(&url).to_owned();
        let policy = Backoff::new(Duration::from_secs(30), MAX_WAIT)
            .jitter(Jitter::None)
            .attempts(RETRIES + 1)
            .longest_wait(MAX_WAIT);
        let mut attempt = 0u32;
        retry::blocking(policy, || {
            attempt += 1;
            tracing::debug!(forge = self.forge, method, path = %shown, attempt, "API call");
            let (status, headers, bytes) =
                self.exchange(method, &url, body).map_err(Failure::Fatal)?;
            let text = String::from_utf8_lossy(&bytes);
            let value: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text)
                    .unwrap_or_else(|_| Value::String(text.chars().take(500).collect()))
            };
            if (200..300).contains(&status) {
                let next = next_link(&headers);
                return Ok((status, next, value, bytes.len()));
            }
            let message = said(&value, status);
            let error = RestError::Refused {
                forge: self.forge,
                method: method.to_owned(),
                path: shown.clone(),
                status,
                message,
            };
            match limited(status, &headers, std::time::SystemTime::now()) {
                Some(wait) if wait > MAX_WAIT && attempt <= RETRIES => {
                    Err(Failure::Fatal(RestError::RateLimited {
                        forge: self.forge,
                        path: shown.clone(),
                    }))
                }
                Some(wait) if attempt <= RETRIES => {
                    tracing::warn!(forge = self.forge, path = %shown, wait_s = wait.as_secs(), "rate limit: waiting");
                    Err(Failure::Retry {
                        error,
                        after: Some(wait),
                    })
                }
                _ => Err(Failure::Fatal(error)),
            }
        })
    }

    /// Every item of a list's pages: each page must be a JSON array (an answer of another
    /// shape is not taken for a list without the item looked for).
    pub fn list(&self, path: &str) -> Result<Vec<Value>, RestError> {
        self.list_until(path, &|_| false)
    }

    /// The items of a list's pages up to the first item `enough` says ends it (that page read
    /// whole).
    pub fn list_until(
        &self,
        path: &str,
        enough: &dyn Fn(&Value) -> bool,
    ) -> Result<Vec<Value>, RestError> {
        let pages = self.pages_until(path, enough)?;
        if let Some(odd) = pages.iter().find(|page| !page.is_array()) {
            return Err(RestError::Unexpected {
                forge: self.forge,
                method: "GET".to_owned(),
                path: path.to_owned(),
                message: format!(
                    "a list answered with {}",
                    match odd {
                        Value::Object(_) => "an object",
                        Value::String(_) => "text",
                        _ => "a value",
                    }
                ),
            });
        }
        Ok(pages
            .into_iter()
            .flat_map(|page| match page {
                Value::Array(items) => items,
                _ => Vec::new(),
            })
            .collect())
    }

    /// Every page of a paged answer, each as it is (an array, or an object such as a combined
    /// status); an empty page or body ends it.
    pub fn pages(&self, path: &str) -> Result<Vec<Value>, RestError> {
        self.pages_until(path, &|_| false)
    }

    /// [`Rest::pages`] up to the first page with an item `enough` says ends it.
    fn pages_until(
        &self,
        path: &str,
        enough: &dyn Fn(&Value) -> bool,
    ) -> Result<Vec<Value>, RestError> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut read = 0usize;
        while let Some(path) = next {
            pages += 1;
            if pages > MAX_PAGES || !seen.insert(path.clone()) {
                return Err(RestError::Unexpected {
                    forge: self.forge,
                    method: "GET".to_owned(),
                    path,
                    message: if pages > MAX_PAGES {
                        format!("more than {MAX_PAGES} pages (narrow the question, with `--since`)")
                    } else {
                        "its pages do not end (a next page it already read)".to_owned()
                    },
                });
            }
            let (_, link, value, size) = self.call_sized("GET", &path, None)?;
            // Every page under the bound of one answer would still add up without end.
            read += size;
            if read > MAX_LIST {
                return Err(RestError::Unexpected {
                    forge: self.forge,
                    method: "GET".to_owned(),
                    path,
                    message: format!("its pages add up to more than {} MiB", MAX_LIST >> 20),
                });
            }
            match value {
                Value::Array(page) if page.is_empty() => break,
                Value::Null => break,
                page => {
                    let ended = page
                        .as_array()
                        .is_some_and(|items| items.iter().any(enough));
                    items.push(page);
                    if ended {
                        break;
                    }
                }
            }
            next = link;
        }
        Ok(items)
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), RestError> {
        self.exchange_said(method, url, body)
            .map_err(|message| RestError::Unreachable {
                forge: self.forge,
                api: self.api.clone(),
                message: message.0,
            })
    }

    fn exchange_said(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), Said> {
        let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut builder = crate::net::request(method, url)
            .map_err(|e| e.to_string())?
            .header(hyper::header::ACCEPT, "application/json")
            .header(self.auth.0, self.auth.1.as_str());
        let payload = match body {
            Some(body) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(body).map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        let request = builder
            .body(crate::net::Body::new(payload.into()))
            .map_err(|e| e.to_string())?;
        crate::net::block_on(async {
            let exchange = async {
                let response = crate::net::http::send(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let mut body = response.into_body();
                let mut bytes = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| e.to_string())?;
                    if let Some(data) = frame.data_ref() {
                        if bytes.len() + data.len() > MAX_ANSWER {
                            return Err(format!("an answer larger than {} MiB", MAX_ANSWER >> 20));
                        }
                        bytes.extend_from_slice(data);
                    }
                }
                Ok((status, headers, bytes))
            };
            tokio::time::timeout(TIMEOUT, exchange)
                .await
                .map_err(|_| Said(format!("no answer within {}s", TIMEOUT.as_secs())))?
                .map_err(Said)
        })
    }
}

/// A forge's API base for a remote: `https://HOST[:PORT]{path}` (`http` for an `http://`
/// remote, the port kept for either; an ssh remote's host over https). `None` for a path.
pub fn api_of_remote(shown: &str, path: &str) -> Option<String> {
    let (host, _) = super::host_and_path(shown)?;
    let scheme = if shown.starts_with("http://") {
        "http"
    } else {
        "https"
    };
    let port = shown
        .split_once("://")
        .and_then(|(s, rest)| (s == "http" || s == "https").then_some(rest))
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.rsplit('@').next())
        .and_then(|hostport| hostport.split_once(':').map(|(_, p)| format!(":{p}")))
        .unwrap_or_default();
    Some(format!("{scheme}://{host}{port}{path}"))
}

/// `url` without the `user[:password]@` of its authority.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// Why an exchange did not happen, in words.
struct Said(String);

impl<T: std::fmt::Display> From<T> for Said {
    fn from(e: T) -> Said {
        Said(e.to_string())
    }
}

/// What an error body says: `message` (Gitea, GitHub), `error`/`error_description` or a
/// `message` object of field errors (GitLab), else the status's reason.
fn said(value: &Value, status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
        .to_owned();
    let printable = |t: &str| -> String {
        t.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(1_000)
            .collect()
    };
    match value {
        Value::Object(map) => {
            if let Some(text) = map.get("message").and_then(Value::as_str) {
                let mut text = printable(text);
                if let Some(errors) = map.get("errors").and_then(Value::as_array) {
                    let listed: Vec<String> = errors
                        .iter()
                        .map(|e| {
                            printable(&e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                        })
                        .collect();
                    if !listed.is_empty() {
                        text = format!("{text} ({})", listed.join("; "));
                    }
                }
                return text;
            }
            if let Some(fields) = map.get("message").and_then(Value::as_object) {
                return printable(
                    &fields
                        .iter()
                        .map(|(k, v)| format!("`{k}` {}", v.to_string().trim_matches('"')))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            if let Some(text) = map.get("error").and_then(Value::as_str) {
                let detail = map
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                return printable(&format!("{text}{detail}"));
            }
            reason
        }
        Value::String(text) if !text.trim().is_empty() => printable(text.trim()),
        _ => reason,
    }
}

/// The wait a rate-limited answer asks for: 429 (or 403/503 with a limit exhausted):
/// `Retry-After`, else until the reset, else 60 s.
fn limited(status: u16, headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let exhausted = header("ratelimit-remaining")
        .or(header("x-ratelimit-remaining"))
        .is_some_and(|r| r.trim() == "0");
    if status != 429 && !(exhausted && matches!(status, 403 | 503)) {
        return None;
    }
    if let Some(wait) = header("retry-after").and_then(|v| retry::retry_after(v, now)) {
        return Some(wait);
    }
    if let Some(reset) = header("ratelimit-reset")
        .or(header("x-ratelimit-reset"))
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(retry::until_reset(reset, now));
    }
    Some(Duration::from_secs(60))
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_said_in_the_forges_words() {
        assert_eq!(
            said(
                &json!({"message": "not found", "url": "https://x/api/swagger"}),
                404
            ),
            "not found"
        );
        assert_eq!(
            said(
                &json!({"message": {"name": ["has already been taken"]}}),
                400
            ),
            "`name` [\"has already been taken\"]"
        );
        assert_eq!(
            said(
                &json!({"error": "insufficient_scope", "error_description": "needs api"}),
                403
            ),
            "insufficient_scope: needs api"
        );
        assert_eq!(said(&Value::Null, 502), "Bad Gateway");
        assert_eq!(said(&json!("line\u{1b}[31m"), 500), "line [31m");
    }

    #[test]
    fn rate_limits_and_next_pages() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut headers = http::HeaderMap::new();
        assert_eq!(limited(429, &headers, now), Some(Duration::from_secs(60)));
        assert_eq!(limited(403, &headers, now), None);
        headers.insert("ratelimit-remaining", "0".parse().unwrap());
        headers.insert("ratelimit-reset", "1030".parse().unwrap());
        assert_eq!(limited(403, &headers, now), Some(Duration::from_secs(30)));
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(limited(429, &headers, now), Some(Duration::from_secs(7)));
        assert_eq!(limited(500, &headers, now), None);
        let mut link = http::HeaderMap::new();
        link.insert(
            "link",
            "<https://x/api/v1/repos/a/b/pulls?page=2>; rel=\"next\", <https://x/api/v1/repos/a/b/pulls?page=5>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&link).as_deref(),
            Some("https://x/api/v1/repos/a/b/pulls?page=2")
        );
        assert_eq!(
            Rest::origin("https://x:3000/api/v1"),
            Some("https://x:3000")
        );
        assert_eq!(
            without_userinfo("https://ops:p@ss@x:3000/api/v4"),
            "https://x:3000/api/v4"
        );
        assert_eq!(without_userinfo("http://x/api/v1"), "http://x/api/v1");
    }
}
