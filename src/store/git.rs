//! The git state store: reading branches, writing commits, compare-and-swap branch updates.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use git2::build::TreeUpdateBuilder;
use git2::{
    Direction, ErrorCode, FetchOptions, FileMode, Oid, PushOptions, Repository,
    RepositoryOpenFlags, Signature,
};
use sha2::{Digest, Sha256};

use super::auth;
use super::tree::TreeSource;
use super::{Remote, StoreError};
use crate::verdict::Verdicts;

/// A commit as the commands see it: no handle into the repository.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: Oid,
    pub tree: Oid,
    pub parents: Vec<Oid>,
    pub author: Person,
    pub committer: Person,
    /// The whole message, as written.
    pub message: String,
    /// The blob of `manifest.json` at the root of its tree, if it has one.
    pub manifest: Option<Oid>,
}

impl CommitInfo {
    /// The message's trailers (`Key: value` lines of its last paragraph), as git reads them.
    pub fn trailers(&self) -> Vec<(String, String)> {
        git2::message_trailers_strs(&self.message)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The message's first paragraph on one line, as libgit2's `git_commit_summary` makes it
    /// (and `git log --format=%s` shows it): leading newlines skipped, a run of whitespace
    /// with a newline in it one space, other runs kept, trailing whitespace dropped.
    pub fn subject(&self) -> String {
        let message = self.message.trim_start_matches('\n');
        let bytes = message.as_bytes();
        let mut subject = String::new();
        let mut space: Option<usize> = None;
        for (i, c) in message.char_indices() {
            if c == '\n' && matches!(bytes.get(i + 1), None | Some(b'\n')) {
                break;
            }
            if c.is_ascii_whitespace() {
                space.get_or_insert(i);
                continue;
            }
            if let Some(start) = space.take() {
                let run = &message[start..i];
                if run.contains('\n') {
                    subject.push(' ');
                } else {
                    subject.push_str(run);
                }
            }
            subject.push(c);
        }
        subject
    }
}

/// An author or committer: name, address, and time (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: String,
    pub time: i64,
}

impl Person {
    fn of(signature: &Signature<'_>) -> Person {
        Person {
            name: String::from_utf8_lossy(signature.name_bytes()).into_owned(),
            email: String::from_utf8_lossy(signature.email_bytes()).into_owned(),
            time: signature.when().seconds(),
        }
    }
}

/// How much of a branch's history a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// The tip commit only: a shallow fetch.
    Tip,
    /// Every commit of the branch.
    Full,
}

/// Move the ref `refname` from `expected` (`None`: it must not exist) to `new`.
#[derive(Debug, Clone)]
pub struct RefUpdate {
    pub refname: String,
    pub expected: Option<Oid>,
    pub new: Oid,
    /// The ref may move to a commit that does not descend from where it is (a request branch
    /// rebuilt); it must still be where `expected` says.
    pub rewrite: bool,
}

impl RefUpdate {
    /// An update of branch `branch`.
    pub fn branch(branch: &str, expected: Option<Oid>, new: Oid) -> RefUpdate {
        RefUpdate::of(format!("refs/heads/{branch}"), expected, new)
    }

    /// An update of ref `refname`.
    pub fn of(refname: String, expected: Option<Oid>, new: Oid) -> RefUpdate {
        RefUpdate {
            refname,
            expected,
            new,
            rewrite: false,
        }
    }

