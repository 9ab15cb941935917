//! GitLab as the forge: promotion requests are merge requests, approvals the approvals API,
//! checks are commit statuses, branch rules are protected branches.
//!
//! As on Gitea, the proposal commit is built in the store on the target's tip and its request
//! branch pushed with git; the merge request (`iid`, its description carrying the block for
//! bots), approvals, the merge (`sha` pinned), statuses, the merge requests of each change and
//! the push events go through the REST API ([`super::rest`]). The token: GITLAB_TOKEN (or
//! GITLAB_TOKEN_FILE), else CI_JOB_TOKEN inside GitLab CI; the API: GITLAB_API_URL (the
//! `/api/v4` base), else the remote's host. The project is its path, URL-encoded, or its id.

use git2::Oid;
use serde_json::{Value, json};

use super::pulls::{Described, described, seconds};
use super::rest::{Rest, RestError};
use super::{
    Approval, Approved, CheckState, CloseReason, Forge, ForgeError, ForgeKind, Merge, MergeMethod,
    OpenRequest, Proposal, Published, Record, Request, RequestState, Status, Statuses,
};
use crate::plan::protection::{Principals, Rules};
use crate::store::Store;

const GITLAB: &str = "GitLab";

/// GitLab's access levels.
const NO_ONE: u64 = 0;
const DEVELOPERS: u64 = 30;
const MAINTAINERS: u64 = 40;
/// How ferry's rules name "maintainers may merge" (GitLab Free cannot name people).
const MAINTAINERS_ROLE: &str = "@maintainers";

/// A GitLab project through its REST API, and its git remote for the request branch.
pub struct GitLab<'s> {
    rest: Rest,
    store: &'s Store,
    /// The project as the API addresses it: its id, or its path URL-encoded.
    project: String,
    namespace: String,
}

/// The project (`given` with `--repo`, else the remote's path) and the API base (GITLAB_API_URL,
/// else `https://HOST/api/v4`).
pub fn locate(store: &Store, given: Option<&str>) -> Result<(String, String), crate::error::Error> {
    let shown = &store.remote().shown;
    let project = match given {
        Some(project) => project.to_owned(),
        None => super::host_and_path(shown)
            .map(|(_, path)| path.trim_matches('/').trim_end_matches(".git").to_owned())
            .filter(|path| path.contains('/'))
            .ok_or_else(|| {
                crate::error::Error::usage(format!("`{shown}` does not name a GitLab project"))
                    .hint("pass `--repo group/project` (or its id; or set FERRY_REPO)")
            })?,
    };
    let api = match std::env::var("GITLAB_API_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(api) => api,
        None => super::rest::api_of_remote(shown, "/api/v4").ok_or_else(|| {
            crate::error::Error::usage(format!("`{shown}` is not on a GitLab server")).hint(
                "set GITLAB_API_URL to the server's API (`https://gitlab.example.com/api/v4`)",
            )
        })?,
    };
    Ok((project, api))
}

