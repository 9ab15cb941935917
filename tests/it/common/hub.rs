//! A stateful GitHub (or Gitea) double over a real bare repository: the REST endpoints ferry
//! calls, answering in the shapes each forge documents (for GitHub, the recorded payloads of
//! tests/fixtures/github as templates), with their status codes and refusals, and doing to the
//! repository what the forge does (trees, commits and refs written; a merge moves the base
//! branch). Each token is a user. wiremock records every request, so tests assert paths,
//! bodies and counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Repository, Signature};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::github::fixture;

pub const OWNER: &str = "acme";
pub const NAME: &str = "deploy";

#[derive(Debug, Clone)]
struct Pull {
    number: u64,
    title: String,
    body: String,
    head: String,
    base: String,
    user: String,
    state: &'static str,
    labels: Vec<String>,
    created_at: String,
    merged_at: Option<String>,
    merged_by: Option<String>,
    merge_commit_sha: Option<String>,
    /// Merged by a squash (GitLab reports its commit as `squash_commit_sha`).
    squashed: bool,
}

#[derive(Debug, Clone)]
struct Review {
    id: u64,
    pull: u64,
    user: String,
    state: &'static str,
    commit_id: String,
    submitted_at: String,
}

#[derive(Debug, Clone)]
struct StatusEntry {
    id: u64,
    sha: String,
    state: String,
    context: String,
    description: String,
    target_url: Option<String>,
    creator: String,
    at: String,
}

#[derive(Debug, Clone)]
struct Activity {
    id: u64,
    before: String,
    after: String,
    refname: String,
    timestamp: String,
    kind: &'static str,
    actor: String,
}

/// Which forge the double answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    GitHub,
    /// Gitea and Forgejo, under `/api/v1`.
    Gitea,
    /// GitLab, under `/api/v4`, the project addressed by its URL-encoded path.
    GitLab,
}

#[derive(Default)]
struct State {
    labels: Vec<(u64, String)>,
    protections: BTreeMap<String, Value>,
    pulls: Vec<Pull>,
    reviews: Vec<Review>,
    statuses: Vec<StatusEntry>,
    activity: Vec<Activity>,
    next_id: u64,
    /// Seconds added to the clock at each event, so that times are ordered.
    clock: i64,
    /// What GitHub's branch protection says when it refuses a merge (405), if it does.
    refusal: Option<String>,
    /// Someone pushes to the base just before the next merge (the race a forge's merge API
    /// cannot rule out), and the merge goes on, three-way, as GitHub's does.
    race: bool,
    /// Lists are cut into pages of this many items, linked by `Link: rel="next"` (GitHub's
    /// `per_page`, which the double otherwise ignores, answering all in one page).
    page_size: Option<usize>,
    /// The `author_association` of each login's reviews (GitHub's: `NONE` for someone with
    /// no access to the repository); `MEMBER` when not named.
    associations: BTreeMap<String, String>,
    /// GitLab's merge request versions: the request, its head, when GitLab saw it.
    versions: Vec<(u64, String, String)>,
    /// GitLab's plan: Premium keeps users and groups on protected branches, code-owner
    /// approval and approval rules; Free (an unlicensed GitLab EE, as GitLab.com's Free)
    /// refuses people on a protected branch (422), ignores code-owner approval and answers 403
    /// on approval rules and approval settings.
    premium: bool,
    /// GitLab's users beyond the tokens' (their ids: 100 on, in order) and groups (full
    /// paths; ids 500 on, `acme` first).
    people: Vec<String>,
    groups: Vec<String>,
    /// GitLab's project approval rules, and its `reset_approvals_on_push`.
    approval_rules: Vec<Value>,
    reset_approvals_on_push: bool,
}

/// The double; [`Hub::start`] mounts it on a fresh server.
#[derive(Clone)]
pub struct Hub {
    dialect: Dialect,
    repo: PathBuf,
    users: Arc<BTreeMap<String, String>>,
    state: Arc<Mutex<State>>,
    /// Pull requests are numbered from here (GitHub shares numbers with issues).
    first_number: u64,
}

impl Hub {
    /// A double of `acme/deploy` over the bare repository at `repo`, answering as `dialect`;
    /// `users` maps tokens to logins.
    pub async fn start_as(
        dialect: Dialect,
        repo: &Path,
        users: &[(&str, &str)],
    ) -> (MockServer, Hub) {
        let hub = Hub {
            dialect,
            repo: repo.to_owned(),
            users: Arc::new(
                users
                    .iter()
                    .map(|(t, u)| ((*t).to_owned(), (*u).to_owned()))
                    .collect(),
            ),
            state: Arc::new(Mutex::new(State {
                clock: 1_700_000_000 + 30 * 86_400 - 3_600,
                people: users.iter().map(|(_, u)| (*u).to_owned()).collect(),
                groups: vec![OWNER.to_owned()],
                ..State::default()
            })),
            first_number: 12,
        };
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(hub.clone())
            .mount(&server)
            .await;
        (server, hub)
    }

    /// Records a push to `branch` from `before` to `after` by `actor` in the activity, as
    /// GitHub does for a push it receives.
    pub fn pushed(&self, branch: &str, before: &str, after: &str, actor: &str) {
        let mut state = self.state.lock().unwrap();
        let timestamp = tick(&mut state);
        state.next_id += 1;
        let id = state.next_id;
        state.activity.push(Activity {
            id,
            before: before.to_owned(),
            after: after.to_owned(),
            refname: format!("refs/heads/{branch}"),
            timestamp,
            kind: "push",
            actor: actor.to_owned(),
        });
    }

    /// GitLab answers as Premium (see [`State::premium`]); Free otherwise.
    pub fn premium(&self) {
        self.state.lock().unwrap().premium = true;
    }

    /// A GitLab user `name`, with no token.
    pub fn person(&self, name: &str) {
        self.state.lock().unwrap().people.push(name.to_owned());
    }

    /// A GitLab group, by its full path (`acme/release`).
    pub fn group(&self, path: &str) {
        self.state.lock().unwrap().groups.push(path.to_owned());
    }

    /// What GitLab holds now: the protected branch `name`, and the approval rules.
    pub fn gitlab_protection(&self, name: &str) -> (Value, Vec<Value>) {
        let state = self.state.lock().unwrap();
        (
            state.protections.get(name).cloned().unwrap_or(Value::Null),
            state.approval_rules.clone(),
        )
    }

    /// From now on merges are refused by "branch protection", in these words (405).
    pub fn race_the_next_merge(&self) {
        self.state.lock().unwrap().race = true;
    }

    pub fn refuse_merges(&self, message: &str) {
        self.state.lock().unwrap().refusal = Some(message.to_owned());
    }

    /// From now on lists answer `size` items a page, with GitHub's `Link` header.
    pub fn page_size(&self, size: usize) {
        self.state.lock().unwrap().page_size = Some(size);
    }

    /// `login`'s reviews carry this `author_association` (`NONE`: no access).
    pub fn association(&self, login: &str, association: &str) {
        self.state
            .lock()
            .unwrap()
            .associations
            .insert(login.to_owned(), association.to_owned());
    }

    /// A review of pull request `pull` as GitHub would list it (`APPROVED`, `DISMISSED`,
    /// `CHANGES_REQUESTED`, `COMMENTED`), of `commit`, by `login`, with no check: what
    /// GitHub's records may hold whatever ferry's own calls did.
    pub fn review(&self, pull: u64, login: &str, state: &'static str, commit: &str) {
        let mut state_ = self.state.lock().unwrap();
        state_.next_id += 1;
        let submitted_at = tick(&mut state_);
        let id = state_.next_id;
        state_.reviews.push(Review {
            id,
            pull,
            user: login.to_owned(),
            state,
            commit_id: commit.to_owned(),
            submitted_at,
        });
    }

