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

use crate::forge::MAX_DESCRIPTION;
use crate::forge::local::{
    HOST_FILE, HOSTS, HostReport, LoggedUpdate, PUSH_FILE, PUSHES, Push, REQUESTS, STATUSES,
    STATUSES_FILE,
};
use serde_json::Value;

/// Why a push is refused, in words for the pusher (git shows them as `remote: …` lines).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<String> for Refusal {
    fn from(text: String) -> Self {
        Refusal(text)
    }
}

impl From<&str> for Refusal {
    fn from(text: &str) -> Self {
        Refusal(text.to_owned())
    }
}

/// The repository git runs a hook in: `GIT_DIR` and, during a push, git's quarantine of the
/// incoming objects, from the environment git sets for its hooks. What the hook command needs
/// of it, without handing it the repository.
pub struct HookRepository {
    repo: Repository,
}

impl HookRepository {
    pub fn open_from_env() -> Result<HookRepository, Refusal> {
        Repository::open_from_env()
            .map(|repo| HookRepository { repo })
            .map_err(|e| Refusal(format!("not run by git in a repository: {}", e.message())))
    }

    /// Every reason to refuse `updates` pushed by `pusher` (see [`check`]).
    pub fn check(&self, pusher: Option<&str>, updates: &[Update]) -> Vec<String> {
        check(&self.repo, pusher, updates)
    }

    /// Logs an accepted push (see [`record_push`]).
    pub fn record_push(
        &self,
        pusher: Option<&str>,
        login: Option<&str>,
        updates: &[Update],
        now: i64,
    ) -> Result<(), Refusal> {
        record_push(&self.repo, pusher, login, updates, now)
            .map_err(|e| Refusal(e.message().to_owned()))
    }

    /// The environment `branch` declares at `commit` (see [`environment_at`]).
    pub fn environment_at(&self, commit: Oid, branch: &str) -> Option<Environment> {
        environment_at(&self.repo, commit, branch)
    }

    /// The repository's name, as a forge would show it: its directory without `.git`.
    pub fn name(&self) -> String {
        self.repo
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
            .unwrap_or_default()
    }
}

/// The prefix of request branches (`ferry/promote/FROM-to-TO`), reserved for ferry.
const REQUEST_BRANCHES: &str = "ferry/";

use crate::forge::{Request, RequestState, Statuses};
use crate::model::{
    Artifact, Environment, Manifest, Protection, Unresolved, declared_branch, resolve_branch,
};
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
    pusher(env).or_else(login_of_this_push)
}

/// For a push to a path (no HTTP server or sshd in between), the operating system's login
/// of the user running it: what `USER`, which anyone may set, claims is recorded beside it.
pub fn login_of_this_push() -> Option<String> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("GATEWAY_INTERFACE") || set("SSH_CONNECTION") {
        None
    } else {
        crate::identity::login_of_uid()
    }
}

/// Every reason to refuse `updates` pushed by `pusher`, in the order of the updates. Empty:
/// the push may go ahead.
pub fn check(repo: &Repository, pusher: Option<&str>, updates: &[Update]) -> Vec<String> {
    let mut refusals = Vec::new();
    let branches = Branches::of(repo, updates);
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
        if let Err(why) = record_name(repo, u)
            .and_then(|()| check_record(repo, pusher, u, &branches, &mut merges))
        {
            refusals.push(format!("{}: {why}", u.refname));
        }
    }
    // No new ref may make a branch's name ambiguous to git (a tag `production` beside the
    // branch, a branch `refs/heads/production`).
    for u in updates
        .iter()
        .filter(|u| u.old.is_zero() && !u.new.is_zero())
    {
        if let Err(why) = unambiguous(&branches, &u.refname) {
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
            // A new branch: nothing protects it yet, but it may not stand in for an
            // environment's branch.
            if let Err(why) = check_new_branch(repo, &branches, branch, u.new) {
                refusals.push(format!("{branch}: {why}"));
            }
            continue;
        }
        let Some(declared) = environment_at(repo, u.old, branch) else {
            continue;
        };
        let env = declared.name.clone();
        if let Some(protection) = &declared.protection
            && let Err(why) = check_branch(repo, pusher, u, &env, protection, &merges)
                .and_then(|()| check_signed(repo, u, &declared, protection))
        {
            refusals.push(format!("{branch} ({env}): {why}"));
        }
        // The landing of a request marked merged: its target moves to its merge commit.
        if merges
            .get(&env)
            .is_some_and(|(_, r)| r.merge_commit.as_deref() == Some(&u.new.to_string()))
        {
            merges.remove(&env);
        }
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
fn check_valid(repo: &Repository, u: &Update, branch: &str) -> Result<(), Refusal> {
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
    Err(Refusal::from(why))
}

/// The environment whose branch is `branch`, from the files at `tip`.
/// [`environment_at`] in the state store.
pub fn environment_in(store: &crate::store::Store, tip: Oid, branch: &str) -> Option<Environment> {
    environment_at(store.repo(), tip, branch)
}

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

fn named(pusher: Option<&str>) -> Result<&str, Refusal> {
    pusher.ok_or_else(|| {
        Refusal::from("the pusher is unknown: protected refs and records need an authenticated push (REMOTE_USER from the HTTP server, FERRY_PUSHER for ssh, the login USER for a path: `export USER=$(id -un)` where it is unset, as in some containers)")
    })
}

fn check_branch(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    env: &str,
    p: &Protection,
    merges: &BTreeMap<String, (Update, Request)>,
) -> Result<(), Refusal> {
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
                return Err(Refusal::from(format!(
                    "merge commit {} on a branch with `linear_history`",
                    &id.to_string()[..7]
                )));
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
                Err(Refusal::from(format!(
                    "`{who}` may not push to it directly ({}); versions land through promotion requests (`ferry promote`, `ferry approve`, `ferry merge`), and changes to its environment files by someone in `protection.allowed_pushers` (declare your release managers there)",
                    if p.allowed_pushers.is_empty() {
                        "`allowed_pushers` is empty".to_owned()
                    } else {
                        format!("allowed pushers: {}", p.allowed_pushers.join(", "))
                    }
                )))
            }
        }
    }
}