    /// The same update, allowed to rewrite the ref's history.
    pub fn rewriting(self) -> RefUpdate {
        RefUpdate {
            rewrite: true,
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    /// A ref was not where the update expected it: someone else changed it first.
    Moved {
        refname: String,
        actual: Option<Oid>,
    },
}

/// An open state store.
pub struct Store {
    remote: Remote,
    repo: Repository,
    /// The remote is a local repository, read and written in place.
    direct: bool,
    /// Held while this process uses the cache, so concurrent ferry processes take turns.
    _lock: Option<File>,
    /// The last ref advertisement, until [`Store::refresh`] or an update.
    refs: RefCell<Option<BTreeMap<String, Oid>>>,
    /// The trees found valid before, in the cache directory.
    verdicts: Verdicts,
}

/// Where the cache keeps a remote ref: branches as `refs/remotes/origin/…`, ferry's records
/// as `refs/ferry-mirror/…`.
fn tracking(refname: &str) -> String {
    match refname.strip_prefix("refs/heads/") {
        Some(branch) => format!("refs/remotes/origin/{branch}"),
        None => format!("refs/ferry-mirror/{}", refname.trim_start_matches("refs/")),
    }
}

/// The cache's ref for a value about to be pushed to `refname`.
fn outgoing(refname: &str) -> String {
    format!(
        "refs/ferry-outgoing/{}",
        refname.trim_start_matches("refs/")
    )
}

fn git_err(remote: &Remote) -> impl Fn(git2::Error) -> StoreError + '_ {
    move |e| StoreError::Git(remote.scrub(e.message()))
}

impl Store {
    /// Opens the remote: a local repository directly, a network remote through its cache
    /// under `cache_root`.
    pub fn open(remote: &Remote, cache_root: &Path) -> Result<Store, StoreError> {
        if let Some(path) = &remote.path {
            let repo = Repository::open_ext(
                path,
                RepositoryOpenFlags::NO_SEARCH,
                std::iter::empty::<&str>(),
            )
            .map_err(|e| {
                let message = if !path.exists() {
                    "no such directory".to_owned()
                } else {
                    remote.scrub(e.message())
                };
                StoreError::NotARepository {
                    remote: remote.shown.clone(),
                    message,
                }
            })?;
            return Ok(Store {
                remote: remote.clone(),
                repo,
                direct: true,
                _lock: None,
                refs: RefCell::new(None),
                verdicts: Verdicts::open(cache_root),
            });
        }
        if remote.url.starts_with("https://") || remote.url.starts_with("http://") {
            // An http:// server may redirect to https://.
            super::tls::load_roots();
            // A token file that cannot be read is an error now, not a warning in the middle of
            // a fetch (the credential callback can only skip it).
            crate::secret::from_env("FERRY_GIT_TOKEN").map_err(StoreError::Credentials)?;
        }
        let cache_err = |path: &Path, e: &dyn std::fmt::Display| StoreError::Cache {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(cache_root).map_err(|e| cache_err(cache_root, &e))?;
        let name = cache_name(&remote.shown);
        let lock_path = cache_root.join(format!("{name}.lock"));
        let lock = File::create(&lock_path).map_err(|e| cache_err(&lock_path, &e))?;
        lock.lock().map_err(|e| cache_err(&lock_path, &e))?;
        let dir = cache_root.join(&name);
        // `open_ext`, not `open_bare`: only it loads the cache's shallow boundary, without
        // which a push walks into history the cache never fetched.
        let flags = RepositoryOpenFlags::NO_SEARCH | RepositoryOpenFlags::BARE;
        let repo = match Repository::open_ext(&dir, flags, std::iter::empty::<&str>()) {
            Ok(repo) => repo,
            Err(_) => {
                let _ = std::fs::remove_dir_all(&dir); // a half-made cache from a killed run
                Repository::init_bare(&dir).map_err(|e| cache_err(&dir, &e.message()))?
            }
        };
        tracing::debug!(cache = %dir.display(), "opened the cache");
        Ok(Store {
            remote: remote.clone(),
            repo,
            direct: false,
            _lock: Some(lock),
            refs: RefCell::new(None),
            verdicts: Verdicts::open(cache_root),
        })
    }

    /// Creates a bare repository at a local remote's path (`ferry init`), with HEAD on
    /// `head_branch`.
    pub fn init_local(
        remote: &Remote,
        head_branch: &str,
        cache_root: &Path,
    ) -> Result<Store, StoreError> {
        let path = remote.path.as_ref().expect("a local remote");
        let repo = Repository::init_bare(path).map_err(git_err(remote))?;
        repo.set_head(&format!("refs/heads/{head_branch}"))
            .map_err(git_err(remote))?;
        Ok(Store {
            remote: remote.clone(),
            repo,
            direct: true,
            _lock: None,
            refs: RefCell::new(None),
            verdicts: Verdicts::open(cache_root),
        })
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The repository itself, for the modules that implement git-level rules on it (the
    /// embedded forge, the hook). Commands go through the methods below.
    pub(crate) fn repo(&self) -> &Repository {
        &self.repo
    }

    /// A string from git's configuration (the cache's, then the user's and the system's).
    pub fn config_string(&self, key: &str) -> Option<String> {
        self.repo.config().ok()?.get_string(key).ok()
    }

    /// The signature for the commits ferry makes here (see [`signature`]).
    pub fn signature(&self) -> Result<Signature<'static>, git2::Error> {
        signature(&self.repo)
    }

    /// The signature of `name`: the configured one when `name` is who git says is committing,
    /// else `name` with a placeholder address under the reserved `.invalid` domain (ferry knows
    /// only the name it was given, and claims no real address for anyone).
    pub fn signature_as(&self, name: &str) -> Result<Signature<'static>, git2::Error> {
        let default = self.signature()?;
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
        Signature::new(name, &email, &default.when())
    }

    pub fn is_local(&self) -> bool {
        self.direct
    }

    /// The branches of the remote and their tips: one ref advertisement, remembered until
    /// [`Store::refresh`] or an update.
    pub fn heads(&self) -> Result<BTreeMap<String, Oid>, StoreError> {
        Ok(self
            .refs()?
            .into_iter()
            .filter_map(|(name, id)| name.strip_prefix("refs/heads/").map(|b| (b.to_owned(), id)))
            .collect())
    }

    /// The remote's branches and ferry records (`refs/ferry/…`), by full name.
    pub fn refs(&self) -> Result<BTreeMap<String, Oid>, StoreError> {
        if let Some(refs) = self.refs.borrow().as_ref() {
            return Ok(refs.clone());
        }
        let refs = self.list_refs()?;
        *self.refs.borrow_mut() = Some(refs.clone());
        Ok(refs)
    }

    /// Forgets the last ref advertisement: the next read asks the remote again.
    pub fn refresh(&self) {
        self.refs.borrow_mut().take();
    }

    fn list_refs(&self) -> Result<BTreeMap<String, Oid>, StoreError> {
        let wanted =
            |name: &str| name.starts_with("refs/heads/") || name.starts_with("refs/ferry/");
        let mut refs = BTreeMap::new();
        if self.direct {
            for reference in self.repo.references().map_err(git_err(&self.remote))? {
                let reference = reference.map_err(git_err(&self.remote))?;
                if let (Ok(name), Some(id)) = (reference.name(), reference.target())
                    && wanted(name)
                {
                    refs.insert(name.to_owned(), id);
                }
            }
            return Ok(refs);
        }
        let mut remote = self
            .repo
            .remote_anonymous(&self.remote.url)
            .map_err(git_err(&self.remote))?;
        let connection = remote
            .connect_auth(Direction::Fetch, Some(auth::callbacks()), None)
            .map_err(|e| self.unreachable(&e))?;
        for head in connection.list().map_err(|e| self.unreachable(&e))? {
            if wanted(head.name()) {
                refs.insert(head.name().to_owned(), head.oid());
            }
        }
        Ok(refs)
    }

    fn unreachable(&self, e: &git2::Error) -> StoreError {
        let refused = matches!(
            e.code(),
            git2::ErrorCode::Auth | git2::ErrorCode::Certificate
        ) || e.class() == git2::ErrorClass::Ssl
            || e.message().contains("authentication failed")
            || e.message().contains("status code: 401")
            || e.message().contains("status code: 403")
            || e.message().contains("status code: 404");
        StoreError::Unreachable {
            remote: self.remote.shown.clone(),
            message: self.remote.scrub(e.message()),
            transient: !refused,
        }
    }

    /// Makes the tips of `branches` (and, with [`History::Full`], their history) readable,
    /// and returns each branch's tip (`None` when the remote lacks it).
    pub fn fetch(
        &self,
        branches: &[&str],
        history: History,
    ) -> Result<BTreeMap<String, Option<Oid>>, StoreError> {
        let names: Vec<String> = branches.iter().map(|b| format!("refs/heads/{b}")).collect();
        let fetched = self.fetch_refs(&names, history)?;
        Ok(branches
            .iter()
            .zip(names)
            .map(|(branch, name)| ((*branch).to_owned(), fetched.get(&name).copied().flatten()))
            .collect())
    }

    /// [`Store::fetch`] for refs by full name (`refs/heads/dev`, `refs/ferry/requests/3`).
    pub fn fetch_refs(
        &self,
        names: &[String],
        history: History,
    ) -> Result<BTreeMap<String, Option<Oid>>, StoreError> {
        let refs = self.refs()?;
        let tips: BTreeMap<String, Option<Oid>> = names
            .iter()
            .map(|n| (n.clone(), refs.get(n).copied()))
            .collect();
        if self.direct {
            return Ok(tips);
        }
        let odb = self.repo.odb().map_err(git_err(&self.remote))?;
        let unshallow = history == History::Full && self.repo.is_shallow();
        let wanted: Vec<String> = tips
            .iter()
            .filter_map(|(name, tip)| tip.map(|id| (name, id)))
            .filter(|(_, id)| unshallow || !odb.exists(*id))
            .map(|(name, _)| format!("+{name}:{}", tracking(name)))
            .collect();
        if !wanted.is_empty() {
            let mut options = FetchOptions::new();
            options.remote_callbacks(auth::callbacks());
            options.download_tags(git2::AutotagOption::None);
            options.depth(match history {
                History::Tip => 1,
                History::Full if unshallow => i32::MAX,
                History::Full => 0,
            });
            let mut remote = self
                .repo
                .remote_anonymous(&self.remote.url)
                .map_err(git_err(&self.remote))?;
            tracing::debug!(refspecs = ?wanted, ?history, "fetching");
            remote
                .fetch(&wanted, Some(&mut options), None)
                .map_err(|e| self.unreachable(&e))?;
        }
        let mut tips = tips;
        for (name, tip) in tips.iter_mut() {
            let Some(id) = *tip else { continue };
            if odb.exists(id) {
                continue;
            }
            // The ref moved between the listing and the fetch (another writer won a race):
            // the fetch brought its new tip, which is the one to work on.
            match self.repo.refname_to_id(&tracking(name)) {
                Ok(moved) if moved != id && odb.exists(moved) => {
                    tracing::debug!(%name, listed = %id, fetched = %moved, "moved while fetching");
                    *tip = Some(moved);
                }
                _ => {
                    return Err(StoreError::Git(format!(
                        "the fetch did not bring `{name}` at {id}"
                    )));
                }
            }
        }
        Ok(tips)
    }

    /// The tip of `branch`, fetched; an error when the remote has no such branch.
    pub fn tip(&self, branch: &str, history: History) -> Result<Oid, StoreError> {
        self.fetch(&[branch], history)?
            .remove(branch)
            .flatten()
            .ok_or_else(|| StoreError::NoBranch {
                remote: self.remote.shown.clone(),
                branch: branch.to_owned(),
            })
    }

    /// The desired-state files of `commit`, shown as `label:path`.
    pub fn tree_source(&self, commit: Oid, label: &str) -> Result<TreeSource, StoreError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git_err(&self.remote))?;
        TreeSource::read(&self.repo, &tree, label).map_err(git_err(&self.remote))
    }

