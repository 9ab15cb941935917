//! `ferry merge`: land a promotion request on its target environment, after re-checking the
//! gates and the target's protection against the state as it is now.

use crate::store::Oid;
use serde::Serialize;

use crate::cmd::shared::{acting, branch_of, load_at, load_env, now, open_store, short};
use crate::error::{Error, Outcome, Result};
use crate::forge::{Forge, ForgeError, ForgeKind, Merge, MergeMethod, NewCommit, RequestState};
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
///
/// On a hosted forge (`--forge github|gitlab|gitea`) the same checks run on the pull or merge
/// request (approvals are its reviews or approvals), then ferry checks that its head holds
/// exactly the promoted state on the target's tip (no hand-made commit on the request branch),
/// and merges it through the API with the head's SHA pinned: a head that moved meanwhile is not
/// merged. The forge's own protection is applied by the forge, and its refusal shown in its
/// words. At most seven calls.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry merge 3
  ferry merge 3 --as release-bot --format json
  GITHUB_TOKEN=… ferry merge 12 --forge github --method squash")]
pub struct MergeArgs {
    /// The request's id.
    #[arg(value_parser = crate::cmd::shared::parse_id)]
    pub id: u64,

    /// How a hosted forge lands the request: a merge commit, a squash or a rebase (each
    /// leaves the target with the promoted tree). The embedded forge lands the head, one
    /// commit on the target's tip, whatever the method.
    #[arg(long, value_enum, env = "FERRY_MERGE_METHOD", default_value_t = MergeMethod::Merge)]
    pub method: MergeMethod,

    #[command(flatten)]
    pub forge: crate::cmd::shared::ForgeArgs,

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
    let forge = args.forge.open(&store)?;
    let forge: &dyn Forge = forge.as_ref();
    let hosted = forge.kind() != ForgeKind::Local;
    let who = acting(&store, forge, &args.actor)?;
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
    if let Some(into) = request.into.as_ref().filter(|into| **into != to.branch) {
        return Err(Error::failure(format!(
            "request #{} merges into `{into}`, not into `{}` (`{}`'s branch)",
            request.id, to.branch, request.to
        ))
        .hint(format!(
            "close it, then `ferry promote {} {}` opens the request on the right branch",
            request.from, request.to
        )));
    }
    let target = to
        .state
        .environments
        .get(&request.to)
        .expect("load_env checked it")
        .clone();
    let from_branch = branch_of(&store, &request.from)?;
    let from_tip = store.tip(&from_branch, History::Full)?;
    let source = Oid::from_str(&request.source).map_err(|_| {
        Error::failure(format!(
            "request #{} does not say which commit of `{}` it promotes (its body's `ferry:promotion` block is missing or damaged)",
            request.id, request.from
        ))
        .hint(format!(
            "run `ferry promote {} {}` to write the request again",
            request.from, request.to
        ))
    })?;
    // What merges is what the source environment holds (or held): never a commit made to look
    // like it, whose checks and reporters its maker chose.
    if !store.holds(from_tip, source) {
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
    // The same pins, replacing the same versions: what the reviewers approved. (A hosted
    // forge's body cut to its size limit carries versions only; the head's tree is checked
    // against the plan below.)
    let same = moves.len() == request.moves.len()
        && moves.iter().zip(&request.moves).all(|(m, r)| {
            m.app == r.app
                && m.current
                    .as_ref()
                    .map(crate::model::Artifact::shown_version)
                    == r.from
                && match r.pin.pin() {
                    Some(_) => m.promoted == r.pin,
                    None => m.version() == r.to,
                }
        });
    if !same {
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
    // Teams are the hosted forge's to check (its protection restricts who may push).
    let teams_on_forge = hosted && protection.allowed_mergers.iter().any(|m| m.contains('/'));
    if !protection.allowed_mergers.is_empty()
        && !protection.allowed_mergers.iter().any(|m| m == &who)
        && !teams_on_forge
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
    let head = Oid::from_str(&request.head)
        .map_err(|_| Error::failure("the request's head commit is damaged"))?;
    let proposed = || -> Result<(Vec<(String, String)>, String)> {
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
        Ok((vec![(MANIFEST.to_owned(), manifest)], message))
    };
    let mut promoted_tree = None;
    let rebuilt = if request.base == to.tip.to_string() && !hosted {
        None
    } else if !hosted {
        Some(proposed()?)
    } else {
        // A hosted forge merges the head as it is: it must be the promoted state, on the
        // target's tip.
        if request.base != to.tip.to_string() {
            return Err(Error::failure(format!(
                "`{}` moved since request #{} was built on it",
                request.to, request.id
            ))
            .hint(format!(
                "run `ferry promote {} {}` to rebuild the request on `{}`'s tip, then review it again",
                request.from, request.to, to.branch
            )));
        }
        let (files, message) = proposed()?;
        promoted_tree = Some(check_head(&store, request, head, to.tip, &files, &message)?);
        None
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
            method: args.method,
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
                ForgeError::GitHub(crate::forge::github::GitHubError::Refused {
                    status: 405,
                    message,
                    ..
                }) => Error::failure(format!(
                    "GitHub refused to merge #{}: {message}",
                    request.id
                ))
                .hint(
                    "GitHub's branch protection or the pull request's state decides: see its page",
                ),
                e => Error::from(e),
            }
        })?;