/// With `require_signed_commits`, every commit `u` adds, and the tip it leaves, carries a
/// good signature by one of the environment's `signers` as the branch declared them before the
/// push: a key is added by a commit signed with a key already trusted.
fn check_signed(
    repo: &Repository,
    u: &Update,
    env: &Environment,
    p: &Protection,
) -> Result<(), Refusal> {
    if !p.require_signed_commits || u.new.is_zero() {
        return Ok(());
    }
    let trusted = crate::sign::AllowedSigners::declared(env).map_err(|e| Refusal(e.to_string()))?;
    if trusted.is_empty() {
        return Err(Refusal::from(format!(
            "`require_signed_commits` is set, but `{}` declares no `signers`: no commit can be pushed (declare the keys trusted to sign it)",
            env.name
        )));
    }
    // The new tip too, when it adds nothing (a rewind by force push): the branch would
    // otherwise stand on an unsigned commit, possibly from before the rule.
    let mut commits = added(repo, u)?;
    if !commits.contains(&u.new) {
        commits.push(u.new);
    }
    for id in commits {
        let (signature, signed) =
            crate::store::signature_in(repo, id).map_err(|e| Refusal(e.message().to_owned()))?;
        let verdict = trusted.verify(signature.as_deref(), &signed);
        if !verdict.is_trusted() {
            return Err(Refusal::from(format!(
                "commit {} is {verdict}: `require_signed_commits` takes a good signature by one of `{}`'s `signers` (sign with `git commit -S` and `gpg.format ssh`, or FERRY_SIGNING_KEY)",
                short(&id.to_string()),
                env.name
            )));
        }
    }
    Ok(())
}

/// The landing of `request` on the environment's branch (`u`), pushed by `who`.
fn check_merge(
    repo: &Repository,
    who: &str,
    u: &Update,
    env: &str,
    p: &Protection,
    request: &Request,
) -> Result<(), Refusal> {
    let id = request.id;
    if !p.allowed_mergers.is_empty() && !p.allowed_mergers.iter().any(|m| m == who) {
        return Err(Refusal::from(format!(
            "`{who}` may not merge request #{id} into {env}: allowed mergers are {}",
            p.allowed_mergers.join(", ")
        )));
    }
    let approvers = request.approvers(p.dismiss_stale_reviews);
    if approvers.len() < p.required_approvals as usize {
        return Err(Refusal::from(format!(
            "request #{id} has {} approval(s) from people other than its author {}; {env} requires {}",
            approvers.len(),
            request.author,
            p.required_approvals
        )));
    }
    if p.require_up_to_date && request.base != u.old.to_string() {
        return Err(Refusal::from(format!(
            "request #{id} was built on {}, but {env} is at {} (`require_up_to_date`): promote again",
            short(&request.base),
            short(&u.old.to_string())
        )));
    }
    if !p.required_checks.is_empty() {
        let statuses = statuses(repo, &request.head);
        let missing = crate::forge::missing_checks(&p.required_checks, &statuses);
        if !missing.is_empty() {
            return Err(Refusal::from(format!(
                "request #{id}: required check(s) not green on its head {}: {}",
                short(&request.head),
                missing.join(", ")
            )));
        }
    }
    // The target's promotion gate, as declared before the push: its `policy.required_checks`
    // green on the promoted source commit (deploy reports were taken at their push only from
    // the reporters their environment's own branch lists).
    let branch = u.refname.strip_prefix("refs/heads/").unwrap_or(&u.refname);
    if let Some(target) = environment_at(repo, u.old, branch)
        && !target.policy.required_checks.is_empty()
    {
        let statuses = statuses(repo, &request.source);
        let missing = crate::forge::missing_checks(&target.policy.required_checks, &statuses);
        if !missing.is_empty() {
            return Err(Refusal::from(format!(
                "request #{id}: {env}'s promotion gate needs {} green on the promoted {} commit {}",
                missing.join(", "),
                request.from,
                short(&request.source)
            )));
        }
    }
    // What lands is what was reviewed: the target's tip with the request's pins, nothing else.
    let (Some(before), Some(after)) = (manifest_at(repo, u.old), manifest_at(repo, u.new)) else {
        return Err(Refusal::from(format!(
            "request #{id}: cannot read `{MANIFEST}` of the merge"
        )));
    };
    let mut expected = before.artifacts.clone();
    for m in &request.moves {
        expected.insert(m.app.clone(), m.pin.clone());
    }
    if after.artifacts != expected {
        let differs: std::collections::BTreeSet<&String> = after
            .artifacts
            .keys()
            .chain(expected.keys())
            .filter(|app| after.artifacts.get(*app) != expected.get(*app))
            .collect();
        return Err(Refusal::from(format!(
            "the merge of request #{id} does not pin what the request moves (differs: {})",
            differs
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
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
        return Err(Refusal::from(format!(
            "the merge of request #{id} changes files other than `{MANIFEST}`"
        )));
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

/// The largest record file a push may add (a request's body is at most 65,536 bytes).
const MAX_RECORD: usize = 1 << 20;
/// A status's URL, at most (its description: [`crate::forge::MAX_DESCRIPTION`]).
const MAX_URL: usize = 2048;

/// A record's commit holds its one file, within [`MAX_RECORD`], as ferry writes it: JSON with no
/// field ferry does not know (records are append-only: junk could never be removed).
fn record_shape(repo: &Repository, commit: Oid, file: &str) -> Result<(), Refusal> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| format!("cannot read the record: {}", e.message()))?;
    if tree.len() != 1 || tree.get_name(file).is_none() {
        return Err(Refusal::from(format!(
            "a record's commit holds `{file}` and nothing else"
        )));
    }
    let blob = repo
        .find_blob(tree.get_name(file).expect("checked").id())
        .map_err(|e| format!("cannot read `{file}`: {}", e.message()))?;
    if blob.size() > MAX_RECORD {
        return Err(Refusal::from(format!(
            "`{file}` is {} bytes; a record is at most {MAX_RECORD}",
            blob.size()
        )));
    }
    let value: Value =
        serde_json::from_slice(blob.content()).map_err(|e| format!("`{file}` is not JSON: {e}"))?;
    let known = if file == STATUSES_FILE {
        serde_json::from_value::<Statuses>(value.clone()).map(serde_json::to_value)
    } else if file == HOST_FILE {
        serde_json::from_value::<HostReport>(value.clone()).map(serde_json::to_value)
    } else {
        serde_json::from_value::<Request>(value.clone()).map(serde_json::to_value)
    }
    .map_err(|e| format!("`{file}` is not a record ferry writes: {e}"))?
    .expect("records serialize");
    match unknown_field(&value, &known, String::new()) {
        Some(pointer) => Err(Refusal::from(format!(
            "`{file}` has a field ferry does not write: `{pointer}`"
        ))),
        None => Ok(()),
    }
}

/// The first key of `value` (as a JSON pointer) that `known`, the same record as ferry writes
/// it, lacks.
fn unknown_field(value: &Value, known: &Value, at: String) -> Option<String> {
    match (value, known) {
        (Value::Object(map), Value::Object(known)) => map.iter().find_map(|(key, child)| {
            let here = format!("{at}/{key}");
            match known.get(key) {
                Some(known) => unknown_field(child, known, here),
                None if child.is_null() => None,
                None => Some(here),
            }
        }),
        (Value::Array(items), Value::Array(known)) => items
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (child, known))| unknown_field(child, known, format!("{at}/{i}"))),
        _ => None,
    }
}

/// Under `refs/ferry/` live ferry's records only: `requests/N`, `statuses/COMMIT` of a
/// commit the repository has, and `hosts/ENV/HOST`.
fn record_name(repo: &Repository, u: &Update) -> Result<(), Refusal> {
    if let Some(id) = u.refname.strip_prefix(REQUESTS)
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && !id.starts_with('0')
    {
        return Ok(());
    }
    if let Some(commit) = u.refname.strip_prefix(STATUSES)
        && commit.len() == 40
        && commit
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return match Oid::from_str(commit)
            .ok()
            .and_then(|id| repo.find_commit(id).ok())
        {
            Some(_) => Ok(()),
            None => Err(Refusal::from(format!(
                "statuses are recorded for a commit of this repository, and it has no commit {}",
                short(commit)
            ))),
        };
    }
    if let Some(host) = u.refname.strip_prefix(HOSTS)
        && let Some((env, host)) = host.split_once('/')
        && !env.is_empty()
        && !host.is_empty()
        && !host.contains('/')
    {
        return Ok(()); // what it holds must name it: see `check_host_record`
    }
    if u.new.is_zero() {
        // Removing what should never have been there is refused like any record's removal.
        return Err("records are append-only: deleting one is not allowed".into());
    }
    Err("`refs/ferry/` holds ferry's records only: `requests/N`, `statuses/COMMIT` and `hosts/ENV/HOST`".into())
}

