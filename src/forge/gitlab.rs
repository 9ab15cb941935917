//! GitLab as the forge: promotion requests are merge requests, approvals the approvals API,
//! checks are commit statuses, branch rules are protected branches.
//!
//! As on Gitea, the proposal commit is built in the store on the target's tip and its request
//! branch pushed with git; the merge request (`iid`, its description carrying the block for
//! bots), approvals, the merge (`sha` pinned), statuses, the merge requests of each change and
//! the push events go through the REST API ([`super::rest`]). The token: GITLAB_TOKEN (or
//! GITLAB_TOKEN_FILE), else CI_JOB_TOKEN inside GitLab CI; the API: GITLAB_API_URL (the
//! `/api/v4` base), else the remote's host. The project is its path, URL-encoded, or its id.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

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
/// How ferry's rules name "maintainers may merge" (GitLab Free cannot name people), and
/// "developers may push".
const MAINTAINERS_ROLE: &str = "@maintainers";
const DEVELOPERS_ROLE: &str = "@developers";
/// How many users and groups one run looks up by id (reading rules back); beyond, they are
/// shown by id.
const MAX_LOOKUPS: usize = 100;
/// The name of the approval rule ferry keeps for a branch: this, then the branch.
const RULE_PREFIX: &str = "ferry: ";

/// What the project's GitLab has, from its answer to the approval rules (asked once a run):
/// Premium lists them; Free refuses (403 on an unlicensed GitLab EE, 404 on GitLab CE, which
/// has no such API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Premium,
    Free { status: u16 },
}

/// A GitLab project through its REST API, and its git remote for the request branch.
pub struct GitLab<'s> {
    rest: Rest,
    store: &'s Store,
    /// The project as the API addresses it: its id, or its path URL-encoded.
    project: String,
    namespace: String,
    tier: OnceCell<Tier>,
    /// Ids by name (`u:alice`, `g:acme/ops`, `approvers`) and names by id (`u:5`, `g:7`), as
    /// looked up in this run; `lookups` counts the lookups by id.
    ids: RefCell<BTreeMap<String, Value>>,
    names: RefCell<BTreeMap<String, String>>,
    lookups: Cell<usize>,
    /// `dismiss_stale_reviews` as each branch declared it in this run (one project setting on
    /// GitLab).
    resets: RefCell<Vec<(String, bool)>>,
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
            tier: OnceCell::new(),
            ids: RefCell::default(),
            names: RefCell::default(),
            lookups: Cell::new(0),
            resets: RefCell::default(),
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