    /// A list's page as GitHub answers it: `page` (from 1) of `items`, with a `Link` to the
    /// next page on this server when there is one.
    fn paged(request: &Request, size: Option<usize>, items: Vec<Value>) -> ResponseTemplate {
        let Some(size) = size else {
            return ok(Value::Array(items));
        };
        let page: usize = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let chunk: Vec<Value> = items
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .cloned()
            .collect();
        let answer = ok(Value::Array(chunk));
        if page * size >= items.len() {
            return answer;
        }
        // On the host the client asked (wiremock's URL says `localhost`).
        let mut next = request.url.clone();
        if let Some(host) = request
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| url::Url::parse(&format!("http://{h}")).ok())
        {
            let _ = next.set_host(host.host_str());
            let _ = next.set_port(host.port());
        }
        let kept: Vec<(String, String)> = request
            .url
            .query_pairs()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        next.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("page", &(page + 1).to_string());
        answer.insert_header("link", format!("<{next}>; rel=\"next\"").as_str())
    }

    fn user(&self, request: &Request) -> Option<String> {
        // GitLab's token headers.
        for header in ["private-token", "job-token"] {
            if let Some(token) = request.headers.get(header) {
                return self.users.get(token.to_str().ok()?).cloned();
            }
        }
        let auth = request.headers.get("authorization")?.to_str().ok()?;
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("token "))?;
        self.users.get(token).cloned()
    }

    fn pull_json(&self, repo: &Repository, pull: &Pull) -> Value {
        let mut value = match self.dialect {
            Dialect::GitHub => fixture("pull-request.json"),
            // As Gitea's API documents a PullRequest (GitLab answers with mr_json).
            Dialect::Gitea | Dialect::GitLab => json!({
                "id": 0, "url": "", "number": 0, "user": {"id": 1, "login": ""},
                "title": "", "body": "", "labels": [], "milestone": null, "assignee": null,
                "assignees": null, "state": "open", "is_locked": false, "comments": 0,
                "html_url": "", "diff_url": "", "patch_url": "", "mergeable": true,
                "merged": false, "merged_at": null, "merge_commit_sha": null, "merged_by": null,
                "allow_maintainer_edit": false, "base": {"label": "", "ref": "", "sha": "", "repo_id": 1},
                "head": {"label": "", "ref": "", "sha": "", "repo_id": 1}, "merge_base": "",
                "due_date": null, "created_at": "", "updated_at": "", "closed_at": null
            }),
        };
        let tip = |branch: &str| {
            repo.refname_to_id(&format!("refs/heads/{branch}"))
                .map(|id| id.to_string())
                .unwrap_or_default()
        };
        value["number"] = json!(pull.number);
        value["id"] = json!(1_000 + pull.number);
        value["html_url"] = json!(match self.dialect {
            Dialect::GitHub => format!("https://github.com/{OWNER}/{NAME}/pull/{}", pull.number),
            Dialect::Gitea | Dialect::GitLab => {
                format!("https://codeberg.org/{OWNER}/{NAME}/pulls/{}", pull.number)
            }
        });
        value["url"] = json!(format!(
            "https://api.github.com/repos/{OWNER}/{NAME}/pulls/{}",
            pull.number
        ));
        value["title"] = json!(pull.title);
        value["body"] = json!(pull.body);
        value["state"] = json!(pull.state);
        value["user"]["login"] = json!(pull.user);
        value["labels"] = pull
            .labels
            .iter()
            .map(|l| json!({"id": 1, "name": l, "color": "ededed", "default": false}))
            .collect();
        value["created_at"] = json!(pull.created_at);
        value["updated_at"] = json!(pull.created_at);
        value["merged_at"] = json!(pull.merged_at);
        value["closed_at"] = json!(pull.merged_at);
        value["merged"] = json!(pull.merged_at.is_some());
        value["merged_by"] = match &pull.merged_by {
            Some(login) => json!({"login": login, "id": 2, "type": "User", "site_admin": false}),
            None => Value::Null,
        };
        value["merge_commit_sha"] = json!(pull.merge_commit_sha);
        value["mergeable"] = json!(pull.state == "open");
        value["head"]["ref"] = json!(pull.head);
        value["head"]["label"] = json!(format!("{OWNER}:{}", pull.head));
        value["head"]["sha"] = json!(tip(&pull.head));
        value["base"]["ref"] = json!(pull.base);
        value["base"]["label"] = json!(format!("{OWNER}:{}", pull.base));
        value["base"]["sha"] = json!(tip(&pull.base));
        value
    }

    /// Merges pull request `number` as the forge does: `pinned` must be its head; `method`
    /// `merge` makes a merge commit, anything else one commit on the base with the head's tree.
    /// The commit on the base, and the pull request's index.
    fn merge_pull(
        &self,
        repo: &Repository,
        state: &mut State,
        number: &str,
        pinned: Option<&str>,
        method: &str,
        user: &str,
    ) -> Result<(Oid, usize), Box<ResponseTemplate>> {
        let Some(i) = find(state, number) else {
            return Err(Box::new(error(404, "Not Found")));
        };
        let pull = state.pulls[i].clone();
        if pull.state != "open" {
            return Err(Box::new(error(405, "Pull Request is not mergeable")));
        }
        if let Some(refusal) = &state.refusal {
            return Err(Box::new(error(405, refusal)));
        }
        let head = repo
            .refname_to_id(&format!("refs/heads/{}", pull.head))
            .expect("head");
        if pinned.is_some_and(|sha| sha != head.to_string()) {
            return Err(Box::new(error(
                409,
                "Head branch was modified. Review and try the merge again.",
            )));
        }
        let base_ref = format!("refs/heads/{}", pull.base);
        let mut base = repo.refname_to_id(&base_ref).expect("base");
        let head_commit = repo.find_commit(head).expect("head commit");
        let raced = std::mem::take(&mut state.race);
        if raced {
            let before = repo.find_commit(base).expect("base commit");
            let blob = repo.blob(b"pushed during the merge\n").expect("blob");
            let mut update = TreeUpdateBuilder::new();
            update.upsert("RACE.md", blob, FileMode::Blob);
            let tree = update
                .create_updated(repo, &before.tree().expect("tree"))
                .expect("tree");
            let tree = repo.find_tree(tree).expect("tree");
            let at = tick(state);
            let signature = signature_of("mallory", &at);
            let moved = repo
                .commit(None, &signature, &signature, "race", &tree, &[&before])
                .expect("commit");
            repo.reference(&base_ref, moved, true, "race").expect("ref");
            base = moved;
        } else if head_commit.parent_id(0).ok() != Some(base) {
            return Err(Box::new(error(405, "Pull Request is not mergeable")));
        }
        let tree = if raced {
            let base_commit = repo.find_commit(base).expect("base commit");
            let mut index = repo
                .merge_commits(&base_commit, &head_commit, None)
                .expect("a three-way merge");
            let tree = index.write_tree_to(repo).expect("merged tree");
            repo.find_tree(tree).expect("tree")
        } else {
            head_commit.tree().expect("tree")
        };
        let base_commit = repo.find_commit(base).expect("base commit");
        let at = tick(state);
        let signature = signature_of(user, &at);
        let title = format!(
            "Merge pull request #{} from {OWNER}/{}",
            pull.number, pull.head
        );
        let merged = match method {
            "merge" => repo.commit(
                None,
                &signature,
                &signature,
                &format!("{title}\n\n{}", pull.title),
                &tree,
                &[&base_commit, &head_commit],
            ),
            _ => repo.commit(
                None,
                &signature,
                &signature,
                &format!("{} (#{})", pull.title, pull.number),
                &tree,
                &[&base_commit],
            ),
        }
        .expect("merge commit");
        repo.reference_matching(&base_ref, merged, true, base, "merge")
            .expect("move the base");
        let pull = &mut state.pulls[i];
        pull.state = "closed";
        pull.merged_at = Some(at.clone());
        pull.merged_by = Some(user.to_owned());
        pull.squashed = method == "squash";
        pull.merge_commit_sha = Some(merged.to_string());
        state.next_id += 1;
        let id = state.next_id;
        state.activity.push(Activity {
            id,
            before: base.to_string(),
            after: merged.to_string(),
            refname: base_ref,
            timestamp: at,
            kind: "pr_merge",
            actor: user.to_owned(),
        });
        Ok((merged, i))
    }

    fn mr_json(&self, repo: &Repository, pull: &Pull) -> Value {
        let tip = |branch: &str| {
            repo.refname_to_id(&format!("refs/heads/{branch}"))
                .map(|id| id.to_string())
                .unwrap_or_default()
        };
        let merged = pull.merged_at.is_some();
        let state = match (pull.state, merged) {
            (_, true) => "merged",
            ("open", _) => "opened",
            _ => "closed",
        };
        let person = |name: &Option<String>| match name {
            Some(name) => json!({"id": 2, "username": name, "name": name, "state": "active"}),
            None => Value::Null,
        };
        json!({
            "id": 1000 + pull.number, "iid": pull.number, "project_id": 1,
            "title": pull.title, "description": pull.body, "state": state,
            "created_at": pull.created_at, "updated_at": pull.created_at,
            "merged_by": person(&pull.merged_by), "merge_user": person(&pull.merged_by),
            "merged_at": pull.merged_at, "closed_by": null,
            "closed_at": if state == "closed" { json!(pull.created_at) } else { Value::Null },
            "target_branch": pull.base, "source_branch": pull.head,
            "author": {"id": 1, "username": pull.user, "name": pull.user, "state": "active"},
            "labels": pull.labels, "draft": false, "work_in_progress": false,
            "merge_when_pipeline_succeeds": false,
            "detailed_merge_status": if state == "opened" { "mergeable" } else { "not_open" },
            "sha": tip(&pull.head),
            "merge_commit_sha": if pull.squashed { Value::Null } else { json!(pull.merge_commit_sha) },
            "squash_commit_sha": if pull.squashed { json!(pull.merge_commit_sha) } else { Value::Null },
            "squash": pull.squashed, "has_conflicts": false,
            "web_url": format!("https://gitlab.com/{OWNER}/{NAME}/-/merge_requests/{}", pull.number),
            "diff_refs": {"base_sha": tip(&pull.base), "head_sha": tip(&pull.head), "start_sha": tip(&pull.base)},
        })
    }

    /// GitLab's API: `path` under `/api/v4`.
    fn answer_gitlab(
        &self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &Value,
        user: String,
    ) -> ResponseTemplate {
        let gone = || gitlab_error(404, "404 Not Found");
        if method == "GET" && path == "/user" {
            return ok(json!({"id": 1, "username": user, "name": user, "state": "active"}));
        }
        if method == "GET" {
            let state = self.state.lock().unwrap();
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                // An exact, case-insensitive match: a list of one, or of none.
                ["users"] => {
                    let wanted = query.get("username").map(|u| u.to_ascii_lowercase());
                    return ok(state
                        .people
                        .iter()
                        .enumerate()
                        .filter(|(_, u)| {
                            wanted
                                .as_deref()
                                .is_none_or(|w| u.to_ascii_lowercase() == w)
                        })
                        .map(|(i, u)| user_json(i, u))
                        .collect());
                }
                ["users", id] => {
                    return match id.parse::<usize>().ok().and_then(|id| id.checked_sub(100)) {
                        Some(i) if i < state.people.len() => ok(user_json(i, &state.people[i])),
                        _ => gitlab_error(404, "404 User Not Found"),
                    };
                }
                ["groups", id] => {
                    let wanted = decoded(id);
                    return match state.groups.iter().enumerate().find(|(i, g)| {
                        (500 + i).to_string() == wanted || g.eq_ignore_ascii_case(&wanted)
                    }) {
                        Some((i, g)) => ok(group_json(i, g)),
                        None => gitlab_error(404, "404 Group Not Found"),
                    };
                }
                ["projects", project] if decoded(project) == format!("{OWNER}/{NAME}") => {
                    return ok(json!({
                        "id": 1, "name": NAME, "path": NAME,
                        "path_with_namespace": format!("{OWNER}/{NAME}"),
                        "namespace": {"id": 500, "name": OWNER, "path": OWNER, "kind": "group",
                                      "full_path": OWNER, "parent_id": null},
                        "merge_method": "merge",
                        "only_allow_merge_if_pipeline_succeeds": false
                    }));
                }
                _ => {}
            }
        }
        let Some(rest) = path.strip_prefix(&format!("/projects/{OWNER}%2F{NAME}/")) else {
            return gone();
        };
        let repo = Repository::open_bare(&self.repo).expect("the double's repository");
        let mut state = self.state.lock().unwrap();
        // A version of each open merge request per head its branch had when GitLab saw it.
        let heads: Vec<(u64, String)> = state
            .pulls
            .iter()
            .filter(|p| p.state == "open")
            .filter_map(|p| {
                let head = repo.refname_to_id(&format!("refs/heads/{}", p.head)).ok()?;
                Some((p.number, head.to_string()))
            })
            .collect();
        for (number, head) in heads {
            let latest = state.versions.iter().rev().find(|v| v.0 == number);
            if latest.is_none_or(|v| v.1 != head) {
                let at = tick(&mut state);
                state.versions.push((number, head, at));
            }
        }
        let parts: Vec<&str> = rest.split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["merge_requests", iid, "versions"]) => {
                let number: u64 = iid.parse().unwrap_or(0);
                ok(state
                    .versions
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, v)| v.0 == number)
                    .map(|(i, v)| json!({"id": i + 1, "head_commit_sha": v.1, "base_commit_sha": "",
                                         "start_commit_sha": "", "created_at": v.2,
                                         "merge_request_id": 1000 + number, "state": "collected",
                                         "real_size": "1", "patch_id_sha": ""}))
                    .collect())
            }
            ("GET", ["merge_requests"]) => {
                let wanted = query.get("state").map_or("all", String::as_str);
                let same = |key: &str, m: &Value| query.get(key).is_none_or(|b| m[key] == json!(b));
                ok(state
                    .pulls
                    .iter()
                    .map(|p| self.mr_json(&repo, p))
                    .filter(|m| wanted == "all" || m["state"] == json!(wanted))
                    .filter(|m| same("source_branch", m) && same("target_branch", m))
                    .collect())
            }
            ("POST", ["merge_requests"]) => {
                let head = body["source_branch"].as_str().unwrap_or_default().to_owned();
                let base = body["target_branch"].as_str().unwrap_or_default().to_owned();
                // GitLab: one open merge request per source branch, whatever its target.
                if let Some(open) = state
                    .pulls
                    .iter()
                    .find(|p| p.state == "open" && p.head == head)
                {
                    return ResponseTemplate::new(409).set_body_json(json!({"message": [format!(
                        "Another open merge request already exists for this source branch: !{}",
                        open.number
                    )]}));
                }
                let number = self.first_number + state.pulls.len() as u64;
                let created_at = tick(&mut state);
                let pull = Pull {
                    number,
                    title: body["title"].as_str().unwrap_or_default().to_owned(),
                    body: body["description"].as_str().unwrap_or_default().to_owned(),
                    head,
                    base,
                    user,
                    state: "open",
                    labels: labels_of(body),
                    created_at,
                    merged_at: None,
                    merged_by: None,
                    merge_commit_sha: None,
                    squashed: false,
                };
                let answer = self.mr_json(&repo, &pull);
                state.pulls.push(pull);
                created(answer)
            }
            ("GET", ["merge_requests", iid]) => match find(&state, iid) {
                Some(i) => ok(self.mr_json(&repo, &state.pulls[i])),
                None => gone(),
            },
            ("PUT", ["merge_requests", iid]) => {
                let Some(i) = find(&state, iid) else {
                    return gone();
                };
                let pull = &mut state.pulls[i];
                if let Some(title) = body["title"].as_str() {
                    pull.title = title.to_owned();
                }
                if let Some(text) = body["description"].as_str() {
                    pull.body = text.to_owned();
                }
                if body["labels"].is_string() {
                    pull.labels = labels_of(body);
                }
                if let Some(target) = body["target_branch"].as_str() {
                    pull.base = target.to_owned();
                }
                if body["state_event"] == json!("close") && pull.state == "open" {
                    pull.state = "closed";
                }
                ok(self.mr_json(&repo, &state.pulls[i]))
            }
            ("GET", ["merge_requests", iid, "approvals"]) => {
                let number: u64 = iid.parse().unwrap_or(0);
                let approved_by: Vec<Value> = state
                    .reviews
                    .iter()
                    .filter(|r| r.pull == number && r.state == "APPROVED")
                    .map(|r| json!({"user": {"id": 4, "username": r.user, "name": r.user, "state": "active"},
                                    "approved_at": r.submitted_at}))
                    .collect();
                ok(json!({"id": 1000 + number, "iid": number, "project_id": 1,
                          "approved": !approved_by.is_empty(), "approved_by": approved_by}))
            }
            ("POST", ["merge_requests", iid, "approve"]) => {
                let Some(i) = find(&state, iid) else {
                    return gone();
                };
                let pull = state.pulls[i].clone();
                if pull.user == user {
                    return gitlab_error(401, "401 Unauthorized");
                }
                let head = repo
                    .refname_to_id(&format!("refs/heads/{}", pull.head))
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if body["sha"].as_str().is_some_and(|sha| sha != head) {
                    return gitlab_error(409, "SHA does not match HEAD of source branch");
                }
                state.next_id += 1;
                let submitted_at = tick(&mut state);
                let id = state.next_id;
                state.reviews.push(Review {
                    id,
                    pull: pull.number,
                    user: user.clone(),
                    state: "APPROVED",
                    commit_id: head,
                    submitted_at,
                });
                created(json!({"iid": pull.number, "approved": true,
                               "approved_by": [{"user": {"username": user}}]}))
            }
            ("PUT", ["merge_requests", iid, "merge"]) => {
                let how = if body["squash"] == json!(true) { "squash" } else { "merge" };
                match self.merge_pull(&repo, &mut state, iid, body["sha"].as_str(), how, &user) {
                    Err(refused) => *refused,
                    Ok((_, i)) => ok(self.mr_json(&repo, &state.pulls[i])),
                }
            }
            ("POST", ["statuses", sha]) => {
                let wanted = body["state"].as_str().unwrap_or_default();
                let name = body["name"].as_str().unwrap_or("default");
                if wanted == "pending"
                    && state
                        .statuses
                        .iter()
                        .rev()
                        .find(|s| s.sha == *sha && s.context == name)
                        .is_some_and(|latest| latest.state == "pending")
                {
                    return gitlab_error(400, "Cannot transition status via :enqueue from :pending");
                }
                state.next_id += 1;
                let at = tick(&mut state);
                let entry = StatusEntry {
                    id: state.next_id,
                    sha: (*sha).to_owned(),
                    state: wanted.to_owned(),
                    context: name.to_owned(),
                    description: body["description"].as_str().unwrap_or_default().to_owned(),
                    target_url: body["target_url"].as_str().map(str::to_owned),
                    creator: user,
                    at,
                };
                let answer = gitlab_status(&entry);
                state.statuses.push(entry);
                created(answer)
            }
            ("GET", ["repository", "commits", sha, "statuses"]) => {
                let all = query.get("all").map(String::as_str) == Some("true");
                let mut seen: Vec<String> = Vec::new();
                let mut listed = Vec::new();
                for s in state.statuses.iter().rev().filter(|s| s.sha == *sha) {
                    if !all && seen.contains(&s.context) {
                        continue;
                    }
                    seen.push(s.context.clone());
                    listed.push(gitlab_status(s));
                }
                ok(Value::Array(listed))
            }
            ("GET", ["repository", "commits", sha, "merge_requests"]) => ok(state
                .pulls
                .iter()
                .filter(|p| p.merge_commit_sha.as_deref() == Some(*sha))
                .map(|p| self.mr_json(&repo, p))
                .collect()),
            ("GET", ["events"]) => ok(state
                .activity
                .iter()
                .map(|a| json!({
                    "id": a.id, "project_id": 1, "action_name": "pushed to",
                    "target_id": null, "target_type": null, "author_id": 3,
                    "author": {"id": 3, "username": a.actor, "name": a.actor, "state": "active"},
                    "author_username": a.actor, "created_at": a.timestamp,
                    "push_data": {"commit_count": 1, "action": "pushed", "ref_type": "branch",
                                  "commit_from": a.before, "commit_to": a.after,
                                  "ref": a.refname.trim_start_matches("refs/heads/"),
                                  "commit_title": "", "ref_count": null}
                }))
                .collect()),
            ("GET", ["protected_branches"]) => ok(state.protections.values().cloned().collect()),
            ("GET", ["protected_branches", branch]) => match state.protections.get(&decoded(branch)) {
                Some(p) => ok(p.clone()),
                None => gitlab_error(404, "404 Not found"),
            },
            ("POST", ["protected_branches"]) => {
                let name = body["name"].as_str().unwrap_or_default().to_owned();
                if state.protections.contains_key(&name) {
                    return ResponseTemplate::new(409).set_body_json(
                        json!({"message": format!("Protected branch '{name}' already exists")}),
                    );
                }
                state.next_id += 1;
                let id = state.next_id;
                let mut rule = json!({
                    "id": id, "name": name, "push_access_levels": [], "merge_access_levels": [],
                    "allow_force_push": body["allow_force_push"].as_bool().unwrap_or(false),
                    "code_owner_approval_required": state.premium
                        && body["code_owner_approval_required"].as_bool().unwrap_or(false),
                });
                for (given, level, kept) in [
                    ("allowed_to_push", "push_access_level", "push_access_levels"),
                    ("allowed_to_merge", "merge_access_level", "merge_access_levels"),
                ] {
                    let entries = match body[given].as_array() {
                        Some(entries) => entries.clone(),
                        None => vec![json!({"access_level": body[level].as_u64().unwrap_or(40)})],
                    };
                    if let Err(refused) = access_levels(&mut state, &mut rule, kept, &entries) {
                        return *refused;
                    }
                }
                state.protections.insert(name, rule.clone());
                created(rule)
            }
            ("PATCH", ["protected_branches", branch]) => {
                let Some(mut rule) = state.protections.get(&decoded(branch)).cloned() else {
                    return gitlab_error(404, "404 Not found");
                };
                if let Some(force) = body["allow_force_push"].as_bool() {
                    rule["allow_force_push"] = json!(force);
                }
                if let Some(owners) = body["code_owner_approval_required"].as_bool() {
                    rule["code_owner_approval_required"] = json!(state.premium && owners);
                }
                for (given, kept) in [
                    ("allowed_to_push", "push_access_levels"),
                    ("allowed_to_merge", "merge_access_levels"),
                ] {
                    let entries = body[given].as_array().cloned().unwrap_or_default();
                    if let Err(refused) = access_levels(&mut state, &mut rule, kept, &entries) {
                        return *refused;
                    }
                }
                state.protections.insert(decoded(branch), rule.clone());
                ok(rule)
            }
            // GitLab EE's approval rules and settings: 403 without a license for them.
            (_, ["approval_rules", ..] | ["approvals"]) if !state.premium => {
                gitlab_error(403, "403 Forbidden")
            }
            ("GET", ["approval_rules"]) => {
                let rules: Vec<Value> = state
                    .approval_rules
                    .iter()
                    .map(|rule| approval_rule_json(&state, rule))
                    .collect();
                ok(json!(rules))
            }
            ("POST", ["approval_rules"]) => {
                if body["name"].as_str().is_none_or(str::is_empty)
                    || body["approvals_required"].as_u64().is_none()
                {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"error": "name is missing, approvals_required is missing"}));
                }
                let named = ["user_ids", "group_ids"]
                    .iter()
                    .any(|k| body[k].as_array().is_some_and(|a| !a.is_empty()));
                let mut rule = body.clone();
                if !named {
                    // No approvers: GitLab makes it the one "any eligible user" rule.
                    if state.approval_rules.iter().any(|r| r["rule_type"] == "any_approver") {
                        return ResponseTemplate::new(400).set_body_json(json!({"message": {
                            "rule_type": ["any-approver for the project already exists"]
                        }}));
                    }
                    rule["rule_type"] = json!("any_approver");
                    rule["name"] = json!("All Members");
                } else {
                    rule["rule_type"] = json!("regular");
                }
                state.next_id += 1;
                rule["id"] = json!(state.next_id);
                state.approval_rules.push(rule.clone());
                created(approval_rule_json(&state, &rule))
            }
            ("PUT", ["approval_rules", id]) => {
                let Some(at) = state.approval_rules.iter().position(|r| r["id"].as_u64() == id.parse().ok()) else {
                    return gitlab_error(404, "404 Not found");
                };
                for (k, v) in body.as_object().into_iter().flatten() {
                    state.approval_rules[at][k] = v.clone();
                }
                let rule = state.approval_rules[at].clone();
                ok(approval_rule_json(&state, &rule))
            }
            ("DELETE", ["approval_rules", id]) => {
                let before = state.approval_rules.len();
                state.approval_rules.retain(|r| r["id"].as_u64() != id.parse().ok());
                if state.approval_rules.len() == before {
                    return gitlab_error(404, "404 Not found");
                }
                ResponseTemplate::new(204)
            }
            ("GET", ["approvals"]) => ok(json!({
                "approvers": [], "approver_groups": [], "approvals_before_merge": 0,
                "reset_approvals_on_push": state.reset_approvals_on_push,
                "selective_code_owner_removals": false,
                "disable_overriding_approvers_per_merge_request": false,
                "merge_requests_author_approval": false,
                "merge_requests_disable_committers_approval": false,
                "require_password_to_approve": false
            })),
            ("POST", ["approvals"]) => {
                if let Some(reset) = body["reset_approvals_on_push"].as_bool() {
                    state.reset_approvals_on_push = reset;
                }
                created(json!({"approvals_before_merge": 0, "reset_approvals_on_push": state.reset_approvals_on_push}))
            }
            _ => gone(),
        }
    }

    fn answer(&self, request: &Request) -> ResponseTemplate {
        let Some(user) = self.user(request) else {
            return error(401, "Bad credentials");
        };
        let prefix = format!("/repos/{OWNER}/{NAME}");
        let path = request.url.path().to_owned();
        let path = match self.dialect {
            Dialect::GitHub => path,
            Dialect::Gitea => match path.strip_prefix("/api/v1") {
                Some(rest) => rest.to_owned(),
                None => return error(404, "Not Found"),
            },
            Dialect::GitLab => match path.strip_prefix("/api/v4") {
                Some(rest) => rest.to_owned(),
                None => return error(404, "404 Not Found"),
            },
        };
        let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let method = request.method.as_str();
        if self.dialect == Dialect::GitLab {
            return self.answer_gitlab(method, &path, &query, &body, user);
        }
        if method == "GET" && path == "/user" {
            if self.dialect == Dialect::Gitea {
                return ok(
                    json!({"id": 1, "login": user, "full_name": "", "email": format!("{user}@example.com")}),
                );
            }
            return ok(json!({"login": user, "id": 1, "type": "User", "site_admin": false}));
        }
        let Some(rest) = path.strip_prefix(&prefix) else {
            return error(404, "Not Found");
        };
        let repo = Repository::open_bare(&self.repo).expect("the double's repository");
        let mut state = self.state.lock().unwrap();
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["commits", sha, "status"]) => {
                let mut combined = fixture("combined-status.json")["body"].clone();
                let template = combined["statuses"][0].clone();
                let mut seen = Vec::new();
                let mut statuses = Vec::new();
                for s in state.statuses.iter().rev().filter(|s| s.sha == *sha) {
                    if seen.contains(&s.context) {
                        continue;
                    }
                    seen.push(s.context.clone());
                    statuses.push(status_json(&template, s));
                }
                combined["sha"] = json!(sha);
                combined["total_count"] = json!(statuses.len());
                combined["state"] = json!("pending");
                combined["statuses"] = Value::Array(statuses);
                ok(combined)
            }
            ("GET", ["commits", sha, "statuses"]) => {
                let template = fixture("combined-status.json")["body"]["statuses"][0].clone();
                Hub::paged(
                    request,
                    state.page_size,
                    state
                        .statuses
                        .iter()
                        .rev()
                        .filter(|s| s.sha == *sha)
                        .map(|s| status_json(&template, s))
                        .collect(),
                )
            }
            ("GET", ["commits", sha, "pulls"]) => Hub::paged(
                request,
                state.page_size,
                state
                    .pulls
                    .iter()
                    .filter(|p| p.merge_commit_sha.as_deref() == Some(*sha))
                    .map(|p| self.pull_json(&repo, p))
                    .collect(),
            ),
            ("POST", ["statuses", sha]) => {
                state.next_id += 1;
                let at = tick(&mut state);
                let entry = StatusEntry {
                    id: state.next_id,
                    sha: (*sha).to_owned(),
                    state: body["state"].as_str().unwrap_or_default().to_owned(),
                    context: body["context"].as_str().unwrap_or("default").to_owned(),
                    description: body["description"].as_str().unwrap_or_default().to_owned(),
                    target_url: body["target_url"].as_str().map(str::to_owned),
                    creator: user,
                    at,
                };
                let template = fixture("combined-status.json")["body"]["statuses"][0].clone();
                let answer = status_json(&template, &entry);
                state.statuses.push(entry);
                created(answer)
            }
            ("GET", ["pulls"]) => {
                let wanted = query.get("state").map_or("open", String::as_str);
                let pulls: Vec<Value> = state
                    .pulls
                    .iter()
                    .filter(|p| wanted == "all" || p.state == wanted)
                    .filter(|p| {
                        query
                            .get("head")
                            .is_none_or(|h| *h == format!("{OWNER}:{}", p.head))
                    })
                    .filter(|p| query.get("base").is_none_or(|b| *b == p.base))
                    .map(|p| self.pull_json(&repo, p))
                    .collect();
                Hub::paged(request, state.page_size, pulls)
            }
            ("POST", ["pulls"]) => {
                let head = body["head"].as_str().unwrap_or_default().to_owned();
                let base = body["base"].as_str().unwrap_or_default().to_owned();
                if state
                    .pulls
                    .iter()
                    .any(|p| p.state == "open" && p.head == head && p.base == base)
                {
                    return match self.dialect {
                        Dialect::GitHub => validation(&format!(
                            "A pull request already exists for {OWNER}:{head}."
                        )),
                        Dialect::Gitea | Dialect::GitLab => {
                            error(409, "pull request already exists for these targets")
                        }
                    };
                }
                let number = self.first_number + state.pulls.len() as u64;
                let created_at = tick(&mut state);
                let pull = Pull {
                    number,
                    title: body["title"].as_str().unwrap_or_default().to_owned(),
                    body: body["body"].as_str().unwrap_or_default().to_owned(),
                    head,
                    base,
                    user,
                    state: "open",
                    labels: Vec::new(),
                    created_at,
                    merged_at: None,
                    merged_by: None,
                    merge_commit_sha: None,
                    squashed: false,
                };
                let answer = self.pull_json(&repo, &pull);
                state.pulls.push(pull);
                created(answer)
            }
            ("GET", ["pulls", number]) => match find(&state, number) {
                Some(i) => ok(self.pull_json(&repo, &state.pulls[i])),
                None => error(404, "Not Found"),
            },
            ("PATCH", ["pulls", number]) => {
                let Some(i) = find(&state, number) else {
                    return error(404, "Not Found");
                };
                let pull = &mut state.pulls[i];
                if let Some(title) = body["title"].as_str() {
                    pull.title = title.to_owned();
                }
                if let Some(text) = body["body"].as_str() {
                    pull.body = text.to_owned();
                }
                if let Some(base) = body["base"].as_str() {
                    pull.base = base.to_owned();
                }
                if body["state"] == json!("closed") && pull.state == "open" {
                    pull.state = "closed";
                }
                ok(self.pull_json(&repo, &state.pulls[i]))
            }
            ("POST", ["issues", number, "labels"]) => {
                let Some(i) = find(&state, number) else {
                    return error(404, "Not Found");
                };
                let named: Vec<String> = body["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| match l.as_u64() {
                        Some(id) => state
                            .labels
                            .iter()
                            .find(|(i, _)| *i == id)
                            .map(|(_, n)| n.clone()),
                        None => l.as_str().map(str::to_owned),
                    })
                    .collect();
                for label in named {
                    if !state.pulls[i].labels.contains(&label) {
                        state.pulls[i].labels.push(label);
                    }
                }
                ok(state.pulls[i]
                    .labels
                    .iter()
                    .map(|l| json!({"name": l, "color": "ededed", "default": false}))
                    .collect())
            }
            ("GET", ["pulls", number, "reviews"]) => {
                let number: u64 = number.parse().unwrap_or(0);
                let head = find(&state, &number.to_string())
                    .and_then(|i| {
                        repo.refname_to_id(&format!("refs/heads/{}", state.pulls[i].head))
                            .ok()
                    })
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                let dialect = self.dialect;
                Hub::paged(
                    request,
                    state.page_size,
                    state
                        .reviews
                        .iter()
                        .filter(|r| r.pull == number)
                        .map(|r| match dialect {
                            Dialect::Gitea => gitea_review_json(r, &state.associations, &head),
                            _ => review_json(r, &state.associations),
                        })
                        .collect(),
                )
            }
            ("POST", ["pulls", number, "reviews"]) => {
                let Some(i) = find(&state, number) else {
                    return error(404, "Not Found");
                };
                let pull = state.pulls[i].clone();
                let approve = matches!(body["event"].as_str(), Some("APPROVE" | "APPROVED"));
                if approve && pull.user == user && self.dialect == Dialect::Gitea {
                    return error(422, "approve your own pull is not allowed");
                }
                if approve && pull.user == user {
                    return ResponseTemplate::new(422).set_body_json(json!({
                        "message": "Unprocessable Entity",
                        "errors": ["Review Can not approve your own pull request"],
                        "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request",
                        "status": "422"
                    }));
                }
                state.next_id += 1;
                let submitted_at = tick(&mut state);
                let review = Review {
                    id: state.next_id,
                    pull: pull.number,
                    user,
                    state: match (self.dialect, body["event"].as_str()) {
                        (_, Some("APPROVE" | "APPROVED")) => "APPROVED",
                        (Dialect::GitHub, Some("REQUEST_CHANGES")) => "CHANGES_REQUESTED",
                        (_, Some("REQUEST_CHANGES")) => "REQUEST_CHANGES",
                        (Dialect::GitHub, _) => "COMMENTED",
                        (_, _) => "COMMENT",
                    },
                    commit_id: body["commit_id"].as_str().unwrap_or_default().to_owned(),
                    submitted_at,
                };
                let answer = match self.dialect {
                    Dialect::Gitea => {
                        gitea_review_json(&review, &state.associations, &review.commit_id)
                    }
                    _ => review_json(&review, &state.associations),
                };
                state.reviews.push(review);
                ok(answer)
            }
            ("PUT" | "POST", ["pulls", number, "merge"])
                if (method == "PUT") == (self.dialect == Dialect::GitHub) =>
            {
                let pinned = body["sha"].as_str().or(body["head_commit_id"].as_str());
                let how = body["merge_method"]
                    .as_str()
                    .or(body["Do"].as_str())
                    .unwrap_or("merge");
                match self.merge_pull(&repo, &mut state, number, pinned, how, &user) {
                    Err(refused) => *refused,
                    Ok((merged, _)) if self.dialect == Dialect::GitHub => ok(json!({
                        "sha": merged.to_string(), "merged": true,
                        "message": "Pull Request successfully merged"
                    })),
                    // Gitea answers a merge with an empty body.
                    Ok(_) => ResponseTemplate::new(200),
                }
            }
            ("POST", ["git", "trees"]) => {
                let mut update = TreeUpdateBuilder::new();
                for entry in body["tree"].as_array().into_iter().flatten() {
                    let content = entry["content"].as_str().unwrap_or_default();
                    let blob = repo.blob(content.as_bytes()).expect("blob");
                    update.upsert(
                        entry["path"].as_str().unwrap_or_default(),
                        blob,
                        FileMode::Blob,
                    );
                }
                let Some(base) = body["base_tree"]
                    .as_str()
                    .and_then(|b| Oid::from_str(b).ok())
                    .and_then(|b| repo.find_tree(b).ok())
                else {
                    return validation("base_tree is not a valid tree oid");
                };
                let tree = update.create_updated(&repo, &base).expect("tree");
                created(json!({"sha": tree.to_string(), "url": "", "tree": [], "truncated": false}))
            }
            ("POST", ["git", "commits"]) => {
                let Some(tree) = body["tree"]
                    .as_str()
                    .and_then(|t| Oid::from_str(t).ok())
                    .and_then(|t| repo.find_tree(t).ok())
                else {
                    return validation("Tree SHA does not exist");
                };
                let parents: Vec<git2::Commit<'_>> = body["parents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().and_then(|p| Oid::from_str(p).ok()))
                    .filter_map(|p| repo.find_commit(p).ok())
                    .collect();
                let at = tick(&mut state);
                let signature = signature_of(&user, &at);
                let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
                let commit = repo
                    .commit(
                        None,
                        &signature,
                        &signature,
                        body["message"].as_str().unwrap_or_default(),
                        &tree,
                        &parents,
                    )
                    .expect("commit");
                created(json!({"sha": commit.to_string(), "tree": {"sha": tree.id().to_string()}}))
            }
            ("POST", ["git", "refs"]) => {
                let name = body["ref"].as_str().unwrap_or_default();
                let Some(sha) = body["sha"].as_str().and_then(|s| Oid::from_str(s).ok()) else {
                    return validation("Object does not exist");
                };
                if repo.refname_to_id(name).is_ok() {
                    return validation("Reference already exists");
                }
                repo.reference(name, sha, false, "create").expect("ref");
                created(json!({"ref": name, "object": {"sha": sha.to_string(), "type": "commit"}}))
            }
            ("PATCH", ["git", "refs", "heads", branch @ ..]) => {
                let name = format!("refs/heads/{}", branch.join("/"));
                let Some(sha) = body["sha"].as_str().and_then(|s| Oid::from_str(s).ok()) else {
                    return validation("Object does not exist");
                };
                if repo.refname_to_id(&name).is_err() {
                    return validation("Reference does not exist");
                }
                repo.reference(&name, sha, true, "update").expect("ref");
                ok(json!({"ref": name, "object": {"sha": sha.to_string(), "type": "commit"}}))
            }
            ("GET", ["activity"]) => {
                let wanted = query.get("ref").cloned().unwrap_or_default();
                let mut entries: Vec<Value> = state
                    .activity
                    .iter()
                    .filter(|a| wanted.is_empty() || a.refname == wanted)
                    .map(|a| {
                        json!({
                            "id": a.id, "node_id": format!("RA_{}", a.id),
                            "before": a.before, "after": a.after, "ref": a.refname,
                            "timestamp": a.timestamp, "activity_type": a.kind,
                            "actor": {"login": a.actor, "id": 3, "type": "User", "site_admin": false}
                        })
                    })
                    .collect();
                if query.get("direction").map(String::as_str) != Some("asc") {
                    entries.reverse();
                }
                Hub::paged(request, state.page_size, entries)
            }
            ("GET", ["commits", sha, "pull"]) => match state
                .pulls
                .iter()
                .find(|p| p.merge_commit_sha.as_deref() == Some(*sha))
            {
                Some(p) => ok(self.pull_json(&repo, p)),
                None => error(404, "Not Found"),
            },
            ("GET", ["labels"]) => ok(state
                .labels
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name, "color": "0e8a16", "description": "", "exclusive": false, "is_archived": false, "url": ""}))
                .collect()),
            ("POST", ["labels"]) => {
                let name = body["name"].as_str().unwrap_or_default().to_owned();
                if state.labels.iter().any(|(_, n)| *n == name) {
                    return validation("label already exists");
                }
                state.next_id += 1;
                let id = state.next_id;
                state.labels.push((id, name.clone()));
                created(json!({"id": id, "name": name, "color": "0e8a16", "description": "", "exclusive": false, "is_archived": false, "url": ""}))
            }
            ("GET", ["activities", "feeds"]) => ok(state
                .activity
                .iter()
                .rev()
                .map(|a| {
                    let content = json!({
                        "Commits": [{"Sha1": a.after, "Message": "", "AuthorEmail": "", "AuthorName": a.actor, "CommitterEmail": "", "CommitterName": a.actor, "Timestamp": a.timestamp}],
                        "HeadCommit": {"Sha1": a.after},
                        "CompareURL": format!("{OWNER}/{NAME}/compare/{}...{}", a.before, a.after),
                        "Len": 1
                    });
                    json!({
                        "id": a.id, "act_user_id": 3, "act_user": {"id": 3, "login": a.actor},
                        "op_type": "commit_repo", "content": content.to_string(),
                        "ref_name": a.refname, "repo_id": 1, "is_private": false,
                        "created": a.timestamp, "comment_id": 0
                    })
                })
                .collect()),
            ("GET", ["branch_protections", branch]) => match state.protections.get(&decoded(branch)) {
                Some(p) => ok(p.clone()),
                None => error(404, "Not Found"),
            },
            ("POST", ["branch_protections"]) => {
                let name = body["rule_name"].as_str().unwrap_or_default().to_owned();
                if state.protections.contains_key(&name) {
                    return error(403, "Branch protection already exist");
                }
                let mut rule = body.clone();
                rule["branch_name"] = json!(name);
                state.protections.insert(name, rule.clone());
                created(rule)
            }
            ("PATCH", ["branch_protections", branch]) => {
                let Some(rule) = state.protections.get_mut(&decoded(branch)) else {
                    return error(404, "Not Found");
                };
                for (k, v) in body.as_object().into_iter().flatten() {
                    rule[k] = v.clone();
                }
                ok(rule.clone())
            }
            _ => error(404, "Not Found"),
        }
    }
}

