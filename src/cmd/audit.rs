//! `ferry audit`: for each change of an environment's branch, who requested, approved, merged
//! or pushed it, which checks were green, which apps moved, and whether the protection in force
//! at the time (the environment's file on the branch just before the change) was satisfied.
//! It reads git history, and the forge's records through the [`Forge`] seam: the embedded
//! forge's requests, statuses and push log (`refs/ferry/pushes`, kept by the repository's
//! hook), or GitHub's pull requests, reviews, statuses and repository activity.

use crate::cmd::shared::open_store;
use crate::error::{Outcome, Result};
use crate::forge::{CheckState, Forge};
use crate::output::{Format, Output};
use crate::plan::history::shown;
use crate::sign::Verdict;
use crate::store::RemoteArgs;
use crate::view::audit::{audit, unlogged};
use crate::view::parse_since;

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

pub fn run(args: AuditArgs, out: Output) -> Result<Outcome> {
    let since = match &args.since {
        Some(text) => Some(parse_since(text)?),
        None => None,
    };
    let store = open_store(&args.remote)?;
    let forge = args.forge.open(&store)?;
    let forge: &dyn Forge = forge.as_ref();
    let (branch, changes) = audit(&store, forge, &args.env, since, None)?;

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
