//! The directory driver: each app's live path (`ROOT` + `deployment_path`) is a symbolic link
//! to an immutable release directory beside it (`.<name>.releases/<version>-<digest>`),
//! switched with an atomic rename. A release's contents are recorded when it is unpacked (each
//! file's digest, size and modification time), so drift is found by metadata first and by
//! content only where the metadata differs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deploy::unpack::{self, Entry, Limits};

/// Why an app's place or its live link cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A `deployment_path` that would leave the root.
    #[error("`deployment_path` {0}: nothing deployed")]
    Path(String),
    /// The live path is something else than a link: ferry does not replace it.
    #[error(
        "`{}` exists and is not a link to a release: ferry manages it as one; move it away",
        .0.display()
    )]
    NotALink(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReleaseError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError {
        let path = path.to_path_buf();
        move |source| ReleaseError::Io { path, source }
    }
}

/// Where one app lives on this host.
#[derive(Debug, Clone)]
pub struct Place {
    /// The live path: a link to the current release.
    pub live: PathBuf,
    /// The directory of its releases.
    pub releases: PathBuf,
}

impl Place {
    /// The place of an app deployed at `deployment_path` under `root`, which it never leaves:
    /// a path with a `.` or `..` segment, or `/` itself, is refused (validation refuses it
    /// too; this holds whatever the state's way here).
    pub fn new(root: &Path, deployment_path: &str) -> Result<Place, ReleaseError> {
        crate::validate::check_deployment_path(deployment_path)
            .map_err(|p| ReleaseError::Path(p.0))?;
        let live = root.join(deployment_path.trim_start_matches('/'));
        let name = live
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .expect("a checked deployment_path ends in a name");
        let releases = live
            .parent()
            .unwrap_or(root)
            .join(format!(".{name}.releases"));
        debug_assert!(live.starts_with(root) && releases.starts_with(root));
        Ok(Place { live, releases })
    }