impl Respond for Hub {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.answer(request)
            .insert_header("x-ratelimit-limit", "5000")
            .insert_header("x-ratelimit-remaining", "4999")
            .insert_header("x-ratelimit-used", "1")
            .insert_header("x-ratelimit-resource", "core")
            .insert_header("x-github-api-version-selected", "2022-11-28")
    }
}

fn find(state: &State, number: &str) -> Option<usize> {
    let number: u64 = number.parse().ok()?;
    state.pulls.iter().position(|p| p.number == number)
}

/// The next moment of the double's clock, as GitHub writes times.
fn tick(state: &mut State) -> String {
    state.clock += 60;
    jiff::Timestamp::from_second(state.clock)
        .expect("a time")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn signature_of(user: &str, at: &str) -> Signature<'static> {
    let seconds = at.parse::<jiff::Timestamp>().expect("time").as_second();
    Signature::new(
        user,
        &format!("{user}@users.noreply.github.com"),
        &git2::Time::new(seconds, 0),
    )
    .expect("signature")
}

fn status_json(template: &Value, s: &StatusEntry) -> Value {
    let mut status = template.clone();
    status["id"] = json!(s.id);
    status["state"] = json!(s.state);
    status["context"] = json!(s.context);
    status["description"] = json!(s.description);
    status["target_url"] = json!(s.target_url);
    status["creator"]["login"] = json!(s.creator);
    status["created_at"] = json!(s.at);
    status["updated_at"] = json!(s.at);
    status
}

