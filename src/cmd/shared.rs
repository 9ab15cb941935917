//! What the commands that touch the state store share: opening it, finding an environment's
//! branch, loading a branch's desired state, and turning store errors into user errors.

use git2::Oid;

use crate::diag::Report;
use crate::error::Error;
use crate::model::Unresolved;
use crate::store::{History, Remote, RemoteArgs, Store, StoreError, TreeSource};
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
            StoreError::Credentials(_) => {
                Some("fix the file or the variable, or unset it to use git's credential helpers")
            }
        };
        let error = match &err {
            StoreError::Unreachable {
                transient: true, ..
            } => Error::unavailable(err.to_string()),
            _ => Error::failure(err.to_string()),
        };
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

/// Opens the remote the arguments name.
pub fn open_store(args: &RemoteArgs) -> Result<Store, Error> {
    let remote = Remote::resolve(args)?;
    Ok(Store::open(&remote, &Remote::cache_root(args))?)
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
    for (branch, tip) in &tips {
        if let Some(tip) = tip
            && let Some(bytes) = store.read_file(*tip, &path)?
        {
            declared.insert(branch.clone(), crate::model::declared_branch(env, &bytes));
        }
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
            "`{shown}` has no branch for environment `{env}`: its files say it lives on {}, which {} not declare it",
            elsewhere.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(" or "),
            if elsewhere.len() == 1 { "does" } else { "do" }
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

/// The first 7 hex digits of a commit id, as git shows them.
pub fn short(id: Oid) -> String {
    id.to_string()[..7].to_owned()
}

/// A commit's time as RFC 3339 in UTC, such as `2026-10-14T12:00:01Z`.
pub fn format_time(time: git2::Time) -> String {
    jiff::Timestamp::from_second(time.seconds())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| time.seconds().to_string())
}

/// Reads `manifest.json` of `commit` leniently (no validation): history may hold states
/// that today's rules reject, and they are still worth showing.
pub fn manifest_at(store: &Store, commit: Oid) -> Result<Option<crate::model::Manifest>, Error> {
    Ok(store
        .read_file(commit, validate::MANIFEST)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Left-aligned columns for text tables.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c + 1 == row.len() {
                        cell.clone()
                    } else {
                        format!("{cell:<width$}", width = widths[c])
                    }
                })
                .collect();
            cells.join("  ")
        })
        .collect()
}

/// `--as NAME`, for the commands that write the local forge's records.
#[derive(Debug, Clone, clap::Args)]
pub struct Actor {
    /// Who is acting. Default: `FERRY_USER`; on a path remote, the login (`USER`); else
    /// `GIT_AUTHOR_NAME` or git's `user.name`. A remote with ferry's hook checks it is the pusher.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
}

/// Who is acting: `--as NAME`, else `FERRY_USER`; for a repository on a path, the login
/// (`USER`), which is who its pre-receive hook sees pushing; else who git would say is
/// committing (`GIT_AUTHOR_NAME`, `user.name`), else the login. A repository with ferry's
/// hook refuses a record whose name is not the pusher's.
pub fn identity(store: &Store, as_name: Option<&str>) -> String {
    if let Some(name) = as_name.filter(|n| !n.trim().is_empty()) {
        return name.trim().to_owned();
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(name) = var("FERRY_USER") {
        return name;
    }
    // A repository on a path sees the local login as the pusher (see `enforce::pusher`).
    if store.remote().path.is_some()
        && let Some(login) = var("USER")
            .or_else(|| var("LOGNAME"))
            .or_else(crate::enforce::login_of_uid)
    {
        return login;
    }
    var("GIT_AUTHOR_NAME")
        .or_else(|| {
            store
                .repo()
                .config()
                .ok()
                .and_then(|c| c.get_string("user.name").ok())
        })
        .or_else(|| var("USER"))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Now, in Unix seconds (`FERRY_NOW` overrides it, for reproducible runs).
pub fn now() -> i64 {
    if let Some(now) = std::env::var("FERRY_NOW").ok().and_then(|v| v.parse().ok()) {
        return now;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The forge's errors as user errors.
impl From<crate::forge::local::ForgeError> for Error {
    fn from(err: crate::forge::local::ForgeError) -> Self {
        match err {
            crate::forge::local::ForgeError::Store(e) => e.into(),
            crate::forge::local::ForgeError::NoRequest(id) => {
                Error::failure(format!("there is no request #{id}"))
                    .hint("`ferry requests` lists them")
            }
            other => Error::failure(other.to_string()),
        }
    }
}

/// The signature for commits ferry makes (see [`crate::store::signature`]).
pub fn signature(store: &Store) -> Result<git2::Signature<'static>, Error> {
    crate::store::signature(store.repo())
        .map_err(|e| Error::failure(format!("git: {}", e.message())))
}

/// The signature of `name`: the configured one when `name` is who git says is committing,
/// else `name` with a placeholder address under the reserved `.invalid` domain (ferry knows
/// only the name it was given, and claims no real address for anyone).
pub fn signature_as(store: &Store, name: &str) -> Result<git2::Signature<'static>, Error> {
    let default = signature(store)?;
    if default.name() == Ok(name) {
        return Ok(default);
    }
    let local: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let email = format!("{}@ferry.invalid", local.trim_matches('.'));
    git2::Signature::new(name, &email, &default.when())
        .map_err(|e| Error::failure(format!("git: {}", e.message())))
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

    /// The blob id of `manifest.json` in `commit`, if it has one.
    pub fn blob_of(commit: &git2::Commit<'_>) -> Result<Option<Oid>, Error> {
        let tree = commit
            .tree()
            .map_err(|e| Error::failure(format!("git: {}", e.message())))?;
        Ok(tree
            .get_name(validate::MANIFEST)
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .map(|e| e.id()))
    }

    /// The manifest in blob `blob` (`None` for no blob, or one that does not parse).
    pub fn at_blob(&mut self, blob: Option<Oid>) -> Option<crate::model::Manifest> {
        let blob = blob?;
        let store = self.store;
        self.parsed
            .entry(blob)
            .or_insert_with(|| {
                store
                    .repo()
                    .find_blob(blob)
                    .ok()
                    .and_then(|b| serde_json::from_slice(b.content()).ok())
            })
            .clone()
    }
}

/// A request id as people write it: `3` or `#3`.
pub fn parse_id(text: &str) -> Result<u64, String> {
    text.trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| format!("`{text}` is not a request id, such as `3` or `#3`"))
}
