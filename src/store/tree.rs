//! A commit's tree as a [`Source`], so a branch is validated exactly like a directory.
//!
//! The files validation needs (`manifest.json`, `environments/*.json`, `*-env.json`) are read
//! into memory once: git2's repository handle cannot be shared across the threads validation
//! uses, and a change to validate before committing is then just a replaced file.

use std::collections::BTreeMap;
use std::io;

use git2::{ObjectType, Oid, Repository, Tree};

use crate::json::MAX_FILE_SIZE;
use crate::model::{ENVIRONMENTS_DIR, is_environment_file, is_top_state_file};
use crate::source::{ReadError, Source};

/// The deployment-repository files of one commit.
#[derive(Debug, Clone)]
pub struct TreeSource {
    /// Shown before each path: `dev` gives `dev:manifest.json`.
    label: String,
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    Blob(Vec<u8>),
    TooLarge(u64),
}

impl TreeSource {
    /// Reads the files of `tree` that describe the desired state.
    pub fn read(
        repo: &Repository,
        tree: &Tree<'_>,
        label: &str,
    ) -> Result<TreeSource, git2::Error> {
        let mut files = BTreeMap::new();
        let odb = repo.odb()?;
        let mut take = |path: String, id: Oid| -> Result<(), git2::Error> {
            let (size, _) = odb.read_header(id)?;
            let entry = if size as u64 > MAX_FILE_SIZE {
                Entry::TooLarge(size as u64)
            } else {
                Entry::Blob(repo.find_blob(id)?.content().to_vec())
            };
            files.insert(path, entry);
            Ok(())
        };
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            match entry.kind() {
                Some(ObjectType::Blob) if is_top_state_file(name) => {
                    take(name.to_owned(), entry.id())?;
                }
                Some(ObjectType::Tree) if name == ENVIRONMENTS_DIR => {
                    let sub = repo.find_tree(entry.id())?;
                    for e in sub.iter() {
                        if let (Some(n), Some(ObjectType::Blob)) = (e.name().ok(), e.kind())
                            && is_environment_file(n)
                        {
                            take(format!("{ENVIRONMENTS_DIR}/{n}"), e.id())?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(TreeSource {
            label: label.to_owned(),
            files,
        })
    }

    /// The same files with `path` replaced (or added): a change to validate before it is
    /// committed.
    pub fn with_file(mut self, path: &str, contents: Vec<u8>) -> TreeSource {
        self.files.insert(path.to_owned(), Entry::Blob(contents));
        self
    }

    /// Files read from elsewhere (a state artifact pulled from a registry).
    pub fn from_files(label: &str, files: BTreeMap<String, Vec<u8>>) -> TreeSource {
        TreeSource {
            label: label.to_owned(),
            files: files
                .into_iter()
                .map(|(path, bytes)| (path, Entry::Blob(bytes)))
                .collect(),
        }
    }

    /// Every file small enough to be read, by path.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.files
            .iter()
            .filter_map(|(path, entry)| match entry {
                Entry::Blob(bytes) => Some((path.clone(), bytes.clone())),
                Entry::TooLarge(_) => None,
            })
            .collect()
    }

    /// The bytes of a file, if present and not too large.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        match self.files.get(path) {
            Some(Entry::Blob(bytes)) => Some(bytes),
            _ => None,
        }
    }
}

impl Source for TreeSource {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ReadError> {
        match self.files.get(path) {
            None => Ok(None),
            Some(Entry::TooLarge(size)) => Err(ReadError::TooLarge { size: *size }),
            Some(Entry::Blob(bytes)) => Ok(Some(bytes.clone())),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Ok(self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }

    fn display(&self, path: &str) -> String {
        format!("{}:{path}", self.label)
    }
}