/// A new ref `refname` leaves every branch's name unambiguous to git.
fn unambiguous(branches: &Branches, refname: &str) -> Result<(), Refusal> {
    let short = ["refs/heads/", "refs/tags/", "refs/remotes/", "refs/"]
        .iter()
        .find_map(|prefix| refname.strip_prefix(prefix))
        .unwrap_or(refname);
    if short.starts_with("refs/") || short.starts_with("heads/") || short.starts_with("tags/") {
        return Err(Refusal::from(format!(
            "a ref named `{short}` under `{}` makes names ambiguous to git",
            &refname[..refname.len() - short.len()]
        )));
    }
    if !refname.starts_with("refs/heads/") && branches.before.contains_key(short) {
        return Err(Refusal::from(format!(
            "it is named like the branch `{short}`: git would find two refs for that name"
        )));
    }
    Ok(())
}

fn request_at(repo: &Repository, commit: Oid) -> Result<Request, Refusal> {
    file_at(repo, commit, "request.json")?.ok_or_else(|| "the record has no `request.json`".into())
}

/// The JSON file at `path` in `commit`'s tree, parsed (`None`: no such file).
fn file_at<T: serde::de::DeserializeOwned>(
    repo: &Repository,
    commit: Oid,
    path: &str,
) -> Result<Option<T>, Refusal> {
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
        .map_err(|e| Refusal(format!("`{path}` is damaged: {e}")))
}

/// A statuses record's update (`refs/ferry/statuses/COMMIT`): each status it sets has a
/// check name of the sane charset ([`crate::model::check_name`]) and names the pusher as its
/// reporter, and `ferry/deploy/ENV` comes only from ENV's `agent.reporters` (as ENV's own
/// branch declares them, never the commit reported on, which anyone may have written), when
/// it names any.
fn check_statuses(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    branches: &Branches,
) -> Result<(), Refusal> {
    let read = |tip: Oid| -> Result<Statuses, Refusal> {
        if tip.is_zero() {
            return Ok(Statuses::default());
        }
        Ok(file_at(repo, tip, STATUSES_FILE)?.unwrap_or_default())
    };
    // Each commit the push adds, against its parent: what was set, by whom.
    for id in added(repo, u)? {
        record_shape(repo, id, STATUSES_FILE)?;
        let parent = repo
            .find_commit(id)
            .ok()
            .and_then(|c| c.parent_id(0).ok())
            .unwrap_or(Oid::ZERO_SHA1);
        let (before, after) = (read(parent)?, read(id)?);
        // A report is replaced by a newer one, never dropped: dropping a host's failure would
        // let the aggregate computed without it turn green.
        if let Some(gone) = before.keys().find(|check| !after.contains_key(*check)) {
            return Err(Refusal::from(format!(
                "`{gone}` is missing from the new statuses: a statuses record only adds and replaces reports, it never drops one"
            )));
        }
        for (check, status) in &after {
            if before.get(check) == Some(status) {
                continue;
            }
            reported(repo, pusher, branches, check, status)?;
        }
    }
    Ok(())
}