    /// The tree of `commit`.
    pub fn tree_of(&self, commit: Oid) -> Result<Oid, StoreError> {
        self.repo
            .find_commit(commit)
            .map(|c| c.tree_id())
            .map_err(git_err(&self.remote))
    }

    /// The commit `id`, read whole (see [`CommitInfo`]).
    pub fn commit(&self, id: Oid) -> Result<CommitInfo, StoreError> {
        let err = git_err(&self.remote);
        let commit = self.repo.find_commit(id).map_err(&err)?;
        let tree = commit.tree().map_err(&err)?;
        let manifest = tree
            .get_name(crate::model::MANIFEST)
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .map(|e| e.id());
        Ok(CommitInfo {
            id,
            tree: tree.id(),
            parents: commit.parent_ids().collect(),
            author: Person::of(&commit.author()),
            committer: Person::of(&commit.committer()),
            message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
            manifest,
        })
    }

    /// The object `id` as git stores it (without its `TYPE SIZE` header): what its id hashes.
    pub fn raw_object(&self, id: Oid) -> Result<Vec<u8>, StoreError> {
        let err = git_err(&self.remote);
        let odb = self.repo.odb().map_err(&err)?;
        Ok(odb.read(id).map_err(&err)?.data().to_vec())
    }

    /// The bytes of blob `id`, or `None` when there is no such blob here.
    pub fn blob(&self, id: Oid) -> Option<Vec<u8>> {
        self.repo.find_blob(id).ok().map(|b| b.content().to_vec())
    }

