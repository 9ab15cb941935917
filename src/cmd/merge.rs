//! `ferry merge`: land a promotion request on its target environment, after re-checking the
//! gates and the target's protection against the state as it is now.

use crate::store::Oid;
use serde::Serialize;

use crate::cmd::shared::{branch_of, identity, load_at, load_env, now, open_store, short};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{Forge, ForgeError, Merge, NewCommit, RequestState};
use crate::output::{Format, Output};
use crate::plan::promote::{self, GateInputs};
use crate::promotion::{self, Target, gather};
use crate::store::{History, RemoteArgs};
use crate::validate::MANIFEST;
use crate::verdict::Summary;

/// Merge a promotion request: move the target environment's branch to the promoted state.
///
/// Re-checks everything against the state as it is now: the gates (from the target's own
/// branch), the target's protection (`required_approvals` from people other than the author,
/// `dismiss_stale_reviews`, `allowed_mergers`), and the plan itself: if the target moved so
/// that the promotion would change, the merge is refused and the request must be promoted
/// again. The branch moves with compare-and-swap, and the merge is recorded (who, when).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry merge 3
  ferry merge 3 --as release-bot --format json")]
pub struct MergeArgs {
    /// The request's id.
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: u64,

    #[command(flatten)]
    pub actor: crate::cmd::shared::Actor,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct MergeReport {
    id: u64,
    env: String,
    branch: String,
    commit: String,
    merged_by: String,
}

pub fn run(args: MergeArgs, out: Output) -> Result<Outcome> {
    let store = open_store(&args.remote)?;
    let local = LocalForge::new(&store);
    let forge: &dyn Forge = &local;
    let who = identity(&store, args.actor.as_name.as_deref());
    let record = forge.request(args.id)?;
    let request = &record.value;
    if request.state != RequestState::Open {
        return Err(Error::failure(format!(
            "request #{} is {}",
            request.id,
            request.state.as_str()
        )));
    }

    let to = load_env(&store, &request.to, History::Tip)?;
    let target = to
        .state
        .environments
        .get(&request.to)
        .expect("load_env checked it")
        .clone();
    let from_branch = branch_of(&store, &request.from)?;
    let from_tip = store.tip(&from_branch, History::Full)?;
    let source = Oid::from_str(&request.source)
        .map_err(|_| Error::failure("the request's source commit is damaged"))?;
    // What merges is what the source environment holds (or held): never a commit made to look
    // like it, whose checks and reporters its maker chose.
    if source != from_tip && !store.descends_from(from_tip, source) {
        return Err(Error::failure(format!(
            "request #{} promotes {}, which is not on `{from_branch}` (`{}`'s branch)",
            request.id,
            short(source),
            request.from
        ))
        .hint(format!(
            "run `ferry promote {} {}` to propose what `{}` holds",
            request.from, request.to, request.from
        )));
    }
    let from = load_at(&store, &request.from, &from_branch, source)?;

    // The plan must be what was requested and reviewed.
    let apps: Vec<String> = request.moves.iter().map(|m| m.app.clone()).collect();
    let moves = promote::plan(&from.state.manifest, &to.state.manifest, Some(&apps))
        .map_err(|e| Error::failure(format!("{}: {e}", request.from)))?;
    // The same pins, replacing the same versions: what the reviewers approved.
    let planned: Vec<(&str, Option<String>, &crate::model::Artifact)> = moves
        .iter()
        .map(|m| {
            (
                m.app.as_str(),
                m.current
                    .as_ref()
                    .map(crate::model::Artifact::shown_version),
                &m.promoted,
            )
        })
        .collect();
    let reviewed: Vec<(&str, Option<String>, &crate::model::Artifact)> = request
        .moves
        .iter()
        .map(|m| (m.app.as_str(), m.from.clone(), &m.pin))
        .collect();
    if planned != reviewed {
        return Err(Error::failure(format!(
            "`{}` moved since request #{} was opened, and the promotion would change",
            request.to, request.id
        ))
        .hint(format!(
            "run `ferry promote {} {}` to update the request, then review it again",
            request.from, request.to
        )));
    }

    // The gates, now.
    let (since, _) = gather::history(&store, source, &moves, target.policy.soak.is_some(), false)?;
    let checks = gather::checks_on(&store, forge, source)?;
    let gates = promote::gates(
        &moves,
        &GateInputs {
            from: &request.from,
            target: &target,
            rollback: request.rollback,
            now: now(),
            since: &since,
            checks: &checks,
        },
    );
    let refused: Vec<_> = gates.iter().filter(|g| !g.passed).collect();
    if !refused.is_empty() {
        let mut error = Error::failure(format!(
            "request #{} cannot be merged: {} gate{}",
            request.id,
            refused.len(),
            if refused.len() == 1 {
                " refuses"
            } else {
                "s refuse"
            }
        ));
        for g in refused {
            error = error.detail(format!("  {}: {}", g.gate.as_str(), g.message));
        }
        return Err(error);
    }

    // The target's protection.
    let protection = target.protection();
    let approvers = request.approvers(protection.dismiss_stale_reviews);
    let needed = protection.required_approvals as usize;
    if approvers.len() < needed {
        let mut error = Error::failure(format!(
            "request #{} has {} approval{} from people other than its author; `{}` requires {needed}",
            request.id,
            approvers.len(),
            if approvers.len() == 1 { "" } else { "s" },
            request.to
        ));
        let stale: Vec<&str> = request
            .approvers(false)
            .into_iter()
            .filter(|who| !approvers.contains(who))
            .collect();
        if !stale.is_empty() {
            error = error.detail(format!(
                "  dismissed: {} approved an older head (`dismiss_stale_reviews`)",
                stale.join(", ")
            ));
        }
        return Err(error.hint(format!(
            "`ferry approve {}` (as someone other than {})",
            request.id, request.author
        )));
    }
    if !protection.allowed_mergers.is_empty()
        && !protection.allowed_mergers.iter().any(|m| m == &who)
    {
        return Err(
            Error::failure(format!("`{who}` may not merge into `{}`", request.to)).hint(format!(
                "allowed mergers: {}{}",
                protection.allowed_mergers.join(", "),
                if protection.allowed_mergers.iter().any(|m| m.contains('/')) {
                    " (teams match nobody on the local forge: list people)"
                } else {
                    ""
                }
            )),
        );
    }

    // The checks the target's protection requires, on the request's head (what its hook
    // enforces too).
    if !protection.required_checks.is_empty() {
        let head = Oid::from_str(&request.head)
            .map_err(|_| Error::failure("the request's head commit is damaged"))?;
        let statuses = forge.statuses(head)?;
        let missing = crate::forge::missing_checks(&protection.required_checks, &statuses);
        if !missing.is_empty() {
            return Err(Error::failure(format!(
                "request #{}: `{}` requires {} green on the request's head {}",
                request.id,
                request.to,
                missing.join(", "),
                short(head)
            ))
            .hint(format!(
                "CI reports each on that commit: `ferry status set {} {} success`",
                request.head, missing[0]
            )));
        }
    }

    // The proposal as reviewed, or rebuilt on the target's new tip (same pins).
    Oid::from_str(&request.head)
        .map_err(|_| Error::failure("the request's head commit is damaged"))?;
    let rebuilt = if request.base == to.tip.to_string() {
        None
    } else {
        let target = Target {
            branch: to.branch.clone(),
            tip: to.tip,
            files: to.files.clone(),
            state: to.state.clone(),
        };
        let (manifest, message) = promotion::proposal(
            &target,
            (&request.from, &request.to),
            &moves,
            &request.title,
        )?;
        Some((vec![(MANIFEST.to_owned(), manifest)], message))
    };
    let valid_as = Summary::of(&to.state);
    // The branch and the record move together: the remote's hook sees a merge (by the
    // pusher, of an approved request), not a direct push.
    let new = forge
        .merge(&Merge {
            request: &record,
            target_branch: &to.branch,
            target_tip: to.tip,
            rebuild: rebuilt.as_ref().map(|(files, message)| NewCommit {
                parent: to.tip,
                files,
                message,
                author: &request.author,
                committer: &who,
                valid_as: Some(&valid_as),
            }),
            by: &who,
            at: now(),
        })
        .map_err(|e| {
            let again = format!("run `ferry merge {}` again", request.id);
            match e {
                ForgeError::BranchMoved { .. } => {
                    Error::failure(format!("`{}` moved during the merge", to.branch)).hint(again)
                }
                ForgeError::RequestMoved { .. } => {
                    Error::failure(format!("request #{} changed during the merge", request.id))
                        .hint(again)
                }
                e => Error::from(e),
            }
        })?;

    match out.format {
        Format::Json => out.json(&MergeReport {
            id: request.id,
            env: request.to.clone(),
            branch: to.branch.clone(),
            commit: new.to_string(),
            merged_by: who.clone(),
        }),
        Format::Text => out.data(format!(
            "#{} merged: `{}` is at {} ({})",
            request.id,
            request.to,
            short(new),
            request.title
        )),
    }
    Ok(Outcome::Success)
}