/// Branch protection: the project's tier, the users and groups rules name, approval rules.
impl GitLab<'_> {
    /// Premium or Free, from GitLab's answer to the project's approval rules.
    fn tier(&self) -> Result<Tier, ForgeError> {
        if let Some(tier) = self.tier.get() {
            return Ok(*tier);
        }
        let tier = match self.rest.list(&self.path("/approval_rules?per_page=100")) {
            Ok(_) => Tier::Premium,
            Err(e) => match e.status() {
                Some(status @ (403 | 404)) => Tier::Free { status },
                _ => return Err(e.into()),
            },
        };
        let _ = self.tier.set(tier);
        Ok(tier)
    }

    /// The id of user `name` (`GET /users?username=`, an exact match), or of group
    /// `NAMESPACE/team`, remembered both ways for the run.
    fn id_of(
        &self,
        kind: &'static str,
        name: &str,
        field: &'static str,
    ) -> Result<u64, ForgeError> {
        let (key, path) = match kind {
            "user" => (
                format!("u:{}", name.to_ascii_lowercase()),
                format!("/users?username={}", encoded(name)),
            ),
            _ => {
                let full = format!("{}/{name}", self.namespace);
                (
                    format!("g:{}", full.to_ascii_lowercase()),
                    format!("/groups/{}?with_projects=false", encoded(&full)),
                )
            }
        };
        if let Some(id) = self.ids.borrow().get(&key).and_then(Value::as_u64) {
            return Ok(id);
        }
        let unknown = || ForgeError::NoSuchPrincipal {
            forge: GITLAB,
            kind,
            name: match kind {
                "user" => name.to_owned(),
                _ => format!("{}/{name}", self.namespace),
            },
            field,
        };
        let found = match self.call("GET", &path, None) {
            Ok(found) => found,
            Err(e) if e.status() == Some(404) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let id = match kind {
            "user" => found
                .as_array()
                .into_iter()
                .flatten()
                .find(|u| {
                    u["username"]
                        .as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(name))
                })
                .and_then(|u| u["id"].as_u64()),
            _ => found["id"].as_u64(),
        }
        .ok_or_else(unknown)?;
        self.ids.borrow_mut().insert(key, json!(id));
        self.names
            .borrow_mut()
            .insert(format!("{}:{id}", &kind[..1]), name.to_owned());
        Ok(id)
    }

    /// The username of user `id`, or the team (path under the project's namespace) of group
    /// `id`: looked up once a run, and at most [`MAX_LOOKUPS`] of them (then shown by id).
    fn name_of(&self, kind: &str, id: u64) -> Result<String, ForgeError> {
        let key = format!("{kind}:{id}");
        if let Some(name) = self.names.borrow().get(&key) {
            return Ok(name.clone());
        }
        let shown = format!("{} #{id}", if kind == "u" { "user" } else { "group" });
        if self.lookups.get() >= MAX_LOOKUPS {
            return Ok(shown);
        }
        self.lookups.set(self.lookups.get() + 1);
        let path = match kind {
            "u" => format!("/users/{id}"),
            _ => format!("/groups/{id}?with_projects=false"),
        };
        let found = match self.call("GET", &path, None) {
            Ok(found) => found,
            Err(e) if e.status() == Some(404) => Value::Null,
            Err(e) => return Err(e.into()),
        };
        let name = match kind {
            "u" => found["username"].as_str().map(str::to_owned),
            _ => found["full_path"].as_str().map(|path| {
                let path = path.to_ascii_lowercase();
                let ours = format!("{}/", self.namespace.to_ascii_lowercase());
                path.strip_prefix(&ours).map(str::to_owned).unwrap_or(path)
            }),
        }
        .unwrap_or(shown);
        self.names.borrow_mut().insert(key, name.clone());
        Ok(name)
    }

    /// `who` as access levels: roles as levels, users and groups by id.
    fn entries(&self, who: &Principals, field: &'static str) -> Result<Vec<Value>, ForgeError> {
        let mut entries = Vec::new();
        for team in &who.teams {
            entries.push(match team.as_str() {
                MAINTAINERS_ROLE => json!({"access_level": MAINTAINERS}),
                DEVELOPERS_ROLE => json!({"access_level": DEVELOPERS}),
                team => json!({"group_id": self.id_of("group", team, field)?}),
            });
        }
        for user in &who.users {
            entries.push(json!({"user_id": self.id_of("user", user, field)?}));
        }
        Ok(entries)
    }

    /// Who may push (no one, and whom `allowed_pushers` names) and merge.
    fn access(&self, rules: &Rules) -> Result<(Vec<Value>, Vec<Value>), ForgeError> {
        let mut push = vec![json!({"access_level": NO_ONE})];
        push.extend(self.entries(&rules.direct_pushers, "allowed_pushers")?);
        let merge = match &rules.restricted_to {
            None => vec![json!({"access_level": DEVELOPERS})],
            Some(who) => {
                let merge = self.entries(who, "allowed_mergers")?;
                if merge.is_empty() {
                    vec![json!({"access_level": NO_ONE})]
                } else {
                    merge
                }
            }
        };
        Ok((push, merge))
    }

    /// Who approves under ferry's approval rules: the project's group's members (its owner,
    /// for a project of a user).
    fn approvers(&self) -> Result<Value, ForgeError> {
        if let Some(approvers) = self.ids.borrow().get("approvers") {
            return Ok(approvers.clone());
        }
        let project = self.call("GET", &self.path(""), None)?;
        let namespace = &project["namespace"];
        let approvers = match (namespace["kind"].as_str(), namespace["id"].as_u64()) {
            (Some("group"), Some(id)) => json!({"group_ids": [id]}),
            _ => match project["owner"]["id"].as_u64() {
                Some(id) => json!({"user_ids": [id]}),
                None => {
                    return Err(self
                        .rest
                        .unexpected(
                            "GET",
                            &self.path(""),
                            "a project with no namespace nor owner",
                        )
                        .into());
                }
            },
        };
        self.ids
            .borrow_mut()
            .insert("approvers".to_owned(), approvers.clone());
        Ok(approvers)
    }

    /// The most approvals any approval rule applying to `branch` requires (GitLab requires
    /// each rule's).
    fn required_approvals(&self, branch: &str) -> Result<u64, ForgeError> {
        Ok(self
            .rest
            .list(&self.path("/approval_rules?per_page=100"))?
            .iter()
            .filter(|rule| applies(rule, branch))
            .filter_map(|rule| rule["approvals_required"].as_u64())
            .max()
            .unwrap_or(0))
    }

    /// ferry's approval rule for `branch` (protected as `protected`): `required` approvals
    /// from the project's members, created, updated in place or deleted (at 0). No other
    /// rule is touched.
    fn apply_approvals(
        &self,
        branch: &str,
        protected: u64,
        required: u64,
    ) -> Result<(), ForgeError> {
        let name = format!("{RULE_PREFIX}{branch}");
        let rules = self.rest.list(&self.path("/approval_rules?per_page=100"))?;
        let ours = rules.iter().find(|r| r["name"].as_str() == Some(&name));
        if required == 0 {
            if let Some(id) = ours.and_then(|r| r["id"].as_u64()) {
                self.call("DELETE", &self.path(&format!("/approval_rules/{id}")), None)?;
            }
            return Ok(());
        }
        let approvers = self.approvers()?;
        let mut body = json!({
            "name": name,
            "approvals_required": required,
            "protected_branch_ids": [protected],
        });
        for (key, ids) in approvers.as_object().into_iter().flatten() {
            body[key] = ids.clone();
        }
        match ours {
            Some(rule) if holds(rule, &body) => {}
            Some(rule) => {
                let id = rule["id"].as_u64().unwrap_or_default();
                self.call(
                    "PUT",
                    &self.path(&format!("/approval_rules/{id}")),
                    Some(&body),
                )?;
            }
            None => {
                self.call("POST", &self.path("/approval_rules"), Some(&body))?;
            }
        }
        Ok(())
    }

    /// Whether GitLab resets approvals on every push to the project (`reset_approvals_on_push`).
    fn resets_approvals(&self) -> Result<bool, ForgeError> {
        Ok(
            self.call("GET", &self.path("/approvals"), None)?["reset_approvals_on_push"]
                .as_bool()
                .unwrap_or(false),
        )
    }
}

