//! The desired state of one environment as an OCI artifact (`ferry publish`, and the agent's
//! `--source oci://…`).
//!
//! One image manifest: a config blob (`application/vnd.ferry.state.config.v1+json`: the
//! environment, branch, commit and source) and one layer
//! (`application/vnd.ferry.state.content.v1.tar+gzip`: `manifest.json` and the environment
//! files, as they are at the commit). Packing is deterministic (sorted entries, fixed modes,
//! the commit's time), so the same commit always gives the same digest and publishing it
//! again changes nothing.
//!
//! A signed commit travels with its state: the config then holds the commit object and the
//! tree objects down to the state's files ([`Signed`]), so an agent with `--trusted-keys`
//! checks the signature, then that the layer's files hash to the blobs of that very tree
//! ([`check_signed`]): one signature covers the layer as it covers the branch.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::json;

use crate::json::MAX_FILE_SIZE;
use oci_client::manifest::OciDescriptor;

/// The artifact type: what tells a ferry state from any other artifact.
pub const ARTIFACT_TYPE: &str = "application/vnd.ferry.state.v1";
pub const CONFIG_TYPE: &str = "application/vnd.ferry.state.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.ferry.state.content.v1.tar+gzip";
/// The layer's file name for tools that save layers as files (oras).
pub const LAYER_TITLE: &str = "ferry-state.tar.gz";
/// At most this many bytes of files in a state artifact.
const MAX_STATE: u64 = 256 << 20;

/// What the artifact says of itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub environment: String,
    pub branch: String,
    /// The commit.
    pub revision: String,
    /// The deployment repository (credentials never included).
    pub source: String,
    /// The commit's time, RFC 3339.
    pub created: String,
    /// The commit and its trees, when the commit is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<Signed>,
}

/// A signed commit as git stores it, and the tree objects from its root to the state's files:
/// enough to recompute its tree id from a layer's files.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Signed {
    /// The commit object, its `gpgsig` header included (base64).
    pub commit: String,
    /// The tree objects by path (base64): `""` for the root, and `environments`.
    pub trees: BTreeMap<String, String>,
}

/// Why a signed commit's proof cannot be made or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub String);

impl From<&str> for ProofError {
    fn from(why: &str) -> ProofError {
        ProofError(why.to_owned())
    }
}

/// The id git gives an object of `kind` with `bytes` (SHA-1, with git's collision detection).
fn git_id(kind: &str, bytes: &[u8]) -> Result<String, ProofError> {
    crate::store::object_id(kind, bytes)
        .map(|id| id.to_string())
        .map_err(|e| ProofError(e.to_string()))
}

/// A tree object's entries: (mode, name, id).
fn tree_entries(bytes: &[u8]) -> Result<Vec<(String, String, String)>, ProofError> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a malformed tree")?;
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("a malformed tree")?;
        if nul < space || rest.len() < nul + 21 {
            return Err("a malformed tree".into());
        }
        let mode = String::from_utf8_lossy(&rest[..space]).into_owned();
        let name = String::from_utf8_lossy(&rest[space + 1..nul]).into_owned();
        entries.push((mode, name, hex::encode(&rest[nul + 1..nul + 21])));
        rest = &rest[nul + 21..];
    }
    Ok(entries)
}

/// Whether a tree entry's mode is a file's (what a state reads as one: regular, executable or
/// a link, as git reads each as a blob).
fn is_blob(mode: &str) -> bool {
    matches!(mode, "100644" | "100755" | "120000")
}

/// The proof a signed commit gives its state: the commit and the trees down to the state's
/// files, read with `read` (an object's bytes by id); `None` when the commit is unsigned.
pub fn signed_proof(
    commit: &[u8],
    read: &dyn Fn(&str) -> Result<Vec<u8>, ProofError>,
) -> Result<Option<Signed>, ProofError> {
    use base64::Engine;
    let split = crate::sign::split_commit(commit);
    let Some(tree) = split.tree.filter(|_| split.signature.is_some()) else {
        return Ok(None);
    };
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let root = read(&tree)?;
    let mut trees = BTreeMap::from([(String::new(), encode(&root))]);
    for (mode, name, id) in tree_entries(&root)? {
        if mode == "40000" && name == crate::validate::ENVIRONMENTS_DIR {
            trees.insert(name, encode(&read(&id)?));
        }
    }
    Ok(Some(Signed {
        commit: encode(commit),
        trees,
    }))
}