/// A project path (or a branch) URL-encoded as one path segment (`group/sub/project` →
/// `group%2Fsub%2Fproject`).
pub(super) fn encoded(project: &str) -> String {
    project
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl<'s> GitLab<'s> {
    pub fn new(
        store: &'s Store,
        project: &str,
        api: &str,
    ) -> Result<GitLab<'s>, crate::error::Error> {
        let secret = |name: &str| {
            crate::secret::from_env(name).map_err(|e| crate::error::Error::failure(e.to_string()))
        };
        let auth = match secret("GITLAB_TOKEN")? {
            Some(token) => ("private-token", token),
            None => match secret("CI_JOB_TOKEN")? {
                Some(token) => ("job-token", token),
                None => {
                    return Err(crate::error::Error::failure("GITLAB_TOKEN is not set").hint(
                        "set GITLAB_TOKEN (or GITLAB_TOKEN_FILE) to a token with the `api` scope",
                    ));
                }
            },
        };
        if http::HeaderValue::from_str(&auth.1).is_err() {
            return Err(crate::error::Error::failure(
                "the GitLab token holds characters no token has",
            ));
        }
        if project.is_empty() || project.starts_with('/') || project.ends_with('/') {
            return Err(crate::error::Error::usage(format!(
                "`{project}` is not `group/project` nor a project id"
            )));
        }
        Ok(GitLab {
            rest: Rest::new(GITLAB, api, (auth.0, auth.1)),
            store,
            project: encoded(project),
            namespace: project.split('/').next().unwrap_or_default().to_owned(),
        })
    }

    fn path(&self, rest: &str) -> String {
        format!("/projects/{}{rest}", self.project)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
        self.rest.call(method, path, body).map(|(_, _, v)| v)
    }

    /// Merge request `iid`, which must be a promotion's.
    fn promotion_mr(&self, iid: u64) -> Result<Value, ForgeError> {
        let mr = match self.call("GET", &self.path(&format!("/merge_requests/{iid}")), None) {
            Ok(mr) => mr,
            Err(e) if e.status() == Some(404) => return Err(ForgeError::NoRequest(iid)),
            Err(e) => return Err(e.into()),
        };
        if !is_promotion(&mr) {
            return Err(ForgeError::NoRequest(iid));
        }
        Ok(mr)
    }

    fn approvals(&self, iid: u64) -> Result<Value, RestError> {
        self.call(
            "GET",
            &self.path(&format!("/merge_requests/{iid}/approvals")),
            None,
        )
    }

    /// When GitLab says when each approval was given (`approved_at`), the head each approved:
    /// the merge request's head at that time, from its versions (one per push to its branch).
    /// Without it, approvals stand for the current head (GitLab's "reset approvals on push"
    /// is then what dismisses stale ones).
    fn approved_heads(&self, approvals: &Value, request: &mut Request) -> Result<(), RestError> {
        let dated = approvals["approved_by"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["approved_at"].is_string());
        if !dated || request.approvals.is_empty() {
            return Ok(());
        }
        let versions: Vec<(i64, String)> = self
            .rest
            .list(&self.path(&format!(
                "/merge_requests/{}/versions?per_page=100",
                request.id
            )))?
            .iter()
            .filter_map(|v| {
                Some((
                    seconds(&v["created_at"])?,
                    v["head_commit_sha"].as_str()?.to_owned(),
                ))
            })
            .collect();
        for approval in &mut request.approvals {
            approval.head = versions
                .iter()
                .filter(|(created, _)| *created <= approval.at)
                .max_by_key(|(created, _)| *created)
                .map(|(_, head)| head.clone())
                .unwrap_or_default();
        }
        Ok(())
    }

    fn promotions(&self, state: &str) -> Result<Vec<Record<Request>>, RestError> {
        let mrs = self.rest.list(&self.path(&format!(
            "/merge_requests?state={state}&order_by=created_at&sort=asc&per_page=100"
        )))?;
        let mut requests = Vec::new();
        for mr in mrs.iter().filter(|mr| is_promotion(mr)) {
            let Some(iid) = mr["iid"].as_u64() else {
                continue;
            };
            let approvals = self.approvals(iid)?;
            if let Some(value) = request_of(mr, Some(&approvals)) {
                requests.push(Record {
                    tip: Oid::from_str(&value.head).unwrap_or(Oid::ZERO_SHA1),
                    value,
                });
            }
        }
        requests.sort_by_key(|r| r.value.id);
        Ok(requests)
    }
}

/// Whether a merge request is a promotion's: its source is a `ferry/promote/` branch.
fn is_promotion(mr: &Value) -> bool {
    mr["source_branch"]
        .as_str()
        .is_some_and(|b| b.starts_with("ferry/promote/"))
}