/// Whether approval rule `rule` applies to merges into `branch` and can block them: a
/// regular rule with approvers, or the "any eligible user" rule, scoped to every branch, to
/// every protected branch, or to a protected branch (or wildcard) matching it.
fn applies(rule: &Value, branch: &str) -> bool {
    let approvers = ["eligible_approvers", "users", "groups"]
        .iter()
        .any(|key| rule[key].as_array().is_some_and(|a| !a.is_empty()));
    let counts = match rule["rule_type"].as_str() {
        Some("any_approver") => true,
        None | Some("regular") => approvers,
        Some(_) => false,
    };
    if !counts {
        return false;
    }
    if rule["applies_to_all_protected_branches"] == json!(true) {
        return true;
    }
    match rule["protected_branches"].as_array() {
        None => true,
        Some(branches) if branches.is_empty() => true,
        Some(branches) => branches.iter().any(|b| {
            b["name"]
                .as_str()
                .is_some_and(|name| name == branch || wildcard_matches(name, branch))
        }),
    }
}

/// Whether ferry's approval rule `rule` already is as `body` would set it.
fn holds(rule: &Value, body: &Value) -> bool {
    let ids = |v: &Value, key: &str| -> BTreeSet<u64> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_u64().or(e["id"].as_u64()))
            .collect()
    };
    rule["approvals_required"] == body["approvals_required"]
        && ids(rule, "protected_branches") == ids(body, "protected_branch_ids")
        && ids(rule, "groups") == ids(body, "group_ids")
        && ids(rule, "users") == ids(body, "user_ids")
}

