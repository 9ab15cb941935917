//! GitHub as the forge: promotion requests are pull requests, checks are commit statuses.
//!
//! A promotion costs a constant number of API calls whatever the number of apps: the source
//! commit's combined status and the open pull request are read (2 reads), then the Git Data
//! API writes the proposal as a tree with inline content on the target's tree, a commit, and
//! the request branch's ref, and the pull request is opened or updated and labelled (5
//! writes). What ferry already knows from git (tips, trees) costs no call. Secondary rate
//! limits (403/429 with `Retry-After` or `x-ratelimit-reset`) are waited out, bounded;
//! pagination follows `Link: rel="next"`.

use crate::net::retry::{self, Backoff, Failure, Jitter};
use std::time::Duration;

use git2::Oid;
use http::StatusCode;
use octocrab::Octocrab;
use serde_json::{Value, json};

use super::pulls::{add_statuses, approvals, is_promotion, record_of, request_of, status_of};
use super::{
    Approved, CloseReason, Forge, ForgeError, ForgeKind, Merge, OpenRequest, Proposal, Published,
    Record, Request, Status, Statuses,
};
use crate::plan::protection::Rules;

/// How many times a rate-limited call is retried, and the longest single wait.
const RATE_LIMIT_RETRIES: u32 = 4;
const MAX_WAIT: Duration = Duration::from_secs(300);
/// The most pages of one list ferry reads (100 items each): a list that goes on is a loop.
const MAX_PAGES: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("`{0}` is not `owner/name`")]
    BadRepo(String),
    #[error("{0}")]
    TokenFile(crate::secret::SecretError),
    #[error("GITHUB_TOKEN is not set")]
    NoToken,
    #[error("GITHUB_TOKEN holds characters no token has (control characters or non-ASCII)")]
    BadToken,
    #[error("cannot reach the GitHub API at `{api}`: {message}")]
    Unreachable { api: String, message: String },
    #[error("GitHub refused {method} {path}: {status} {message}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("GitHub's rate limit held for too long on {path}")]
    RateLimited { path: String },
    #[error("GitHub answered {method} {path} with something ferry does not understand: {message}")]
    Unexpected {
        method: String,
        path: String,
        message: String,
    },
}

impl GitHubError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            GitHubError::BadRepo(_) => Some("pass `--repo owner/name` (or set FERRY_REPO)"),
            GitHubError::NoToken | GitHubError::BadToken => Some(
                "set GITHUB_TOKEN to a token that can write pull requests, contents and statuses",
            ),
            GitHubError::Refused { status: 401, .. } => {
                Some("the token is missing, expired or invalid")
            }
            GitHubError::Refused { status: 403, .. } | GitHubError::Refused { status: 404, .. } => {
                Some(
                    "check that the token can read and write this repository (contents, pull requests, statuses)",
                )
            }
            GitHubError::Unreachable { .. } => Some("check GITHUB_API_URL and the network"),
            _ => None,
        }
    }
}

/// `owner/name` of a GitHub remote URL (`https://github.com/o/r.git`, `git@github.com:o/r`,
/// `ssh://git@github.com/o/r`): github.com, or the host of GITHUB_API_URL (GitHub Enterprise).
pub fn repo_of_remote(url: &str) -> Option<String> {
    let mut hosts = vec!["github.com".to_owned()];
    hosts.extend(
        std::env::var("GITHUB_API_URL")
            .ok()
            .and_then(|api| crate::forge::host_of(&api))
            .map(|host| host.trim_start_matches("api.").to_owned()),
    );
    let (host, path) = crate::forge::host_and_path(url)?;
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        return None;
    }
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.split('/');
    let (owner, name) = (parts.next()?, parts.next()?);
    (!owner.is_empty() && !name.is_empty() && parts.next().is_none())
        .then(|| format!("{owner}/{name}"))
}

/// A pull request as ferry needs it.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// A GitHub repository through its REST API.
pub struct GitHub {
    client: Octocrab,
    api: String,
    owner: String,
    name: String,
}