/// Checks a pulled state against the signed commit it carries: the commit is the artifact's
/// `revision`, its signature is good and by a trusted key, and the layer's `files` are exactly
/// the state files of the commit's tree, byte for byte. The verdict on the signature, or
/// why the state is not covered by one.
pub fn check_signed(
    signed: Option<&Signed>,
    revision: &str,
    files: &BTreeMap<String, Vec<u8>>,
    trusted: &crate::sign::AllowedSigners,
) -> Result<crate::sign::Verdict, crate::sign::Verdict> {
    use crate::sign::Verdict;
    use base64::Engine;
    let Some(signed) = signed else {
        return Err(Verdict::Unsigned);
    };
    let bad = |why: String| Verdict::Bad { why };
    let malformed = |e: ProofError| Verdict::Bad { why: e.0 };
    let decode = |what: &str, text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad(format!("the published {what} is not base64")))
    };
    let commit = decode("commit", &signed.commit)?;
    let id = git_id("commit", &commit).map_err(malformed)?;
    if id != revision {
        return Err(bad(format!(
            "the published commit is {id}, not the state's revision {revision}"
        )));
    }
    let split = crate::sign::split_commit(&commit);
    let verdict = trusted.verify(split.signature.as_deref(), &split.payload);
    if !verdict.is_trusted() {
        return Err(verdict);
    }
    let tree = split
        .tree
        .ok_or_else(|| bad("the published commit has no tree".to_owned()))?;
    // The trees, from the signed root down; then every state file, by its blob id.
    let tree_at = |path: &str, id: &str| -> Result<Vec<(String, String, String)>, Verdict> {
        let text = signed
            .trees
            .get(path)
            .ok_or_else(|| bad(format!("the published state lacks the tree `{path}/`")))?;
        let bytes = decode("tree", text)?;
        if git_id("tree", &bytes).map_err(malformed)? != id {
            return Err(bad(format!(
                "the published tree `{path}/` is not the signed commit's"
            )));
        }
        tree_entries(&bytes).map_err(malformed)
    };
    let mut expected = BTreeMap::new();
    for (mode, name, id) in tree_at("", &tree)? {
        if is_blob(&mode) && crate::model::is_top_state_file(&name) {
            expected.insert(name, id);
        } else if mode == "40000" && name == crate::validate::ENVIRONMENTS_DIR {
            for (mode, file, id) in tree_at(&name, &id)? {
                if is_blob(&mode) && crate::model::is_environment_file(&file) {
                    expected.insert(format!("{name}/{file}"), id);
                }
            }
        }
    }
    for (path, bytes) in files {
        match expected.remove(path) {
            Some(id) if git_id("blob", bytes).map_err(malformed)? == id => {}
            Some(_) => {
                return Err(bad(format!(
                    "the layer's `{path}` is not the signed commit's"
                )));
            }
            None => {
                return Err(bad(format!(
                    "the layer holds `{path}`, which the signed commit does not"
                )));
            }
        }
    }
    if let Some(path) = expected.keys().next() {
        return Err(bad(format!("the layer lacks the signed commit's `{path}`")));
    }
    Ok(verdict)
}

/// Why an artifact is not a ferry state ferry can use.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("its manifest is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("its manifest has no config descriptor: not an OCI image manifest")]
    NoConfig,
    #[error(
        "not a ferry state: its type is `{0}`, not `{ARTIFACT_TYPE}` (publish one with `ferry publish`)"
    )]
    NotAState(String),
    #[error("a ferry state has one layer, this one has {0}")]
    Layers(usize),
    #[error("its layer is `{0}`, not `{LAYER_TYPE}`")]
    LayerType(String),
    #[error("its layer of {0} bytes is too large")]
    LayerTooLarge(i64),
    #[error("its layer: {0}")]
    Unreadable(std::io::Error),
    #[error(
        "its layer holds `{0}`: a ferry state holds only `manifest.json` and environment files"
    )]
    Stray(String),
    #[error("its layer's `{0}` is a link or a special file, not a regular file")]
    NotAFile(String),
    #[error("its layer's `{0}` is too large")]
    FileTooLarge(String),
    #[error("its layer's `{path}`: {error}")]
    File { path: String, error: std::io::Error },
    #[error("its layer holds no `manifest.json`")]
    NoManifest,
}

/// A packed state, ready to push.
pub struct Packed {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub manifest: Vec<u8>,
    pub digest: String,
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(bytes))
}

/// Packs `files` (path → bytes) as the state artifact described by `meta`.
pub fn pack(files: &BTreeMap<String, Vec<u8>>, meta: &Meta, mtime: u64) -> Packed {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    for (path, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, bytes.as_slice())
            .expect("writing to memory");
    }
    let tar = tar.into_inner().expect("writing to memory");
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("writing to memory");
    let layer = gz.finish().expect("writing to memory");
    let config = serde_json::to_vec(meta).expect("serializes");
    let (config_digest, layer_digest) = (digest(&config), digest(&layer));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": super::MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": LAYER_TYPE,
            "digest": layer_digest,
            "size": layer.len(),
            "annotations": {"org.opencontainers.image.title": LAYER_TITLE},
        }],
        "annotations": {
            "org.opencontainers.image.created": meta.created,
            "org.opencontainers.image.revision": meta.revision,
            "org.opencontainers.image.source": meta.source,
            "org.opencontainers.image.ref.name": meta.environment,
            "dev.ferry.branch": meta.branch,
        },
    });
    let manifest = serde_json::to_vec(&manifest).expect("serializes");
    Packed {
        digest: digest(&manifest),
        config,
        config_digest,
        layer,
        layer_digest,
        manifest,
    }
}