/// Who an access level is (`user:5`, `group:7`, `key:3`, `level:40`), to compare them.
fn who(level: &Value) -> String {
    for (key, kind) in [
        ("user_id", "user"),
        ("group_id", "group"),
        ("deploy_key_id", "key"),
    ] {
        if let Some(id) = level[key].as_u64() {
            return format!("{kind}:{id}");
        }
    }
    format!("level:{}", level["access_level"].as_u64().unwrap_or(NO_ONE))
}

/// The `allowed_to_*` list that turns the `existing` access levels into `wanted`: those that
/// are as wanted kept, the others destroyed, the missing added; empty when nothing changes.
fn replacing(existing: &Value, wanted: &[Value]) -> Vec<Value> {
    let existing: Vec<&Value> = existing.as_array().into_iter().flatten().collect();
    let wanted_who: BTreeSet<String> = wanted.iter().map(who).collect();
    let existing_who: BTreeSet<String> = existing.iter().map(|l| who(l)).collect();
    existing
        .iter()
        .filter(|l| !wanted_who.contains(&who(l)))
        .filter_map(|l| l["id"].as_u64())
        .map(|id| json!({"id": id, "_destroy": true}))
        .chain(
            wanted
                .iter()
                .filter(|w| !existing_who.contains(&who(w)))
                .cloned(),
        )
        .collect()
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
    /// branch whose own rule lets no one. On Premium, also the approvals the project's
    /// approval rules require of it, and whether approvals reset on push (a project setting,
    /// compared only for a branch that declares it).
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
        let mut rules = from_gitlab(
            &json!({
                "push_access_levels": levels("push_access_levels"),
                "merge_access_levels": levels("merge_access_levels"),
                "allow_force_push": matching.iter().any(|r| r["allow_force_push"] == json!(true)),
                "code_owner_approval_required": matching
                    .iter()
                    .any(|r| r["code_owner_approval_required"] == json!(true)),
            }),
            &mut |kind, id| self.name_of(kind, id),
        )?;
        if self.tier()? == Tier::Premium {
            rules.required_approvals = self.required_approvals(branch)?;
            let declared = self
                .resets
                .borrow()
                .iter()
                .find(|(b, _)| b == branch)
                .map(|(_, d)| *d);
            rules.dismiss_stale_reviews = declared != Some(false) && self.resets_approvals()?;
        }
        Ok(Some(rules))
    }

    /// Who may push (no one, and on Premium the people named) and merge, force pushes and
    /// code-owner approval on the protected branch (only what changed); on Premium, ferry's
    /// approval rule for the branch and approvals reset on push.
    fn apply_protection(&self, branch: &str, rules: &Rules) -> Result<(), ForgeError> {
        let (push, merge) = self.access(rules)?;
        let path = self.path(&format!("/protected_branches/{}", encoded(branch)));
        let protected = match self.call("GET", &path, None) {
            Ok(existing) => {
                let push_change = replacing(&existing["push_access_levels"], &push);
                let merge_change = replacing(&existing["merge_access_levels"], &merge);
                let same = push_change.is_empty()
                    && merge_change.is_empty()
                    && existing["allow_force_push"].as_bool() == Some(rules.allow_force_push)
                    && existing["code_owner_approval_required"]
                        .as_bool()
                        .unwrap_or(false)
                        == rules.require_code_owner_review;
                if !same {
                    self.call(
                        "PATCH",
                        &path,
                        Some(&json!({
                            "allow_force_push": rules.allow_force_push,
                            "code_owner_approval_required": rules.require_code_owner_review,
                            "allowed_to_push": push_change,
                            "allowed_to_merge": merge_change,
                        })),
                    )?;
                }
                existing
            }
            Err(e) if e.status() == Some(404) => {
                let mut body = json!({
                    "name": branch,
                    "allow_force_push": rules.allow_force_push,
                    "code_owner_approval_required": rules.require_code_owner_review,
                });
                // Roles alone in the form every GitLab takes; people in Premium's.
                let role = |entries: &[Value]| match entries {
                    [only] if only.get("access_level").is_some() => only["access_level"].as_u64(),
                    _ => None,
                };
                match (role(&push), role(&merge)) {
                    (Some(push), Some(merge)) => {
                        body["push_access_level"] = json!(push);
                        body["merge_access_level"] = json!(merge);
                    }
                    _ => {
                        body["allowed_to_push"] = json!(push);
                        body["allowed_to_merge"] = json!(merge);
                    }
                }
                self.call("POST", &self.path("/protected_branches"), Some(&body))?
            }
            Err(e) => return Err(e.into()),
        };
        if self.tier()? == Tier::Premium {
            let id = protected["id"].as_u64().ok_or_else(|| {
                self.rest
                    .unexpected("GET", &path, "a protected branch without an id")
            })?;
            self.apply_approvals(branch, id, rules.required_approvals)?;
            if rules.dismiss_stale_reviews && !self.resets_approvals()? {
                self.call(
                    "POST",
                    &self.path("/approvals"),
                    Some(&json!({"reset_approvals_on_push": true})),
                )?;
            }
        }
        Ok(())
    }

    /// What this project's GitLab holds: the people named are looked up first (one unknown
    /// stops everything); on Free, what needs Premium is said and held as Free can.
    fn holdable(&self, branch: &str, declared: &Rules) -> Result<(Rules, Vec<String>), ForgeError> {
        self.access(declared)?;
        let mut held = declared.clone();
        let mut notes = Vec::new();
        match self.tier()? {
            Tier::Premium => {
                if held.required_approvals > 0 {
                    self.approvers()?;
                }
                let mut resets = self.resets.borrow_mut();
                if let Some((other, _)) = resets
                    .iter()
                    .find(|(b, d)| b != branch && *d != declared.dismiss_stale_reviews)
                {
                    let (on, off) = if declared.dismiss_stale_reviews {
                        (branch, other.as_str())
                    } else {
                        (other.as_str(), branch)
                    };
                    notes.push(format!(
                        "`dismiss_stale_reviews` is one setting for the whole project on GitLab (`reset_approvals_on_push`): `{on}` declares it and `{off}` does not, so once it is on, approvals reset on pushes to `{off}` too"
                    ));
                }
                resets.push((branch.to_owned(), declared.dismiss_stale_reviews));
            }
            Tier::Free { status } => {
                let mut premium = |field: &str, shown: String, instead: &str| {
                    notes.push(format!(
                        "`{field}` ({shown}) needs GitLab Premium: this project's GitLab does not have it (it answered {status} on `approval_rules`): {instead}"
                    ));
                };
                if held.required_approvals > 0 {
                    premium(
                        "required_approvals",
                        held.required_approvals.to_string(),
                        "no approval rule set (`ferry merge` still checks it)",
                    );
                    held.required_approvals = 0;
                }
                if held.dismiss_stale_reviews {
                    premium(
                        "dismiss_stale_reviews",
                        "true".to_owned(),
                        "approvals are not reset on push (`ferry merge` still checks it)",
                    );
                    held.dismiss_stale_reviews = false;
                }
                if held.require_code_owner_review {
                    premium(
                        "require_code_owner_review",
                        "true".to_owned(),
                        "code owners' approval not required",
                    );
                    held.require_code_owner_review = false;
                }
                if !held.direct_pushers.users.is_empty() || !held.direct_pushers.teams.is_empty() {
                    premium(
                        "allowed_pushers",
                        held.direct_pushers.to_string(),
                        "nobody pushes directly",
                    );
                    held.direct_pushers = Principals::default();
                }
                if let Some(mergers) = &held.restricted_to {
                    premium(
                        "allowed_mergers",
                        mergers.to_string(),
                        "maintainers may merge (`ferry merge` still checks the list)",
                    );
                    held.restricted_to = Some(maintainers());
                }
            }
        }
        if !held.required_checks.is_empty() {
            notes.push(
                "GitLab requires pipelines, not named checks, to pass (`only_allow_merge_if_pipeline_succeeds`, for the whole project): `required_checks` not set there (`ferry merge` still checks it)".to_owned(),
            );
            held.required_checks.clear();
        }
        if held.require_up_to_date {
            notes.push(
                "GitLab requires merge requests to be up to date only through the project's fast-forward merge method (every branch, no merge commits): `require_up_to_date` not set there (`ferry merge` still checks it)".to_owned(),
            );
            held.require_up_to_date = false;
        }
        let mut unheld = |field: &str, on: bool| {
            if on {
                notes.push(format!(
                    "GitLab has no `{field}` rule on a branch: not enforced there"
                ));
            }
        };
        unheld("linear_history", held.linear_history);
        held.linear_history = false;
        unheld("enforce_admins", held.enforce_admins);
        held.enforce_admins = false;
        unheld("allow_deletion", held.allow_deletion);
        held.allow_deletion = false;
        if held.require_signed_commits {
            notes.push(
                "GitLab has no `require_signed_commits` rule on a branch (its push rule `reject_unsigned_commits` is project-wide, on Premium): not enforced there; agents with `--trusted-keys` still deploy only signed commits".to_owned(),
            );
            held.require_signed_commits = false;
        }
        Ok((held, notes))
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

/// A protected branch as ferry's rules: its access levels (users and groups by name, through
/// `name_of`: `u` or `g` and the id), force pushes and code-owner approval.
pub(super) fn from_gitlab(
    value: &Value,
    name_of: &mut dyn FnMut(&str, u64) -> Result<String, ForgeError>,
) -> Result<Rules, ForgeError> {
    let mut principals = |key: &str| -> Result<(BTreeSet<u64>, Principals), ForgeError> {
        let mut roles = BTreeSet::new();
        let mut who = Principals::default();
        for level in value[key].as_array().into_iter().flatten() {
            if let Some(id) = level["user_id"].as_u64() {
                who.users.insert(name_of("u", id)?);
            } else if let Some(id) = level["group_id"].as_u64() {
                who.teams.insert(name_of("g", id)?);
            } else if let Some(id) = level["deploy_key_id"].as_u64() {
                who.teams.insert(format!("(deploy key #{id})"));
            } else if let Some(level) = level["access_level"].as_u64() {
                roles.insert(level);
            }
        }
        Ok((roles, who))
    };
    let (push_roles, mut direct_pushers) = principals("push_access_levels")?;
    if push_roles.iter().any(|l| *l != NO_ONE) {
        direct_pushers.teams.insert(
            if push_roles.contains(&DEVELOPERS) {
                DEVELOPERS_ROLE
            } else {
                MAINTAINERS_ROLE
            }
            .to_owned(),
        );
    }
    let (merge_roles, mut mergers) = principals("merge_access_levels")?;
    let restricted_to = if merge_roles.contains(&DEVELOPERS) {
        None
    } else {
        if merge_roles.iter().any(|l| *l > DEVELOPERS) {
            mergers.teams.insert(MAINTAINERS_ROLE.to_owned());
        }
        Some(mergers)
    };
    Ok(Rules {
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
        require_signed_commits: false,
    })
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
        let mut names = |kind: &str, id: u64| -> Result<String, ForgeError> {
            Ok(match (kind, id) {
                ("u", 5) => "alice".to_owned(),
                ("g", 7) => "release".to_owned(),
                _ => format!("{kind} #{id}"),
            })
        };
        let rules = from_gitlab(
            &json!({
                "push_access_levels": [{"access_level": 0}],
                "merge_access_levels": [{"access_level": 40}],
                "allow_force_push": false
            }),
            &mut names,
        )
        .unwrap();
        assert!(rules.direct_pushers.users.is_empty() && rules.direct_pushers.teams.is_empty());
        assert_eq!(rules.restricted_to, Some(maintainers()));
        let open = from_gitlab(
            &json!({"merge_access_levels": [{"access_level": 30}]}),
            &mut names,
        )
        .unwrap();
        assert_eq!(open.restricted_to, None);
        // Premium's people: a user may push, a user and a group merge, and no role.
        let named = from_gitlab(
            &json!({
                "push_access_levels": [{"id": 1, "access_level": 0}, {"id": 2, "access_level": 40, "user_id": 5, "access_level_description": "Alice A."}],
                "merge_access_levels": [{"id": 3, "access_level": 40, "user_id": 5}, {"id": 4, "access_level": 30, "group_id": 7}],
                "code_owner_approval_required": true
            }),
            &mut names,
        )
        .unwrap();
        assert_eq!(named.direct_pushers.to_string(), "alice");
        assert_eq!(
            named.restricted_to.map(|p| p.to_string()).as_deref(),
            Some("alice, team release")
        );
        assert!(named.require_code_owner_review);
    }

    #[test]
    fn access_levels_change_only_where_they_differ() {
        let existing =
            json!([{"id": 1, "access_level": 0}, {"id": 2, "access_level": 40, "user_id": 9}]);
        let wanted = [json!({"access_level": 0}), json!({"user_id": 5})];
        assert_eq!(
            replacing(&existing, &wanted),
            [json!({"id": 2, "_destroy": true}), json!({"user_id": 5})]
        );
        assert!(
            replacing(
                &existing,
                &[json!({"access_level": 0}), json!({"user_id": 9})]
            )
            .is_empty()
        );
    }

    #[test]
    fn approval_rules_apply_where_gitlab_applies_them() {
        let rule = |extra: Value| {
            let mut rule = json!({"approvals_required": 2, "rule_type": "regular", "eligible_approvers": [{"id": 5}]});
            for (k, v) in extra.as_object().unwrap() {
                rule[k] = v.clone();
            }
            rule
        };
        assert!(applies(&rule(json!({"protected_branches": []})), "staging"));
        assert!(applies(
            &rule(json!({"protected_branches": [{"name": "env-*"}]})),
            "env-prod"
        ));
        assert!(!applies(
            &rule(json!({"protected_branches": [{"name": "prod"}]})),
            "staging"
        ));
        assert!(applies(
            &rule(
                json!({"protected_branches": [{"name": "prod"}], "applies_to_all_protected_branches": true})
            ),
            "staging"
        ));
        // No one to approve: the rule does not block; a report's rule is not a branch's.
        assert!(!applies(
            &rule(json!({"eligible_approvers": []})),
            "staging"
        ));
        assert!(!applies(
            &rule(json!({"rule_type": "report_approver"})),
            "staging"
        ));
        assert!(applies(
            &rule(json!({"rule_type": "any_approver", "eligible_approvers": []})),
            "staging"
        ));
    }
}
