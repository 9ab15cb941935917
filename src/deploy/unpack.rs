//! Unpacking an artifact into a release directory: `.tar.gz`/`.tgz`, `.tar` and `.zip` are
//! unpacked, anything else is placed as one file. No entry may land outside the directory: an
//! absolute path, a `..`, a link pointing outside, a hard link, a device is refused, and so is
//! an archive that unpacks to more bytes or entries than the limits (a zip bomb). Each file is
//! hashed as it is written; the list is what drift detection compares against later. Making the
//! result durable is the caller's (one `syncfs` beats a `fsync` per file).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fetch::hex;

/// How an artifact is unpacked, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TarGz,
    Tar,
    Zip,
    /// Placed as one file, under its own name.
    File,
}

impl Kind {
    pub fn of(name: &str) -> Kind {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Kind::TarGz
        } else if name.ends_with(".tar") {
            Kind::Tar
        } else if name.ends_with(".zip") {
            Kind::Zip
        } else {
            Kind::File
        }
    }
}

/// What an archive may unpack to at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub bytes: u64,
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bytes: 16 << 30,
            entries: 1_000_000,
        }
    }
}

/// One file or link of a release, as unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the release directory, with `/`.
    pub path: String,
    /// Files: the content's SHA-256; links: empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    pub size: u64,
    /// Links: where the link points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub executable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("`{entry}`: {why}: refused")]
    Unsafe { entry: String, why: &'static str },
    #[error("it unpacks to more than {limit} {what}: refused (an archive bomb?)")]
    TooLarge { limit: u64, what: &'static str },
    #[error("not a valid archive: {0}")]
    Corrupt(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Unpacks `artifact` (named `name`, which decides the kind) into `dest`, which must not
/// exist yet; returns what it holds.
pub fn unpack(
    artifact: &Path,
    name: &str,
    dest: &Path,
    limits: Limits,
) -> Result<Vec<Entry>, UnpackError> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source: io::Error| UnpackError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir(dest).map_err(io_err(dest))?;
    let mut out = Out {
        dest: dest.to_owned(),
        limits,
        bytes: 0,
        entries: Vec::new(),
        links: Default::default(),
    };
    let file = File::open(artifact).map_err(io_err(artifact))?;
    match Kind::of(name) {
        Kind::TarGz => out.tar(tar::Archive::new(flate2::read::GzDecoder::new(
            io::BufReader::with_capacity(1 << 20, file),
        )))?,
        Kind::Tar => out.tar(tar::Archive::new(io::BufReader::with_capacity(
            1 << 20,
            file,
        )))?,
        Kind::Zip => out.zip(file)?,
        Kind::File => {
            let base = Path::new(name)
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .unwrap_or("artifact")
                .to_owned();
            out.file(&base, file, false)?;
        }
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out.entries)
}

struct Out {
    dest: PathBuf,
    limits: Limits,
    bytes: u64,
    entries: Vec<Entry>,
    /// The links unpacked so far: no later entry may go through one (a link to `.` would make
    /// a path's real place differ from what its name says).
    links: std::collections::HashSet<String>,
}

impl Out {
    fn count(&mut self) -> Result<(), UnpackError> {
        if self.entries.len() as u64 >= self.limits.entries {
            return Err(UnpackError::TooLarge {
                limit: self.limits.entries,
                what: "entries",
            });
        }
        Ok(())
    }

    /// The checked place of `entry` under the release directory.
    fn place(&self, entry: &str) -> Result<(String, PathBuf), UnpackError> {
        let unsafe_ = |why| UnpackError::Unsafe {
            entry: entry.to_owned(),
            why,
        };
        let mut parts = Vec::new();
        for component in Path::new(entry).components() {
            match component {
                Component::Normal(part) => parts.push(
                    part.to_str()
                        .ok_or_else(|| unsafe_("a name that is not UTF-8"))?
                        .to_owned(),
                ),
                Component::CurDir => {}
                Component::ParentDir => return Err(unsafe_("a path with `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_("an absolute path"));
                }
            }
        }
        if parts.is_empty() {
            return Err(unsafe_("an empty path"));
        }
        for end in 1..parts.len() {
            if self.links.contains(&parts[..end].join("/")) {
                return Err(unsafe_("a path through a link"));
            }
        }
        let relative = parts.join("/");
        Ok((relative.clone(), self.dest.join(relative)))
    }

    fn parent_dirs(&self, path: &Path) -> Result<(), UnpackError> {
        let parent = path.parent().expect("under dest");
        std::fs::create_dir_all(parent).map_err(|source| UnpackError::Io {
            path: parent.display().to_string(),
            source,
        })
    }

    fn file(
        &mut self,
        entry: &str,
        mut from: impl Read,
        executable: bool,
    ) -> Result<(), UnpackError> {
        self.count()?;
        let (relative, path) = self.place(entry)?;
        self.parent_dirs(&path)?;
        let io_err = |source| UnpackError::Io {
            path: path.display().to_string(),
            source,
        };
        // create_new: never through a link or over an earlier entry.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = from
                .read(&mut buffer)
                .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
            if n == 0 {
                break;
            }
            self.bytes += n as u64;
            if self.bytes > self.limits.bytes {
                return Err(UnpackError::TooLarge {
                    limit: self.limits.bytes,
                    what: "bytes",
                });
            }
            hash.update(&buffer[..n]);
            size += n as u64;
            file.write_all(&buffer[..n]).map_err(io_err)?;
        }
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err)?;
        }
        self.entries.push(Entry {
            path: relative,
            sha256: hex(&hash.finalize()),
            size,
            link: None,
            executable,
        });
        Ok(())
    }

    fn link(&mut self, entry: &str, target: &str) -> Result<(), UnpackError> {
        self.count()?;
        let (relative, path) = self.place(entry)?;
        // The target, from the link's directory, must stay inside the release.
        let mut depth = relative.matches('/').count() as i64;
        for component in Path::new(target).components() {
            match component {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(UnpackError::Unsafe {
                            entry: entry.to_owned(),
                            why: "a link that points outside the release",
                        });
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(UnpackError::Unsafe {
                        entry: entry.to_owned(),
                        why: "a link to an absolute path",
                    });
                }
            }
        }
        self.parent_dirs(&path)?;
        std::os::unix::fs::symlink(target, &path).map_err(|source| UnpackError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.links.insert(relative.clone());
        self.entries.push(Entry {
            path: relative,
            sha256: String::new(),
            size: 0,
            link: Some(target.to_owned()),
            executable: false,
        });
        Ok(())
    }

    fn dir(&mut self, entry: &str) -> Result<(), UnpackError> {
        if Path::new(entry)
            .components()
            .all(|c| matches!(c, Component::CurDir))
        {
            return Ok(()); // `./`: the release directory itself
        }
        let (_, path) = self.place(entry)?;
        std::fs::create_dir_all(&path).map_err(|source| UnpackError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    fn tar(&mut self, mut archive: tar::Archive<impl Read>) -> Result<(), UnpackError> {
        let corrupt = |e: io::Error| UnpackError::Corrupt(e.to_string());
        for entry in archive.entries().map_err(corrupt)? {
            let entry = entry.map_err(corrupt)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.file(&name, entry, executable)?
                }
                tar::EntryType::Directory => self.dir(&name)?,
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(corrupt)?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.link(&name, &target)?
                }
                // Metadata entries of tar formats, not files.
                tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => {}
                tar::EntryType::Link => {
                    return Err(UnpackError::Unsafe {
                        entry: name,
                        why: "a hard link",
                    });
                }
                _ => {
                    return Err(UnpackError::Unsafe {
                        entry: name,
                        why: "a device, FIFO or other special file",
                    });
                }
            }
        }
        Ok(())
    }

    fn zip(&mut self, file: File) -> Result<(), UnpackError> {
        let corrupt = |e: zip::result::ZipError| UnpackError::Corrupt(e.to_string());
        let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(corrupt)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(corrupt)?;
            let name = entry.name().map_err(corrupt)?.into_owned();
            let mode = entry.unix_mode();
            let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
            if entry.is_dir() {
                self.dir(&name)?;
            } else if is_link {
                let mut target = String::new();
                entry
                    .read_to_string(&mut target)
                    .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
                self.link(&name, &target)?;
            } else {
                let executable = mode.is_some_and(|m| m & 0o111 != 0);
                self.file(&name, &mut entry, executable)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn add(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32) {
        let mut header = tar::Header::new_gnu();
        // Written raw: the builder itself refuses `..` and absolute names, an attacker does not.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    fn symlink(builder: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_cksum();
        builder.append(&header, &[][..]).unwrap();
    }

    fn run(
        archive: &[u8],
        name: &str,
        limits: Limits,
    ) -> (tempfile::TempDir, Result<Vec<Entry>, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, archive).unwrap();
        let result = unpack(&file, name, &dir.path().join("release"), limits);
        (dir, result)
    }

    #[test]
    fn unpacks_a_tar_gz_with_modes_links_and_digests() {
        let archive = tar_gz(|b| {
            add(b, "bin/web", b"#!/bin/sh\necho hi\n", 0o755);
            add(b, "share/index.html", b"<h1>hi</h1>", 0o644);
            symlink(b, "current", "share/index.html");
        });
        let (dir, entries) = run(&archive, "web-1.0.0.tar.gz", Limits::default());
        let entries = entries.unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["bin/web", "current", "share/index.html"]);
        assert!(entries[0].executable);
        assert_eq!(entries[1].link.as_deref(), Some("share/index.html"));
        let release = dir.path().join("release");
        assert_eq!(
            std::fs::read(release.join("current")).unwrap(),
            b"<h1>hi</h1>"
        );
        assert_eq!(entries[2].sha256, hex(&Sha256::digest(b"<h1>hi</h1>")));
    }

    #[test]
    fn entries_that_escape_the_release_are_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                tar_gz(|b| add(b, "../evil", b"x", 0o644)),
                "a path with `..`",
            ),
            (
                tar_gz(|b| add(b, "/etc/evil", b"x", 0o644)),
                "an absolute path",
            ),
            (
                tar_gz(|b| symlink(b, "up", "../../etc/passwd")),
                "a link that points outside",
            ),
            (
                tar_gz(|b| symlink(b, "abs", "/etc/passwd")),
                "a link to an absolute path",
            ),
            (
                tar_gz(|b| symlink(b, "a/b/up", "../../..")),
                "a link that points outside",
            ),
            // `x` → `.` makes `x/x/x/y` really `y`, where `../../..` is outside.
            (
                tar_gz(|b| {
                    symlink(b, "x", ".");
                    symlink(b, "x/x/x/y", "../../..");
                }),
                "a path through a link",
            ),
            (
                tar_gz(|b| {
                    symlink(b, "x", ".");
                    add(b, "x/file", b"x", 0o644);
                }),
                "a path through a link",
            ),
        ];
        for (archive, why) in cases {
            let (dir, result) = run(&archive, "x.tgz", Limits::default());
            let err = result.unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
            assert!(!dir.path().join("evil").exists());
        }
        // A link inside is fine, even through a parent.
        let archive = tar_gz(|b| symlink(b, "a/b/ok", "../c"));
        assert!(run(&archive, "x.tgz", Limits::default()).1.is_ok());
    }

    #[test]
    fn zips_unpack_and_their_traversals_are_refused() {
        let zip = |names: &[(&str, &[u8])]| {
            let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in names {
                writer.start_file(*name, options).unwrap();
                writer.write_all(data).unwrap();
            }
            writer.finish().unwrap().into_inner()
        };
        let (dir, entries) = run(
            &zip(&[("app/run.sh", b"echo")]),
            "my-api-1.0.4.zip",
            Limits::default(),
        );
        assert_eq!(entries.unwrap()[0].path, "app/run.sh");
        assert!(dir.path().join("release/app/run.sh").exists());
        let (_, result) = run(&zip(&[("../../evil", b"x")]), "x.zip", Limits::default());
        assert!(result.unwrap_err().to_string().contains("a path with `..`"));
    }

    #[test]
    fn archive_bombs_stop_at_the_limits() {
        let zeros = vec![0u8; 1 << 20];
        let archive = tar_gz(|b| add(b, "big", &zeros, 0o644));
        let small = Limits {
            bytes: 1 << 19,
            entries: 10,
        };
        let err = run(&archive, "x.tgz", small).1.unwrap_err().to_string();
        assert!(err.contains("more than 524288 bytes"), "{err}");
        let archive = tar_gz(|b| {
            for i in 0..11 {
                add(b, &format!("f{i}"), b"x", 0o644);
            }
        });
        let err = run(&archive, "x.tgz", small).1.unwrap_err().to_string();
        assert!(err.contains("more than 10 entries"), "{err}");
    }

    #[test]
    fn anything_else_is_one_file() {
        let (dir, entries) = run(b"\x7fELF...", "tool-linux-amd64", Limits::default());
        assert_eq!(entries.unwrap()[0].path, "tool-linux-amd64");
        assert!(dir.path().join("release/tool-linux-amd64").is_file());
    }
}
