//! An environment's desired state, read from the state store: which branch holds it, its
//! validated state at a commit (through the verdict cache), the manifests of its history, and
//! the store's errors as user errors. The commands and the agent load state only through here.

use git2::Oid;

use crate::diag::Report;
use crate::error::Error;
use crate::model::Unresolved;
use crate::store::{CommitInfo, History, Store, StoreError, TreeSource};
use crate::validate::{self, State};
use crate::verdict::Summary;

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        let hint = match &err {
            StoreError::Unreachable { .. } => Some(
                "check the URL, the network, and the credentials (ssh: agent or key; https: `FERRY_GIT_TOKEN` or a credential helper)",
            ),
            StoreError::NotARepository { .. } => {
                Some("`ferry init --remote PATH` creates a deployment repository")
            }
            StoreError::NoBranch { .. } => Some("`ferry init` creates one branch per environment"),
            StoreError::Refused { .. } => {
                Some("the remote's rules (branch protection, hooks) refused the update")
            }
            StoreError::Cache { .. } => Some(
                "ferry keeps its cache under `$XDG_CACHE_HOME/ferry`; `--cache-dir` picks another place",
            ),
            StoreError::Git(_) => None,
            StoreError::Signing(_) => Some(
                "FERRY_SIGNING_KEY names an unencrypted OpenSSH private key (`ssh-keygen -t ed25519 -N '' -f KEY`) or the public half of a key ssh-agent holds; git's `commit.gpgsign` signs with `user.signingkey` as `git commit -S` does; unset them to write unsigned commits",
            ),
            StoreError::Credentials(_) => {
                Some("fix the file or the variable, or unset it to use git's credential helpers")
            }
            StoreError::NoRemote => Some(
                "pass `--remote URL|PATH`, set `FERRY_REMOTE`, or run ferry inside a clone whose `origin` is the deployment repository",
            ),
        };
        let error = match &err {
            StoreError::Unreachable {
                transient: true, ..
            } => Error::unavailable(err.to_string()),
            StoreError::NoRemote => Error::usage(err.to_string()),
            _ => Error::failure(err.to_string()),
        };
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

/// The branch that holds `env`'s desired state: the one branch whose own
/// `environments/<env>.json` declares it (see [`crate::model::resolve_branch`]), never a branch
/// merely named like the environment; in the seed layout, which declares nothing, the branch
/// named like it (`production` for `prod`). Every command and the agent find environments
/// here, as the repository's hook does.
pub fn branch_of(store: &Store, env: &str) -> Result<String, Error> {
    let heads = store.heads()?;
    let branches: Vec<&str> = heads
        .keys()
        .map(String::as_str)
        .filter(|b| !b.starts_with("ferry/"))
        .collect();
    // Each branch's tip (one fetch), and where its copy of the environment's file says it lives.
    let tips = store.fetch(&branches, History::Tip)?;
    let path = format!("{}/{env}.json", validate::ENVIRONMENTS_DIR);
    let mut declared = std::collections::BTreeMap::new();
    // Branches usually share the file's blob: each distinct one is read once.
    let mut by_blob: std::collections::HashMap<Oid, String> = Default::default();
    for (branch, tip) in &tips {
        let Some(tip) = tip else { continue };
        let Some(blob) = store.file_id(*tip, &path)? else {
            continue;
        };
        let says = match by_blob.get(&blob) {
            Some(says) => says.clone(),
            None => {
                let Some(bytes) = store.blob(blob) else {
                    continue;
                };
                let says = crate::model::declared_branch(env, &bytes);
                by_blob.insert(blob, says.clone());
                says
            }
        };
        declared.insert(branch.clone(), says);
    }
    let shown = &store.remote().shown;
    match crate::model::resolve_branch(env, branches.iter().copied(), &declared) {
        Ok(branch) => Ok(branch),
        Err(Unresolved::Ambiguous(claims)) => Err(Error::failure(format!(
            "`{shown}` has {} branches that each declare environment `{env}` as theirs: {}",
            claims.len(),
            claims.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
        ))
        .hint(format!(
            "an environment lives on one branch: delete the one that is not `{env}`'s (`git push origin --delete BRANCH`); a repository with ferry's hook refuses such a branch"
        ))),
        Err(Unresolved::Missing { declared: elsewhere }) => Err(Error::failure(format!(
            "`{shown}` has no branch for environment `{env}`: its files say it lives on {}, which {}",
            elsewhere.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(" or "),
            match (elsewhere.iter().any(|b| branches.contains(&b.as_str())), elsewhere.len()) {
                (false, 1) => "does not exist (deleted?)",
                (false, _) => "do not exist (deleted?)",
                (true, 1) => "does not declare it",
                (true, _) => "do not declare it",
            }
        ))
        .hint(format!(
            "`branch` in `{path}` names the branch; a branch named like the environment does not stand in for it"
        ))),
        Err(Unresolved::Unknown) => Err(Error::failure(format!(
            "`{shown}` has no branch for environment `{env}`"
        ))
        .hint(if branches.is_empty() {
            "the repository has no branches yet: `ferry init` creates them".to_owned()
        } else {
            match crate::schema::suggest(env, branches.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? branches: {}", branches.join(", ")),
                None => format!("branches: {}", branches.join(", ")),
            }
        })),
    }
}