/// A host's record's update (`refs/ferry/hosts/ENV/HOST`): each report it adds is on a
/// commit of this repository, of the status its name says (`ferry/deploy/ENV/HOST`), and
/// holds to what a statuses record holds each status to ([`reported`]).
fn check_host_record(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    branches: &Branches,
) -> Result<(), Refusal> {
    for id in added(repo, u)? {
        record_shape(repo, id, HOST_FILE)?;
        let report: HostReport =
            file_at(repo, id, HOST_FILE)?.ok_or_else(|| Refusal::from("no `host.json`"))?;
        if crate::forge::local::host_record(&report.check).as_deref() != Some(u.refname.as_str()) {
            return Err(Refusal::from(format!(
                "the record holds `{}`: a host's record holds that host's deploy status only, `ferry/deploy/ENV/HOST` as the record's name says",
                crate::output::printable(&report.check)
            )));
        }
        if Oid::from_str(&report.commit)
            .ok()
            .filter(|_| {
                report.commit.len() == 40 && !report.commit.bytes().any(|b| b.is_ascii_uppercase())
            })
            .and_then(|id| repo.find_commit(id).ok())
            .is_none()
        {
            return Err(Refusal::from(format!(
                "a host reports on a commit of this repository, and it has no commit {}",
                crate::output::printable(short(&report.commit))
            )));
        }
        reported(repo, pusher, branches, &report.check, &report.status)?;
    }
    Ok(())
}

/// A status as a record may hold it: its check name of the sane charset
/// ([`crate::model::check_name`]), its texts bounded and printable, reported by the pusher,
/// and `ferry/deploy/ENV` (or `ferry/deploy/ENV/HOST`) only by ENV's `agent.reporters` (as
/// ENV's own branch declares them, never the commit reported on, which anyone may have
/// written), when it names any.
fn reported(
    repo: &Repository,
    pusher: Option<&str>,
    branches: &Branches,
    check: &str,
    status: &crate::forge::Status,
) -> Result<(), Refusal> {
    crate::model::check_name(check).map_err(|e| Refusal(e.to_string()))?;
    if status.description.chars().count() > MAX_DESCRIPTION
        || status.url.as_ref().is_some_and(|u| u.len() > MAX_URL)
        || status.apps.iter().any(|(name, app)| {
            app.message.chars().any(char::is_control)
                || app.version.chars().any(char::is_control)
                || name.is_empty()
                || name.len() > 63
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                || app.message.chars().count() > MAX_DESCRIPTION
                || app.version.chars().count() > MAX_DESCRIPTION
        })
    {
        return Err(Refusal::from(format!(
            "`{check}`: a status's description (and each app's version and message, with no control character) is at most {MAX_DESCRIPTION} characters, its URL {MAX_URL} bytes, an app's name a name of the manifest"
        )));
    }
    let who = named(pusher)?;
    if status.by != who {
        return Err(Refusal::from(format!(
            "`{check}` is recorded as reported by `{}`, but `{who}` is pushing: a record names who pushed it (drop `--as` or FERRY_USER, or push as `{}`)",
            status.by, status.by
        )));
    }
    // `ferry/deploy/ENV` and each host's `ferry/deploy/ENV/HOST`.
    if let Some(env) = check
        .strip_prefix("ferry/deploy/")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
    {
        let reporters = reporters_of(repo, &branches.before, env)?;
        if !reporters.is_empty() && !reporters.iter().any(|r| r == who) {
            return Err(Refusal::from(format!(
                "`{check}` is reported by {env}'s agents only (`agent.reporters`: {}), not by `{who}`",
                reporters.join(", ")
            )));
        }
    }
    Ok(())
}

/// The commits `u` adds to its ref (all of a new ref's).
fn added(repo: &Repository, u: &Update) -> Result<Vec<Oid>, Refusal> {
    let mut walk = repo.revwalk().map_err(|e| e.message().to_owned())?;
    walk.push(u.new).map_err(|e| e.message().to_owned())?;
    if !u.old.is_zero() {
        walk.hide(u.old).map_err(|e| e.message().to_owned())?;
    }
    walk.map(|id| id.map_err(|e| Refusal(e.message().to_owned())))
        .collect()
}

/// Who may report `env`'s deploys: `agent.reporters` of `env` as its own branch declares it
/// (empty: anyone, as for an environment the repository does not have).
pub fn reporters_of(
    repo: &Repository,
    tips: &BTreeMap<String, Oid>,
    env: &str,
) -> Result<Vec<String>, Refusal> {
    match env_branch(repo, tips, env) {
        Ok(branch) => Ok(tips
            .get(&branch)
            .and_then(|tip| declared_environment(repo, *tip, env))
            .map(|e| e.agent.reporters)
            .unwrap_or_default()),
        Err(Unresolved::Ambiguous(claims)) => Err(Refusal::from(format!(
            "cannot tell who reports {env}'s deploys: branches {} each declare `{env}` as theirs",
            claims.join(", ")
        ))),
        Err(Unresolved::Missing { .. } | Unresolved::Unknown) => Ok(Vec::new()),
    }
}

/// The environment named `env` as the files at `tip` declare it.
fn declared_environment(repo: &Repository, tip: Oid, env: &str) -> Option<Environment> {
    file_at(repo, tip, &format!("{ENVIRONMENTS_DIR}/{env}.json"))
        .ok()
        .flatten()
}

/// The repository's branches as the push found them (`before`) and would leave them
/// (`after`), request branches included.
pub struct Branches {
    pub before: BTreeMap<String, Oid>,
    pub after: BTreeMap<String, Oid>,
}

