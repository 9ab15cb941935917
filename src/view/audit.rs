//! The document of `ferry audit`: for each change of an environment's branch, who requested,
//! approved, merged or pushed it, which checks were green, which apps moved, and how it broke
//! the protection in force just before it (the environment's file on the branch's parent).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::enforce;
use crate::error::Result;
use crate::forge::{CheckState, Forge, ForgeKind, Pushed, Request};
use crate::model::Protection;
use crate::output::format_time;
use crate::plan::history::{Move, moves, shown};
use crate::sign::{AllowedSigners, Verdict};
use crate::state::{self, Manifests, branch_of};
use crate::store::{History, Oid, Store};

/// One check that gated a promotion, as it stood when the request merged.
#[derive(Debug, Clone, Serialize)]
pub struct GateCheck {
    pub check: String,
    /// What required it: `policy` (`policy.required_checks`, on the promoted source commit) or
    /// `protection` (`protection.required_checks`, on the request's head).
    pub required_by: &'static str,
    /// The commit it was required on.
    pub commit: String,
    /// Its state when the request merged; `None`: not reported by then.
    pub state: Option<CheckState>,
    /// Who reported that state.
    pub by: Option<String>,
}

impl GateCheck {
    pub fn green(&self) -> bool {
        self.state == Some(CheckState::Success)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub time: String,
    pub commit: String,
    pub author: String,
    pub subject: String,
    /// `promotion` (a merged request), `direct` (a push) or `initial`.
    pub kind: &'static str,
    pub request: Option<u64>,
    pub requested_by: Option<String>,
    pub approved_by: Vec<String>,
    pub merged_by: Option<String>,
    pub pushed_by: Option<String>,
    /// Whether the push log has the push (`pushed_by` is then `None` only when the transport
    /// named nobody).
    pub push_logged: bool,
    /// For a push to a path, the operating system's login that pushed, when it is not
    /// `pushed_by` (which is what `USER` said).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_from_login: Option<String>,
    /// Every check that gated the promotion (the target's policy and protection in force just
    /// before it), with its state when the request merged.
    pub checks: Vec<GateCheck>,
    pub moves: Vec<Move>,
    /// Whether the branch was protected when the change landed.
    pub protected: bool,
    /// The commit's signature, checked against the `signers` its environment declared just
    /// before it.
    pub signature: Verdict,
    /// How the change broke that protection; empty when it did not.
    pub violations: Vec<String>,
}

/// Each change of `env`'s branch, newest first (from `since` on, in Unix seconds; the first
/// `limit` only, when given), with the records `forge` keeps of it. Also returns the branch.
pub fn audit(
    store: &Store,
    forge: &dyn Forge,
    env: &str,
    since: Option<i64>,
    limit: Option<usize>,
) -> Result<(String, Vec<Change>)> {
    let branch = branch_of(store, env)?;
    let tip = store.tip(&branch, History::Full)?;

    let pushes = forge.pushes(&branch, since)?;
    let pushed = pushed_by(store, &pushes.pushes);

    let mut manifests = Manifests::new(store);
    let mut changes = Vec::new();
    for change in state::changes(store, tip)? {
        if limit.is_some_and(|limit| changes.len() >= limit) {
            break;
        }
        let (commit, before) = change?;
        if since.is_some_and(|since| commit.committer.time < since) {
            break;
        }
        let (id, after) = (commit.id, commit.manifest);
        let parent = commit.parents.first().copied();
        let moved = if after == before {
            Vec::new()
        } else {
            moves(
                manifests.at_blob(before).as_ref(),
                manifests.at_blob(after).as_ref(),
            )
        };
        let declared = parent.and_then(|p| enforce::environment_in(store, p, &branch));
        let protection: Option<Protection> = declared.as_ref().and_then(|e| e.protection.clone());
        let landed = match parent {
            Some(_) => forge.landed(env, id)?,
            None => None,
        };
        let trusted = declared
            .as_ref()
            .and_then(|e| AllowedSigners::declared(e).ok())
            .unwrap_or_default();
        let (signature, signed) = store.signature_of(id)?;
        let signature = trusted.verify(signature.as_deref(), &signed);
        let request = landed.as_ref();
        let logged = pushed.get(&id);
        let mut change = Change {
            time: format_time(commit.committer.time),
            commit: id.to_string(),
            subject: commit.subject(),
            author: commit.author.name,
            kind: match (&parent, request) {
                (None, _) => "initial",
                (_, Some(_)) => "promotion",
                _ => "direct",
            },
            request: request.map(|r| r.id),
            requested_by: request.map(|r| r.author.clone()),
            approved_by: Vec::new(),
            merged_by: request.and_then(|r| r.merged_by.clone()),
            pushed_by: logged.and_then(|p| p.pusher.clone()),
            push_logged: logged.is_some(),
            pushed_from_login: logged
                .and_then(|p| p.login.clone())
                .filter(|login| logged.and_then(|p| p.pusher.as_ref()) != Some(login)),
            checks: Vec::new(),
            moves: moved,
            protected: protection.is_some(),
            signature,
            violations: Vec::new(),
        };
        if let Some(request) = request {
            let merged_at = request.merged_at.unwrap_or(i64::MAX);
            let policy = declared
                .as_ref()
                .map(|e| e.policy.required_checks.as_slice())
                .unwrap_or_default();
            let guarded = protection
                .as_ref()
                .map(|p| p.required_checks.as_slice())
                .unwrap_or_default();
            for (required_by, checks, commit) in [
                ("policy", policy, &request.source),
                ("protection", guarded, &request.head),
            ] {
                if checks.is_empty() {
                    continue;
                }
                let Ok(commit_id) = Oid::from_str(commit) else {
                    continue;
                };
                let statuses = forge.statuses_at(commit_id, merged_at)?;
                change.checks.extend(checks.iter().map(|check| {
                    let status = statuses.get(check);
                    GateCheck {
                        check: check.clone(),
                        required_by,
                        commit: commit.clone(),
                        state: status.map(|s| s.state),
                        by: status.map(|s| s.by.clone()),
                    }
                }));
            }
            let dismiss = protection.as_ref().is_some_and(|p| p.dismiss_stale_reviews);
            let mut in_time = request.clone();
            in_time.approvals.retain(|a| a.at <= merged_at);
            change.approved_by = in_time
                .approvers(dismiss)
                .into_iter()
                .map(str::to_owned)
                .collect();
        }
        if let (Some(p), Some(parent)) = (&protection, &parent) {
            change.violations = violations(&change, p, request, forge.kind());
            if p.require_signed_commits && !change.signature.is_trusted() {
                change.violations.push(format!(
                    "{} on a branch that required commits signed by its `signers`",
                    change.signature
                ));
            }
            if let Some(request) = request {
                change
                    .violations
                    .extend(not_the_promotion(store, *parent, id, &change, request)?);
            }
        }
        changes.push(change);
    }

    Ok((branch, changes))
}

/// Why a forge has no record of a push.
pub fn unlogged(forge: ForgeKind) -> &'static str {
    match forge {
        ForgeKind::Local => "the repository's hook was not installed",
        ForgeKind::Github => "not in GitHub's repository activity",
        ForgeKind::Gitea => "not in Gitea's activity feed",
        ForgeKind::Gitlab => "not in GitLab's push events",
    }
}