    /// The release directory the live path points at, if it is one of this app's.
    pub fn current(&self) -> Result<Option<PathBuf>, ReleaseError> {
        match std::fs::symlink_metadata(&self.live) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReleaseError::io(&self.live)(e)),
            Ok(meta) if !meta.file_type().is_symlink() => {
                Err(ReleaseError::NotALink(self.live.clone()))
            }
            Ok(_) => {
                let target =
                    std::fs::read_link(&self.live).map_err(ReleaseError::io(&self.live))?;
                let target = if target.is_absolute() {
                    target
                } else {
                    self.live.parent().unwrap_or(Path::new("/")).join(target)
                };
                Ok(Some(target))
            }
        }
    }

    /// Removes the live link when it points at `release` (a first deploy that failed: no
    /// release that failed stays served).
    pub fn unlink_live(&self, release: &Path) -> Result<(), ReleaseError> {
        match std::fs::read_link(&self.live) {
            Ok(target) if target == release => {
                std::fs::remove_file(&self.live).map_err(ReleaseError::io(&self.live))?;
                sync_dir(self.live.parent().unwrap_or(Path::new("/")));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Points the live path at `release`, atomically (a new link renamed over the old one).
    pub fn switch(&self, release: &Path) -> Result<(), ReleaseError> {
        let parent = self.live.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(ReleaseError::io(parent))?;
        let next = parent.join(format!(
            ".{}.ferry-switch",
            self.live.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_file(&next);
        std::os::unix::fs::symlink(release, &next).map_err(ReleaseError::io(&next))?;
        std::fs::rename(&next, &self.live).map_err(ReleaseError::io(&self.live))?;
        sync_dir(parent);
        Ok(())
    }

    /// Unpacks `artifact` (named `name`) as a new release directory `id` (or `id~N` when that
    /// name is taken, as after drift), made durable before it is returned.
    pub fn unpack(
        &self,
        artifact: &Path,
        name: &str,
        id: &str,
        limits: Limits,
    ) -> Result<(PathBuf, Recorded), Unpacking> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| Unpacking::io(format!("{path}: {e}"), &e)
        };
        std::fs::create_dir_all(&self.releases).map_err(io(&self.releases))?;
        // What an interrupted unpack left behind is never a release: clear it.
        if let Ok(dir) = std::fs::read_dir(&self.releases) {
            for entry in dir.flatten() {
                if entry.file_name().to_string_lossy().contains(".unpacking-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let staging = self
            .releases
            .join(format!(".{id}.unpacking-{}", std::process::id()));
        let entries = match unpack::unpack(artifact, name, &staging, limits) {
            Ok(entries) => entries,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(match &e {
                    unpack::UnpackError::Io { source, .. } => Unpacking::io(e.to_string(), source),
                    _ => Unpacking::Refused(e.to_string()),
                });
            }
        };
        let recorded = Recorded::of(&staging, entries)?;
        sync_tree(&staging);
        let mut n = 0;
        let release = loop {
            let candidate = if n == 0 {
                self.releases.join(id)
            } else {
                self.releases.join(format!("{id}~{n}"))
            };
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        std::fs::rename(&staging, &release).map_err(io(&release))?;
        sync_dir(&self.releases);
        Ok((release, recorded))
    }

    /// Removes all but the `keep` newest releases, never `protect`ed ones.
    pub fn prune(&self, keep: usize, protect: &[&Path]) {
        let Ok(dir) = std::fs::read_dir(&self.releases) else {
            return;
        };
        let mut releases: Vec<(std::time::SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        releases.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, path) in releases.into_iter().skip(keep) {
            if !protect.iter().any(|p| *p == path) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Why an artifact could not become a release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unpacking {
    /// The archive itself is refused (unsafe, corrupt, over the limits): this revision fails.
    #[error("{0}")]
    Refused(String),
    /// The host could not write it (permissions): retried, as it may clear.
    #[error("{0}")]
    Io(String),
    /// The disk is full (or the quota reached): retried, with a longer backoff.
    #[error("{0}")]
    Full(String),
}

impl Unpacking {
    fn io(message: String, error: &std::io::Error) -> Unpacking {
        if disk_full(error) {
            Unpacking::Full(message)
        } else {
            Unpacking::Io(message)
        }
    }
}

/// Whether `error` says the disk is full (`ENOSPC`) or the quota reached (`EDQUOT`).
pub fn disk_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// The version of release directory `path` (`VERSION-DIGEST12`, or `…~N`).
pub fn version_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.split('~').next().unwrap_or_default();
    name.rsplit_once('-')
        .map_or(name.to_owned(), |(version, _)| version.to_owned())
}

/// Whether release directory `path` is release `id` (or a re-unpacked `id~N`).
pub fn is_release(path: &Path, id: &str) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n == id || n.strip_prefix(id).is_some_and(|r| r.starts_with('~')))
}

/// What a release held when it was unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub entries: Vec<Entry>,
    /// Each file's modification time (ns), for the cheap check.
    pub mtimes: BTreeMap<String, i128>,
}

impl Recorded {
    fn of(dir: &Path, entries: Vec<Entry>) -> Result<Recorded, Unpacking> {
        let mut mtimes = BTreeMap::new();
        for e in entries.iter().filter(|e| e.link.is_none()) {
            let meta = std::fs::symlink_metadata(dir.join(&e.path))
                .map_err(|err| Unpacking::io(format!("{}: {err}", e.path), &err))?;
            mtimes.insert(e.path.clone(), mtime(&meta));
        }
        Ok(Recorded { entries, mtimes })
    }

    /// How `release` differs from what was unpacked: modified, added and missing paths.
    /// Metadata (type, size, modification time) first; a file's content is hashed only when
    /// its metadata differs.
    pub fn drift(&self, release: &Path) -> Vec<String> {
        let mut found = BTreeMap::new();
        walk(release, release, &mut found);
        let mut out = Vec::new();
        for e in &self.entries {
            let Some(meta) = found.remove(&e.path) else {
                out.push(format!("{} is missing", e.path));
                continue;
            };
            let path = release.join(&e.path);
            match &e.link {
                Some(target) => {
                    let now = std::fs::read_link(&path).ok();
                    if !meta.file_type().is_symlink() || now.as_deref() != Some(Path::new(target)) {
                        out.push(format!("{} was changed", e.path));
                    }
                }
                None => {
                    let same_meta = meta.file_type().is_file()
                        && meta.len() == e.size
                        && self.mtimes.get(&e.path) == Some(&mtime(&meta));
                    if !same_meta && digest(&path).as_deref() != Some(e.sha256.as_str()) {
                        out.push(format!("{} was modified", e.path));
                    } else if e.executable != (meta.mode() & 0o111 != 0) {
                        out.push(format!("{}'s mode was changed", e.path));
                    }
                }
            }
        }
        out.extend(found.into_keys().map(|p| format!("{p} was added")));
        out
    }
}

fn mtime(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn digest(path: &Path) -> Option<String> {
    crate::digest::sha256_file(path).ok()
}

/// Every file and link under `dir` (not directories), by path relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, std::fs::Metadata>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.insert(relative.to_string_lossy().into_owned(), meta);
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Makes a freshly unpacked tree durable: one `syncfs` of its file system (every file and
/// directory written, at once: far cheaper than a `fsync` per file of a large release).
fn sync_tree(dir: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(d) = std::fs::File::open(dir) {
        // SAFETY: a valid open descriptor; syncfs only reads it.
        let failed = unsafe { libc::syncfs(d.as_raw_fd()) } != 0;
        if failed {
            tracing::warn!(
                "syncfs {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_never_leaves_the_root() {
        let root = Path::new("/srv/root");
        let place = Place::new(root, "/srv/web/").unwrap();
        assert_eq!(place.live, root.join("srv/web"));
        assert_eq!(place.releases, root.join("srv/.web.releases"));
        for bad in ["/../../outside/web", "/", "/srv/..", "/."] {
            let err = Place::new(root, bad).unwrap_err().to_string();
            assert!(err.contains("nothing deployed"), "{bad}: {err}");
        }
    }
}
