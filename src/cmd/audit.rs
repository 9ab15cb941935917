//! `ferry audit`: for each change of an environment's branch, who requested, approved, merged
//! or pushed it, which checks were green, which apps moved, and whether the protection in force
//! at the time (the environment's file on the branch just before the change) was satisfied.
//! It reads git history, and the forge's records through the [`Forge`] seam: the embedded
//! forge's requests, statuses and push log (`refs/ferry/pushes`, kept by the repository's
//! hook), or GitHub's pull requests, reviews, statuses and repository activity.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Oid;
use serde::Serialize;

use crate::cmd::shared::{Manifests, branch_of, format_time, open_store, parse_since};
use crate::enforce;
use crate::error::{Outcome, Result};
use crate::forge::{CheckState, Forge, ForgeKind, Pushed, Request};
use crate::model::Protection;
use crate::output::{Format, Output};
use crate::plan::history::{Move, moves, shown};
use crate::sign::{AllowedSigners, Verdict};
use crate::state;
use crate::store::{History, RemoteArgs, Store};

/// Audit an environment: each change of its branch, who made and approved it, and whether it
/// satisfied the branch's protection at the time.
///
/// For each change (newest first): time, commit, author, the promotion request it landed
/// (with who approved and who merged it) or the direct push, who pushed it (from the push log
/// the repository's hook keeps), which checks were green when it was merged, and which apps
/// moved. A change that reached a protected branch without satisfying the protection declared
/// just before it is flagged, and `ferry audit` then exits 1.
///
/// On a hosted forge the records are the pull or merge request the forge associates with each
/// change (author, reviews or approvals, who merged), the statuses as they stood when it
/// merged, and the forge's log of pushes (GitHub's repository activity, GitLab's push events,
/// Gitea's activity feed): at most five calls per change, and one per page of the log.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry audit prod
  ferry audit prod --since 2026-10-14
  ferry audit prod --format json
  GITHUB_TOKEN=… ferry audit prod --forge github --remote https://github.com/acme/deploy")]
pub struct AuditArgs {
    /// The environment.
    pub env: String,

    /// Only changes from this date (`2026-10-14`) or time (`2026-10-14T09:00:00Z`) on.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// One check that gated a promotion, as it stood when the request merged.
#[derive(Debug, Serialize)]
struct GateCheck {
    check: String,
    /// What required it: `policy` (`policy.required_checks`, on the promoted source commit) or
    /// `protection` (`protection.required_checks`, on the request's head).
    required_by: &'static str,
    /// The commit it was required on.
    commit: String,
    /// Its state when the request merged; `None`: not reported by then.
    state: Option<CheckState>,
    /// Who reported that state.
    by: Option<String>,
}

impl GateCheck {
    fn green(&self) -> bool {
        self.state == Some(CheckState::Success)
    }
}

#[derive(Debug, Serialize)]
struct Change {
    time: String,
    commit: String,
    author: String,
    subject: String,
    /// `promotion` (a merged request), `direct` (a push) or `initial`.
    kind: &'static str,
    request: Option<u64>,
    requested_by: Option<String>,
    approved_by: Vec<String>,
    merged_by: Option<String>,
    pushed_by: Option<String>,
    /// Whether the push log has the push (`pushed_by` is then `None` only when the transport
    /// named nobody).
    push_logged: bool,
    /// For a push to a path, the operating system's login that pushed, when it is not
    /// `pushed_by` (which is what `USER` said).
    #[serde(skip_serializing_if = "Option::is_none")]
    pushed_from_login: Option<String>,
    /// Every check that gated the promotion (the target's policy and protection in force just
    /// before it), with its state when the request merged.
    checks: Vec<GateCheck>,
    moves: Vec<Move>,
    /// Whether the branch was protected when the change landed.
    protected: bool,
    /// The commit's signature, checked against the `signers` its environment declared just
    /// before it.
    signature: Verdict,
    /// How the change broke that protection; empty when it did not.
    violations: Vec<String>,
}

pub fn run(args: AuditArgs, out: Output) -> Result<Outcome> {
    let since = match &args.since {
        Some(text) => Some(parse_since(text)?),
        None => None,
    };
    let store = open_store(&args.remote)?;
    let branch = branch_of(&store, &args.env)?;
    let tip = store.tip(&branch, History::Full)?;

    let forge = args.forge.open(&store)?;
    let forge: &dyn Forge = forge.as_ref();
    let pushes = forge.pushes(&branch, since)?;
    let pushed = pushed_by(&store, &pushes.pushes);

    let mut manifests = Manifests::new(&store);
    let mut changes = Vec::new();
    for change in state::changes(&store, tip)? {
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
        let declared = parent.and_then(|p| enforce::environment_in(&store, p, &branch));
        let protection: Option<Protection> = declared.as_ref().and_then(|e| e.protection.clone());
        let landed = match parent {
            Some(_) => forge.landed(&args.env, id)?,
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
                    .extend(not_the_promotion(&store, *parent, id, &change, request)?);
            }
        }
        changes.push(change);
    }