    /// Whether `commit` has `ancestor` in its history (and is not it).
    pub fn descends_from(&self, commit: Oid, ancestor: Oid) -> bool {
        self.repo
            .graph_descendant_of(commit, ancestor)
            .unwrap_or(false)
    }

    /// The commit a revision such as `HEAD~2`, `abc1234` or `v1^` names, as `git rev-parse`
    /// reads it; `None` when it names no commit here.
    pub fn resolve_revision(&self, spec: &str) -> Option<Oid> {
        self.repo
            .revparse_single(spec)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id())
    }

    /// Whether the store is a bare repository on a path (where ferry's hook can be installed).
    pub fn is_bare(&self) -> bool {
        self.repo.is_bare()
    }

    /// Installs ferry's pre-receive hook in the repository (see [`super::hook::install`]).
    pub fn install_hook(&self) -> std::io::Result<std::path::PathBuf> {
        super::hook::install(&self.repo)
    }

    /// Points a bare repository's `HEAD` at `branch` when it points nowhere yet, so a clone
    /// checks that branch out.
    pub fn default_head(&self, branch: &str) {
        if self.repo.is_bare() && self.repo.head().is_err() {
            let _ = self.repo.set_head(&format!("refs/heads/{branch}"));
        }
    }

    /// The trees this build of ferry found valid before.
    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    /// The blob id of the file at `path` in `commit`, if there is one: equal ids, equal bytes.
    pub fn file_id(&self, commit: Oid, path: &str) -> Result<Option<Oid>, StoreError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git_err(&self.remote))?;
        match tree.get_path(Path::new(path)) {
            Ok(entry) if entry.kind() == Some(git2::ObjectType::Blob) => Ok(Some(entry.id())),
            Ok(_) => Ok(None),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_err(&self.remote)(e)),
        }
    }

    /// The paths whose content differs between the trees of commits `from` and `to`.
    pub fn changed_paths(&self, from: Oid, to: Oid) -> Result<Vec<String>, StoreError> {
        let err = git_err(&self.remote);
        let tree = |id: Oid| self.repo.find_commit(id).and_then(|c| c.tree());
        let (old, new) = (tree(from).map_err(&err)?, tree(to).map_err(&err)?);
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&old), Some(&new), None)
            .map_err(&err)?;
        Ok(diff
            .deltas()
            .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
            .map(|p| p.to_string_lossy().into_owned())
            .collect())
    }

    /// The bytes of the file at `path` in `commit`, if there is one.
    pub fn read_file(&self, commit: Oid, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git_err(&self.remote))?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(git_err(&self.remote)(e)),
        };
        match self.repo.find_blob(entry.id()) {
            Ok(blob) => Ok(Some(blob.content().to_vec())),
            Err(_) => Ok(None), // a directory
        }
    }

    /// Writes a commit whose tree is `parent`'s with `files` replaced or added (the empty
    /// tree when there is no parent). Objects only: no branch moves.
    pub fn write_commit(
        &self,
        parent: Option<Oid>,
        files: &[(String, Vec<u8>)],
        message: &str,
        author: &Signature<'_>,
        committer: &Signature<'_>,
    ) -> Result<Oid, StoreError> {
        self.write_commit_changes(parent, files, &[], message, author, committer)
    }

    /// [`Store::write_commit`] that also removes the files at `removed` (paths of `parent`'s
    /// tree; a path it lacks is ignored).
    pub fn write_commit_changes(
        &self,
        parent: Option<Oid>,
        files: &[(String, Vec<u8>)],
        removed: &[String],
        message: &str,
        author: &Signature<'_>,
        committer: &Signature<'_>,
    ) -> Result<Oid, StoreError> {
        let err = git_err(&self.remote);
        let parent = parent
            .map(|id| self.repo.find_commit(id))
            .transpose()
            .map_err(&err)?;
        let mut blobs = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            blobs.push((
                path.as_str(),
                super::loose::write_blob(&self.repo, bytes).map_err(&err)?,
            ));
        }
        let tree_id = match &parent {
            Some(commit) => {
                let mut update = TreeUpdateBuilder::new();
                let tree = commit.tree().map_err(&err)?;
                for path in removed {
                    if tree.get_path(Path::new(path)).is_ok() {
                        update.remove(path);
                    }
                }
                for (path, blob) in &blobs {
                    update.upsert(*path, *blob, FileMode::Blob);
                }
                update.create_updated(&self.repo, &tree).map_err(&err)?
            }
            None => write_tree(&self.repo, &blobs).map_err(&err)?,
        };
        let tree = self.repo.find_tree(tree_id).map_err(&err)?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        // Signed as git signs with ssh, when a key is configured (`FERRY_SIGNING_KEY`).
        match crate::sign::Signer::configured() {
            Ok(None) => self
                .repo
                .commit(None, author, committer, message, &tree, &parents)
                .map_err(&err),
            Ok(Some(signer)) => {
                let content = self
                    .repo
                    .commit_create_buffer(author, committer, message, &tree, &parents)
                    .map_err(&err)?;
                let signature = signer
                    .sign(&content)
                    .map_err(|e| StoreError::Signing(e.to_string()))?;
                let content = std::str::from_utf8(&content)
                    .map_err(|_| StoreError::Git("a commit that is not UTF-8".to_owned()))?;
                self.repo
                    .commit_signed(content, &signature, None)
                    .map_err(&err)
            }
            Err(e) => Err(StoreError::Signing(e.to_string())),
        }
    }

    /// `commit`'s signature (its `gpgsig` header; `None`: unsigned) and the bytes it signs.
    pub fn signature_of(&self, commit: Oid) -> Result<(Option<String>, Vec<u8>), StoreError> {
        signature_in(&self.repo, commit).map_err(git_err(&self.remote))
    }

    /// Moves branches on the remote, each only if it is still where the caller expects
    /// (`force` skips that check). Nothing is overwritten: a branch that moved is reported.
    pub fn update(
        &self,
        updates: &[RefUpdate],
        force: bool,
        message: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        self.refresh();
        if self.direct {
            return self.update_direct(updates, force, message);
        }
        let err = git_err(&self.remote);
        let mut refspecs = Vec::new();
        for u in updates {
            let local = outgoing(&u.refname);
            self.repo
                .reference(&local, u.new, true, "ferry: outgoing")
                .map_err(&err)?;
            refspecs.push(format!(
                "{}{local}:{}",
                if force || u.rewrite { "+" } else { "" },
                u.refname
            ));
        }
        let mut rejected: Vec<String> = Vec::new();
        let mut said = Vec::new();
        let pushed = {
            let mut callbacks = auth::callbacks();
            callbacks.push_update_reference(|refname, status| {
                if let Some(status) = status {
                    rejected.push(format!("{refname}: {status}"));
                }
                Ok(())
            });
            // What the remote's hooks print, as `git push` shows it (`remote: …`).
            callbacks.sideband_progress(|text| {
                said.extend_from_slice(text);
                true
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            let mut remote = self.repo.remote_anonymous(&self.remote.url).map_err(&err)?;
            tracing::debug!(?refspecs, "pushing");
            remote.push(&refspecs, Some(&mut options))
        };
        for u in updates {
            let _ = self
                .repo
                .find_reference(&outgoing(&u.refname))
                .and_then(|mut r| r.delete());
        }
        if pushed.is_ok() && rejected.is_empty() {
            for u in updates {
                let _ = self
                    .repo
                    .reference(&tracking(&u.refname), u.new, true, "ferry: pushed");
            }
            return Ok(UpdateOutcome::Updated);
        }
        // Refused: because a ref moved (retry on its new tip), or for another reason?
        let refs = self.refs()?;
        if !force {
            for u in updates {
                let actual = refs.get(&u.refname).copied();
                if actual != u.expected && actual != Some(u.new) {
                    return Ok(UpdateOutcome::Moved {
                        refname: u.refname.clone(),
                        actual,
                    });
                }
            }
            // Another writer pushed the very same commits (two agents writing the same
            // aggregate in the same second): what was to be written is there.
            if updates.iter().all(|u| refs.get(&u.refname) == Some(&u.new)) {
                return Ok(UpdateOutcome::Updated);
            }
        }
        // Only what the remote rejected is a refusal; a failure on this side is not.
        if let Err(e) = &pushed
            && rejected.is_empty()
        {
            return Err(match e.class() {
                git2::ErrorClass::Net | git2::ErrorClass::Http | git2::ErrorClass::Ssh => {
                    self.unreachable(e)
                }
                _ => StoreError::Git(self.remote.scrub(e.message())),
            });
        }
        let mut message = match pushed {
            Err(e) => e.message().to_owned(),
            Ok(()) => rejected.join("; "),
        };
        for line in String::from_utf8_lossy(&said)
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            message.push_str(&format!("\nremote: {line}"));
        }
        let message = self.remote.scrub(&message);
        Err(StoreError::Refused {
            remote: self.remote.shown.clone(),
            message,
        })
    }

    fn update_direct(
        &self,
        updates: &[RefUpdate],
        force: bool,
        message: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        // Like git's receive.denyCurrentBranch: moving a checked-out branch under a work
        // tree would leave the work tree out of step.
        if !self.repo.is_bare() {
            let head = self
                .repo
                .head()
                .ok()
                .and_then(|h| h.shorthand().ok().map(str::to_owned));
            if let Some(u) = updates.iter().find(|u| {
                head.as_ref()
                    .is_some_and(|h| u.refname == format!("refs/heads/{h}"))
            }) {
                return Err(StoreError::Refused {
                    remote: self.remote.shown.clone(),
                    message: format!(
                        "branch `{}` is checked out in its work tree; use a bare repository as the remote",
                        u.refname.trim_start_matches("refs/heads/")
                    ),
                });
            }
        }
        // As `git receive-pack` does: each ref checked against what the caller expects and
        // shown to the repository's pre-receive hook, and only then locked, checked again
        // against what the hook was shown, and moved, together. The hook (which may take
        // seconds) never runs with a lock held: an update killed in it (SIGKILL, OOM) leaves
        // no `.lock` behind that would refuse every later update of the ref.
        let err = git_err(&self.remote);
        let mut lines = String::new();
        let mut shown = Vec::with_capacity(updates.len());
        for u in updates {
            let actual = self.repo.refname_to_id(&u.refname).ok();
            if !force && actual != u.expected {
                tracing::debug!(refname = %u.refname, ?actual, "ref moved");
                return Ok(UpdateOutcome::Moved {
                    refname: u.refname.clone(),
                    actual,
                });
            }
            lines.push_str(&format!(
                "{} {} {}\n",
                actual.unwrap_or(Oid::ZERO_SHA1),
                u.new,
                u.refname
            ));
            shown.push(actual);
        }
        self.run_hook("pre-receive", &lines)?;
        let mut transaction = self.repo.transaction().map_err(&err)?;
        for (u, shown) in updates.iter().zip(&shown) {
            match transaction.lock_ref(&u.refname) {
                Ok(()) => {}
                Err(e) if e.code() == ErrorCode::Locked => {
                    return Ok(UpdateOutcome::Moved {
                        refname: u.refname.clone(),
                        actual: self.repo.refname_to_id(&u.refname).ok(),
                    });
                }
                Err(e) => return Err(err(e)),
            }
            // Moved while the hook judged the update: it judged another one.
            let actual = self.repo.refname_to_id(&u.refname).ok();
            if actual != *shown {
                tracing::debug!(refname = %u.refname, ?actual, "ref moved during the hook");
                return Ok(UpdateOutcome::Moved {
                    refname: u.refname.clone(),
                    actual,
                });
            }
        }
        let signature = signature(&self.repo).map_err(&err)?;
        for u in updates {
            transaction
                .set_target(&u.refname, u.new, Some(&signature), message)
                .map_err(&err)?;
        }
        transaction.commit().map_err(&err)?;
        // As git does after a push: the repository's post-receive hook (ferry's logs the push).
        if let Err(e) = self.run_hook("post-receive", &lines) {
            tracing::warn!("the update landed, but {e}");
        }
        Ok(UpdateOutcome::Updated)
    }

    /// Runs the repository's hook `name` (`pre-receive`, `post-receive`), if it has one, on
    /// `lines` (`OLD NEW REF`), as `git receive-pack` does: an update of a local path is
    /// judged and logged like any push.
    fn run_hook(&self, name: &str, lines: &str) -> Result<(), StoreError> {
        use std::io::Write;
        let hook = super::hook::dir(&self.repo).join(name);
        if !super::hook::is_executable(&hook) {
            return Ok(());
        }
        let refused = |message: String| StoreError::Refused {
            remote: self.remote.shown.clone(),
            message,
        };
        let mut child = std::process::Command::new(&hook)
            .current_dir(self.repo.path())
            .env("GIT_DIR", self.repo.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| refused(format!("cannot run its {name} hook: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(lines.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|e| refused(format!("its {name} hook failed: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let said: Vec<String> = String::from_utf8_lossy(&output.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&output.stdout).lines())
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("remote: {l}"))
            .collect();
        Err(refused(if said.is_empty() {
            format!("its {name} hook declined")
        } else {
            format!("{name} hook declined\n{}", said.join("\n"))
        }))
    }

    /// Whether `tip` is `commit` or has it in its history (both here).
    pub fn holds(&self, tip: Oid, commit: Oid) -> bool {
        tip == commit || self.descends_from(tip, commit)
    }

    /// Every commit reachable from `tip`, newest first (git's default walk order).
    pub fn ancestors(&self, tip: Oid) -> Result<Vec<Oid>, StoreError> {
        let err = git_err(&self.remote);
        let mut walk = self.repo.revwalk().map_err(&err)?;
        walk.push(tip).map_err(&err)?;
        Ok(walk.flatten().collect())
    }

    /// Commits of `tip`'s first-parent history, newest first.
    pub fn first_parents(&self, tip: Oid) -> Result<Vec<Oid>, StoreError> {
        let err = git_err(&self.remote);
        let mut walk = self.repo.revwalk().map_err(&err)?;
        walk.push(tip).map_err(&err)?;
        walk.simplify_first_parent().map_err(&err)?;
        walk.collect::<Result<Vec<_>, _>>().map_err(&err)
    }
}

/// Writes a tree holding `files` (paths with `/`), subtrees included.
fn write_tree(repo: &Repository, files: &[(&str, Oid)]) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(None)?;
    let mut subdirs: BTreeMap<&str, Vec<(&str, Oid)>> = BTreeMap::new();
    for (path, id) in files {
        match path.split_once('/') {
            Some((dir, rest)) => subdirs.entry(dir).or_default().push((rest, *id)),
            None => {
                builder.insert(*path, *id, FileMode::Blob.into())?;
            }
        }
    }
    for (dir, entries) in subdirs {
        let sub = write_tree(repo, &entries)?;
        builder.insert(dir, sub, FileMode::Tree.into())?;
    }
    builder.write()
}