/// ferry's request for a promotion's merge request and its approvals (`None`: not fetched).
fn request_of(mr: &Value, approvals: Option<&Value>) -> Option<Request> {
    if !is_promotion(mr) {
        return None;
    }
    let branch = mr["source_branch"].as_str()?.to_owned();
    let body = mr["description"].as_str().unwrap_or_default().to_owned();
    let Described {
        from,
        to,
        source,
        base,
        rollback,
        moves,
    } = described(&branch, &body);
    let state = match mr["state"].as_str() {
        Some("opened") => RequestState::Open,
        Some("merged") => RequestState::Merged,
        _ => RequestState::Closed,
    };
    let user = |v: &Value| v["username"].as_str().map(str::to_owned);
    let head = mr["sha"].as_str().unwrap_or_default().to_owned();
    let created_at = seconds(&mr["created_at"]).unwrap_or(0);
    // GitLab says who approved, not which commit, and (lately) when: the current head (see
    // `approved_heads`), when approved, else when opened.
    let approvals = approvals
        .map(|a| {
            a["approved_by"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|entry| {
                    Some(Approval {
                        by: user(&entry["user"])?,
                        at: seconds(&entry["approved_at"]).unwrap_or(created_at),
                        head: head.clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let merged = state == RequestState::Merged;
    let merge_commit = merged
        .then(|| {
            mr["merge_commit_sha"]
                .as_str()
                .or(mr["squash_commit_sha"].as_str())
                .or(mr["sha"].as_str())
                .map(str::to_owned)
        })
        .flatten();
    Some(Request {
        id: mr["iid"].as_u64()?,
        from,
        to,
        branch,
        state,
        title: mr["title"].as_str().unwrap_or_default().to_owned(),
        body,
        labels: mr["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().or(l["name"].as_str()).map(str::to_owned))
            .collect(),
        author: user(&mr["author"]).unwrap_or_default(),
        created_at,
        updated_at: seconds(&mr["updated_at"]).unwrap_or(created_at),
        base: base
            .or_else(|| mr["diff_refs"]["base_sha"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        head,
        source,
        rollback,
        moves,
        approvals,
        merged_by: merged
            .then(|| user(&mr["merge_user"]).or_else(|| user(&mr["merged_by"])))
            .flatten(),
        merged_at: merged.then(|| seconds(&mr["merged_at"])).flatten(),
        merge_commit,
        closed_by: (state == RequestState::Closed)
            .then(|| user(&mr["closed_by"]))
            .flatten(),
        closed_at: (state == RequestState::Closed)
            .then(|| seconds(&mr["closed_at"]))
            .flatten(),
        url: mr["web_url"].as_str().map(str::to_owned),
        mergeable: match mr["detailed_merge_status"].as_str() {
            Some("mergeable") => Some(true),
            Some("checking" | "unchecked" | "preparing") | None => None,
            Some(_) => Some(false),
        },
        into: mr["target_branch"].as_str().map(str::to_owned),
        proposed_by: None,
    })
}

/// A commit status of GitLab's list as ferry's: its name, and its state (`success`,
/// `failed`, `canceled` as an error, anything running or waiting as pending).
fn status_of(status: &Value) -> Option<(String, Status)> {
    let name = status["name"].as_str()?;
    let state = match status["status"].as_str()? {
        "success" => CheckState::Success,
        "failed" => CheckState::Failure,
        "canceled" => CheckState::Error,
        _ => CheckState::Pending,
    };
    Some((
        name.to_owned(),
        Status {
            apps: Default::default(),
            state,
            description: status["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            url: status["target_url"].as_str().map(str::to_owned),
            by: status["author"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            at: seconds(&status["finished_at"])
                .or_else(|| seconds(&status["created_at"]))
                .unwrap_or(0),
        },
    ))
}

impl Forge for GitLab<'_> {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Gitlab
    }

    fn open_request(
        &self,
        from: &str,
        to: &str,
        to_branch: &str,
    ) -> Result<Option<OpenRequest>, ForgeError> {
        let branch = super::request_branch(from, to);
        // Any target: GitLab has one open merge request per source branch.
        let mrs = self.rest.list(&self.path(&format!(
            "/merge_requests?state=opened&source_branch={}&per_page=100",
            encoded(&branch),
        )))?;
        let from_branch = |mr: &&Value| mr["source_branch"].as_str() == Some(branch.as_str());
        if let Some(mr) = mrs
            .iter()
            .filter(from_branch)
            .find(|mr| mr["target_branch"].as_str() != Some(to_branch))
        {
            return Err(ForgeError::Retargeted {
                id: mr["iid"].as_u64().unwrap_or_default(),
                branch,
                into: mr["target_branch"].as_str().unwrap_or_default().to_owned(),
                target: to_branch.to_owned(),
            });
        }
        Ok(mrs
            .iter()
            .filter(from_branch)
            .find(|mr| mr["target_branch"].as_str() == Some(to_branch))
            .and_then(|mr| {
                Some(OpenRequest {
                    id: mr["iid"].as_u64()?,
                    url: mr["web_url"].as_str().unwrap_or_default().to_owned(),
                    record: None,
                })
            }))
    }

    fn publish(
        &self,
        p: &Proposal<'_>,
        open: Option<&OpenRequest>,
    ) -> Result<Published, ForgeError> {
        let head = super::push_request_branch(self.store, p)?;
        let labels = p.labels.join(",");
        let edit = json!({"title": p.title, "description": p.body, "labels": labels});
        let put = |iid: u64| {
            self.call(
                "PUT",
                &self.path(&format!("/merge_requests/{iid}")),
                Some(&edit),
            )
        };
        let (mr, updated) = match open {
            Some(open) => (put(open.id)?, true),
            None => {
                let new = json!({
                    "source_branch": p.branch, "target_branch": p.base_branch,
                    "title": p.title, "description": p.body, "labels": labels,
                    "remove_source_branch": false,
                });
                match self.call("POST", &self.path("/merge_requests"), Some(&new)) {
                    Ok(mr) => (mr, false),
                    // "Another open merge request already exists for this source branch".
                    Err(e) if e.status() == Some(409) => {
                        let open = self
                            .open_request(p.from, p.to, p.base_branch)?
                            .ok_or(ForgeError::from(e))?;
                        (put(open.id)?, true)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let iid = mr["iid"].as_u64().ok_or_else(|| {
            self.rest.unexpected(
                "POST",
                &self.path("/merge_requests"),
                "no `iid` in the answer",
            )
        })?;
        Ok(Published {
            id: iid,
            url: mr["web_url"].as_str().unwrap_or_default().to_owned(),
            updated,
            title: p.title.to_owned(),
            head: Some(head),
        })
    }

    fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.promotions("all")?)
    }

    fn open_requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.promotions("opened")?)
    }

    fn user(&self) -> Result<Option<String>, ForgeError> {
        Ok(Some(self.rest.user("username")?))
    }

    fn request(&self, id: u64) -> Result<Record<Request>, ForgeError> {
        let mr = self.promotion_mr(id)?;
        let approvals = self.approvals(id)?;
        let mut value = request_of(&mr, Some(&approvals)).ok_or(ForgeError::NoRequest(id))?;
        self.approved_heads(&approvals, &mut value)?;
        Ok(Record {
            tip: Oid::from_str(&value.head).unwrap_or(Oid::ZERO_SHA1),
            value,
        })
    }

    fn approve(&self, id: u64, by: &str, at: i64) -> Result<Approved, ForgeError> {
        let mr = self.promotion_mr(id)?;
        let Some(request) = request_of(&mr, None) else {
            return Err(ForgeError::NoRequest(id));
        };
        super::approvable(&request, by)?;
        self.call(
            "POST",
            &self.path(&format!("/merge_requests/{id}/approve")),
            Some(&json!({"sha": request.head})),
        )?;
        Ok(super::approved_on_forge(request, Vec::new(), by, at))
    }

    /// With `sha` pinned; the commit it put on the target read from the answer (the merge
    /// commit, the squash commit, or for a fast-forward the head itself).
    fn merge(&self, merge: &Merge<'_>) -> Result<Oid, ForgeError> {
        let request = &merge.request.value;
        if merge.rebuild.is_some() {
            return Err(ForgeError::BranchMoved {
                branch: merge.target_branch.to_owned(),
            });
        }
        let path = self.path(&format!("/merge_requests/{}/merge", request.id));
        let body = json!({
            "sha": request.head,
            "squash": merge.method == MergeMethod::Squash,
            "should_remove_source_branch": false,
        });
        let mr = match self.call("PUT", &path, Some(&body)) {
            Ok(mr) => mr,
            Err(e) if e.status() == Some(409) => {
                return Err(ForgeError::RequestMoved { id: request.id });
            }
            Err(e) => return Err(e.into()),
        };
        // An answer that does not say the merge request is merged (an auto-merge set, an
        // answer cut short) is no merge: its `sha` would be the head, not on the target.
        if mr["state"].as_str() != Some("merged") {
            let state = mr["state"].as_str().unwrap_or("of no state");
            let said = format!("the merge request is `{state}`, not merged");
            return Err(self.rest.unexpected("PUT", &path, said).into());
        }
        mr["merge_commit_sha"]
            .as_str()
            .or(mr["squash_commit_sha"].as_str())
            .or(mr["sha"].as_str())
            .and_then(|sha| Oid::from_str(sha).ok())
            .ok_or_else(|| {
                self.rest
                    .unexpected("PUT", &path, "no merge commit in the answer")
                    .into()
            })
    }

    fn close(&self, id: u64, _by: &str, _at: i64, reason: CloseReason) -> Result<(), ForgeError> {
        if reason == CloseReason::ByHand {
            let mr = self.promotion_mr(id)?;
            if let Some(request) = request_of(&mr, None)
                && request.state != RequestState::Open
            {
                return Err(ForgeError::NotOpen {
                    id,
                    state: request.state,
                });
            }
        }
        self.call(
            "PUT",
            &self.path(&format!("/merge_requests/{id}")),
            Some(&json!({"state_event": "close"})),
        )?;
        Ok(())
    }

    /// The latest status of each name (GitLab lists only those without `all`).
    fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        let mut checks = Statuses::new();
        for status in self.rest.list(&self.path(&format!(
            "/repository/commits/{commit}/statuses?per_page=100"
        )))? {
            if let Some((name, status)) = status_of(&status)
                && checks.get(&name).is_none_or(|seen| seen.at <= status.at)
            {
                checks.insert(name, status);
            }
        }
        Ok(checks)
    }

    fn set_status(&self, commit: Oid, check: &str, status: &Status) -> Result<(), ForgeError> {
        let state = match status.state {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure | CheckState::Error => "failed",
        };
        let description: String = status.description.chars().take(255).collect();
        let mut body = json!({"state": state, "name": check, "description": description});
        if let Some(url) = &status.url {
            body["target_url"] = json!(url);
        }
        match self.call(
            "POST",
            &self.path(&format!("/statuses/{commit}")),
            Some(&body),
        ) {
            Ok(_) => Ok(()),
            // A status already in that state: GitLab's state machine refuses the transition.
            // Only a status already in the state asked for ("… via :enqueue from :pending"):
            // a failure refused over a success must not pass for reported.
            Err(RestError::Refused {
                status: 400,
                message,
                ..
            }) if message.contains("Cannot transition status")
                && transition_from(&message) == Some(state) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn landed(&self, env: &str, commit: Oid) -> Result<Option<Request>, ForgeError> {
        let sha = commit.to_string();
        let mrs = self.rest.list(&self.path(&format!(
            "/repository/commits/{sha}/merge_requests?per_page=100"
        )))?;
        let Some(iid) = mrs
            .iter()
            .filter_map(|mr| request_of(mr, None))
            .find(|r| {
                r.state == RequestState::Merged
                    && r.to == env
                    && r.merge_commit.as_deref() == Some(sha.as_str())
            })
            .map(|r| r.id)
        else {
            return Ok(None);
        };
        let mr = self.promotion_mr(iid)?;
        let approvals = self.approvals(iid)?;
        let mut request = request_of(&mr, Some(&approvals));
        if let Some(request) = &mut request {
            self.approved_heads(&approvals, request)?;
        }
        Ok(request)
    }

    fn statuses_at(&self, commit: Oid, when: i64) -> Result<Statuses, ForgeError> {
        let mut at_time = Statuses::new();
        for status in self.rest.list(&self.path(&format!(
            "/repository/commits/{commit}/statuses?all=true&per_page=100"
        )))? {
            let Some((name, status)) = status_of(&status) else {
                continue;
            };
            if status.at <= when && at_time.get(&name).is_none_or(|seen| seen.at <= status.at) {
                at_time.insert(name, status);
            }
        }
        Ok(at_time)
    }

    /// From the project's push events: each push to `branch`, with who.
    fn pushes(&self, branch: &str, since: Option<i64>) -> Result<super::Pushes, ForgeError> {
        // GitLab's `after` is a date, exclusive: the day before `since`'s.
        let after = since
            .and_then(|s| jiff::Timestamp::from_second(s - 86_400).ok())
            .map(|t| format!("&after={}", t.strftime("%Y-%m-%d")))
            .unwrap_or_default();
        let events = self.rest.list(&self.path(&format!(
            "/events?action=pushed&sort=asc&per_page=100{after}"
        )))?;
        let mut log = super::Pushes {
            kept: true,
            pushes: Vec::new(),
        };
        for event in &events {
            let push = &event["push_data"];
            if push["ref_type"].as_str() != Some("branch") || push["ref"].as_str() != Some(branch) {
                continue;
            }
            let Some(after) = push["commit_to"]
                .as_str()
                .and_then(|s| Oid::from_str(s).ok())
            else {
                continue;
            };
            log.pushes.push(super::LoggedPush {
                before: push["commit_from"]
                    .as_str()
                    .and_then(|s| Oid::from_str(s).ok())
                    .unwrap_or(Oid::ZERO_SHA1),
                after,
                by: super::Pushed {
                    pusher: event["author"]["username"]
                        .as_str()
                        .or(event["author_username"].as_str())
                        .map(str::to_owned),
                    login: None,
                },
            });
        }
        Ok(log)
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.namespace)
    }

    /// The branch's rule and every wildcard rule matching it (`*`, `env-*`): GitLab applies
    /// them all, the most permissive winning, so a wildcard letting developers push opens a
    /// branch whose own rule lets no one.
    fn protection(&self, branch: &str) -> Result<Option<Rules>, ForgeError> {
        let rules = self
            .rest
            .list(&self.path("/protected_branches?per_page=100"))?;
        let matching: Vec<&Value> = rules
            .iter()
            .filter(|rule| {
                rule["name"]
                    .as_str()
                    .is_some_and(|name| name == branch || wildcard_matches(name, branch))
            })
            .collect();
        if matching.is_empty() {
            return Ok(None);
        }
        let levels = |key: &str| -> Vec<Value> {
            matching
                .iter()
                .flat_map(|rule| rule[key].as_array().cloned().unwrap_or_default())
                .collect()
        };
        Ok(Some(from_gitlab(&json!({
            "push_access_levels": levels("push_access_levels"),
            "merge_access_levels": levels("merge_access_levels"),
            "allow_force_push": matching.iter().any(|r| r["allow_force_push"] == json!(true)),
            "code_owner_approval_required": matching
                .iter()
                .any(|r| r["code_owner_approval_required"] == json!(true)),
        }))))
    }

    /// GitLab Free's rules: who may push (no one), who may merge (developers, or maintainers
    /// when restricted), force pushes and code-owner approval.
    fn apply_protection(&self, branch: &str, rules: &Rules) -> Result<(), ForgeError> {
        let (push, merge) = levels(rules);
        let path = self.path(&format!("/protected_branches/{}", encoded(branch)));
        match self.call("GET", &path, None) {
            Ok(existing) => {
                // Replace the access levels: the old ones destroyed, the new ones added.
                let replaced = |key: &str, level: u64| -> Vec<Value> {
                    existing[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l["id"].as_u64())
                        .map(|id| json!({"id": id, "_destroy": true}))
                        .chain(std::iter::once(json!({"access_level": level})))
                        .collect()
                };
                self.call(
                    "PATCH",
                    &path,
                    Some(&json!({
                        "allow_force_push": rules.allow_force_push,
                        "allowed_to_push": replaced("push_access_levels", push),
                        "allowed_to_merge": replaced("merge_access_levels", merge),
                    })),
                )?;
            }
            Err(e) if e.status() == Some(404) => {
                self.call(
                    "POST",
                    &self.path("/protected_branches"),
                    Some(&json!({
                        "name": branch,
                        "push_access_level": push,
                        "merge_access_level": merge,
                        "allow_force_push": rules.allow_force_push,
                    })),
                )?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn holdable(&self, declared: &Rules) -> (Rules, Vec<String>) {
        let mut held = declared.clone();
        let mut notes = Vec::new();
        let mut premium = |field: &str, on: bool| {
            if on {
                notes.push(format!(
                    "`{field}` needs GitLab Premium's approval rules or a project setting: not set on the branch (`ferry merge` still checks it)"
                ));
            }
        };
        premium("required_approvals", held.required_approvals > 0);
        held.required_approvals = 0;
        premium("dismiss_stale_reviews", held.dismiss_stale_reviews);
        held.dismiss_stale_reviews = false;
        premium("required_checks", !held.required_checks.is_empty());
        held.required_checks.clear();
        premium("require_up_to_date", held.require_up_to_date);
        held.require_up_to_date = false;
        let mut unheld = |field: &str, on: bool| {
            if on {
                notes.push(format!(
                    "GitLab has no `{field}` rule on a branch: not enforced there"
                ));
            }
        };
        unheld("require_code_owner_review", held.require_code_owner_review);
        held.require_code_owner_review = false;
        unheld("linear_history", held.linear_history);
        held.linear_history = false;
        unheld("enforce_admins", held.enforce_admins);
        held.enforce_admins = false;
        unheld("allow_deletion", held.allow_deletion);
        held.allow_deletion = false;
        if !held.direct_pushers.users.is_empty() || !held.direct_pushers.teams.is_empty() {
            notes.push(format!(
                "`allowed_pushers` ({}) needs GitLab Premium to name people: nobody pushes directly",
                held.direct_pushers
            ));
            held.direct_pushers = Principals::default();
        }
        if let Some(mergers) = &held.restricted_to {
            notes.push(format!(
                "`allowed_mergers` ({mergers}) needs GitLab Premium to name people: maintainers may merge (`ferry merge` still checks the list)"
            ));
            held.restricted_to = Some(maintainers());
        }
        (held, notes)
    }
}

/// The state a refused transition was from (`Cannot transition status via :run from :running
/// (Reason(s): …)` → `running`).
fn transition_from(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" from :")?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Whether GitLab's protected branch wildcard `pattern` (`*` any characters, `/` included)
/// matches `branch`; a name without `*` is no wildcard.
fn wildcard_matches(pattern: &str, branch: &str) -> bool {
    if !pattern.contains('*') {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !branch.starts_with(first) || branch.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &branch[first.len()..branch.len() - last.len()];
    if !branch.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// "Maintainers may merge", as ferry's rules say it.
fn maintainers() -> Principals {
    Principals {
        users: Default::default(),
        teams: [MAINTAINERS_ROLE.to_owned()].into(),
    }
}

/// The push and merge access levels of `rules` as held on GitLab Free.
fn levels(rules: &Rules) -> (u64, u64) {
    let merge = if rules.restricted_to.is_some() {
        MAINTAINERS
    } else {
        DEVELOPERS
    };
    (NO_ONE, merge)
}

/// A protected branch as ferry's rules (the fields GitLab Free has).
pub fn from_gitlab(value: &Value) -> Rules {
    let levels = |key: &str| -> Vec<u64> {
        value[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["access_level"].as_u64())
            .collect()
    };
    let pushers = levels("push_access_levels");
    let mergers = levels("merge_access_levels");
    let mut direct_pushers = Principals::default();
    if pushers.iter().any(|l| *l != NO_ONE) {
        direct_pushers.teams.insert(
            if pushers.contains(&DEVELOPERS) {
                "@developers"
            } else {
                MAINTAINERS_ROLE
            }
            .to_owned(),
        );
    }
    let restricted_to = if mergers.contains(&DEVELOPERS) {
        None
    } else if mergers.contains(&MAINTAINERS) {
        Some(maintainers())
    } else {
        Some(Principals::default())
    };
    Rules {
        required_approvals: 0,
        require_code_owner_review: value["code_owner_approval_required"]
            .as_bool()
            .unwrap_or(false),
        dismiss_stale_reviews: false,
        required_checks: Default::default(),
        require_up_to_date: false,
        direct_pushers,
        restricted_to,
        linear_history: false,
        allow_force_push: value["allow_force_push"].as_bool().unwrap_or(false),
        allow_deletion: false,
        enforce_admins: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_gitlab_does() {
        assert!(wildcard_matches("*", "staging"));
        assert!(wildcard_matches("env/*", "env/staging"));
        assert!(wildcard_matches("*-stable", "prod-stable"));
        assert!(wildcard_matches("p*d*", "prod"));
        assert!(!wildcard_matches("staging", "staging"));
        assert!(!wildcard_matches("env/*", "staging"));
        assert!(!wildcard_matches("a*a", "a"));
    }

    #[test]
    fn refused_transitions_say_their_state() {
        assert_eq!(
            transition_from("Cannot transition status via :enqueue from :pending"),
            Some("pending")
        );
        assert_eq!(
            transition_from(
                "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"
            ),
            Some("running")
        );
        assert_eq!(transition_from("Cannot transition status"), None);
    }

    #[test]
    fn projects_are_one_encoded_segment() {
        assert_eq!(encoded("acme/deploy"), "acme%2Fdeploy");
        assert_eq!(
            encoded("acme/sub group/deploy.git"),
            "acme%2Fsub%20group%2Fdeploy.git"
        );
        assert_eq!(encoded("42"), "42");
    }

    #[test]
    fn merge_requests_read_as_requests() {
        let mr = json!({
            "iid": 5, "state": "merged", "title": "Promote", "source_branch": "ferry/promote/dev-to-staging",
            "target_branch": "staging", "description": "no block", "author": {"username": "alice"},
            "sha": "1111111111111111111111111111111111111111", "merge_commit_sha": null,
            "squash_commit_sha": "2222222222222222222222222222222222222222",
            "merge_user": {"username": "carol"}, "merged_at": "2026-11-30T10:00:00.000Z",
            "created_at": "2026-11-30T09:00:00.000Z", "labels": ["promotion"],
            "web_url": "https://gitlab.com/acme/deploy/-/merge_requests/5",
            "detailed_merge_status": "not_open"
        });
        let approvals = json!({"approved_by": [{"user": {"username": "bob"}}]});
        let request = request_of(&mr, Some(&approvals)).unwrap();
        assert_eq!(
            (request.from.as_str(), request.to.as_str()),
            ("dev", "staging")
        );
        assert_eq!(request.state, RequestState::Merged);
        assert_eq!(request.merged_by.as_deref(), Some("carol"));
        assert_eq!(
            request.merge_commit.as_deref(),
            Some("2222222222222222222222222222222222222222")
        );
        assert_eq!(request.approvers(true), ["bob"]);
        assert_eq!(request.labels, ["promotion"]);
        assert_eq!(request.into.as_deref(), Some("staging"));
        let mut other = mr;
        other["source_branch"] = json!("feature");
        assert!(request_of(&other, None).is_none());
    }

    #[test]
    fn protected_branches_read_back_as_held() {
        let rules = from_gitlab(&json!({
            "push_access_levels": [{"access_level": 0}],
            "merge_access_levels": [{"access_level": 40}],
            "allow_force_push": false
        }));
        assert!(rules.direct_pushers.users.is_empty() && rules.direct_pushers.teams.is_empty());
        assert_eq!(rules.restricted_to, Some(maintainers()));
        let open = from_gitlab(&json!({"merge_access_levels": [{"access_level": 30}]}));
        assert_eq!(open.restricted_to, None);
    }
}
