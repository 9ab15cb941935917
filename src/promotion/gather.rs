//! Reading what a promotion's plan needs, once: the source's first-parent history in one walk
//! (soak and changelog together, each read only when needed), the target branch's templates,
//! and which checks on the source commit the gates may trust.

use std::collections::{BTreeMap, HashMap};

use crate::store::Oid;

use super::history::{AppLog, Fold, Visit};
use super::text::{Override, Templates};
use crate::forge::Statuses;
use crate::model::Manifest;
use crate::plan::promote::Move;
use crate::render;
use crate::store::{Store, StoreError};

/// Walks the source's first-parent history back from `source` once, as long as the soak
/// (`soak`: the target has a soak policy) or the changelog (`changelog`: a request is to be
/// written) needs: since when each moving pin has been in the source, and the changelog.
pub fn history(
    store: &Store,
    source: Oid,
    moves: &[Move],
    soak: bool,
    changelog: bool,
) -> Result<(BTreeMap<String, i64>, Vec<AppLog>), StoreError> {
    let mut fold = Fold::new(moves, soak, changelog);
    if fold.finished() {
        return Ok(fold.finish());
    }
    // Each manifest blob parsed once (leniently: history may hold states today's rules
    // reject).
    let mut manifests: HashMap<Oid, Option<Manifest>> = HashMap::new();
    for id in store.first_parents(source)? {
        if fold.finished() {
            break;
        }
        let commit = store.commit(id)?;
        let blob = commit.manifest.filter(|_| fold.wants_manifest());
        if let Some(blob) = blob {
            manifests.entry(blob).or_insert_with(|| {
                store
                    .blob(blob)
                    .and_then(|b| serde_json::from_slice(&b).ok())
            });
        }
        let trailers: Vec<(String, String)> = if fold.wants_message() {
            commit.trailers()
        } else {
            Vec::new()
        };
        let summary = commit.subject();
        fold.visit(&Visit {
            id,
            time: commit.committer.time,
            summary: &summary,
            author: &commit.author.name,
            trailers: &trailers,
            manifest: blob
                .and_then(|b| manifests.get(&b))
                .and_then(Option::as_ref),
        });
    }
    Ok(fold.finish())
}

/// The target branch's own title and body templates, where it has them.
pub fn templates(store: &Store, branch: &str, tip: Oid) -> Result<Templates, StoreError> {
    let read = |t: render::Template| -> Result<Option<Override>, StoreError> {
        let path = format!("templates/{}", t.file);
        Ok(store.read_file(tip, &path)?.map(|bytes| Override {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            origin: format!("{branch}:{path}"),
        }))
    };
    Ok(Templates {
        title: read(render::PROMOTION_TITLE)?,
        body: read(render::PROMOTION_BODY)?,
    })
}

/// `statuses` as the gates read them: a deploy of ENV (`ferry/deploy/ENV`, and each host's
/// `ferry/deploy/ENV/HOST`) counts only when reported by one of ENV's `agent.reporters` as
/// `reporters_of` finds them (when it lists any), never as the commit reported on says; when
/// no one branch holds ENV (`reporters_of` says `None`), none counts. A report dropped for its
/// reporter is warned about, naming them.
pub fn trusted<E>(
    statuses: Statuses,
    mut reporters_of: impl FnMut(&str) -> Result<Option<Vec<String>>, E>,
) -> Result<Statuses, E> {
    let mut kept = Statuses::new();
    for (check, status) in statuses {
        if let Some(env) = deploy_env(&check) {
            let Some(reporters) = reporters_of(env)? else {
                continue;
            };
            if !reporters.is_empty() && !reporters.contains(&status.by) {
                tracing::warn!(
                    "ignoring `{check}` ({}) reported by `{}`: {env}'s deploys are reported by its `agent.reporters` only ({})",
                    status.state.as_str(),
                    status.by,
                    reporters.join(", ")
                );
                continue;
            }
        }
        kept.insert(check, status);
    }
    Ok(kept)
}

