//! Where a deployment repository's files are read from.
//!
//! Validation reads through [`Source`], so the same checks run on a directory (`ferry
//! validate PATH`) and, later, on a commit of an environment branch read straight from git.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::json::MAX_FILE_SIZE;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("file is {:.1} MiB, larger than the {} MiB limit", *size as f64 / 1048576.0, MAX_FILE_SIZE / 1048576)]
    TooLarge { size: u64 },
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
}

/// Read access to the files of one version of a deployment repository.
pub trait Source: Sync {
    /// The bytes of the file at `path` (relative, `/`-separated); `Ok(None)` when absent.
    /// Files larger than [`MAX_FILE_SIZE`] are refused before they are read.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError>;

    /// The names of the files (not directories) in directory `dir` (`""` for the root),
    /// sorted; empty when the directory does not exist.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;

    /// How `path` is shown to the user in diagnostics.
    fn display(&self, path: &str) -> String;
}

/// A deployment repository checked out in a directory.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// Opens `root`, which must be a readable directory.
    pub fn open(root: &Path) -> io::Result<DirSource> {
        let meta = fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        fs::read_dir(root)?;
        Ok(DirSource {
            root: root.to_owned(),
        })
    }

    fn path(&self, path: &str) -> PathBuf {
        path.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.root.clone(), |p, s| p.join(s))
    }
}

impl Source for DirSource {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let full = self.path(path);
        let meta = match fs::metadata(&full) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        if meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory").into());
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(ReadError::TooLarge { size: meta.len() });
        }
        // A device or a FIFO (a link to `/dev/zero`, say) is refused, not read forever.
        match crate::files::read_regular(&full, MAX_FILE_SIZE) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Err(ReadError::TooLarge {
                size: MAX_FILE_SIZE + 1,
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(err) => return Err(err),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            // Follow symlinks: a linked file is a file. Anything else but a directory (a
            // device, a FIFO) is listed too, so that reading it says what it is.
            if fs::metadata(entry.path()).is_ok_and(|m| !m.is_dir())
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn display(&self, path: &str) -> String {
        if self.root == Path::new(".") || self.root.as_os_str().is_empty() {
            path.to_owned()
        } else {
            let root = self.root.to_string_lossy();
            format!("{}/{path}", root.trim_end_matches('/'))
        }
    }
}