fn gitlab_status(s: &StatusEntry) -> Value {
    json!({
        "id": s.id, "sha": s.sha, "ref": null, "status": s.state, "name": s.context,
        "target_url": s.target_url, "description": s.description, "created_at": s.at,
        "started_at": null, "finished_at": if s.state == "pending" { Value::Null } else { json!(s.at) },
        "allow_failure": false, "coverage": null,
        "author": {"id": 5, "username": s.creator, "name": s.creator, "state": "active"}
    })
}

fn review_json(r: &Review, associations: &BTreeMap<String, String>) -> Value {
    json!({
        "id": r.id,
        "node_id": format!("PRR_{}", r.id),
        "user": {"login": r.user, "id": 4, "type": "User", "site_admin": false},
        "body": "",
        "state": r.state,
        "html_url": format!("https://github.com/{OWNER}/{NAME}/pull/{}#pullrequestreview-{}", r.pull, r.id),
        "pull_request_url": format!("https://api.github.com/repos/{OWNER}/{NAME}/pulls/{}", r.pull),
        "author_association": associations.get(&r.user).map_or("MEMBER", String::as_str),
        "submitted_at": r.submitted_at,
        "commit_id": r.commit_id,
    })
}

/// A review as Gitea's API documents a PullReview: no `author_association`, but `official`
/// (a reviewer with write access; the association `NONE` here says not), `stale` (of an
/// older head) and `dismissed` (a `DISMISSED` review is an approval dismissed).
fn gitea_review_json(r: &Review, associations: &BTreeMap<String, String>, head: &str) -> Value {
    let dismissed = r.state == "DISMISSED";
    json!({
        "id": r.id,
        "user": {"id": 4, "login": r.user, "full_name": "", "email": ""},
        "team": null,
        "state": if dismissed { "APPROVED" } else { r.state },
        "body": "",
        "commit_id": r.commit_id,
        "stale": r.commit_id != head,
        "official": associations.get(&r.user).is_none_or(|a| a != "NONE"),
        "dismissed": dismissed,
        "comments_count": 0,
        "submitted_at": r.submitted_at,
        "updated_at": r.submitted_at,
        "html_url": format!("https://codeberg.org/{OWNER}/{NAME}/pulls/{}#issuecomment-{}", r.pull, r.id),
        "pull_request_url": format!("https://codeberg.org/{OWNER}/{NAME}/pulls/{}", r.pull),
    })
}