/// A pulled manifest that is ferry's state: its config and layer descriptors and revision.
#[derive(Debug)]
pub struct Parsed {
    pub config: OciDescriptor,
    pub layer: OciDescriptor,
    /// `org.opencontainers.image.revision`.
    pub revision: Option<String>,
    pub source: Option<String>,
}

/// Checks that `manifest` (bytes as pulled) is a ferry state artifact.
pub fn parse(manifest: &[u8]) -> Result<Parsed, StateError> {
    let value: serde_json::Value = serde_json::from_slice(manifest).map_err(StateError::NotJson)?;
    let config: OciDescriptor = value
        .get("config")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .ok_or(StateError::NoConfig)?;
    if config.media_type != CONFIG_TYPE {
        let artifact_type = value
            .get("artifactType")
            .and_then(|t| t.as_str())
            .unwrap_or(&config.media_type);
        return Err(StateError::NotAState(artifact_type.to_owned()));
    }
    let layers: Vec<OciDescriptor> = value
        .get("layers")
        .cloned()
        .and_then(|l| serde_json::from_value(l).ok())
        .unwrap_or_default();
    let [layer] = <[OciDescriptor; 1]>::try_from(layers)
        .map_err(|layers| StateError::Layers(layers.len()))?;
    if layer.media_type != LAYER_TYPE {
        return Err(StateError::LayerType(layer.media_type));
    }
    if layer.size < 0 || layer.size as u64 > MAX_STATE {
        return Err(StateError::LayerTooLarge(layer.size));
    }
    let annotation = |name: &str| {
        value
            .pointer(&format!("/annotations/{}", name.replace('/', "~1")))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(Parsed {
        config,
        layer,
        revision: annotation("org.opencontainers.image.revision"),
        source: annotation("org.opencontainers.image.source"),
    })
}

/// The files of a state layer (`.tar.gz`): regular files only, at the paths a deployment
/// repository's state has (`manifest.json`, `environments/*.json`, `*-env.json`).
pub fn unpack(layer: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, StateError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(StateError::Unreadable)? {
        let mut entry = entry.map_err(StateError::Unreadable)?;
        let path = entry
            .path()
            .map_err(StateError::Unreadable)?
            .to_string_lossy()
            .into_owned();
        let hidden = path
            .strip_prefix(crate::model::ENVIRONMENTS_DIR)
            .and_then(|p| p.strip_prefix('/'))
            .is_some_and(|name| name.starts_with('.'));
        let allowed = crate::model::is_state_path(&path) && !hidden;
        if !allowed {
            return Err(StateError::Stray(path));
        }
        if !entry.header().entry_type().is_file() {
            return Err(StateError::NotAFile(path));
        }
        let size = entry.size();
        total += size;
        if size > MAX_FILE_SIZE || total > MAX_STATE {
            return Err(StateError::FileTooLarge(path));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|error| StateError::File {
                path: path.clone(),
                error,
            })?;
        files.insert(path, bytes);
    }
    if !files.contains_key(crate::validate::MANIFEST) {
        return Err(StateError::NoManifest);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            environment: "dev".into(),
            branch: "dev".into(),
            revision: "a".repeat(40),
            source: "/srv/deploy.git".into(),
            created: "2026-11-25T00:00:00Z".into(),
            signed: None,
        }
    }

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let files = BTreeMap::from([
            ("manifest.json".to_owned(), b"{}".to_vec()),
            ("environments/dev.json".to_owned(), b"{\"a\":1}".to_vec()),
        ]);
        let one = pack(&files, &meta(), 1_700_000_000);
        let two = pack(&files, &meta(), 1_700_000_000);
        assert_eq!(one.digest, two.digest);
        assert_eq!(one.manifest, two.manifest);
        let parsed = parse(&one.manifest).unwrap();
        assert_eq!(parsed.layer.digest, one.layer_digest);
        assert_eq!(parsed.revision.as_deref(), Some("a".repeat(40).as_str()));
        assert_eq!(unpack(&one.layer).unwrap(), files);
    }

    #[test]
    fn git_ids_and_trees_are_read_as_git_writes_them() {
        assert_eq!(
            git_id("tree", b"").unwrap(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        assert!(tree_entries(b"100644 a\0short").is_err());
    }

    #[test]
    fn other_artifacts_and_stray_files_are_refused() {
        let other = json!({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2}, "layers": []});
        let err = parse(&serde_json::to_vec(&other).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not a ferry state"), "{err}");
        let files = BTreeMap::from([("scripts/run.sh".to_owned(), b"x".to_vec())]);
        let packed = pack(&files, &meta(), 0);
        let err = unpack(&packed.layer).unwrap_err();
        assert!(err.to_string().contains("holds only"), "{err}");
    }
}
