//! Enforcement in the deployment repository itself: what `ferry hook pre-receive` decides for
//! a push, whoever makes it (`git push` or ferry).
//!
//! Each environment branch is protected by the `protection` block of its environment file as
//! it is on the branch's current tip (a push cannot loosen the rules it is judged by). An
//! update of a protected branch is either the landing of a promotion request (the same push
//! marks the request merged, by the pusher) or a direct push (allowed to `allowed_pushers`
//! only). ferry's records under `refs/ferry/` are append-only, and every name in them that
//! says who did something (a request's author, an approver, the merger) must be the pusher.
//! The pusher is who the transport authenticated: `REMOTE_USER` from an HTTP server,
//! `FERRY_PUSHER` set per key for ssh, the local login for a path; never a name the client
//! writes.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};

use crate::forge::local::{REQUESTS, STATUSES, STATUSES_FILE};

/// The push log: one commit per accepted push (`push.json`: who, when, which refs moved from
/// what to what), written by the repository's `post-receive` hook only. `ferry audit` reads it
/// to say who pushed each change.
pub const PUSHES: &str = "refs/ferry/pushes";
const PUSH_FILE: &str = "push.json";

/// The prefix of request branches (`ferry/promote/FROM-to-TO`), reserved for ferry.
const REQUEST_BRANCHES: &str = "ferry/";

/// One accepted push, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Push {
    /// `None`: the transport said nobody (a push to an unprotected branch may still land).
    pub pusher: Option<String>,
    /// Unix seconds.
    pub at: i64,
    pub updates: Vec<LoggedUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoggedUpdate {
    pub refname: String,
    pub old: String,
    pub new: String,
}
use crate::forge::{Request, RequestState, Statuses};
use crate::model::{Artifact, Environment, Manifest, Protection};
use crate::validate::{ENVIRONMENTS_DIR, MANIFEST};

/// One ref update of a push, as git gives it to `pre-receive` (zero ids: created, deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub old: Oid,
    pub new: Oid,
    pub refname: String,
}

impl Update {
    /// Parses one line of `pre-receive`'s input: `OLD NEW REFNAME`.
    pub fn parse(line: &str) -> Option<Update> {
        let mut parts = line.split_whitespace();
        let old = Oid::from_str(parts.next()?).ok()?;
        let new = Oid::from_str(parts.next()?).ok()?;
        let refname = parts.next()?.to_owned();
        Some(Update { old, new, refname })
    }
}

/// Who is pushing, as the transport authenticated them: `REMOTE_USER` (set by the HTTP server
/// that runs `git http-backend` as a CGI), `FERRY_PUSHER` for a push over ssh (set per key in
/// `authorized_keys`, `environment="FERRY_PUSHER=alice"`), else the local login (`USER`,
/// `LOGNAME`) for a push to a path.
pub fn pusher(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    // Each counts only where the transport sets it: REMOTE_USER under an HTTP server (CGI),
    // FERRY_PUSHER under sshd; locally, anyone could set either.
    set("GATEWAY_INTERFACE")
        .and_then(|_| set("REMOTE_USER"))
        .or_else(|| set("SSH_CONNECTION").and_then(|_| set("FERRY_PUSHER")))
        .or_else(|| set("USER"))
        .or_else(|| set("LOGNAME"))
}

/// The pusher of the push this process's hook is checking: [`pusher`] over the process's
/// environment; for a push to a path (no HTTP server or sshd in between) where `USER` and
/// `LOGNAME` are unset (some containers, cron), the login of the user running it, from the
/// system's user database.
pub fn pusher_of_this_push() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    pusher(env).or_else(|| {
        let local = env("GATEWAY_INTERFACE").is_none() && env("SSH_CONNECTION").is_none();
        if local { login_of_uid() } else { None }
    })
}

/// The login name of this process's effective user, from the user database.
pub fn login_of_uid() -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed `passwd` is a valid out-parameter; getpwuid_r writes only into it and
    // into `buffer`, whose length it is given, and `result` points at `pwd` or is null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name).to_str().ok()?;
        (!name.is_empty()).then(|| name.to_owned())
    }
}