/// A path segment percent-decoded, as the forges read their path parameters.
fn decoded(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// GitLab's error body: `{"message": …}`.
fn gitlab_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "message": message }))
}

/// GitLab user number `i` of the double's (id 100 + i).
fn user_json(i: usize, username: &str) -> Value {
    json!({"id": 100 + i, "username": username, "name": format!("{username} (name)"),
           "state": "active", "locked": false,
           "web_url": format!("https://gitlab.com/{username}")})
}

/// GitLab group number `i` of the double's (id 500 + i), by its full path.
fn group_json(i: usize, full_path: &str) -> Value {
    let (parent, path) = full_path.rsplit_once('/').unwrap_or(("", full_path));
    json!({"id": 500 + i, "name": path, "path": path, "full_path": full_path,
           "full_name": full_path.replace('/', " / "), "visibility": "private",
           "parent_id": if parent.is_empty() { Value::Null } else { json!(500) }})
}

/// Adds `entries` (`allowed_to_push`/`allowed_to_merge`: `{"access_level"}`, `{"user_id"}`,
/// `{"group_id"}`, `{"id", "_destroy": true}`) to the access levels `kept` of protected branch
/// `rule`. Free refuses users and groups as GitLab EE does without the license for them
/// (422); Premium refuses an unknown one (404).
fn access_levels(
    state: &mut State,
    rule: &mut Value,
    kept: &str,
    entries: &[Value],
) -> Result<(), Box<ResponseTemplate>> {
    let what = if kept.starts_with("push") {
        "Push"
    } else {
        "Merge"
    };
    for entry in entries {
        if entry["_destroy"] == json!(true) {
            let levels = rule[kept].as_array_mut().expect("levels");
            levels.retain(|l| l["id"] != entry["id"]);
            continue;
        }
        state.next_id += 1;
        let id = state.next_id;
        let mut level = json!({"id": id, "access_level": entry["access_level"].as_u64().unwrap_or(40),
                               "user_id": null, "group_id": null});
        level["access_level_description"] = json!(match level["access_level"].as_u64() {
            Some(0) => "No one",
            Some(30) => "Developers + Maintainers",
            _ => "Maintainers",
        });
        for (key, kind) in [("user_id", "user"), ("group_id", "group")] {
            let Some(named) = entry[key].as_u64() else {
                continue;
            };
            if !state.premium {
                return Err(Box::new(ResponseTemplate::new(422).set_body_json(
                    json!({"message": [format!("{what} access levels {kind} must be blank")]}),
                )));
            }
            let name = match kind {
                "user" => (named as usize)
                    .checked_sub(100)
                    .and_then(|i| state.people.get(i)),
                _ => (named as usize)
                    .checked_sub(500)
                    .and_then(|i| state.groups.get(i)),
            };
            let Some(name) = name else {
                return Err(Box::new(gitlab_error(
                    404,
                    &format!(
                        "404 {} Not Found",
                        if kind == "user" { "User" } else { "Group" }
                    ),
                )));
            };
            level[key] = json!(named);
            level["access_level"] = json!(30);
            level["access_level_description"] = json!(if kind == "user" {
                format!("{name} (name)")
            } else {
                name.clone()
            });
        }
        rule[kept].as_array_mut().expect("levels").push(level);
    }
    Ok(())
}