/// A readable, unique directory name for a remote's cache.
fn cache_name(shown: &str) -> String {
    let without_scheme = shown.split_once("://").map_or(shown, |(_, rest)| rest);
    let without_user = without_scheme
        .rsplit_once('@')
        .map_or(without_scheme, |(_, rest)| rest);
    let readable: String = without_user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let digest = Sha256::digest(shown.as_bytes());
    let short = hex::encode(&digest[..6]);
    format!("{}-{short}", readable.trim_matches('_'))
}

/// The signature for commits ferry makes: `GIT_AUTHOR_NAME`/`GIT_AUTHOR_EMAIL`, else git's
/// `user.name`/`user.email`, else `ferry <ferry@localhost>`.
pub fn signature(repo: &Repository) -> Result<Signature<'static>, git2::Error> {
    let config = repo.config().ok();
    let get = |env: &str, key: &str| {
        std::env::var(env)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| config.as_ref().and_then(|c| c.get_string(key).ok()))
    };
    let name = get("GIT_AUTHOR_NAME", "user.name").unwrap_or_else(|| "ferry".to_owned());
    let email =
        get("GIT_AUTHOR_EMAIL", "user.email").unwrap_or_else(|| "ferry@localhost".to_owned());
    match std::env::var("GIT_AUTHOR_DATE")
        .ok()
        .and_then(|d| parse_git_date(&d))
    {
        Some(time) => Signature::new(&name, &email, &time),
        None => Signature::now(&name, &email),
    }
}

