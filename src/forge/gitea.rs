//! Gitea (and Forgejo, whose API is Gitea's) as the forge: promotion requests are pull
//! requests, approvals are reviews, checks are commit statuses, branch rules are
//! `/branch_protections`.
//!
//! The proposal commit is built in the store, as on the embedded forge, and its request branch
//! pushed with git (Gitea's API cannot move a branch to a given commit); the pull request,
//! its labels, reviews, merges and statuses go through the REST API ([`super::rest`]). The
//! token comes from GITEA_TOKEN (or GITEA_TOKEN_FILE), the API from GITEA_API_URL (the
//! `/api/v1` base), else from the remote's host.

use git2::Oid;
use serde_json::{Value, json};

use super::pulls::{add_statuses, approvals, is_promotion, record_of, request_of, status_of};
use super::rest::{Rest, RestError};
use super::{
    Approved, CloseReason, Forge, ForgeError, ForgeKind, Merge, OpenRequest, Proposal, Published,
    Record, Request, RequestState, Status, Statuses,
};
use crate::plan::protection::{Principals, Rules};
use crate::store::Store;

const GITEA: &str = "Gitea";
/// How ferry's rules say "anyone with write access" (Gitea's pushes without a whitelist).
const WRITERS: &str = "@writers";
/// And "the repository's deploy keys with write access" (`push_whitelist_deploy_keys`).
const DEPLOY_KEYS: &str = "@deploy-keys";

/// A Gitea or Forgejo repository through its REST API, and its git remote for the request
/// branch.
pub struct Gitea<'s> {
    rest: Rest,
    store: &'s Store,
    owner: String,
    name: String,
}

/// `owner/name` and the API base for `store`'s remote: `given` (`--repo`) else the remote's
/// path; GITEA_API_URL else `https://HOST/api/v1` (`http://` for an `http://` remote).
pub fn locate(store: &Store, given: Option<&str>) -> Result<(String, String), crate::error::Error> {
    let shown = &store.remote().shown;
    let remote = super::host_and_path(shown);
    let repo = match given {
        Some(repo) => repo.to_owned(),
        None => remote
            .as_ref()
            .and_then(|(_, path)| owner_and_name(path))
            .ok_or_else(|| {
                crate::error::Error::usage(format!("`{shown}` does not name a Gitea repository"))
                    .hint("pass `--repo owner/name` (or set FERRY_REPO)")
            })?,
    };
    let api = match std::env::var("GITEA_API_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(api) => api,
        None => super::rest::api_of_remote(shown, "/api/v1").ok_or_else(|| {
            crate::error::Error::usage(format!("`{shown}` is not on a Gitea server"))
                .hint("set GITEA_API_URL to the server's API (`https://gitea.example.com/api/v1`)")
        })?,
    };
    Ok((repo, api))
}