impl GitHub {
    /// `repo` is `owner/name`; the token comes from GITHUB_TOKEN, the API from GITHUB_API_URL
    /// (GitHub Enterprise), else `https://api.github.com`.
    pub fn new(repo: &str) -> Result<GitHub, GitHubError> {
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| GitHubError::BadRepo(repo.to_owned()))?;
        let token = crate::secret::from_env("GITHUB_TOKEN")
            .map_err(GitHubError::TokenFile)?
            .ok_or(GitHubError::NoToken)?;
        // What no header can carry is no token (and would make the client panic).
        if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(GitHubError::BadToken);
        }
        // A password in the URL is dropped: the token is the credential, and the URL is shown
        // in errors and logs.
        let api = std::env::var("GITHUB_API_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(|u| super::rest::without_userinfo(&u))
            .unwrap_or_else(|| "https://api.github.com".to_owned());
        let client = {
            // octocrab starts its service on the runtime it is built in: the process's one.
            let _guard = crate::net::runtime().enter();
            Octocrab::builder()
                .base_uri(api.as_str())
                .and_then(|b| b.personal_token(token).build())
                .map_err(|e| GitHubError::Unreachable {
                    api: api.clone(),
                    message: e.to_string(),
                })?
        };
        Ok(GitHub {
            client,
            api,
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    /// One call, with rate limits waited out. Returns the status, the `Link` next URL and the
    /// JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Option<String>, Value), GitHubError> {
        let unreachable = |e: &dyn std::fmt::Display| GitHubError::Unreachable {
            api: self.api.clone(),
            message: e.to_string(),
        };
        // Rate limits are waited out: `Retry-After`, else until `x-ratelimit-reset`, else
        // (a 429 saying nothing) 60 s, doubling; a wait longer than MAX_WAIT gives up. The
        // policy counts the attempts and sleeps the waits given here.
        let policy = Backoff::new(Duration::from_secs(30), MAX_WAIT)
            .jitter(Jitter::None)
            .attempts(RATE_LIMIT_RETRIES + 1)
            .longest_wait(MAX_WAIT);
        let mut attempt = 0;
        retry::blocking(policy, || {
            tracing::debug!(method, path, attempt, "GitHub API");
            attempt += 1;
            let (status, headers, text) = crate::net::block_on(async {
                let response = match method {
                    "GET" => self.client._get(path).await,
                    "POST" => self.client._post(path, body).await,
                    "PATCH" => self.client._patch(path, body).await,
                    "PUT" => self.client._put(path, body).await,
                    "DELETE" => self.client._delete(path, body).await,
                    other => unreachable!("no {other} calls"),
                }?;
                let status = response.status();
                let headers = response.headers().clone();
                let text = self.client.body_to_string(response).await?;
                Ok::<_, octocrab::Error>((status, headers, text))
            })
            .map_err(|e| Failure::Fatal(unreachable(&e)))?;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let limited = rate_limited(status, &headers, attempt, std::time::SystemTime::now());
            if limited == Limited::GiveUp {
                return Err(Failure::Fatal(GitHubError::RateLimited {
                    path: path.to_owned(),
                }));
            }
            let value: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            if !status.is_success() {
                let message = value
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or(status.canonical_reason().unwrap_or(""))
                    .to_owned();
                let detail = validation_errors(&value);
                let error = GitHubError::Refused {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    status: status.as_u16(),
                    message: match detail {
                        Some(detail) => format!("{message} ({detail})"),
                        None => message,
                    },
                };
                return Err(match limited {
                    Limited::Wait(wait) if attempt <= RATE_LIMIT_RETRIES => {
                        tracing::warn!(path, wait_s = wait.as_secs(), "GitHub rate limit: waiting");
                        Failure::Retry {
                            error,
                            after: Some(wait),
                        }
                    }
                    _ => Failure::Fatal(error),
                });
            }
            Ok((status, next_link(header("link").as_deref()), value))
        })
    }

    /// Every page of a list: at most MAX_PAGES, each read once, all on the API's host (a
    /// next page elsewhere is not GitHub's answer).
    fn list(&self, path: &str) -> Result<Vec<Value>, GitHubError> {
        let odd = |message: String| GitHubError::Unexpected {
            method: "GET".to_owned(),
            path: path.to_owned(),
            message,
        };
        let mut items = Vec::new();
        let mut read = std::collections::HashSet::new();
        let mut next = Some(path.to_owned());
        while let Some(page) = next {
            if !self.on_api(&page) {
                return Err(odd(format!(
                    "its next page is on another host (`{}`)",
                    crate::output::abbrev(&page, 200)
                )));
            }
            if !read.insert(page.clone()) {
                return Err(odd("its next page is one it already read".to_owned()));
            }
            if read.len() > MAX_PAGES {
                return Err(odd(format!("more than {MAX_PAGES} pages")));
            }
            let (_, link, value) = self.call("GET", &page, None)?;
            match value {
                Value::Array(page) => items.extend(page),
                other => items.push(other),
            }
            next = link;
        }
        Ok(items)
    }

    /// Whether `url` (a path, or an absolute URL from a `Link` header) is on the API's
    /// scheme, host and port, under its path.
    fn on_api(&self, url: &str) -> bool {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return false;
        };
        if uri.scheme().is_none() && uri.authority().is_none() {
            return url.starts_with('/');
        }
        let Ok(api) = self.api.parse::<http::Uri>() else {
            return false;
        };
        let port = |u: &http::Uri| {
            u.port_u16().or_else(|| match u.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
        };
        uri.scheme() == api.scheme()
            && uri.host().map(str::to_ascii_lowercase) == api.host().map(str::to_ascii_lowercase)
            && port(&uri) == port(&api)
            && uri.path().starts_with(api.path().trim_end_matches('/'))
    }

    /// The branch protection of `branch`; `None` when the branch is not protected.
    pub fn branch_protection(&self, branch: &str) -> Result<Option<Value>, GitHubError> {
        let path = self.repo_path(&format!("/branches/{branch}/protection"));
        match self.call("GET", &path, None) {
            Ok((_, _, value)) => Ok(Some(value)),
            Err(GitHubError::Refused {
                status: 404,
                message,
                ..
            }) if message == "Branch not protected" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the branch protection of `branch` (replacing all of it); GitHub's answer.
    pub fn set_branch_protection(&self, branch: &str, rules: &Value) -> Result<Value, GitHubError> {
        let path = self.repo_path(&format!("/branches/{branch}/protection"));
        self.call("PUT", &path, Some(rules))
            .map(|(_, _, value)| value)
    }

    /// The latest status of each check on `sha` (the combined status, every page): its state,
    /// description, URL, who reported it (the creator's login) and when.
    fn combined_status(&self, sha: &str) -> Result<Statuses, GitHubError> {
        let mut checks = Statuses::new();
        for page in self.list(&self.repo_path(&format!("/commits/{sha}/status?per_page=100")))? {
            add_statuses(&page, &mut checks);
        }
        Ok(checks)
    }

    /// The open pull request from `branch` into `base`, if any.
    pub fn open_pull(&self, branch: &str, base: &str) -> Result<Option<PullRequest>, GitHubError> {
        let path = self.repo_path(&format!(
            "/pulls?state=open&head={}:{branch}&base={base}&per_page=100",
            self.owner
        ));
        Ok(self
            .list(&path)?
            .iter()
            .find(|pr| pr["head"]["ref"].as_str() == Some(branch))
            .and_then(pull))
    }

    /// Writes the proposal (a tree with inline content on the target's tree, a commit, the
    /// request branch) and opens or updates its pull request.
    fn publish_pull(
        &self,
        p: &Proposal<'_>,
        existing: Option<PullRequest>,
    ) -> Result<PullRequest, GitHubError> {
        let base_commit = p.commit.parent.to_string();
        let base_branch = p.base_branch;
        let unexpected = |method: &str, path: &str, what: &str| GitHubError::Unexpected {
            method: method.to_owned(),
            path: path.to_owned(),
            message: format!("no `{what}` in the answer"),
        };
        let entries: Vec<Value> = p
            .commit
            .files
            .iter()
            .map(|(path, content)| json!({"path": path, "mode": "100644", "type": "blob", "content": content}))
            .collect();
        let trees = self.repo_path("/git/trees");
        let (_, _, tree) = self.call(
            "POST",
            &trees,
            Some(&json!({"base_tree": p.parent_tree.to_string(), "tree": entries})),
        )?;
        let tree = tree["sha"]
            .as_str()
            .ok_or_else(|| unexpected("POST", &trees, "sha"))?
            .to_owned();
        let commits = self.repo_path("/git/commits");
        let (_, _, commit) = self.call(
            "POST",
            &commits,
            Some(&json!({"message": p.commit.message, "tree": tree, "parents": [base_commit]})),
        )?;
        let commit = commit["sha"]
            .as_str()
            .ok_or_else(|| unexpected("POST", &commits, "sha"))?
            .to_owned();

        // The request branch: moved (it is ferry's own, rebuilt on the target each time) or made.
        let update_ref = self.repo_path(&format!("/git/refs/heads/{}", p.branch));
        let create_ref = self.repo_path("/git/refs");
        let create = json!({"ref": format!("refs/heads/{}", p.branch), "sha": commit});
        let update = json!({"sha": commit, "force": true});
        let moved = if p.branch_exists {
            self.call("PATCH", &update_ref, Some(&update)).map(|_| ())
        } else {
            self.call("POST", &create_ref, Some(&create)).map(|_| ())
        };
        match moved {
            Ok(()) => {}
            // Someone made or removed it meanwhile: the other way.
            Err(GitHubError::Refused { status: 422, .. }) if p.branch_exists => {
                self.call("POST", &create_ref, Some(&create))?;
            }
            Err(GitHubError::Refused { status: 422, .. }) => {
                self.call("PATCH", &update_ref, Some(&update))?;
            }
            Err(e) => return Err(e),
        }

        let pulls = self.repo_path("/pulls");
        let pr = match existing {
            Some(pr) => {
                self.call(
                    "PATCH",
                    &self.repo_path(&format!("/pulls/{}", pr.number)),
                    Some(&json!({"title": p.title, "body": p.body})),
                )?;
                pr
            }
            None => {
                let open = json!({"title": p.title, "body": p.body, "head": p.branch, "base": base_branch});
                match self.call("POST", &pulls, Some(&open)) {
                    Ok((_, _, value)) => {
                        pull(&value).ok_or_else(|| unexpected("POST", &pulls, "number"))?
                    }
                    Err(GitHubError::Refused {
                        status: 422,
                        message,
                        ..
                    }) if message.contains("already exists") => {
                        let pr = self
                            .open_pull(p.branch, base_branch)?
                            .ok_or_else(|| unexpected("GET", &pulls, "open pull request"))?;
                        self.call(
                            "PATCH",
                            &self.repo_path(&format!("/pulls/{}", pr.number)),
                            Some(&json!({"title": p.title, "body": p.body})),
                        )?;
                        pr
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.call(
            "POST",
            &self.repo_path(&format!("/issues/{}/labels", pr.number)),
            Some(&json!({"labels": p.labels})),
        )?;
        Ok(pr)
    }

    /// The token's user's login.
    pub fn login(&self) -> Result<String, GitHubError> {
        let (_, _, user) = self.call("GET", "/user", None)?;
        user["login"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| GitHubError::Unexpected {
                method: "GET".to_owned(),
                path: "/user".to_owned(),
                message: "no `login` in the answer".to_owned(),
            })
    }

    /// Pull request `number`, which must be a promotion's (its head a `ferry/promote/` branch).
    fn promotion_pull(&self, number: u64) -> Result<Value, ForgeError> {
        let pr = match self.call("GET", &self.repo_path(&format!("/pulls/{number}")), None) {
            Ok((_, _, pr)) => pr,
            Err(GitHubError::Refused { status: 404, .. }) => {
                return Err(ForgeError::NoRequest(number));
            }
            Err(e) => return Err(e.into()),
        };
        if !is_promotion(&pr) {
            return Err(ForgeError::NoRequest(number));
        }
        Ok(pr)
    }

    /// The promotion pull requests in `state` (`open`, `all`), each with its reviews.
    fn promotions(&self, state: &str) -> Result<Vec<Record<Request>>, GitHubError> {
        let pulls = self.list(&self.repo_path(&format!(
            "/pulls?state={state}&sort=created&direction=asc&per_page=100"
        )))?;
        let mut requests = Vec::new();
        for pr in pulls.iter().filter(|pr| is_promotion(pr)) {
            let Some(number) = pr["number"].as_u64() else {
                continue;
            };
            let reviews =
                self.list(&self.repo_path(&format!("/pulls/{number}/reviews?per_page=100")))?;
            requests.extend(record_of(pr, &reviews));
        }
        requests.sort_by_key(|r| r.value.id);
        Ok(requests)
    }

    /// Closes a pull request that has nothing left to promote.
    pub fn close_pull(&self, number: u64) -> Result<(), GitHubError> {
        self.call(
            "PATCH",
            &self.repo_path(&format!("/pulls/{number}")),
            Some(&json!({"state": "closed"})),
        )?;
        Ok(())
    }
}

/// What a 422's `errors` array says, each error in GitHub's words: the field (and the
/// resource it belongs to), the code (`missing_field`, `invalid`, `already_exists`, or
/// `custom` with its message) and the value refused, when GitHub names it.
fn validation_errors(body: &Value) -> Option<String> {
    let said: Vec<String> = body
        .get("errors")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|e| {
            if let Some(text) = e.as_str() {
                return Some(text.to_owned());
            }
            let text = |key: &str| e.get(key).and_then(Value::as_str).filter(|t| !t.is_empty());
            let mut parts = Vec::new();
            match (text("field"), text("resource")) {
                (Some(field), Some(resource)) => parts.push(format!("`{field}` of {resource}")),
                (Some(field), None) => parts.push(format!("`{field}`")),
                (None, Some(resource)) => parts.push(resource.to_owned()),
                (None, None) => {}
            }
            match (text("code"), text("message")) {
                (Some("custom") | None, Some(message)) => parts.push(message.to_owned()),
                (Some(code), Some(message)) => parts.push(format!("{code}: {message}")),
                (Some(code), None) => parts.push(code.to_owned()),
                (None, None) => {}
            }
            match e.get("value") {
                None | Some(Value::Null) => {}
                Some(Value::String(v)) => parts.push(format!("(value `{v}`)")),
                Some(v) => parts.push(format!("(value `{v}`)")),
            }
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .collect();
    (!said.is_empty()).then(|| said.join("; "))
}

impl Forge for GitHub {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Github
    }

    fn open_request(
        &self,
        from: &str,
        to: &str,
        to_branch: &str,
    ) -> Result<Option<OpenRequest>, ForgeError> {
        Ok(self
            .open_pull(&super::request_branch(from, to), to_branch)?
            .map(|pr| OpenRequest {
                id: pr.number,
                url: pr.url,
                record: None,
            }))
    }

    fn publish(
        &self,
        proposal: &Proposal<'_>,
        open: Option<&OpenRequest>,
    ) -> Result<Published, ForgeError> {
        let existing = open.map(|o| PullRequest {
            number: o.id,
            url: o.url.clone(),
        });
        let updated = existing.is_some();
        let pr = self.publish_pull(proposal, existing)?;
        Ok(Published {
            id: pr.number,
            url: pr.url,
            updated,
            title: proposal.title.to_owned(),
            head: None,
        })
    }

    fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.promotions("all")?)
    }

    fn open_requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.promotions("open")?)
    }

    fn user(&self) -> Result<Option<String>, ForgeError> {
        Ok(Some(self.login()?))
    }

    fn request(&self, id: u64) -> Result<Record<Request>, ForgeError> {
        let pr = self.promotion_pull(id)?;
        let reviews = self.list(&self.repo_path(&format!("/pulls/{id}/reviews?per_page=100")))?;
        record_of(&pr, &reviews).ok_or(ForgeError::NoRequest(id))
    }

    /// GitHub's rule, checked before the write: not one's own pull request.
    fn approve(&self, id: u64, by: &str, at: i64) -> Result<Approved, ForgeError> {
        let pr = self.promotion_pull(id)?;
        let Some(request) = request_of(&pr, &[]) else {
            return Err(ForgeError::NoRequest(id));
        };
        super::approvable(&request, by)?;
        let (_, _, review) = self.call(
            "POST",
            &self.repo_path(&format!("/pulls/{id}/reviews")),
            Some(&json!({"commit_id": request.head, "event": "APPROVE"})),
        )?;
        let answered = approvals(std::slice::from_ref(&review));
        Ok(super::approved_on_forge(request, answered, by, at))
    }

    /// With the head's SHA pinned: a head that moved since it was checked is not merged.
    fn merge(&self, merge: &Merge<'_>) -> Result<Oid, ForgeError> {
        let request = &merge.request.value;
        if merge.rebuild.is_some() {
            return Err(ForgeError::BranchMoved {
                branch: merge.target_branch.to_owned(),
            });
        }
        let path = self.repo_path(&format!("/pulls/{}/merge", request.id));
        let body = json!({"sha": request.head, "merge_method": merge.method.as_str()});
        let merged = match self.call("PUT", &path, Some(&body)) {
            Ok((_, _, merged)) => merged,
            Err(GitHubError::Refused { status: 409, .. }) => {
                return Err(ForgeError::RequestMoved { id: request.id });
            }
            Err(e) => return Err(e.into()),
        };
        merged["sha"]
            .as_str()
            .and_then(|sha| Oid::from_str(sha).ok())
            .ok_or_else(|| {
                GitHubError::Unexpected {
                    method: "PUT".to_owned(),
                    path,
                    message: "no merge commit `sha` in the answer".to_owned(),
                }
                .into()
            })
    }

    /// The pull requests GitHub associates with `commit`, the one whose merge put it on
    /// `env`'s branch, with who merged it and its reviews.
    fn landed(&self, env: &str, commit: Oid) -> Result<Option<Request>, ForgeError> {
        let sha = commit.to_string();
        let pulls = self.list(&self.repo_path(&format!("/commits/{sha}/pulls?per_page=100")))?;
        let Some(number) = pulls
            .iter()
            .filter(|pr| pr["merge_commit_sha"].as_str() == Some(sha.as_str()))
            .filter(|pr| pr["merged_at"].is_string())
            .filter_map(|pr| request_of(pr, &[]))
            .find(|r| r.to == env)
            .map(|r| r.id)
        else {
            return Ok(None);
        };
        let pr = self.promotion_pull(number)?;
        let reviews =
            self.list(&self.repo_path(&format!("/pulls/{number}/reviews?per_page=100")))?;
        Ok(request_of(&pr, &reviews))
    }

    fn statuses_at(&self, commit: Oid, when: i64) -> Result<Statuses, ForgeError> {
        let mut at_time = Statuses::new();
        for status in
            self.list(&self.repo_path(&format!("/commits/{commit}/statuses?per_page=100")))?
        {
            let Some((context, status)) = status_of(&status) else {
                continue;
            };
            if status.at <= when && at_time.get(&context).is_none_or(|seen| seen.at < status.at) {
                at_time.insert(context, status);
            }
        }
        Ok(at_time)
    }

    /// From the repository's activity: pushes, force pushes and merges, with their actor.
    fn pushes(&self, branch: &str, _since: Option<i64>) -> Result<super::Pushes, ForgeError> {
        let activity = self.list(&self.repo_path(&format!(
            "/activity?ref=refs/heads/{branch}&direction=asc&per_page=100"
        )))?;
        let mut log = super::Pushes {
            kept: true,
            pushes: Vec::new(),
        };
        for entry in &activity {
            let oid = |key: &str| entry[key].as_str().and_then(|s| Oid::from_str(s).ok());
            let (Some(before), Some(after)) = (oid("before"), oid("after")) else {
                continue;
            };
            if entry["activity_type"].as_str() == Some("branch_deletion") {
                continue;
            }
            // Another branch's activity says nothing of who moved this one.
            if entry["ref"]
                .as_str()
                .is_some_and(|r| r != format!("refs/heads/{branch}") && r != branch)
            {
                continue;
            }
            log.pushes.push(super::LoggedPush {
                before,
                after,
                by: super::Pushed {
                    pusher: entry["actor"]["login"].as_str().map(str::to_owned),
                    login: None,
                },
            });
        }
        Ok(log)
    }

    fn close(&self, id: u64, _by: &str, _at: i64, reason: CloseReason) -> Result<(), ForgeError> {
        if reason == CloseReason::ByHand {
            // By hand, the number may be anything: only an open promotion is closed.
            let path = self.repo_path(&format!("/pulls/{id}"));
            let pr = match self.call("GET", &path, None) {
                Ok((_, _, pr)) => pr,
                Err(GitHubError::Refused { status: 404, .. }) => {
                    return Err(ForgeError::NoRequest(id));
                }
                Err(e) => return Err(e.into()),
            };
            if !pr["head"]["ref"]
                .as_str()
                .is_some_and(|head| head.starts_with("ferry/promote/"))
            {
                return Err(ForgeError::NoRequest(id));
            }
            if pr["state"].as_str() != Some("open") {
                let state = if pr["merged_at"].is_string() || pr["merged"] == json!(true) {
                    super::RequestState::Merged
                } else {
                    super::RequestState::Closed
                };
                return Err(ForgeError::NotOpen { id, state });
            }
        }
        Ok(self.close_pull(id)?)
    }

    fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        Ok(self.combined_status(&commit.to_string())?)
    }

    fn set_status(&self, commit: Oid, check: &str, status: &Status) -> Result<(), ForgeError> {
        // GitHub keeps descriptions to 140 characters.
        let description: String = status.description.chars().take(140).collect();
        let mut body =
            json!({ "state": status.state.as_str(), "context": check, "description": description });
        if let Some(url) = &status.url {
            body["target_url"] = json!(url);
        }
        self.call(
            "POST",
            &self.repo_path(&format!("/statuses/{commit}")),
            Some(&body),
        )?;
        Ok(())
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.owner)
    }

    fn protection(&self, branch: &str) -> Result<Option<Rules>, ForgeError> {
        Ok(self
            .branch_protection(branch)?
            .map(|value| Rules::from_github(&value)))
    }

    /// The branch protection, then (only where the answer differs) its required signatures,
    /// which GitHub sets at their own endpoint.
    fn apply_protection(&self, branch: &str, rules: &Rules) -> Result<(), ForgeError> {
        let set = self.set_branch_protection(branch, &rules.to_github())?;
        if Rules::from_github(&set).require_signed_commits != rules.require_signed_commits {
            let path = self.repo_path(&format!(
                "/branches/{branch}/protection/required_signatures"
            ));
            let method = if rules.require_signed_commits {
                "POST"
            } else {
                "DELETE"
            };
            self.call(method, &path, None)?;
        }
        Ok(())
    }
}

fn pull(value: &Value) -> Option<PullRequest> {
    Some(PullRequest {
        number: value["number"].as_u64()?,
        url: value["html_url"].as_str().unwrap_or_default().to_owned(),
    })
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: Option<&str>) -> Option<String> {
    link?.split(',').find_map(|part| {
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

/// What a response says of GitHub's rate limits, on the `attempt`-th call (1 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    /// Not a rate limit (a plain 403 is a missing right).
    No,
    /// Wait this long, then try again (the last attempt's answer stands instead).
    Wait(Duration),
    /// The wait asked for is longer than MAX_WAIT.
    GiveUp,
}

/// `Retry-After` (seconds or an HTTP date), else until `x-ratelimit-reset` when
/// `x-ratelimit-remaining` is 0, else for a 429 saying nothing 60 s doubling with each
/// attempt; longer than MAX_WAIT before the last attempt: give up.
fn rate_limited(
    status: StatusCode,
    headers: &http::HeaderMap,
    attempt: u32,
    now: std::time::SystemTime,
) -> Limited {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return Limited::No;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let wait = if let Some(wait) = header("retry-after").and_then(|v| retry::retry_after(v, now)) {
        wait
    } else if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        retry::until_reset(reset, now)
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Duration::from_secs(60 << attempt.saturating_sub(1).min(16))
    } else {
        return Limited::No;
    };
    if wait > MAX_WAIT && attempt <= RATE_LIMIT_RETRIES {
        Limited::GiveUp
    } else {
        Limited::Wait(wait)
    }
}

/// GitHub's errors as user errors: unreachable is exit 3 (trying again may help).
impl From<GitHubError> for crate::error::Error {
    fn from(err: GitHubError) -> Self {
        let hint = err.hint();
        let error = match &err {
            GitHubError::Unreachable { .. } | GitHubError::RateLimited { .. } => {
                crate::error::Error::unavailable(err.to_string())
            }
            GitHubError::Refused { status, .. } if *status >= 500 => {
                crate::error::Error::unavailable(err.to_string())
            }
            _ => crate::error::Error::failure(err.to_string()),
        };
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

/// The GitHub repository (`owner/name`): `given` (`--repo`), else parsed from the
/// store's remote URL.
pub fn repo_of(
    store: &crate::store::Store,
    given: Option<&str>,
) -> Result<String, crate::error::Error> {
    match given {
        Some(repo) => Ok(repo.to_owned()),
        None => repo_of_remote(&store.remote().shown).ok_or_else(|| {
            crate::error::Error::usage(format!("`{}` is not a GitHub URL", store.remote().shown))
                .hint("pass `--repo owner/name` (or set FERRY_REPO)")
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_validation_failure_names_each_field_code_and_value_it_refused() {
        use serde_json::json;
        let recorded: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/github/validation-failed.json"
        ))
        .unwrap();
        assert_eq!(
            super::validation_errors(&recorded["body"]).as_deref(),
            Some("`color` of Label invalid")
        );
        // As the branch protection API answers an unknown user among the allowed mergers.
        let body = json!({"message": "Validation Failed", "errors": [
            {"resource": "Restrictions", "field": "users", "code": "invalid", "value": "ghost",
             "message": "user ghost does not exist"},
            {"code": "custom", "message": "Only organization repositories can have users and team restrictions"},
            "Required status checks must be a list",
        ]});
        assert_eq!(
            super::validation_errors(&body).as_deref(),
            Some(
                "`users` of Restrictions invalid: user ghost does not exist (value `ghost`); Only organization repositories can have users and team restrictions; Required status checks must be a list"
            )
        );
        assert_eq!(
            super::validation_errors(&json!({"message": "Not Found"})),
            None
        );
    }

    /// GitHub's rate limits, as the client waits them out: `Retry-After`, the reset time, and
    /// for a bare 429 60 s doubling, given up once a wait passes MAX_WAIT (not on the last
    /// attempt, whose answer stands).
    #[test]
    fn rate_limits_are_waited_out_or_given_up() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, v.parse().unwrap());
            }
            map
        };
        let none = headers(&[]);
        let bare: Vec<Limited> = (1..=5)
            .map(|n| rate_limited(StatusCode::TOO_MANY_REQUESTS, &none, n, now))
            .collect();
        assert_eq!(
            bare,
            [
                Limited::Wait(Duration::from_secs(60)),
                Limited::Wait(Duration::from_secs(120)),
                Limited::Wait(Duration::from_secs(240)),
                Limited::GiveUp,
                Limited::Wait(Duration::from_secs(960)),
            ]
        );
        assert_eq!(
            rate_limited(StatusCode::FORBIDDEN, &none, 1, now),
            Limited::No
        );
        assert_eq!(rate_limited(StatusCode::OK, &none, 1, now), Limited::No);
        let after = headers(&[("retry-after", "7")]);
        assert_eq!(
            rate_limited(StatusCode::FORBIDDEN, &after, 1, now),
            Limited::Wait(Duration::from_secs(7))
        );
        let long = headers(&[("retry-after", "301")]);
        assert_eq!(
            rate_limited(StatusCode::TOO_MANY_REQUESTS, &long, 1, now),
            Limited::GiveUp
        );
        let reset = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1000042"),
        ]);
        assert_eq!(
            rate_limited(StatusCode::FORBIDDEN, &reset, 2, now),
            Limited::Wait(Duration::from_secs(42))
        );
    }

    use super::*;
    use crate::forge::CheckState;

    #[test]
    fn repos_of_remotes() {
        assert_eq!(
            repo_of_remote("https://github.com/acme/deploy.git").as_deref(),
            Some("acme/deploy")
        );
        assert_eq!(
            repo_of_remote("git@github.com:acme/deploy.git").as_deref(),
            Some("acme/deploy")
        );
        assert_eq!(
            repo_of_remote("ssh://git@github.com/acme/deploy").as_deref(),
            Some("acme/deploy")
        );
        assert_eq!(
            repo_of_remote("https://x-access-token:t@github.com/acme/deploy").as_deref(),
            Some("acme/deploy")
        );
        assert_eq!(repo_of_remote("/srv/deploy.git"), None);
        assert_eq!(repo_of_remote("https://github.com/acme"), None);
        assert_eq!(repo_of_remote("https://gitlab.com/acme/deploy"), None);
        assert_eq!(repo_of_remote("https://notgithub.com/acme/deploy"), None);
        assert_eq!(repo_of_remote("https://example.com/github.com/acme"), None);
    }

    #[test]
    fn combined_statuses_as_github_records_them() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/github/combined-status.json"
        ))
        .unwrap();
        let mut checks = Statuses::new();
        add_statuses(&fixture["body"], &mut checks);
        // A later page's older report of a check does not replace the latest.
        let mut older = fixture["body"].clone();
        older["statuses"][0]["state"] = json!("success");
        add_statuses(&older, &mut checks);
        let failure = &checks["example/1"];
        assert_eq!(failure.state, CheckState::Failure);
        assert_eq!(failure.description, "create-status failure test");
        assert_eq!(failure.url.as_deref(), Some("https://example.com"));
        assert_eq!(failure.at, 1_507_651_200);
        assert_eq!(checks["example/2"].state, CheckState::Success);
        assert_eq!(checks.len(), 2);
    }

    /// A promotion's pull request as ferry's request: environments, source and pins from the
    /// block for bots (its `>` written as `\u003e`), state from GitHub's fields, approvals
    /// from the reviews that still stand.
    #[test]
    fn pull_requests_are_read_as_requests() {
        let mut pr: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/github/pull-request.json"
        ))
        .unwrap();
        let sha = "a".repeat(64);
        pr["head"]["ref"] = json!("ferry/promote/dev-to-staging");
        pr["head"]["sha"] = json!("1".repeat(40));
        pr["body"] = json!(format!(
            "Promotes…\n<!-- ferry:promotion\n{{\"from\": \"dev\", \"to\": \"staging\", \"source\": \"{}\", \"base\": \"{}\", \"rollback\": false, \"moves\": [{{\"app\": \"web\", \"from\": null, \"to\": \"1.0.0\", \"kind\": \"new\", \"pin\": {{\"version\": \"1.0.0\", \"url\": \"https://a.example/w?a=1\\u003e\", \"sha256\": \"{sha}\"}}}}]}}\n-->",
            "2".repeat(40),
            "3".repeat(40)
        ));
        let review = |user: &str, state: &str, commit: &str| {
            json!({"user": {"login": user}, "state": state, "commit_id": commit,
                   "submitted_at": "2026-11-30T10:00:00Z"})
        };
        let reviews = [
            review("bob", "APPROVED", "old"),
            review("carol", "APPROVED", "head"),
            review("dave", "APPROVED", "head"),
            review("carol", "COMMENTED", "head"),
            review("dave", "CHANGES_REQUESTED", "head"),
            review("erin", "APPROVED", "head"),
            review("erin", "DISMISSED", "head"),
        ];
        let request = request_of(&pr, &reviews).expect("a promotion");
        assert_eq!(
            (request.from.as_str(), request.to.as_str()),
            ("dev", "staging")
        );
        assert_eq!(request.source, "2".repeat(40));
        assert_eq!(request.base, "3".repeat(40));
        assert_eq!(request.head, "1".repeat(40));
        assert_eq!(request.state, super::super::RequestState::Open);
        let pin = request.moves[0].pin.pin().expect("the pin");
        assert_eq!(pin.url, "https://a.example/w?a=1>");
        let approvers: Vec<(&str, &str)> = request
            .approvals
            .iter()
            .map(|a| (a.by.as_str(), a.head.as_str()))
            .collect();
        assert_eq!(approvers, [("bob", "old"), ("carol", "head")]);
        assert_eq!(request.approvals[0].at, 1_796_032_800);

        let mut merged = pr.clone();
        merged["state"] = json!("closed");
        merged["merged_at"] = json!("2026-11-30T11:00:00Z");
        merged["merged_by"] = json!({"login": "carol"});
        merged["merge_commit_sha"] = json!("4".repeat(40));
        let request = request_of(&merged, &[]).unwrap();
        assert_eq!(request.state, super::super::RequestState::Merged);
        assert_eq!(request.merged_by.as_deref(), Some("carol"));
        assert_eq!(request.merge_commit, Some("4".repeat(40)));

        // No block (edited away): the environments from the branch, no source to merge.
        let mut bare = pr.clone();
        bare["body"] = json!("edited");
        let request = request_of(&bare, &[]).unwrap();
        assert_eq!(
            (request.from.as_str(), request.to.as_str()),
            ("dev", "staging")
        );
        assert_eq!(request.source, "");
        assert!(request.moves.is_empty());

        let mut other = pr;
        other["head"]["ref"] = json!("feature/login");
        assert!(request_of(&other, &[]).is_none());
    }

    #[test]
    fn next_links() {
        // As GitHub sends them (recorded in @octokit/fixtures' paginate-issues scenario).
        let link = r#"<https://api.github.com/repositories/1000/issues?per_page=3&page=2>; rel="next", <https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel="last""#;
        assert_eq!(
            next_link(Some(link)).as_deref(),
            Some("https://api.github.com/repositories/1000/issues?per_page=3&page=2")
        );
        let last = r#"<https://api.github.com/repositories/1000/issues?per_page=3&page=4>; rel="prev", <https://api.github.com/repositories/1000/issues?per_page=3&page=1>; rel="first""#;
        assert_eq!(next_link(Some(last)), None);
        assert_eq!(next_link(None), None);
    }
}