/// `@SECONDS +ZZZZ` or `SECONDS +ZZZZ` (git's internal format), for reproducible tests.
fn parse_git_date(text: &str) -> Option<git2::Time> {
    let text = text.trim().trim_start_matches('@');
    let (secs, zone) = text.split_once(' ').unwrap_or((text, "+0000"));
    let secs: i64 = secs.parse().ok()?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits = zone.trim_start_matches(['+', '-']);
    let minutes =
        digits.get(..2)?.parse::<i32>().ok()? * 60 + digits.get(2..4)?.parse::<i32>().ok()?;
    Some(git2::Time::new(secs, sign * minutes))
}

/// `commit`'s signature in `repo` (its `gpgsig` header; `None`: unsigned) and the bytes it
/// signs: the commit without that header.
pub fn signature_in(
    repo: &Repository,
    commit: Oid,
) -> Result<(Option<String>, Vec<u8>), git2::Error> {
    let odb = repo.odb()?;
    let object = odb.read(commit)?;
    if object.kind() != git2::ObjectType::Commit {
        return Err(git2::Error::from_str(&format!("{commit} is not a commit")));
    }
    let split = crate::sign::split_commit(object.data());
    Ok((split.signature, split.payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit's subject is what libgit2's `git_commit_summary` (and `git log --format=%s`)
    /// make of its message.
    #[test]
    fn a_subject_is_the_first_paragraph_on_one_line() {
        let subject = |message: &str| {
            CommitInfo {
                id: Oid::ZERO_SHA1,
                tree: Oid::ZERO_SHA1,
                parents: Vec::new(),
                author: Person {
                    name: String::new(),
                    email: String::new(),
                    time: 0,
                },
                committer: Person {
                    name: String::new(),
                    email: String::new(),
                    time: 0,
                },
                message: message.to_owned(),
                manifest: None,
            }
            .subject()
        };
        assert_eq!(subject("dev: bump web\n\nbody\n"), "dev: bump web");
        assert_eq!(subject("\n\none\n  two \n\nthree"), "one two");
        assert_eq!(subject("  lead  and  runs  "), "  lead  and  runs");
        assert_eq!(subject("a\t\nb"), "a b");
        assert_eq!(subject(""), "");
    }
}
