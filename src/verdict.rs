//! Verdicts: the trees this build of ferry has found valid, remembered in the cache.
//!
//! A desired state is a git tree, and its validity is a pure function of that tree and of the
//! validator. So once a tree has been validated whole, a change to one pin (what `ferry bump`
//! makes) needs only that pin checked: the manifest's schema and rules look at each artifact
//! on its own, and the apps the cross-file checks compare do not change. A verdict is a file
//! `verified/<build>/<tree id>` under the cache directory, holding the little a bump needs
//! from the environment files; and reading a verified tree needs no schema check, only the
//! typed parse (`validate::load_valid`, above this module). `<build>` is derived from ferry's version and its executable's
//! size and modification time, so an upgraded or rebuilt ferry starts afresh. A verdict only
//! saves work: a missing or unreadable one means a full validation, and failing to write one
//! is not an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::Oid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Layout, State};

/// What a valid tree's environments say that a bump needs, by environment name, and where
/// they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub layout: Layout,
    pub environments: BTreeMap<String, EnvSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSummary {
    pub allow_prerelease: bool,
}

impl Summary {
    pub fn of(state: &State) -> Summary {
        Summary {
            layout: state.layout,
            environments: state
                .environments
                .iter()
                .map(|(name, env)| {
                    (
                        name.clone(),
                        EnvSummary {
                            allow_prerelease: env.policy.allow_prerelease,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The verdicts of this build, in one cache directory.
#[derive(Debug, Clone)]
pub struct Verdicts {
    /// `None` when this build cannot be identified (no executable path): nothing is cached.
    dir: Option<PathBuf>,
}

impl Verdicts {
    pub fn open(cache_root: &Path) -> Verdicts {
        Verdicts {
            dir: build_id().map(|id| cache_root.join("verified").join(id)),
        }
    }

    /// The summary of `tree`, if this build found it valid before.
    pub fn get(&self, tree: Oid) -> Option<Summary> {
        let path = self.dir.as_ref()?.join(tree.to_string());
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remembers that `tree` is valid.
    pub fn record(&self, tree: Oid, summary: &Summary) {
        let Some(dir) = &self.dir else { return };
        let path = dir.join(tree.to_string());
        if path.exists() {
            return;
        }
        let result = (|| {
            std::fs::create_dir_all(dir)?;
            let temp = dir.join(format!(".{tree}.{}", std::process::id()));
            std::fs::write(&temp, serde_json::to_vec(summary)?)?;
            std::fs::rename(&temp, &path)
        })();
        if let Err(e) = result {
            tracing::debug!("cannot record the verdict {}: {e}", path.display());
        }
    }
}

/// This build of ferry: its version, and its executable's path, size and modification time.
fn build_id() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION"));
    hash.update(exe.as_os_str().as_encoded_bytes());
    hash.update(meta.len().to_le_bytes());
    hash.update(modified.as_nanos().to_le_bytes());
    let digest = hash.finalize();
    Some(hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let verdicts = Verdicts::open(dir.path());
        let tree = Oid::hash_object(git2::ObjectType::Tree, b"").unwrap();
        assert_eq!(verdicts.get(tree), None);
        let summary = Summary {
            layout: Layout::Native,
            environments: BTreeMap::from([(
                "dev".to_owned(),
                EnvSummary {
                    allow_prerelease: true,
                },
            )]),
        };
        verdicts.record(tree, &summary);
        assert_eq!(verdicts.get(tree), Some(summary));
        // A damaged verdict is no verdict.
        let path = verdicts.dir.as_ref().unwrap().join(tree.to_string());
        std::fs::write(path, b"{").unwrap();
        assert_eq!(verdicts.get(tree), None);
    }
}