    if let Some(promoted) = promoted_tree {
        confirm_merged(&store, request, &to.branch, new, promoted, out)?;
    }

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

/// Checks that `head`, which the forge says the request's branch holds, is what the branch
/// holds in git and is the promotion as planned: one commit on the target's tip `base` with
/// `files` changed. Returns the promoted tree.
fn check_head(
    store: &crate::store::Store,
    request: &crate::forge::Request,
    head: Oid,
    base: Oid,
    files: &[(String, String)],
    message: &str,
) -> Result<Oid> {
    let refname = format!("refs/heads/{}", request.branch);
    let branch = store
        .fetch_refs(std::slice::from_ref(&refname), crate::store::History::Tip)?
        .remove(&refname)
        .flatten();
    if branch != Some(head) {
        return Err(Error::failure(format!(
            "request #{}'s branch `{}` is at {}, not at the head {} the forge reports",
            request.id,
            request.branch,
            branch.map_or("nothing".to_owned(), short),
            short(head)
        ))
        .hint(format!("run `ferry merge {}` again", request.id)));
    }
    let signature = store
        .signature()
        .map_err(|e| Error::failure(e.to_string()))?;
    let bytes: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(path, text)| (path.clone(), text.clone().into_bytes()))
        .collect();
    let expected = store.write_commit(Some(base), &bytes, message, &signature, &signature)?;
    let promoted = store.tree_of(expected)?;
    let commit = store.commit(head)?;
    if commit.parents != [base] || store.tree_of(head)? != promoted {
        return Err(Error::failure(format!(
            "request #{}'s head {} is not the promotion it describes: its branch `{}` was changed by hand",
            request.id,
            short(head),
            request.branch
        ))
        .detail(format!(
            "  expected one commit on {} whose tree is {}",
            short(base),
            short(promoted)
        ))
        .hint(format!(
            "run `ferry promote {} {}` to rebuild the request, then review it again",
            request.from, request.to
        )));
    }
    Ok(promoted)
}

/// After a hosted forge's merge: the merge commit's tree must be the promoted one. A forge
/// merges the pinned head onto the target as it is by then; if the target moved between
/// ferry's checks and the merge, the result is not what was reviewed: that is a failure
/// (exit 1), said with what to do. When the merge commit cannot be read back, a warning.
fn confirm_merged(
    store: &crate::store::Store,
    request: &crate::forge::Request,
    branch: &str,
    merged: Oid,
    promoted: Oid,
    out: Output,
) -> Result<()> {
    store.refresh();
    let tip = store
        .fetch(&[branch], crate::store::History::Full)
        .ok()
        .and_then(|mut tips| tips.remove(branch).flatten());
    // What the forge says it merged must be on the branch (an answer saying "merged" about
    // a merge that did not happen, or about another commit, is no merge).
    if let Some(tip) = tip
        && store.tree_of(merged).is_ok()
        && !store.holds(tip, merged)
    {
        return Err(Error::failure(format!(
            "the forge says #{} merged as {}, but `{branch}` (at {}) does not hold it",
            request.id,
            short(merged),
            short(tip)
        ))
        .hint(format!(
            "see the request on the forge's page; `ferry requests {}` shows its state",
            request.id
        )));
    }
    match store.tree_of(merged) {
        Ok(tree) if tree == promoted => Ok(()),
        Ok(_) => Err(Error::failure(format!(
            "#{} merged as {}, but its tree is not the promoted state: `{branch}` moved between ferry's checks and the merge, and the forge merged the head onto it",
            request.id,
            short(merged)
        ))
        .hint(format!(
            "`ferry diff {} {}` shows where it stands; `protection.require_up_to_date` makes the forge refuse such a merge",
            request.from, request.to
        ))),
        Err(_) => {
            out.stderr(format!(
                "warning: could not read the merge commit {} back from `{branch}`: its tree was not checked",
                short(merged)
            ));
            Ok(())
        }
    }
}