/// The repository's promotion paths (`dev → staging → prod`), as the first environment
/// branch whose state validates declares them; none when no branch validates.
pub fn promotion_paths(store: &Store) -> Result<Vec<Vec<String>>, Error> {
    let heads = store.heads()?;
    for branch in heads.keys().filter(|b| !b.starts_with("ferry/")) {
        let tip = store.tip(branch, History::Tip)?;
        if let Some(state) = validate::check(&store.tree_source(tip, branch)?).state {
            return Ok(state
                .promotion_paths()
                .into_iter()
                .map(|path| path.into_iter().map(str::to_owned).collect())
                .collect());
        }
    }
    Ok(Vec::new())
}

/// The environments of the repository, in promotion order (see [`promotion_paths`]).
pub fn environments(paths: &[Vec<String>]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for env in paths.iter().flatten() {
        if !order.contains(env) {
            order.push(env.clone());
        }
    }
    order
}

/// An environment's branch, its tip, its files, and its validated state.
pub struct Loaded {
    pub branch: String,
    pub tip: Oid,
    pub files: TreeSource,
    pub state: State,
}

/// Fetches `env`'s branch and validates the desired state it holds.
pub fn load_env(store: &Store, env: &str, history: History) -> Result<Loaded, Error> {
    let branch = branch_of(store, env)?;
    let tip = store.tip(&branch, history)?;
    load_at(store, env, &branch, tip)
}

/// The validated state in `files` (read from `what`), which must describe `env`.
pub fn validate_files(files: &TreeSource, env: &str, what: &str) -> Result<State, Error> {
    let checked = validate::check(files);
    let state = checked.state.ok_or_else(|| {
        invalid_state(
            &checked.report,
            &format!("the desired state in {what} is invalid"),
        )
    })?;
    if !state.environments.contains_key(env) {
        return Err(Error::failure(format!("{what} has no environment `{env}`")));
    }
    Ok(state)
}

/// The validated state of `env` at `commit` of `branch`.
pub fn load_at(store: &Store, env: &str, branch: &str, commit: Oid) -> Result<Loaded, Error> {
    let files = store.tree_source(commit, branch)?;
    let tree = store.tree_of(commit)?;
    let verified = store
        .verdicts()
        .get(tree)
        .and_then(|summary| validate::load_valid(&files, &summary));
    let state = match verified {
        Some(state) => state,
        None => {
            let checked = validate::check(&files);
            let state = checked.state.ok_or_else(|| {
                invalid_state(
                    &checked.report,
                    &format!("the desired state on `{branch}` is invalid"),
                )
            })?;
            store.verdicts().record(tree, &Summary::of(&state));
            state
        }
    };
    if !state.environments.contains_key(env) {
        return Err(
            Error::failure(format!("branch `{branch}` has no environment `{env}`")).hint(format!(
                "its environments: {}",
                state
                    .environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    Ok(Loaded {
        branch: branch.to_owned(),
        tip: commit,
        files,
        state,
    })
}

/// An error listing the problems of an invalid state (the first 20).
pub fn invalid_state(report: &Report, message: &str) -> Error {
    let mut error = Error::failure(message);
    for d in report.errors.iter().take(20) {
        error = error.detail(format!("  {}: error: {}", d.location(), d.message));
    }
    if report.errors.len() > 20 {
        error = error.detail(format!("  … and {} more", report.errors.len() - 20));
    }
    error
        .hint("nothing was changed")
        .hint("a checkout of the branch and `ferry validate` show every problem")
}

/// Reads `manifest.json` of `commit` leniently (no validation): history may hold states
/// that today's rules reject, and they are still worth showing.
pub fn manifest_at(store: &Store, commit: Oid) -> Result<Option<crate::model::Manifest>, Error> {
    Ok(store
        .read_file(commit, validate::MANIFEST)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// `tip`'s first-parent history, newest first, each commit with the manifest blob of its
/// parent (what the change started from). Each commit is read once: a commit's parent is the
/// next one in the walk.
pub fn changes(
    store: &Store,
    tip: Oid,
) -> Result<impl Iterator<Item = Result<(CommitInfo, Option<Oid>), Error>> + '_, Error> {
    let ids = store.first_parents(tip)?;
    let mut at = 0;
    let mut ahead: Option<CommitInfo> = None;
    Ok(std::iter::from_fn(move || {
        let id = *ids.get(at)?;
        at += 1;
        let mut step = || -> Result<(CommitInfo, Option<Oid>), Error> {
            let commit = match ahead.take().filter(|c| c.id == id) {
                Some(commit) => commit,
                None => store.commit(id)?,
            };
            let before = match commit.parents.first() {
                Some(parent) => {
                    let parent = store.commit(*parent)?;
                    let manifest = parent.manifest;
                    ahead = Some(parent);
                    manifest
                }
                None => None,
            };
            Ok((commit, before))
        };
        Some(step())
    }))
}

/// Manifests of commits in history, each blob parsed once (leniently: history may hold
/// states today's rules reject).
pub struct Manifests<'s> {
    store: &'s Store,
    parsed: std::collections::HashMap<Oid, Option<crate::model::Manifest>>,
}

impl<'s> Manifests<'s> {
    pub fn new(store: &'s Store) -> Self {
        Manifests {
            store,
            parsed: Default::default(),
        }
    }

    /// The manifest in blob `blob` (`None` for no blob, or one that does not parse).
    pub fn at_blob(&mut self, blob: Option<Oid>) -> Option<crate::model::Manifest> {
        let blob = blob?;
        let store = self.store;
        self.parsed
            .entry(blob)
            .or_insert_with(|| {
                store
                    .blob(blob)
                    .and_then(|b| serde_json::from_slice(&b).ok())
            })
            .clone()
    }
}