/// How `change` broke protection `p` (the one in force just before it).
fn violations(
    change: &Change,
    p: &Protection,
    request: Option<&Request>,
    forge: ForgeKind,
) -> Vec<String> {
    let mut out = Vec::new();
    match request {
        Some(request) => {
            let merger = change.merged_by.as_deref().unwrap_or("?");
            if change.approved_by.len() < p.required_approvals as usize {
                out.push(format!(
                    "{} approval(s) from people other than {} when merged; {} required",
                    change.approved_by.len(),
                    request.author,
                    p.required_approvals
                ));
            }
            if !p.allowed_mergers.is_empty() && !p.allowed_mergers.iter().any(|m| m == merger) {
                out.push(format!(
                    "merged by {merger}, not an allowed merger ({})",
                    p.allowed_mergers.join(", ")
                ));
            }
            let missing: Vec<&str> = p
                .required_checks
                .iter()
                .filter(|c| {
                    !change
                        .checks
                        .iter()
                        .any(|g| g.required_by == "protection" && &g.check == *c && g.green())
                })
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                out.push(format!("not green when merged: {}", missing.join(", ")));
            }
            match &change.pushed_by {
                Some(pusher) if pusher != merger => out.push(format!(
                    "recorded as merged by {merger}, but pushed by {pusher}"
                )),
                Some(_) => {}
                None if change.push_logged => {
                    out.push("pushed by someone the transport did not name".to_owned())
                }
                None => out.push(format!("no record of who pushed it ({})", unlogged(forge))),
            }
        }
        None => match &change.pushed_by {
            Some(pusher) if p.allowed_pushers.iter().any(|a| a == pusher) => {}
            Some(pusher) => out.push(format!(
                "pushed directly by {pusher}, who is not an allowed pusher ({})",
                if p.allowed_pushers.is_empty() {
                    "none".to_owned()
                } else {
                    p.allowed_pushers.join(", ")
                }
            )),
            None if change.push_logged => {
                out.push("a direct change by someone the transport did not name".to_owned())
            }
            None => out.push(format!(
                "a direct change with no record of who pushed it ({})",
                unlogged(forge)
            )),
        },
    }
    out
}