    let flagged = changes.iter().filter(|c| !c.violations.is_empty()).count();
    match out.format {
        Format::Json => out.json(&changes),
        Format::Text => {
            for c in &changes {
                let moved = if c.moves.is_empty() {
                    "(no artifact moved)".to_owned()
                } else {
                    shown(&c.moves)
                };
                let what = match (c.kind, c.request) {
                    ("promotion", Some(id)) => format!(
                        "request #{id} by {}",
                        c.requested_by.as_deref().unwrap_or("?")
                    ),
                    ("initial", _) => format!("first commit \"{}\"", c.subject),
                    _ => format!("direct push \"{}\"", c.subject),
                };
                out.data(format!("{}  {}  {what}: {moved}", c.time, &c.commit[..7]));
                let mut detail = vec![format!("author {}", c.author)];
                if c.kind == "promotion" {
                    detail.push(format!(
                        "approved by {}",
                        if c.approved_by.is_empty() {
                            "nobody".to_owned()
                        } else {
                            c.approved_by.join(", ")
                        }
                    ));
                    detail.push(format!(
                        "merged by {}",
                        c.merged_by.as_deref().unwrap_or("?")
                    ));
                    detail.push(if c.checks.is_empty() {
                        "no checks required".to_owned()
                    } else {
                        format!(
                            "checks: {}",
                            c.checks
                                .iter()
                                .map(|g| format!(
                                    "{} {}{} on {} ({})",
                                    g.check,
                                    g.state.map_or("not reported", CheckState::as_str),
                                    g.by.as_deref()
                                        .map(|by| format!(" by {by}"))
                                        .unwrap_or_default(),
                                    crate::output::abbrev(&g.commit, 7),
                                    g.required_by
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    });
                }
                detail.push(match (&c.pushed_by, c.push_logged) {
                    (Some(pusher), _) => match &c.pushed_from_login {
                        Some(login) => format!("pushed by {pusher} (USER said so; the login was {login})"),
                        None => format!("pushed by {pusher}"),
                    },
                    (None, true) => "pushed by someone the transport did not name (no REMOTE_USER from the HTTP server, no FERRY_PUSHER over ssh)".to_owned(),
                    (None, false) => format!("pushed by (not logged: {})", unlogged(forge.kind())),
                });
                if c.signature != Verdict::Unsigned {
                    detail.push(c.signature.to_string());
                }
                if !c.protected && c.kind != "initial" {
                    detail.push("unprotected".to_owned());
                }
                out.data(format!("    {}", detail.join("; ")));
                for v in &c.violations {
                    out.data(format!("    FLAGGED: {v}"));
                }
            }
            if changes.is_empty() {
                out.status(format!("no change of `{branch}` in that period"));
            } else if flagged > 0 {
                out.status(format!(
                    "{flagged} change{} reached `{branch}` without satisfying its protection",
                    if flagged == 1 { "" } else { "s" }
                ));
            }
        }
    }
    Ok(if flagged > 0 {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// Why a forge has no record of a push.
fn unlogged(forge: ForgeKind) -> &'static str {
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