/// Every reason to refuse `updates` pushed by `pusher`, in the order of the updates. Empty:
/// the push may go ahead.
pub fn check(repo: &Repository, pusher: Option<&str>, updates: &[Update]) -> Vec<String> {
    let mut refusals = Vec::new();
    // The records first: their rules hold whatever the branches do, and a merge is
    // recognized by its record.
    let mut merges: BTreeMap<String, (Update, Request)> = BTreeMap::new();
    for u in updates
        .iter()
        .filter(|u| u.refname.starts_with("refs/ferry/"))
    {
        if u.refname == PUSHES || u.refname.starts_with(&format!("{PUSHES}/")) {
            refusals.push(format!(
                "{}: the push log is written by the repository's hook only",
                u.refname
            ));
            continue;
        }
        if let Err(why) = check_record(repo, pusher, u, &mut merges) {
            refusals.push(format!("{}: {why}", u.refname));
        }
    }
    // Request branches move only beside their record, as `ferry promote` pushes them: what
    // reviewers see on the branch is what the record says is proposed.
    let proposed: BTreeMap<String, String> = updates
        .iter()
        .filter(|u| u.refname.starts_with(REQUESTS) && !u.new.is_zero())
        .filter_map(|u| request_at(repo, u.new).ok())
        .map(|r| (r.branch, r.head))
        .collect();
    for u in updates {
        let Some(branch) = u.refname.strip_prefix("refs/heads/") else {
            continue;
        };
        if branch.starts_with(REQUEST_BRANCHES) {
            if u.new.is_zero() {
                refusals.push(format!(
                    "{branch}: a request's branch is its review record: deleting it is not allowed"
                ));
            } else if proposed.get(branch) != Some(&u.new.to_string()) {
                refusals.push(format!(
                    "{branch}: a request's branch moves only with its request record (`ferry promote`)"
                ));
            }
            continue;
        }
        if let Err(why) = check_valid(repo, u, branch) {
            refusals.push(format!("{branch}: {why}"));
        }
        if u.old.is_zero() {
            continue; // a new branch: nothing protects it yet
        }
        let Some((env, protection)) = protection_of(repo, u.old, branch) else {
            continue;
        };
        if let Some(protection) = protection
            && let Err(why) = check_branch(repo, pusher, u, &env, &protection, &merges)
        {
            refusals.push(format!("{branch} ({env}): {why}"));
        }
        merges.remove(&env);
    }
    // A request marked merged whose target did not move to the merge in this push.
    for (env, (u, request)) in merges {
        refusals.push(format!(
            "{}: request #{} is marked merged into {env}, but this push does not move `{}` to its merge commit",
            u.refname, request.id, env
        ));
    }
    refusals
}

/// What lands on an environment branch (one the files before or after the push say is an
/// environment's) must be a valid desired state, as `ferry validate` says: its agents would
/// stall on anything else, and a promotion out of it would be refused.
fn check_valid(repo: &Repository, u: &Update, branch: &str) -> Result<(), String> {
    if u.new.is_zero() {
        return Ok(());
    }
    let declared = |tip: Oid| !tip.is_zero() && environment_at(repo, tip, branch).is_some();
    if !declared(u.new) && !declared(u.old) {
        return Ok(());
    }
    let tree = repo
        .find_commit(u.new)
        .and_then(|c| c.tree())
        .map_err(|e| format!("cannot read the pushed commit: {}", e.message()))?;
    let source = crate::store::TreeSource::read(repo, &tree, branch)
        .map_err(|e| format!("cannot read the pushed state: {}", e.message()))?;
    let checked = crate::validate::check(&source);
    let errors = &checked.report.errors;
    if errors.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 5;
    let mut why = format!(
        "the pushed state is invalid ({} error{}; `ferry validate` in a checkout of {} shows them all):",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        &u.new.to_string()[..7]
    );
    for d in errors.iter().take(SHOWN) {
        why.push_str(&format!("\n    {}: {}", d.location(), d.message));
        if let Some(hint) = &d.hint {
            why.push_str(&format!("\n      hint: {hint}"));
        }
    }
    if errors.len() > SHOWN {
        why.push_str(&format!("\n    … and {} more", errors.len() - SHOWN));
    }
    Err(why)
}

