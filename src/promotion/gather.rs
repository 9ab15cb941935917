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

/// The state of each check in `statuses`, as the gates read them: a deploy of ENV
/// (`ferry/deploy/ENV`) counts only when reported by one of ENV's `agent.reporters` as ENV's
/// own branch declares them (when it lists any), never as the commit reported on says; when no
/// one branch holds ENV (`reporters_of` says `None`), none counts.
pub fn trusted_checks<E>(
    statuses: Statuses,
    mut reporters_of: impl FnMut(&str) -> Result<Option<Vec<String>>, E>,
) -> Result<BTreeMap<String, String>, E> {
    let mut checks = BTreeMap::new();
    for (check, status) in statuses {
        if let Some(env) = check.strip_prefix("ferry/deploy/") {
            let Some(reporters) = reporters_of(env)? else {
                continue;
            };
            if !reporters.is_empty() && !reporters.contains(&status.by) {
                continue;
            }
        }
        checks.insert(check, status.state.as_str().to_owned());
    }
    Ok(checks)
}

/// The checks as GitHub reports them: every one counts (GitHub names who reported, and the
/// token's rights decide who may).
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

/// The checks on `commit` as the gates read them: on the embedded forge, a deploy counts only
/// from its environment's declared reporters.
pub fn checks_on(
    store: &Store,
    forge: &dyn crate::forge::Forge,
    commit: crate::store::Oid,
) -> Result<BTreeMap<String, String>, crate::error::Error> {
    let statuses = forge.statuses(commit)?;
    use crate::forge::ForgeKind;
    match forge.kind() {
        ForgeKind::Github => Ok(all_checks(statuses)),
        ForgeKind::Local => trusted_checks(statuses, |env| {
            // No single branch holds ENV (none, or two claim it): nobody is known to report
            // its deploys, so no report of them counts.
            let Ok(branch) = crate::state::branch_of(store, env) else {
                return Ok(None);
            };
            let tip = store.tip(&branch, crate::store::History::Tip)?;
            Ok::<_, crate::error::Error>(Some(reporters_in(store, tip, env)?))
        }),
    }
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
        ]
        .into();
        let checks = trusted_checks(statuses, |env| {
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
            ["ci/test", "ferry/deploy/qa", "ferry/deploy/staging"]
        );
    }
}
