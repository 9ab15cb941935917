//! Large blobs written as loose objects, the way git writes them (`objects/ab/cdef…`: the
//! zlib-compressed `blob LEN\0` and the bytes, read-only), with the two costly halves at once:
//! the id (SHA-1 with collision detection, as git and libgit2 compute it) on one thread and
//! the compression (zlib-rs, at git's loose-object level) on another. libgit2 does both in
//! one pass on one thread, with a slower zlib: for a manifest of a few MiB that is most of
//! what a bump costs after validation. Small blobs go through libgit2 as before.

use std::io::Write;
use std::path::Path;

use git2::{Oid, Repository};
use sha1_checked::Digest;

/// Blobs at least this large take the two-thread path: below, a thread costs more than it
/// saves.
const LARGE: usize = 256 * 1024;

/// An object whose SHA-1 is part of a collision attack (git's collision detection).
#[derive(Debug, thiserror::Error)]
#[error("the {kind}'s SHA-1 is part of a collision attack")]
pub struct Collision {
    kind: String,
}

/// The id git gives an object of `kind` (`blob`, `tree`, `commit`) holding `bytes`: the SHA-1
/// of `KIND LEN\0` and the bytes, with the collision detection git and libgit2 hash with.
pub fn object_id(kind: &str, bytes: &[u8]) -> Result<Oid, Collision> {
    let mut hasher = sha1_checked::Sha1::new();
    hasher.update(format!("{kind} {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    let id = hasher.try_finalize();
    if id.has_collision() {
        return Err(Collision {
            kind: kind.to_owned(),
        });
    }
    Ok(Oid::from_bytes(id.hash().as_slice()).expect("a SHA-1 is an object id"))
}

/// Writes `bytes` as a blob of `repo`, returning its id; an object already there is not
/// written again.
pub(super) fn write_blob(repo: &Repository, bytes: &[u8]) -> Result<Oid, git2::Error> {
    if bytes.len() < LARGE {
        return repo.blob(bytes);
    }
    let header = format!("blob {}\0", bytes.len());
    let (id, compressed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| object_id("blob", bytes));
        let compressed = compress(header.as_bytes(), bytes);
        (hashing.join().expect("hashing does not panic"), compressed)
    });
    let id = id.map_err(|e| git2::Error::from_str(&format!("{e}: refused, as git refuses it")))?;
    if repo.odb()?.exists(id) {
        return Ok(id);
    }
    let compressed = compressed.map_err(|e| io_error("cannot compress the blob", &e))?;
    let hex = id.to_string();
    let dir = repo.commondir().join("objects").join(&hex[..2]);
    store(&dir, &hex[2..], &compressed).map_err(|e| {
        io_error(
            &format!("cannot write the object {hex} in {}", dir.display()),
            &e,
        )
    })?;
    Ok(id)
}

fn compress(header: &[u8], bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // Level 1 is git's `core.loosecompression` default: loose objects are packed later.
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(bytes.len() / 2),
        flate2::Compression::fast(),
    );
    encoder.write_all(header)?;
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Writes `compressed` to `dir/name` through a temporary file in `dir`, never replacing an
/// object (one that appeared meanwhile has the same content: its name is its hash).
fn store(dir: &Path, name: &str, compressed: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix("tmp_obj_")
        .tempfile_in(dir)?;
    temp.write_all(compressed)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o444))?;
    match temp.persist_noclobber(dir.join(name)) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.error),
    }
}

fn io_error(what: &str, err: &std::io::Error) -> git2::Error {
    git2::Error::from_str(&format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_blob_reads_back_as_git_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..LARGE * 2).map(|i| (i % 251) as u8).collect();
        let id = write_blob(&repo, &bytes).unwrap();
        assert_eq!(
            id,
            Oid::hash_object(git2::ObjectType::Blob, &bytes).unwrap()
        );
        assert_eq!(repo.find_blob(id).unwrap().content(), &bytes[..]);
        // Written once: the second write finds it.
        assert_eq!(write_blob(&repo, &bytes).unwrap(), id);
        let hex = id.to_string();
        let path = dir.path().join("objects").join(&hex[..2]).join(&hex[2..]);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert!(mode.readonly());
        // Nothing left over beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // git itself reads it.
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(dir.path())
            .args(["cat-file", "-p", &hex])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, bytes);
    }
}