/// The environment whose branch is `branch`, from the files at `tip`.
pub fn environment_at(repo: &Repository, tip: Oid, branch: &str) -> Option<Environment> {
    let tree = repo.find_commit(tip).ok()?.tree().ok()?;
    let dir = tree.get_path(std::path::Path::new(ENVIRONMENTS_DIR)).ok()?;
    let dir = repo.find_tree(dir.id()).ok()?;
    dir.iter()
        .filter(|e| e.kind() == Some(ObjectType::Blob))
        .filter_map(|e| repo.find_blob(e.id()).ok())
        .filter_map(|b| serde_json::from_slice::<Environment>(b.content()).ok())
        .find(|env| env.branch() == branch)
}

/// The environment whose branch is `branch` and its protection (`None`: unprotected), from
/// the files at `tip`.
pub fn protection_of(
    repo: &Repository,
    tip: Oid,
    branch: &str,
) -> Option<(String, Option<Protection>)> {
    environment_at(repo, tip, branch).map(|env| (env.name, env.protection))
}

fn named(pusher: Option<&str>) -> Result<&str, String> {
    pusher.ok_or_else(|| {
        "the pusher is unknown: protected refs and records need an authenticated push (REMOTE_USER from the HTTP server, FERRY_PUSHER for ssh, the login USER for a path: `export USER=$(id -un)` where it is unset, as in some containers)".to_owned()
    })
}

fn check_branch(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    env: &str,
    p: &Protection,
    merges: &BTreeMap<String, (Update, Request)>,
) -> Result<(), String> {
    if u.new.is_zero() {
        return if p.allow_deletion {
            Ok(())
        } else {
            Err("deleting a protected branch is not allowed (`allow_deletion` is false)".into())
        };
    }
    let fast_forward = repo.graph_descendant_of(u.new, u.old).unwrap_or(false) || u.new == u.old;
    if !fast_forward && !p.allow_force_push {
        return Err(
            "not a fast-forward: rewriting a protected branch is not allowed (`allow_force_push` is false)"
                .into(),
        );
    }
    if p.linear_history && fast_forward {
        let mut walk = repo.revwalk().map_err(|e| e.message().to_owned())?;
        walk.push(u.new).map_err(|e| e.message().to_owned())?;
        walk.hide(u.old).map_err(|e| e.message().to_owned())?;
        for id in walk.flatten() {
            if repo.find_commit(id).is_ok_and(|c| c.parent_count() > 1) {
                return Err(format!(
                    "merge commit {} on a branch with `linear_history`",
                    &id.to_string()[..7]
                ));
            }
        }
    }
    let who = named(pusher)?;
    match merges.get(env) {
        Some((_, request)) if request.merge_commit.as_deref() == Some(&u.new.to_string()) => {
            check_merge(repo, who, u, env, p, request)
        }
        _ => {
            if p.allowed_pushers.iter().any(|a| a == who) {
                Ok(())
            } else {
                Err(format!(
                    "`{who}` may not push to it directly ({}); versions land through promotion requests (`ferry promote`, `ferry approve`, `ferry merge`), and changes to its environment files by someone in `protection.allowed_pushers` (declare your release managers there)",
                    if p.allowed_pushers.is_empty() {
                        "`allowed_pushers` is empty".to_owned()
                    } else {
                        format!("allowed pushers: {}", p.allowed_pushers.join(", "))
                    }
                ))
            }
        }
    }
}