/// What makes a change landed by request `request` something else than the promotion it
/// describes (a request branch changed by hand, then merged on a hosted forge's page): files
/// besides the manifest changed, or other moves than its block for bots says.
fn not_the_promotion(
    store: &Store,
    parent: Oid,
    commit: Oid,
    change: &Change,
    request: &Request,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let others: Vec<String> = store
        .changed_paths(parent, commit)?
        .into_iter()
        .filter(|path| path != crate::model::MANIFEST)
        .collect();
    if !others.is_empty() {
        out.push(format!(
            "changes {} besides the manifest: not the promotion request #{} describes",
            others.join(", "),
            request.id
        ));
    }
    if !request.source.is_empty() {
        let landed: BTreeSet<(&str, Option<&str>)> = change
            .moves
            .iter()
            .map(|m| (m.app.as_str(), m.to.as_deref()))
            .collect();
        let described: BTreeSet<(&str, Option<&str>)> = request
            .moves
            .iter()
            .map(|m| (m.app.as_str(), Some(m.to.as_str())))
            .collect();
        if landed != described {
            out.push(format!(
                "moved {}, but request #{} describes {}",
                if change.moves.is_empty() {
                    "no artifact".to_owned()
                } else {
                    shown(&change.moves)
                },
                request.id,
                if request.moves.is_empty() {
                    "no move".to_owned()
                } else {
                    request
                        .moves
                        .iter()
                        .map(|m| format!("{} → {}", m.app, m.to))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    Ok(out)
}

/// Who pushed each commit the logged `pushes` (oldest first) brought: each push's commits,
/// from its new tip back along first parents to where the branch was before it, or to a
/// commit an earlier push brought (a force push brings only its own commits, not the history
/// it rewrote onto).
fn pushed_by(store: &Store, pushes: &[crate::forge::LoggedPush]) -> BTreeMap<Oid, Pushed> {
    let mut map: BTreeMap<Oid, Pushed> = BTreeMap::new();
    for push in pushes {
        let mut at = Some(push.after);
        let mut steps = 0;
        let mut brought = Vec::new();
        while let Some(id) =
            at.filter(|id| *id != push.before && !id.is_zero() && !map.contains_key(id))
        {
            brought.push(id);
            steps += 1;
            if steps > 10_000 {
                break;
            }
            at = store
                .commit(id)
                .ok()
                .and_then(|c| c.parents.first().copied());
        }
        for id in brought {
            map.insert(id, push.by.clone());
        }
    }
    map
}