/// A project approval rule as GitLab lists it: its protected branches, users and groups as
/// objects, and who may approve.
fn approval_rule_json(state: &State, rule: &Value) -> Value {
    let ids = |key: &str| -> Vec<u64> {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect()
    };
    let users: Vec<Value> = ids("user_ids")
        .into_iter()
        .filter_map(|id| {
            Some(user_json(
                id as usize - 100,
                state.people.get((id as usize).checked_sub(100)?)?,
            ))
        })
        .collect();
    let groups: Vec<Value> = ids("group_ids")
        .into_iter()
        .filter_map(|id| {
            Some(group_json(
                id as usize - 500,
                state.groups.get((id as usize).checked_sub(500)?)?,
            ))
        })
        .collect();
    let branches: Vec<Value> = ids("protected_branch_ids")
        .into_iter()
        .filter_map(|id| {
            state
                .protections
                .values()
                .find(|p| p["id"] == json!(id))
                .cloned()
        })
        .collect();
    // A group's members: every user of the double's (all in `acme`).
    let eligible: Vec<Value> = if groups.is_empty() {
        users.clone()
    } else {
        state
            .people
            .iter()
            .enumerate()
            .map(|(i, u)| user_json(i, u))
            .collect()
    };
    json!({
        "id": rule["id"], "name": rule["name"], "rule_type": rule["rule_type"],
        "report_type": null,
        "eligible_approvers": if rule["rule_type"] == "any_approver" { json!([]) } else { json!(eligible) },
        "approvals_required": rule["approvals_required"],
        "users": users, "groups": groups, "contains_hidden_groups": false,
        "protected_branches": branches,
        "applies_to_all_protected_branches": rule["applies_to_all_protected_branches"].as_bool().unwrap_or(false)
    })
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn created(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(body)
}

/// GitHub's error body: its message and where its documentation is.
fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.to_string()
    }))
}