/// The landing of `request` on the environment's branch (`u`), pushed by `who`.
fn check_merge(
    repo: &Repository,
    who: &str,
    u: &Update,
    env: &str,
    p: &Protection,
    request: &Request,
) -> Result<(), String> {
    let id = request.id;
    if !p.allowed_mergers.is_empty() && !p.allowed_mergers.iter().any(|m| m == who) {
        return Err(format!(
            "`{who}` may not merge request #{id} into {env}: allowed mergers are {}",
            p.allowed_mergers.join(", ")
        ));
    }
    let approvers = request.approvers(p.dismiss_stale_reviews);
    if approvers.len() < p.required_approvals as usize {
        return Err(format!(
            "request #{id} has {} approval(s) from people other than its author {}; {env} requires {}",
            approvers.len(),
            request.author,
            p.required_approvals
        ));
    }
    if p.require_up_to_date && request.base != u.old.to_string() {
        return Err(format!(
            "request #{id} was built on {}, but {env} is at {} (`require_up_to_date`): promote again",
            short(&request.base),
            short(&u.old.to_string())
        ));
    }
    if !p.required_checks.is_empty() {
        let statuses = statuses(repo, &request.head);
        let missing = crate::forge::missing_checks(&p.required_checks, &statuses);
        if !missing.is_empty() {
            return Err(format!(
                "request #{id}: required check(s) not green on its head {}: {}",
                short(&request.head),
                missing.join(", ")
            ));
        }
    }
    // What lands is what was reviewed: the target's tip with the request's pins, nothing else.
    let manifest_at = |commit: Oid| -> Option<Manifest> {
        let tree = repo.find_commit(commit).ok()?.tree().ok()?;
        let entry = tree.get_name(MANIFEST)?;
        let blob = repo.find_blob(entry.id()).ok()?;
        serde_json::from_slice(blob.content()).ok()
    };
    let (Some(before), Some(after)) = (manifest_at(u.old), manifest_at(u.new)) else {
        return Err(format!(
            "request #{id}: cannot read `{MANIFEST}` of the merge"
        ));
    };
    let mut expected = before.artifacts.clone();
    for m in &request.moves {
        expected.insert(m.app.clone(), m.pin.clone());
    }
    if after.artifacts != expected {
        let differs: Vec<&String> = after
            .artifacts
            .keys()
            .chain(expected.keys())
            .filter(|app| after.artifacts.get(*app) != expected.get(*app))
            .collect();
        return Err(format!(
            "the merge of request #{id} does not pin what the request moves (differs: {})",
            differs
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let only_manifest = (|| -> Option<bool> {
        let old = repo.find_commit(u.old).ok()?.tree().ok()?;
        let new = repo.find_commit(u.new).ok()?.tree().ok()?;
        let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None).ok()?;
        Some(diff.deltas().all(|d| {
            d.new_file().path() == Some(std::path::Path::new(MANIFEST))
                && d.old_file().path() == Some(std::path::Path::new(MANIFEST))
        }))
    })();
    if only_manifest != Some(true) {
        return Err(format!(
            "the merge of request #{id} changes files other than `{MANIFEST}`"
        ));
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(7)]
}

/// The statuses recorded for `commit` (none when there is no record).
pub fn statuses(repo: &Repository, commit: &str) -> Statuses {
    repo.refname_to_id(&format!("{STATUSES}{commit}"))
        .ok()
        .and_then(|tip| file_at(repo, tip, STATUSES_FILE).ok().flatten())
        .unwrap_or_default()
}

fn request_at(repo: &Repository, commit: Oid) -> Result<Request, String> {
    file_at(repo, commit, "request.json")?.ok_or_else(|| "the record has no `request.json`".into())
}

/// The JSON file at `path` in `commit`'s tree, parsed (`None`: no such file).
fn file_at<T: serde::de::DeserializeOwned>(
    repo: &Repository,
    commit: Oid,
    path: &str,
) -> Result<Option<T>, String> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| e.message().to_owned())?;
    let Ok(entry) = tree.get_path(std::path::Path::new(path)) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| e.message().to_owned())?;
    serde_json::from_slice(blob.content())
        .map(Some)
        .map_err(|e| format!("`{path}` is damaged: {e}"))
}