/// The state of each check.
pub fn all_checks(statuses: Statuses) -> BTreeMap<String, String> {
    statuses
        .into_iter()
        .map(|(check, status)| (check, status.state.as_str().to_owned()))
        .collect()
}

/// The `agent.reporters` an environment's own file declares (none when it does not parse).
pub fn reporters_in(store: &Store, tip: Oid, env: &str) -> Result<Vec<String>, StoreError> {
    Ok(store
        .read_file(
            tip,
            &format!("{}/{env}.json", crate::validate::ENVIRONMENTS_DIR),
        )?
        .and_then(|bytes| serde_json::from_slice::<crate::model::Environment>(&bytes).ok())
        .map(|e| e.agent.reporters)
        .unwrap_or_default())
}

/// The checks on `commit` as the gates read them: on every forge, a deploy counts only from
/// its environment's declared reporters (on GitHub, who created the status), and one from
/// anyone else is ignored with a warning naming who reported it.
pub fn checks_on(
    store: &Store,
    forge: &dyn crate::forge::Forge,
    commit: crate::store::Oid,
) -> Result<BTreeMap<String, String>, crate::error::Error> {
    let statuses = trusted_statuses(store, forge.statuses(commit)?)?;
    Ok(all_checks(statuses))
}

/// `statuses` without the deploys (`ferry/deploy/ENV`, `ferry/deploy/ENV/HOST`) that ENV's
/// reporters, as ENV's own branch declares them, did not report; each one dropped is warned
/// about, naming who reported it.
pub fn trusted_statuses(
    store: &Store,
    statuses: Statuses,
) -> Result<Statuses, crate::error::Error> {
    let mut known: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    trusted(statuses, |env| {
        if let Some(declared) = known.get(env) {
            return Ok(declared.clone());
        }
        // No single branch holds ENV (none, or two claim it): nobody is known to report its
        // deploys, so no report of them counts.
        let declared = match crate::state::branch_of(store, env) {
            Ok(branch) => {
                let tip = store.tip(&branch, crate::store::History::Tip)?;
                Some(reporters_in(store, tip, env)?)
            }
            Err(_) => None,
        };
        known.insert(env.to_owned(), declared.clone());
        Ok::<_, crate::error::Error>(declared)
    })
}

/// The environment a deploy status is about: `ENV` of `ferry/deploy/ENV` and of each host's
/// `ferry/deploy/ENV/HOST`.
fn deploy_env(check: &str) -> Option<&str> {
    let rest = check.strip_prefix("ferry/deploy/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::{CheckState, Status};

    #[test]
    fn deploys_count_only_from_their_environments_reporters() {
        let status = |by: &str| Status {
            apps: Default::default(),
            state: CheckState::Success,
            description: String::new(),
            url: None,
            by: by.into(),
            at: 0,
        };
        let statuses: Statuses = [
            ("ci/test".to_owned(), status("anyone")),
            ("ferry/deploy/dev".to_owned(), status("mallory")),
            ("ferry/deploy/staging".to_owned(), status("agent-staging")),
            ("ferry/deploy/qa".to_owned(), status("agent-qa")),
            ("ferry/deploy/ghost".to_owned(), status("x")),
            ("ferry/deploy/dev/web-1".to_owned(), status("mallory")),
            (
                "ferry/deploy/staging/web-1".to_owned(),
                status("agent-staging"),
            ),
        ]
        .into();
        let checks = trusted(statuses, |env| {
            Ok::<_, ()>(match env {
                "dev" => Some(vec!["agent-dev".to_owned()]),
                "staging" => Some(vec!["agent-staging".to_owned()]),
                "qa" => Some(vec![]),
                _ => None,
            })
        })
        .unwrap();
        let names: Vec<&str> = checks.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "ci/test",
                "ferry/deploy/qa",
                "ferry/deploy/staging",
                "ferry/deploy/staging/web-1"
            ]
        );
    }
}