fn validation(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(422).set_body_json(json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": "422"
    }))
}

/// GitLab's labels, as a comma-separated string.
fn labels_of(body: &Value) -> Vec<String> {
    body["labels"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One call to a double at `target` (its path) with the header `auth`, the way a forge's web
/// page or another client makes it: the status code and the JSON answer (`null` when none).
pub async fn raw_call(
    server: &MockServer,
    auth: String,
    verb: &str,
    target: String,
    body: Value,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let address = *server.address();
    let verb = verb.to_owned();
    tokio::task::spawn_blocking(move || {
        let body = body.to_string();
        let mut stream = std::net::TcpStream::connect(address).expect("the double");
        write!(
            stream,
            "{verb} {target} HTTP/1.1\r\nHost: {address}\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let code = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let json = answer
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (code, json)
    })
    .await
    .unwrap()
}

/// The deployment repository the forge tests share: dev with `web` 1.0.0 pinned (a real
/// artifact) and `extra` more apps, staging declaring them at `/srv/…`, protected by one
/// approval, its deploys reported by `agent-staging`, then `edit` applied to staging's file;
/// and the double over it answering as `dialect` for `users` (tokens and logins), with the
/// forge's log of the push that declared staging (by `ci-bot`). A forge other than GitHub runs
/// its own hooks on pushes, not ferry's: they are removed.
pub async fn world(
    dialect: Dialect,
    users: &[(&str, &str)],
    extra: usize,
    edit: impl FnOnce(&mut Value),
) -> (super::Sandbox, String, MockServer, Hub) {
    let sandbox = super::Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let file = crate::agent::artifact(&sandbox, "1.0.0");
    crate::agent::bump(&sandbox, &remote, "1.0.0", &file, true);
    if extra > 0 {
        let mut manifest: Value =
            serde_json::from_str(&sandbox.show("dev", "manifest.json")).unwrap();
        for i in 0..extra {
            manifest["artifacts"][format!("app{i:04}")] = json!({"version": "1.0.0", "url": format!("https://a.example/app{i:04}-1.0.0.tgz"), "sha256": super::DIGEST});
        }
        let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
        sandbox.commit_files("dev", &[("manifest.json", &text)], "dev: many apps");
    }
    let before = sandbox.tip("staging");
    sandbox.edit_env("staging", "staging", |env| {
        env["apps"] = json!({"web": {"deployment_path": "/srv/web"}});
        for i in 0..extra {
            env["apps"][format!("app{i:04}")] =
                json!({"deployment_path": format!("/srv/app{i:04}")});
        }
        env["protection"] = json!({"required_approvals": 1});
        env["agent"] = json!({"reporters": ["agent-staging"]});
        edit(env);
    });
    if dialect != Dialect::GitHub {
        for hook in ["pre-receive", "post-receive"] {
            let _ = std::fs::remove_file(sandbox.path().join("deploy.git/hooks").join(hook));
        }
    }
    let (server, hub) = Hub::start_as(dialect, &sandbox.path().join("deploy.git"), users).await;
    hub.pushed("staging", &before, &sandbox.tip("staging"), "ci-bot");
    (sandbox, remote, server, hub)
}