/// `owner/name` of a remote's path (`acme/deploy.git`).
fn owner_and_name(path: &str) -> Option<String> {
    let path = path.trim_matches('/').trim_end_matches(".git");
    let (owner, name) = path.rsplit_once('/')?;
    let owner = owner.rsplit('/').next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

impl<'s> Gitea<'s> {
    pub fn new(store: &'s Store, repo: &str, api: &str) -> Result<Gitea<'s>, crate::error::Error> {
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| {
                crate::error::Error::usage(format!("`{repo}` is not `owner/name`"))
                    .hint("pass `--repo owner/name`")
            })?;
        let token = crate::secret::from_env("GITEA_TOKEN")
            .map_err(|e| crate::error::Error::failure(e.to_string()))?
            .ok_or_else(|| {
                crate::error::Error::failure("GITEA_TOKEN is not set").hint(
                    "set GITEA_TOKEN (or GITEA_TOKEN_FILE) to a token with the repository and issue scopes",
                )
            })?;
        if http::HeaderValue::from_str(&token).is_err() {
            return Err(crate::error::Error::failure(
                "the Gitea token holds characters no token has",
            ));
        }
        Ok(Gitea {
            rest: Rest::new(GITEA, api, ("authorization", format!("token {token}"))),
            store,
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
        self.rest.call(method, path, body).map(|(_, _, v)| v)
    }

    /// Pull request `number`, which must be a promotion's.
    fn promotion_pull(&self, number: u64) -> Result<Value, ForgeError> {
        let pr = match self.call("GET", &self.path(&format!("/pulls/{number}")), None) {
            Ok(pr) => pr,
            Err(e) if e.status() == Some(404) => return Err(ForgeError::NoRequest(number)),
            Err(e) => return Err(e.into()),
        };
        if !is_promotion(&pr) {
            return Err(ForgeError::NoRequest(number));
        }
        Ok(pr)
    }

    fn reviews(&self, number: u64) -> Result<Vec<Value>, RestError> {
        self.rest
            .list(&self.path(&format!("/pulls/{number}/reviews?limit=50")))
    }

    fn promotions(&self, state: &str) -> Result<Vec<Record<Request>>, RestError> {
        let pulls = self
            .rest
            .list(&self.path(&format!("/pulls?state={state}&sort=oldest&limit=50")))?;
        let mut requests = Vec::new();
        for pr in pulls.iter().filter(|pr| is_promotion(pr)) {
            let Some(number) = pr["number"].as_u64() else {
                continue;
            };
            requests.extend(record_of(pr, &self.reviews(number)?));
        }
        requests.sort_by_key(|r| r.value.id);
        Ok(requests)
    }

    /// The ids of `names` among the repository's labels, each made when missing.
    fn label_ids(&self, names: &[String]) -> Result<Vec<u64>, RestError> {
        let existing = self.rest.list(&self.path("/labels?limit=50"))?;
        let mut ids = Vec::new();
        for name in names {
            let found = existing
                .iter()
                .find(|l| l["name"].as_str() == Some(name.as_str()))
                .and_then(|l| l["id"].as_u64());
            let id = match found {
                Some(id) => id,
                None => self.call(
                    "POST",
                    &self.path("/labels"),
                    Some(&json!({"name": name, "color": "#0e8a16"})),
                )?["id"]
                    .as_u64()
                    .unwrap_or(0),
            };
            if id != 0 {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

impl Forge for Gitea<'_> {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Gitea
    }

    fn open_request(
        &self,
        from: &str,
        to: &str,
        to_branch: &str,
    ) -> Result<Option<OpenRequest>, ForgeError> {
        let branch = super::request_branch(from, to);
        let pulls = self
            .rest
            .list(&self.path("/pulls?state=open&sort=oldest&limit=50"))?;
        let from_branch = |pr: &&Value| pr["head"]["ref"].as_str() == Some(branch.as_str());
        if let Some(pr) = pulls
            .iter()
            .filter(from_branch)
            .find(|pr| pr["base"]["ref"].as_str() != Some(to_branch))
        {
            return Err(ForgeError::Retargeted {
                id: pr["number"].as_u64().unwrap_or_default(),
                branch,
                into: pr["base"]["ref"].as_str().unwrap_or_default().to_owned(),
                target: to_branch.to_owned(),
            });
        }
        Ok(pulls
            .iter()
            .filter(from_branch)
            .find(|pr| pr["base"]["ref"].as_str() == Some(to_branch))
            .and_then(|pr| {
                Some(OpenRequest {
                    id: pr["number"].as_u64()?,
                    url: pr["html_url"].as_str().unwrap_or_default().to_owned(),
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
        let edit = json!({"title": p.title, "body": p.body});
        let (pr, updated) = match open {
            Some(open) => (
                self.call(
                    "PATCH",
                    &self.path(&format!("/pulls/{}", open.id)),
                    Some(&edit),
                )?,
                true,
            ),
            None => {
                let new = json!({"title": p.title, "body": p.body, "head": p.branch, "base": p.base_branch});
                match self.call("POST", &self.path("/pulls"), Some(&new)) {
                    Ok(pr) => (pr, false),
                    // Opened meanwhile (Gitea: 409 "pull request already exists").
                    Err(e) if matches!(e.status(), Some(409 | 422)) => {
                        let open = self
                            .open_request(p.from, p.to, p.base_branch)?
                            .ok_or(ForgeError::from(e))?;
                        (
                            self.call(
                                "PATCH",
                                &self.path(&format!("/pulls/{}", open.id)),
                                Some(&edit),
                            )?,
                            true,
                        )
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let number = pr["number"].as_u64().ok_or_else(|| {
            self.rest
                .unexpected("POST", &self.path("/pulls"), "no `number` in the answer")
        })?;
        let labels = self.label_ids(p.labels)?;
        if !labels.is_empty() {
            self.call(
                "POST",
                &self.path(&format!("/issues/{number}/labels")),
                Some(&json!({"labels": labels})),
            )?;
        }
        Ok(Published {
            id: number,
            url: pr["html_url"].as_str().unwrap_or_default().to_owned(),
            updated,
            title: p.title.to_owned(),
            head: Some(head),
        })
    }

    fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.promotions("all")?)
    }

    fn open_requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        Ok(self.promotions("open")?)
    }

    fn user(&self) -> Result<Option<String>, ForgeError> {
        Ok(Some(self.rest.user("login")?))
    }

    fn request(&self, id: u64) -> Result<Record<Request>, ForgeError> {
        let pr = self.promotion_pull(id)?;
        record_of(&pr, &self.reviews(id)?).ok_or(ForgeError::NoRequest(id))
    }

    fn approve(&self, id: u64, by: &str, at: i64) -> Result<Approved, ForgeError> {
        let pr = self.promotion_pull(id)?;
        let Some(request) = request_of(&pr, &[]) else {
            return Err(ForgeError::NoRequest(id));
        };
        super::approvable(&request, by)?;
        let review = self.call(
            "POST",
            &self.path(&format!("/pulls/{id}/reviews")),
            Some(&json!({"event": "APPROVED", "commit_id": request.head, "body": ""})),
        )?;
        let answered = approvals(std::slice::from_ref(&review));
        Ok(super::approved_on_forge(request, answered, by, at))
    }

    /// With `head_commit_id` pinned; the merge commit is read back from the pull request.
    fn merge(&self, merge: &Merge<'_>) -> Result<Oid, ForgeError> {
        let request = &merge.request.value;
        if merge.rebuild.is_some() {
            return Err(ForgeError::BranchMoved {
                branch: merge.target_branch.to_owned(),
            });
        }
        let path = self.path(&format!("/pulls/{}/merge", request.id));
        let body = json!({
            "Do": merge.method.as_str(),
            "head_commit_id": request.head,
            "MergeTitleField": request.title,
        });
        match self.call("POST", &path, Some(&body)) {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {
                return Err(ForgeError::RequestMoved { id: request.id });
            }
            Err(e) => return Err(e.into()),
        }
        let pr = self.call("GET", &self.path(&format!("/pulls/{}", request.id)), None)?;
        pr["merge_commit_sha"]
            .as_str()
            .and_then(|sha| Oid::from_str(sha).ok())
            .ok_or_else(|| {
                self.rest
                    .unexpected(
                        "GET",
                        &self.path(&format!("/pulls/{}", request.id)),
                        "no `merge_commit_sha` after the merge",
                    )
                    .into()
            })
    }

    fn close(&self, id: u64, _by: &str, _at: i64, reason: CloseReason) -> Result<(), ForgeError> {
        if reason == CloseReason::ByHand {
            let pr = self.promotion_pull(id)?;
            if let Some(request) = request_of(&pr, &[])
                && request.state != RequestState::Open
            {
                return Err(ForgeError::NotOpen {
                    id,
                    state: request.state,
                });
            }
        }
        self.call(
            "PATCH",
            &self.path(&format!("/pulls/{id}")),
            Some(&json!({"state": "closed"})),
        )?;
        Ok(())
    }

    fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError> {
        let mut checks = Statuses::new();
        for page in self
            .rest
            .pages(&self.path(&format!("/commits/{commit}/status?limit=50")))?
        {
            add_statuses(&page, &mut checks);
        }
        Ok(checks)
    }

    fn set_status(&self, commit: Oid, check: &str, status: &Status) -> Result<(), ForgeError> {
        let description: String = status.description.chars().take(255).collect();
        let mut body =
            json!({"state": status.state.as_str(), "context": check, "description": description});
        if let Some(url) = &status.url {
            body["target_url"] = json!(url);
        }
        self.call(
            "POST",
            &self.path(&format!("/statuses/{commit}")),
            Some(&body),
        )?;
        Ok(())
    }

    /// Gitea's "merged pull request of a commit", with its reviews.
    fn landed(&self, env: &str, commit: Oid) -> Result<Option<Request>, ForgeError> {
        let pr = match self.call("GET", &self.path(&format!("/commits/{commit}/pull")), None) {
            Ok(pr) => pr,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let sha = commit.to_string();
        let Some(request) = request_of(&pr, &[]) else {
            return Ok(None);
        };
        if request.to != env || request.merge_commit.as_deref() != Some(sha.as_str()) {
            return Ok(None);
        }
        Ok(request_of(&pr, &self.reviews(request.id)?))
    }

    fn statuses_at(&self, commit: Oid, when: i64) -> Result<Statuses, ForgeError> {
        let mut at_time = Statuses::new();
        for status in self
            .rest
            .list(&self.path(&format!("/commits/{commit}/statuses?limit=50")))?
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

    /// From the repository's activity feed: each push (`commit_repo`) to `branch`, with who.
    fn pushes(&self, branch: &str, since: Option<i64>) -> Result<super::Pushes, ForgeError> {
        // Newest first: no page past the first entry older than `since` is read.
        let before_since = |entry: &Value| {
            since.is_some_and(|since| {
                super::pulls::seconds(&entry["created"]).is_some_and(|at| at < since)
            })
        };
        let feed = self
            .rest
            .list_until(&self.path("/activities/feeds?limit=50"), &before_since)?;
        let mut log = super::Pushes {
            kept: true,
            pushes: Vec::new(),
        };
        let full = format!("refs/heads/{branch}");
        for entry in feed.iter().rev() {
            if entry["op_type"].as_str() != Some("commit_repo") {
                continue;
            }
            let refname = entry["ref_name"].as_str().unwrap_or_default();
            if refname != full && refname != branch {
                continue;
            }
            let Some(push) = entry["content"]
                .as_str()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
            else {
                continue;
            };
            let compare = push["CompareURL"].as_str().unwrap_or_default();
            let range = compare.rsplit('/').next().unwrap_or_default();
            let (before, after) = range.split_once("...").unwrap_or(("", range));
            let after = push["HeadCommit"]["Sha1"]
                .as_str()
                .and_then(|s| Oid::from_str(s).ok())
                .or_else(|| Oid::from_str(after).ok());
            let Some(after) = after else {
                continue;
            };
            log.pushes.push(super::LoggedPush {
                before: Oid::from_str(before).unwrap_or(Oid::ZERO_SHA1),
                after,
                by: super::Pushed {
                    pusher: entry["act_user"]["login"].as_str().map(str::to_owned),
                    login: None,
                },
            });
        }
        Ok(log)
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.owner)
    }

    fn protection(&self, branch: &str) -> Result<Option<Rules>, ForgeError> {
        match self.call(
            "GET",
            &self.path(&format!(
                "/branch_protections/{}",
                super::gitlab::encoded(branch)
            )),
            None,
        ) {
            Ok(value) => Ok(Some(from_gitea(&value))),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn apply_protection(&self, branch: &str, rules: &Rules) -> Result<(), ForgeError> {
        let mut body = to_gitea(rules);
        match self.protection(branch)? {
            Some(_) => {
                self.call(
                    "PATCH",
                    &self.path(&format!(
                        "/branch_protections/{}",
                        super::gitlab::encoded(branch)
                    )),
                    Some(&body),
                )?;
            }
            None => {
                body["rule_name"] = json!(branch);
                self.call("POST", &self.path("/branch_protections"), Some(&body))?;
            }
        }
        Ok(())
    }

    fn holdable(
        &self,
        _branch: &str,
        declared: &Rules,
    ) -> Result<(Rules, Vec<String>), ForgeError> {
        let mut held = declared.clone();
        let mut notes = Vec::new();
        let mut drop = |field: &str, note: bool| {
            if note {
                notes.push(format!("Gitea has no `{field}` rule: not enforced there"));
            }
        };
        drop("require_code_owner_review", held.require_code_owner_review);
        held.require_code_owner_review = false;
        drop("linear_history", held.linear_history);
        held.linear_history = false;
        drop("enforce_admins", held.enforce_admins);
        held.enforce_admins = false;
        drop("allow_force_push", held.allow_force_push);
        held.allow_force_push = false;
        drop("allow_deletion", held.allow_deletion);
        held.allow_deletion = false;
        Ok((held, notes))
    }
}

/// Gitea's branch protection as ferry's rules: pushes (`enable_push`, its whitelist) are who
/// may push without a pull request; the merge whitelist is who may update the branch at all.
pub fn from_gitea(value: &Value) -> Rules {
    let strings = |key: &str| -> std::collections::BTreeSet<String> {
        value[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let teams = |key: &str| -> std::collections::BTreeSet<String> {
        strings(key)
            .into_iter()
            .map(|t| t.to_ascii_lowercase())
            .collect()
    };
    let flag = |key: &str| value[key].as_bool().unwrap_or(false);
    // Files anyone with write access may change by a push, whatever the whitelist: with a
    // pattern set (`*`, `manifest.json`), the branch is open to every writer.
    let unprotected = value["unprotected_file_patterns"]
        .as_str()
        .is_some_and(|p| !p.trim().is_empty());
    let direct_pushers = match (flag("enable_push"), flag("enable_push_whitelist")) {
        _ if unprotected => Principals {
            users: Default::default(),
            teams: [WRITERS.to_owned()].into(),
        },
        (true, true) => {
            let mut teams = teams("push_whitelist_teams");
            if flag("push_whitelist_deploy_keys") {
                teams.insert(DEPLOY_KEYS.to_owned());
            }
            Principals {
                users: strings("push_whitelist_usernames"),
                teams,
            }
        }
        // Pushes enabled without a whitelist: anyone with write access pushes directly.
        (true, false) => Principals {
            users: Default::default(),
            teams: [WRITERS.to_owned()].into(),
        },
        (false, _) => Principals::default(),
    };
    Rules {
        required_approvals: value["required_approvals"].as_u64().unwrap_or(0),
        require_code_owner_review: false,
        dismiss_stale_reviews: flag("dismiss_stale_approvals"),
        required_checks: if flag("enable_status_check") {
            strings("status_check_contexts")
        } else {
            Default::default()
        },
        require_up_to_date: flag("block_on_outdated_branch"),
        direct_pushers,
        restricted_to: flag("enable_merge_whitelist").then(|| Principals {
            users: strings("merge_whitelist_usernames"),
            teams: teams("merge_whitelist_teams"),
        }),
        linear_history: false,
        allow_force_push: false,
        allow_deletion: false,
        enforce_admins: false,
        require_signed_commits: flag("require_signed_commits"),
    }
}

/// `rules` as Gitea's branch protection (the fields Gitea has; see [`Forge::holdable`]).
pub fn to_gitea(rules: &Rules) -> Value {
    let list = |set: &std::collections::BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    let pushers = !rules.direct_pushers.users.is_empty() || !rules.direct_pushers.teams.is_empty();
    let mergers = rules.restricted_to.clone().unwrap_or_default();
    json!({
        "enable_push": pushers,
        "enable_push_whitelist": pushers,
        "push_whitelist_usernames": list(&rules.direct_pushers.users),
        "push_whitelist_teams": list(&rules.direct_pushers.teams),
        "push_whitelist_deploy_keys": false,
        "unprotected_file_patterns": "",
        "enable_merge_whitelist": rules.restricted_to.is_some(),
        "merge_whitelist_usernames": list(&mergers.users),
        "merge_whitelist_teams": list(&mergers.teams),
        "enable_status_check": !rules.required_checks.is_empty(),
        "status_check_contexts": list(&rules.required_checks),
        "required_approvals": rules.required_approvals,
        "dismiss_stale_approvals": rules.dismiss_stale_reviews,
        "block_on_outdated_branch": rules.require_up_to_date,
        "require_signed_commits": rules.require_signed_commits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_rules_read_back_as_put() {
        let mut rules = from_gitea(&json!({}));
        rules.required_approvals = 2;
        rules.dismiss_stale_reviews = true;
        rules.required_checks = ["ci/test".to_owned()].into();
        rules.direct_pushers.users = ["release-bot".to_owned()].into();
        rules.restricted_to = Some(Principals {
            users: ["alice".to_owned()].into(),
            teams: ["release".to_owned()].into(),
        });
        rules.require_up_to_date = true;
        rules.require_signed_commits = true;
        assert_eq!(from_gitea(&to_gitea(&rules)), rules);
        assert_eq!(to_gitea(&rules)["require_signed_commits"], true);
        let open = from_gitea(&json!({"enable_push": true, "enable_push_whitelist": false}));
        assert!(open.direct_pushers.users.is_empty());
        assert_eq!(
            open.direct_pushers.teams,
            [WRITERS.to_owned()].into(),
            "pushes without a whitelist are open to every writer"
        );
        let closed = from_gitea(&json!({"enable_push": false, "enable_push_whitelist": true,
            "push_whitelist_usernames": ["mallory"]}));
        assert_eq!(closed.direct_pushers, Principals::default());
        let files =
            from_gitea(&json!({"enable_push": false, "unprotected_file_patterns": "*.json"}));
        assert_eq!(files.direct_pushers.teams, [WRITERS.to_owned()].into());
        let keys = from_gitea(&json!({"enable_push": true, "enable_push_whitelist": true,
            "push_whitelist_deploy_keys": true}));
        assert_eq!(keys.direct_pushers.teams, [DEPLOY_KEYS.to_owned()].into());
    }

    #[test]
    fn owners_and_names_of_remote_paths() {
        assert_eq!(
            owner_and_name("acme/deploy.git").as_deref(),
            Some("acme/deploy")
        );
        assert_eq!(
            owner_and_name("/gitea/acme/deploy/").as_deref(),
            Some("acme/deploy")
        );
        assert_eq!(owner_and_name("deploy.git"), None);
    }
}