impl Branches {
    pub fn of(repo: &Repository, updates: &[Update]) -> Branches {
        let before: BTreeMap<String, Oid> = repo
            .references_glob("refs/heads/*")
            .map(|refs| {
                refs.flatten()
                    .filter_map(|r| {
                        let name = r.name().ok()?.strip_prefix("refs/heads/")?.to_owned();
                        Some((name, r.target()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut after = before.clone();
        for u in updates {
            if let Some(branch) = u.refname.strip_prefix("refs/heads/") {
                if u.new.is_zero() {
                    after.remove(branch);
                } else {
                    after.insert(branch.to_owned(), u.new);
                }
            }
        }
        Branches { before, after }
    }
}

/// The raw bytes of the file at `path` in `commit` (`None`: no such file).
fn blob_at(repo: &Repository, commit: Oid, path: &str) -> Option<Vec<u8>> {
    let tree = repo.find_commit(commit).ok()?.tree().ok()?;
    let entry = tree.get_path(std::path::Path::new(path)).ok()?;
    Some(repo.find_blob(entry.id()).ok()?.content().to_vec())
}

/// The branch among `tips` that holds `env`, as every command finds it
/// ([`crate::model::resolve_branch`]): the one whose own file declares it.
pub fn env_branch(
    repo: &Repository,
    tips: &BTreeMap<String, Oid>,
    env: &str,
) -> Result<String, Unresolved> {
    let path = format!("{ENVIRONMENTS_DIR}/{env}.json");
    let heads = || {
        tips.keys()
            .map(String::as_str)
            .filter(|b| !b.starts_with(REQUEST_BRANCHES))
    };
    let declared: BTreeMap<String, String> = heads()
        .filter_map(|b| {
            let bytes = blob_at(repo, tips[b], &path)?;
            Some((b.to_owned(), declared_branch(env, &bytes)))
        })
        .collect();
    resolve_branch(env, heads(), &declared)
}

/// A branch created by the push may not stand in for an environment: be named like an
/// environment that lives on another branch (`prod` beside `production`), or declare as its
/// own an environment another branch holds. Environments are found by the branch they
/// declare, and this keeps that one branch each.
fn check_new_branch(
    repo: &Repository,
    branches: &Branches,
    branch: &str,
    tip: Oid,
) -> Result<(), Refusal> {
    if tip.is_zero() {
        return Ok(());
    }
    let others = || {
        branches
            .after
            .iter()
            .filter(|(b, _)| b.as_str() != branch && !b.starts_with(REQUEST_BRANCHES))
    };
    let path = format!("{ENVIRONMENTS_DIR}/{branch}.json");
    for (other, at) in others() {
        if let Some(bytes) = blob_at(repo, *at, &path) {
            let lives = declared_branch(branch, &bytes);
            if lives != branch {
                return Err(Refusal::from(format!(
                    "a new branch named like environment `{branch}`, which lives on `{lives}` (`{path}` on `{other}` says so), would shadow it: give it another name"
                )));
            }
        }
    }
    // The environments this branch declares as its own.
    let claimed: Vec<String> = repo
        .find_commit(tip)
        .and_then(|c| c.tree())
        .ok()
        .and_then(|tree| tree.get_path(std::path::Path::new(ENVIRONMENTS_DIR)).ok())
        .and_then(|dir| repo.find_tree(dir.id()).ok())
        .map(|dir| {
            dir.iter()
                .filter_map(|e| e.name().ok()?.strip_suffix(".json").map(str::to_owned))
                .filter(|env| {
                    blob_at(repo, tip, &format!("{ENVIRONMENTS_DIR}/{env}.json"))
                        .is_some_and(|bytes| declared_branch(env, &bytes) == branch)
                })
                .collect()
        })
        .unwrap_or_default();
    for env in claimed {
        let path = format!("{ENVIRONMENTS_DIR}/{env}.json");
        for (other, at) in others() {
            if blob_at(repo, *at, &path)
                .is_some_and(|bytes| declared_branch(&env, &bytes) == *other)
            {
                return Err(Refusal::from(format!(
                    "it declares environment `{env}` as its own, but `{env}` lives on `{other}`: one branch per environment"
                )));
            }
        }
    }
    Ok(())
}

/// What a new state of a request's record does to the previous one: the only changes ferry
/// makes, each by the pusher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `ferry promote` opens it: open, no approvals, nothing merged or closed, by its author.
    Create,
    /// `ferry promote` again: a new head, body, source or moves; nothing else.
    Update,
    /// `ferry approve`: one approval of the current head by the pusher, who is not the author;
    /// nothing else.
    Approve,
    /// `ferry close`: open → closed, by the pusher; nothing else.
    Close,
    /// `ferry merge`: open → merged, by the pusher, with the merge commit; nothing else (the
    /// same push must move the target to the merge commit).
    Merge,
}

/// The fields of `a` and `b` that differ, by their JSON names.
fn differing(a: &Request, b: &Request) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(a).expect("requests serialize"),
        serde_json::to_value(b).expect("requests serialize"),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("`{k}`"))
        .collect()
}

/// Whether the record's new state `new` may follow `old` (`None`: the record is created),
/// pushed by `pusher`, and which of ferry's transitions it is. Merged and closed records never
/// change; an open one changes only as [`Transition`] says, each checked against the previous
/// state, so no push can forge an approval, rewrite what was merged, or name someone else.
pub fn transition(
    old: Option<&Request>,
    new: &Request,
    pusher: &str,
) -> Result<Transition, Refusal> {
    let claim = |what: &str, name: Option<&str>| -> Result<(), Refusal> {
        match name {
            Some(name) if name == pusher => Ok(()),
            Some(name) => Err(Refusal::from(format!(
                "{what} is recorded as `{name}`, but `{pusher}` is pushing: a record names who pushed it (drop `--as` or FERRY_USER, or push as `{name}`)"
            ))),
            None => Err(Refusal::from(format!("{what} is not recorded"))),
        }
    };
    // Moves pin artifacts: a request cannot carry another kind of value.
    if new.moves.iter().any(|m| matches!(m.pin, Artifact::Bare(_))) {
        return Err("a request moves pinned artifacts only".into());
    }
    let Some(old) = old else {
        claim("the request's author", Some(&new.author))?;
        if new.state != RequestState::Open {
            return Err(Refusal::from(format!(
                "a new request is open, not {}",
                new.state.as_str()
            )));
        }
        if !new.approvals.is_empty() {
            return Err(Refusal::from(format!(
                "a new request has no approvals, but this one arrives with {} (by {}): approvals are added by the approvers' own pushes (`ferry approve`)",
                new.approvals.len(),
                new.approvals
                    .iter()
                    .map(|a| a.by.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if new.merged_by.is_some()
            || new.merged_at.is_some()
            || new.merge_commit.is_some()
            || new.closed_by.is_some()
            || new.closed_at.is_some()
        {
            return Err("a new request is neither merged nor closed".into());
        }
        if new.from == new.to {
            return Err(Refusal::from(format!(
                "a request promotes into another environment, not `{}` into itself",
                new.to
            )));
        }
        let branch = crate::forge::request_branch(&new.from, &new.to);
        if new.branch != branch {
            return Err(Refusal::from(format!(
                "the request's branch is `{branch}`, not `{}`",
                new.branch
            )));
        }
        return Ok(Transition::Create);
    };
    if old.state != RequestState::Open {
        return Err(Refusal::from(format!(
            "request #{} is {} already: its record no longer changes",
            old.id,
            old.state.as_str()
        )));
    }
    // What `new` changes beyond the transition `what` (which would leave it `expected`).
    let refuse = |what: &str, expected: &Request| -> Result<Transition, Refusal> {
        Err(Refusal::from(format!(
            "{what} changes nothing else, but this changes {} too",
            differing(expected, new).join(", ")
        )))
    };
    match new.state {
        RequestState::Closed => {
            claim("who closed it", new.closed_by.as_deref())?;
            let mut expected = old.clone();
            expected.state = RequestState::Closed;
            expected.closed_by = Some(pusher.to_owned());
            expected.closed_at = new.closed_at;
            if expected.closed_at.is_none() {
                return Err("a closed request records when it was closed".into());
            }
            if expected != *new {
                return refuse("closing a request", &expected);
            }
            Ok(Transition::Close)
        }
        RequestState::Merged => {
            claim("the merger", new.merged_by.as_deref())?;
            let commit = new.merge_commit.as_deref().unwrap_or_default();
            if Oid::from_str(commit).is_err() || commit.len() != 40 || new.merged_at.is_none() {
                return Err("a merged request records its merge commit and when it merged".into());
            }
            let mut expected = old.clone();
            expected.state = RequestState::Merged;
            expected.merged_by = Some(pusher.to_owned());
            expected.merged_at = new.merged_at;
            expected.merge_commit = new.merge_commit.clone();
            if expected != *new {
                return refuse("merging a request", &expected);
            }
            Ok(Transition::Merge)
        }
        RequestState::Open if new.approvals != old.approvals => {
            let added = new.approvals.get(old.approvals.len()..).unwrap_or_default();
            if !new.approvals.starts_with(&old.approvals) || added.len() != 1 {
                return Err(
                    "approvals are append-only, one per push of its approver: this removes, changes or adds several"
                        .into(),
                );
            }
            let approval = &added[0];
            claim("an approval", Some(&approval.by))?;
            if approval.by == old.author {
                return Err(Refusal::from(format!(
                    "`{}` opened request #{}: authors cannot approve their own requests",
                    old.author, old.id
                )));
            }
            if old.proposed_by.as_ref() == Some(&approval.by) {
                return Err(Refusal::from(format!(
                    "`{}` proposed request #{}'s current head: people cannot approve what they proposed",
                    approval.by, old.id
                )));
            }
            if approval.head != old.head {
                return Err(Refusal::from(format!(
                    "an approval is of the request's head {}, not {}",
                    short(&old.head),
                    short(&approval.head)
                )));
            }
            let mut expected = old.clone();
            expected.approvals.push(approval.clone());
            if expected != *new {
                return refuse("an approval", &expected);
            }
            Ok(Transition::Approve)
        }
        RequestState::Open => {
            // `ferry promote` again: what it proposes, and when, by whom (the author, or a
            // proposer recorded as such).
            claim(
                "who proposes the new head",
                Some(new.proposed_by.as_deref().unwrap_or(&old.author)),
            )?;
            if new.proposed_by.as_ref() == Some(&old.author) {
                return Err(
                    "a request's author proposing again is its author, not a proposer".into(),
                );
            }
            let mut expected = old.clone();
            expected.proposed_by = new.proposed_by.clone();
            expected.title = new.title.clone();
            expected.body = new.body.clone();
            expected.base = new.base.clone();
            expected.head = new.head.clone();
            expected.source = new.source.clone();
            expected.rollback = new.rollback;
            expected.moves = new.moves.clone();
            expected.updated_at = new.updated_at;
            if expected != *new {
                return refuse(
                    "promoting again (a new head, base, source, moves, title or body)",
                    &expected,
                );
            }
            Ok(Transition::Update)
        }
    }
}

/// A record update: append-only, linear, and each commit it adds is one of ferry's
/// [`transition`]s of the one before, by the pusher. A request's source must be on its
/// source environment's branch when it is proposed and when it merges, and its head is the
/// tip of its branch.
fn check_record(
    repo: &Repository,
    pusher: Option<&str>,
    u: &Update,
    branches: &Branches,
    merges: &mut BTreeMap<String, (Update, Request)>,
) -> Result<(), Refusal> {
    if u.new.is_zero() {
        return Err("records are append-only: deleting one is not allowed".into());
    }
    if !u.old.is_zero() && !repo.graph_descendant_of(u.new, u.old).unwrap_or(false) {
        return Err("records are append-only: this rewrites its history".into());
    }
    if u.refname.starts_with(STATUSES) {
        return check_statuses(repo, pusher, u, branches);
    }
    if u.refname.starts_with(HOSTS) {
        return check_host_record(repo, pusher, u, branches);
    }
    let Some(id) = u.refname.strip_prefix(REQUESTS) else {
        return Ok(());
    };
    let who = named(pusher)?;
    // Each commit the push adds, oldest first, against the one before it.
    let mut walk = repo.revwalk().map_err(|e| e.message().to_owned())?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(|e| e.message().to_owned())?;
    walk.push(u.new).map_err(|e| e.message().to_owned())?;
    if !u.old.is_zero() {
        walk.hide(u.old).map_err(|e| e.message().to_owned())?;
    }
    let mut previous: Option<Request> = if u.old.is_zero() {
        None
    } else {
        Some(request_at(repo, u.old)?)
    };
    let (mut proposed, mut merged) = (false, false);
    for commit in walk {
        let commit = commit.map_err(|e| e.message().to_owned())?;
        let parents = repo
            .find_commit(commit)
            .map_err(|e| e.message().to_owned())?
            .parent_count();
        if parents > 1 || (parents == 0) != previous.is_none() {
            return Err("a record's history is one line of changes from its creation".into());
        }
        record_shape(repo, commit, "request.json")?;
        let state = request_at(repo, commit)?;
        if id != state.id.to_string() {
            return Err(Refusal::from(format!(
                "the record of request #{id} says it is #{}",
                state.id
            )));
        }
        match transition(previous.as_ref(), &state, who)? {
            Transition::Create | Transition::Update => proposed = true,
            Transition::Merge => merged = true,
            Transition::Approve | Transition::Close => {}
        }
        previous = Some(state);
    }
    let Some(new) = previous else {
        return Ok(()); // the record did not move
    };
    if proposed || merged {
        // What is promoted is what FROM's branch holds, now or earlier, never a commit made
        // to look like it (whose checks and reporters its maker chose); and the pins a request
        // moves are that commit's, not others its author wrote into the record.
        source_on_branch(repo, branches, &new)?;
        moves_from_source(repo, &new)?;
    }
    if proposed && new.state == RequestState::Open {
        let at = branches.after.get(&new.branch).map(|id| id.to_string());
        if at.as_deref() != Some(new.head.as_str()) {
            return Err(Refusal::from(format!(
                "request #{} proposes {}, but its branch `{}` is not there after this push: the branch moves with its record (`ferry promote`)",
                new.id,
                short(&new.head),
                new.branch
            )));
        }
    }
    if merged {
        merges.insert(new.to.clone(), (u.clone(), new));
    }
    Ok(())
}

/// The `manifest.json` of `commit`, leniently (history may hold what today's rules refuse).
fn manifest_at(repo: &Repository, commit: Oid) -> Option<Manifest> {
    let tree = repo.find_commit(commit).ok()?.tree().ok()?;
    let entry = tree.get_name(MANIFEST)?;
    let blob = repo.find_blob(entry.id()).ok()?;
    serde_json::from_slice(blob.content()).ok()
}

/// Each pin `request` moves is exactly the pin of its app at `request.source`: a record cannot
/// carry an artifact its source environment never held.
fn moves_from_source(repo: &Repository, request: &Request) -> Result<(), Refusal> {
    let id = request.id;
    let source = Oid::from_str(&request.source)
        .map_err(|_| format!("request #{id}: its source is not a commit id"))?;
    let manifest = manifest_at(repo, source).ok_or_else(|| {
        format!(
            "request #{id}: cannot read `{MANIFEST}` of its source {}",
            short(&request.source)
        )
    })?;
    for m in &request.moves {
        if manifest.artifacts.get(&m.app) != Some(&m.pin) || m.pin.shown_version() != m.to {
            return Err(Refusal::from(format!(
                "request #{id} moves `{}` to a pin that is not {}'s at {}: a request promotes what its source holds (`ferry promote`)",
                m.app,
                request.from,
                short(&request.source)
            )));
        }
    }
    Ok(())
}

/// `request.source` is the tip of its source environment's branch, or in its history.
fn source_on_branch(
    repo: &Repository,
    branches: &Branches,
    request: &Request,
) -> Result<(), Refusal> {
    let from = &request.from;
    let branch = env_branch(repo, &branches.after, from).map_err(|why| {
        format!(
            "request #{}: cannot find the branch of its source environment `{from}`: {why}",
            request.id
        )
    })?;
    let tip = branches.after[&branch];
    let source = Oid::from_str(&request.source)
        .map_err(|_| format!("request #{}: its source is not a commit id", request.id))?;
    if source == tip || repo.graph_descendant_of(tip, source).unwrap_or(false) {
        Ok(())
    } else {
        Err(Refusal::from(format!(
            "request #{} promotes {}, which is not on `{branch}` ({from}'s branch): a promotion takes what {from} holds (`ferry promote`)",
            request.id,
            short(&request.source)
        )))
    }
}

/// Appends an accepted push to the log (`post-receive`), retrying when another push's entry
/// lands first.
pub fn record_push(
    repo: &Repository,
    pusher: Option<&str>,
    login: Option<&str>,
    updates: &[Update],
    at: i64,
) -> Result<(), git2::Error> {
    let push = Push {
        pusher: pusher.map(str::to_owned),
        login: login.map(str::to_owned),
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

    fn open_request() -> Request {
        Request {
            id: 1,
            from: "dev".into(),
            to: "staging".into(),
            branch: "ferry/promote/dev-to-staging".into(),
            state: RequestState::Open,
            title: "Promote dev → staging: web 1.0.0".into(),
            body: "body".into(),
            labels: vec!["promotion".into()],
            author: "alice".into(),
            created_at: 10,
            updated_at: 10,
            base: "b".repeat(40),
            head: "c".repeat(40),
            source: "d".repeat(40),
            rollback: false,
            moves: Vec::new(),
            approvals: Vec::new(),
            merged_by: None,
            merged_at: None,
            merge_commit: None,
            closed_by: None,
            closed_at: None,
            url: None,
            mergeable: None,
            into: None,
            proposed_by: None,
        }
    }

    fn approval(by: &str, head: &str) -> crate::forge::Approval {
        crate::forge::Approval {
            by: by.into(),
            at: 20,
            head: head.into(),
        }
    }

    #[track_caller]
    fn refused(old: Option<&Request>, new: &Request, pusher: &str, why: &str) {
        let err = transition(old, new, pusher).expect_err("refused");
        assert!(err.0.contains(why), "{err}");
    }

    #[test]
    fn a_request_is_created_open_unapproved_by_its_author() {
        let new = open_request();
        assert_eq!(transition(None, &new, "alice"), Ok(Transition::Create));
        refused(
            None,
            &new,
            "mallory",
            "author is recorded as `alice`, but `mallory`",
        );
        // Approvals forged at creation: the first commit already holds bob's approval.
        let mut forged = open_request();
        forged.approvals.push(approval("bob", &forged.head));
        refused(
            Some(&forged).filter(|_| false),
            &forged,
            "alice",
            "arrives with 1 (by bob)",
        );
        let mut merged = open_request();
        merged.merged_by = Some("alice".into());
        refused(None, &merged, "alice", "neither merged nor closed");
        let mut state = open_request();
        state.state = RequestState::Merged;
        refused(None, &state, "alice", "a new request is open, not merged");
        let mut branch = open_request();
        branch.branch = "staging".into();
        refused(
            None,
            &branch,
            "alice",
            "the request's branch is `ferry/promote/dev-to-staging`",
        );
    }

    #[test]
    fn an_approval_is_one_by_the_pusher_of_the_head_and_nothing_else() {
        let old = open_request();
        let mut new = old.clone();
        new.approvals.push(approval("bob", &old.head));
        assert_eq!(transition(Some(&old), &new, "bob"), Ok(Transition::Approve));
        refused(
            Some(&old),
            &new,
            "mallory",
            "an approval is recorded as `bob`, but `mallory`",
        );
        let mut own = old.clone();
        own.approvals.push(approval("alice", &old.head));
        refused(
            Some(&old),
            &own,
            "alice",
            "authors cannot approve their own requests",
        );
        let mut stale = old.clone();
        stale.approvals.push(approval("bob", &"e".repeat(40)));
        refused(
            Some(&old),
            &stale,
            "bob",
            "an approval is of the request's head",
        );
        let mut two = new.clone();
        two.approvals.push(approval("bob", &old.head));
        refused(Some(&old), &two, "bob", "adds several");
        let mut more = new.clone();
        more.head = "e".repeat(40);
        more.approvals[0].head = old.head.clone();
        refused(
            Some(&old),
            &more,
            "bob",
            "an approval changes nothing else, but this changes `head` too",
        );
        // Removing one.
        refused(Some(&new), &old, "alice", "approvals are append-only");
    }

    #[test]
    fn merged_and_closed_records_never_change() {
        let open = open_request();
        let mut merged = open.clone();
        merged.state = RequestState::Merged;
        merged.merged_by = Some("carol".into());
        merged.merged_at = Some(30);
        merged.merge_commit = Some(open.head.clone());
        assert_eq!(
            transition(Some(&open), &merged, "carol"),
            Ok(Transition::Merge)
        );
        refused(
            Some(&open),
            &merged,
            "mallory",
            "the merger is recorded as `carol`",
        );
        // After the fact: who merged it, the title, the head.
        let mut forged = merged.clone();
        forged.merged_by = Some("mallory".into());
        refused(
            Some(&merged),
            &forged,
            "mallory",
            "request #1 is merged already",
        );
        let mut title = merged.clone();
        title.title = "something else".into();
        refused(
            Some(&merged),
            &title,
            "carol",
            "its record no longer changes",
        );
        // A merge that also edits what was reviewed.
        let mut sneaky = merged.clone();
        sneaky.head = "e".repeat(40);
        refused(
            Some(&open),
            &sneaky,
            "carol",
            "merging a request changes nothing else, but this changes `head`",
        );
        let mut closed = open.clone();
        closed.state = RequestState::Closed;
        closed.closed_by = Some("bob".into());
        closed.closed_at = Some(30);
        assert_eq!(
            transition(Some(&open), &closed, "bob"),
            Ok(Transition::Close)
        );
        refused(
            Some(&open),
            &closed,
            "mallory",
            "who closed it is recorded as `bob`",
        );
        let mut reopened = closed.clone();
        reopened.state = RequestState::Open;
        refused(
            Some(&closed),
            &reopened,
            "bob",
            "request #1 is closed already",
        );
        let mut retitled = closed.clone();
        retitled.title = "x".into();
        refused(
            Some(&open),
            &retitled,
            "bob",
            "closing a request changes nothing else, but this changes `title`",
        );
    }

    #[test]
    fn promoting_again_changes_what_is_proposed_only() {
        let old = open_request();
        let mut new = old.clone();
        new.head = "e".repeat(40);
        new.base = "f".repeat(40);
        new.source = "1".repeat(40);
        new.body = "new body".into();
        new.updated_at = 40;
        assert_eq!(
            transition(Some(&old), &new, "alice"),
            Ok(Transition::Update)
        );
        for (field, edit) in [
            (
                "`author`",
                Box::new(|r: &mut Request| r.author = "mallory".into())
                    as Box<dyn Fn(&mut Request)>,
            ),
            ("`to`", Box::new(|r: &mut Request| r.to = "prod".into())),
            ("`id`", Box::new(|r: &mut Request| r.id = 2)),
            (
                "`branch`",
                Box::new(|r: &mut Request| r.branch = "elsewhere".into()),
            ),
            ("`created_at`", Box::new(|r: &mut Request| r.created_at = 0)),
        ] {
            let mut changed = new.clone();
            edit(&mut changed);
            refused(Some(&old), &changed, "alice", field);
        }
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