/// A statuses record's update (`refs/ferry/statuses/COMMIT`): each status it sets names the
/// pusher as its reporter, and `ferry/deploy/ENV` comes only from ENV's `agent.reporters` (as
/// the environment file of COMMIT declares them), when it names any.
fn check_statuses(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    commit: &str,
) -> Result<(), String> {
    let read = |tip: Oid| -> Result<Statuses, String> {
        if tip.is_zero() {
            return Ok(Statuses::default());
        }
        Ok(file_at(repo, tip, STATUSES_FILE)?.unwrap_or_default())
    };
    // Each commit the push adds, against its parent: what was set, by whom.
    let mut walk = repo.revwalk().map_err(|e| e.message().to_owned())?;
    walk.push(u.new).map_err(|e| e.message().to_owned())?;
    if !u.old.is_zero() {
        walk.hide(u.old).map_err(|e| e.message().to_owned())?;
    }
    let target = Oid::from_str(commit).ok();
    for id in walk {
        let id = id.map_err(|e| e.message().to_owned())?;
        let parent = repo
            .find_commit(id)
            .ok()
            .and_then(|c| c.parent_id(0).ok())
            .unwrap_or(Oid::ZERO_SHA1);
        let (before, after) = (read(parent)?, read(id)?);
        for (check, status) in &after {
            if before.get(check) == Some(status) {
                continue;
            }
            let who = named(pusher)?;
            if status.by != who {
                return Err(format!(
                    "`{check}` is recorded as reported by `{}`, but `{who}` is pushing: a record names who pushed it (drop `--as` or FERRY_USER, or push as `{}`)",
                    status.by, status.by
                ));
            }
            if let Some(env) = check.strip_prefix("ferry/deploy/") {
                let reporters = target
                    .and_then(|t| declared_environment(repo, t, env))
                    .map(|e| e.agent.reporters)
                    .unwrap_or_default();
                if !reporters.is_empty() && !reporters.iter().any(|r| r == who) {
                    return Err(format!(
                        "`{check}` is reported by {env}'s agents only (`agent.reporters`: {}), not by `{who}`",
                        reporters.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The environment named `env` as the files at `tip` declare it.
fn declared_environment(repo: &Repository, tip: Oid, env: &str) -> Option<Environment> {
    file_at(repo, tip, &format!("{ENVIRONMENTS_DIR}/{env}.json"))
        .ok()
        .flatten()
}

/// A record update: append-only, and every identity it adds is the pusher's.
fn check_record(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    merges: &mut BTreeMap<String, (Update, Request)>,
) -> Result<(), String> {
    if u.new.is_zero() {
        return Err("records are append-only: deleting one is not allowed".into());
    }
    if !u.old.is_zero() && !repo.graph_descendant_of(u.new, u.old).unwrap_or(false) {
        return Err("records are append-only: this rewrites its history".into());
    }
    if let Some(commit) = u.refname.strip_prefix(STATUSES) {
        return check_statuses(repo, pusher, u, commit);
    }
    if !u.refname.starts_with(REQUESTS) {
        return Ok(());
    }
    let new = request_at(repo, u.new)?;
    let old = if u.old.is_zero() {
        None
    } else {
        Some(request_at(repo, u.old)?)
    };
    let who = named(pusher)?;
    let claim = |what: &str, name: &str| -> Result<(), String> {
        if name == who {
            Ok(())
        } else {
            Err(format!(
                "{what} is recorded as `{name}`, but `{who}` is pushing: a record names who pushed it (drop `--as` or FERRY_USER, or push as `{name}`)"
            ))
        }
    };
    match &old {
        None => claim("the request's author", &new.author)?,
        Some(old) => {
            if old.id != new.id || old.author != new.author || old.to != new.to {
                return Err("a request's id, author and target never change".into());
            }
            if !new.approvals.starts_with(&old.approvals) {
                return Err("approvals are append-only: this removes or changes one".into());
            }
            for approval in &new.approvals[old.approvals.len()..] {
                claim("an approval", &approval.by)?;
            }
            if old.state != RequestState::Open && new.state != old.state {
                return Err(format!(
                    "request #{} is {} already",
                    new.id,
                    old.state.as_str()
                ));
            }
        }
    }
    let was = old.as_ref().map(|o| o.state);
    if new.state == RequestState::Merged && was != Some(RequestState::Merged) {
        claim("the merger", new.merged_by.as_deref().unwrap_or("(nobody)"))?;
        merges.insert(new.to.clone(), (u.clone(), new.clone()));
    }
    if new.state == RequestState::Closed && was != Some(RequestState::Closed) {
        claim(
            "who closed it",
            new.closed_by.as_deref().unwrap_or("(nobody)"),
        )?;
    }
    // Moves pin artifacts: a request cannot carry another kind of value.
    if new.moves.iter().any(|m| matches!(m.pin, Artifact::Bare(_))) {
        return Err("a request moves pinned artifacts only".into());
    }
    Ok(())
}

/// Appends an accepted push to the log (`post-receive`), retrying when another push's entry
/// lands first.
pub fn record_push(
    repo: &Repository,
    pusher: Option<&str>,
    updates: &[Update],
    at: i64,
) -> Result<(), git2::Error> {
    let push = Push {
        pusher: pusher.map(str::to_owned),
        at,
        updates: updates
            .iter()
            .filter(|u| u.refname != PUSHES)
            .map(|u| LoggedUpdate {
                refname: u.refname.clone(),
                old: u.old.to_string(),
                new: u.new.to_string(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&push).expect("pushes serialize");
    text.push('\n');
    let blob = repo.blob(text.as_bytes())?;
    let mut tree = repo.treebuilder(None)?;
    tree.insert(PUSH_FILE, blob, 0o100644)?;
    let tree = repo.find_tree(tree.write()?)?;
    let name = push.pusher.as_deref().unwrap_or("unknown pusher");
    let email = format!("{}@ferry.invalid", name.replace(char::is_whitespace, "-"));
    let signature = git2::Signature::new(name, &email, &git2::Time::new(at, 0))?;
    let message = format!("push by {name}");
    for _ in 0..20 {
        let previous = repo.refname_to_id(PUSHES).ok();
        let parent = previous.and_then(|id| repo.find_commit(id).ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let commit = repo.commit(None, &signature, &signature, &message, &tree, &parents)?;
        let moved = match previous {
            None => repo.reference(PUSHES, commit, false, &message).map(|_| ()),
            Some(previous) => repo
                .reference_matching(PUSHES, commit, true, previous, &message)
                .map(|_| ()),
        };
        match moved {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Exists | git2::ErrorCode::Modified | git2::ErrorCode::Locked
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Err(git2::Error::from_str("the push log kept moving"))
}

/// The pushes in the log whose tip is `tip`, oldest first.
pub fn pushes(repo: &Repository, tip: Oid) -> Vec<Push> {
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    if walk.push(tip).is_err() {
        return Vec::new();
    }
    let mut out: Vec<Push> = walk
        .flatten()
        .filter_map(|id| {
            let tree = repo.find_commit(id).ok()?.tree().ok()?;
            let blob = repo.find_blob(tree.get_name(PUSH_FILE)?.id()).ok()?;
            serde_json::from_slice(blob.content()).ok()
        })
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pusher_is_who_the_transport_says() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        const HTTP: [(&str, &str); 3] = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REMOTE_USER", "alice"),
            ("USER", "git"),
        ];
        assert_eq!(pusher(env(&HTTP)).as_deref(), Some("alice"));
        // REMOTE_USER counts only under an HTTP server (CGI), FERRY_PUSHER only for a push
        // over ssh: locally, anyone could set either.
        assert_eq!(
            pusher(env(&[("REMOTE_USER", "alice"), ("USER", "git")])).as_deref(),
            Some("git")
        );
        assert_eq!(
            pusher(env(&[("FERRY_PUSHER", "bob"), ("USER", "carol")])).as_deref(),
            Some("carol")
        );
        assert_eq!(
            pusher(env(&[
                ("SSH_CONNECTION", "1 2 3 4"),
                ("FERRY_PUSHER", "bob"),
                ("USER", "git")
            ]))
            .as_deref(),
            Some("bob")
        );
        assert_eq!(pusher(env(&[])), None);
    }

    #[test]
    fn parses_pre_receive_lines() {
        let zero = "0".repeat(40);
        let one = "1".repeat(40);
        let u = Update::parse(&format!("{zero} {one} refs/heads/prod")).unwrap();
        assert!(u.old.is_zero());
        assert_eq!(u.refname, "refs/heads/prod");
        assert_eq!(Update::parse("garbage"), None);
    }
}
