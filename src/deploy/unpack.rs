//! Unpacking an artifact into a release directory: `.tar.gz`/`.tgz`, `.tar` and `.zip` are
//! unpacked, anything else is placed as one file. No entry may land outside the directory: an
//! absolute path, a `..`, a path through a link, a link whose target leads outside (resolved
//! through every link unpacked before it, and all of them again once the archive is done), a
//! hard link, a device is refused, and so is an archive that unpacks to more bytes or entries
//! than the limits (a zip bomb). So is an archive this host could not unpack as it says: a name
//! that is not UTF-8 or too long, the same path twice. Each file is hashed as it is written; the
//! list is what drift detection compares against later. Making the result durable is the
//! caller's (one `syncfs` beats a `fsync` per file).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

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
        links: BTreeMap::new(),
        seen: HashSet::new(),
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
    // A link may lead elsewhere once later links exist (`a/q/../../x` is inside until `a/q`
    // becomes a link to `..`): every link is resolved again through all of them.
    for (link, target) in &out.links {
        resolve_link(&out.links, link, target).map_err(|e| UnpackError::Unsafe {
            entry: link.clone(),
            why: e.why(),
        })?;
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out.entries)
}

/// Longest name of one path component, as Linux file systems allow.
const NAME_MAX: usize = 255;
/// Longest path, as Linux allows.
const PATH_MAX: usize = 4095;
/// Links resolved at most in one lookup, as Linux (`ELOOP` past 40).
const MAX_HOPS: u32 = 40;

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("a link to an absolute path")]
    Absolute,
    #[error("a link that points outside the release")]
    Outside,
    #[error("a loop of links")]
    Loop,
}

impl LinkError {
    /// The reason, as [`UnpackError::Unsafe`] says it.
    pub fn why(self) -> &'static str {
        match self {
            LinkError::Absolute => "a link to an absolute path",
            LinkError::Outside => "a link that points outside the release",
            LinkError::Loop => "a loop of links",
        }
    }
}

/// Where the link at `link` (a path relative to the release, with `/`) leads to with target
/// `target`, resolved component by component as the kernel would, through the `links` of the
/// release (path → target): the path it reaches inside the release, or why it is refused (it
/// leads outside, it is absolute, it loops).
pub fn resolve_link(
    links: &BTreeMap<String, String>,
    link: &str,
    target: &str,
) -> Result<Vec<String>, LinkError> {
    let mut from: Vec<String> = link.split('/').map(str::to_owned).collect();
    from.pop();
    let mut hops = 0;
    walk(links, from, target, &mut hops)
}

fn walk(
    links: &BTreeMap<String, String>,
    mut at: Vec<String>,
    target: &str,
    hops: &mut u32,
) -> Result<Vec<String>, LinkError> {
    if target.starts_with('/') {
        return Err(LinkError::Absolute);
    }
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return Err(LinkError::Outside);
                }
            }
            name => {
                at.push(name.to_owned());
                if let Some(next) = links.get(&at.join("/")) {
                    *hops += 1;
                    if *hops > MAX_HOPS {
                        return Err(LinkError::Loop);
                    }
                    at.pop();
                    at = walk(links, at, next, hops)?;
                }
            }
        }
    }
    Ok(at)
}

struct Out {
    dest: PathBuf,
    limits: Limits,
    bytes: u64,
    entries: Vec<Entry>,
    /// The links unpacked so far, path → target: no later entry may go through one (a link to
    /// `.` would make a path's real place differ from what its name says), and each link's
    /// target is resolved through them.
    links: BTreeMap<String, String>,
    /// The files and links unpacked so far: an archive naming one twice is refused (which copy
    /// is the release?).
    seen: HashSet<String>,
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
        if parts.iter().any(|p| p.contains('\0')) {
            return Err(unsafe_("a name with a NUL byte"));
        }
        if parts.iter().any(|p| p.len() > NAME_MAX) {
            return Err(unsafe_("a name longer than 255 bytes"));
        }
        if parts.iter().map(|p| p.len() + 1).sum::<usize>() > PATH_MAX {
            return Err(unsafe_("a path longer than 4,095 bytes"));
        }
        for end in 1..parts.len() {
            if self.links.contains_key(&parts[..end].join("/")) {
                return Err(unsafe_("a path through a link"));
            }
        }
        let relative = parts.join("/");
        Ok((relative.clone(), self.dest.join(relative)))
    }

    fn parent_dirs(&self, entry: &str, path: &Path) -> Result<(), UnpackError> {
        let parent = path.parent().expect("under dest");
        std::fs::create_dir_all(parent).map_err(|e| written(entry, parent, e))
    }

    /// Takes `relative` for a file or a link: never twice.
    fn first(&mut self, entry: &str, relative: &str) -> Result<(), UnpackError> {
        if !self.seen.insert(relative.to_owned()) {
            return Err(UnpackError::Unsafe {
                entry: entry.to_owned(),
                why: "a duplicate entry",
            });
        }
        Ok(())
    }

    fn file(
        &mut self,
        entry: &str,
        mut from: impl Read,
        executable: bool,
    ) -> Result<(), UnpackError> {
        self.count()?;
        let (relative, path) = self.place(entry)?;
        self.first(entry, &relative)?;
        self.parent_dirs(entry, &path)?;
        let io_err = |source| UnpackError::Io {
            path: path.display().to_string(),
            source,
        };
        // create_new: never through a link or over an earlier entry.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| written(entry, &path, e))?;
        let mut hash = crate::digest::Hasher::new();
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
            sha256: hash.finish_hex(),
            size,
            link: None,
            executable,
        });
        Ok(())
    }

    fn link(&mut self, entry: &str, target: &str) -> Result<(), UnpackError> {
        self.count()?;
        let (relative, path) = self.place(entry)?;
        self.first(entry, &relative)?;
        if target.contains('\0') || target.len() > PATH_MAX {
            return Err(UnpackError::Unsafe {
                entry: entry.to_owned(),
                why: "a link target with a NUL byte or longer than 4,095 bytes",
            });
        }
        // The target, from the link's directory and through every link so far, must stay
        // inside the release (checked again once all links are known).
        resolve_link(&self.links, &relative, target).map_err(|e| UnpackError::Unsafe {
            entry: entry.to_owned(),
            why: e.why(),
        })?;
        self.parent_dirs(entry, &path)?;
        std::os::unix::fs::symlink(target, &path).map_err(|e| written(entry, &path, e))?;
        self.links.insert(relative.clone(), target.to_owned());
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
        let (relative, path) = self.place(entry)?;
        if self.seen.contains(&relative) {
            return Err(UnpackError::Unsafe {
                entry: entry.to_owned(),
                why: "a duplicate entry",
            });
        }
        std::fs::create_dir_all(&path).map_err(|e| written(entry, &path, e))
    }

    fn tar(&mut self, mut archive: tar::Archive<impl Read>) -> Result<(), UnpackError> {
        let corrupt = |e: io::Error| UnpackError::Corrupt(e.to_string());
        for entry in archive.entries().map_err(corrupt)? {
            let entry = entry.map_err(corrupt)?;
            let name = utf8(&entry.path_bytes(), "a name that is not UTF-8")?;
            let kind = entry.header().entry_type();
            let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.file(&name, entry, executable)?
                }
                tar::EntryType::Directory => self.dir(&name)?,
                tar::EntryType::Symlink => {
                    let target = match entry.link_name_bytes() {
                        Some(bytes) => utf8(&bytes, "a link target that is not UTF-8")
                            .map_err(|e| e.for_entry(&name))?,
                        None => String::new(),
                    };
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

    fn zip(&mut self, mut file: File) -> Result<(), UnpackError> {
        let corrupt = |e: zip::result::ZipError| UnpackError::Corrupt(e.to_string());
        let declared = declared_zip_entries(&mut file);
        let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(corrupt)?;
        // The zip crate keeps one entry per name: a name given twice would be unpacked once,
        // silently, with one of its contents. The central directory's count tells.
        if let Some(declared) = declared
            && declared != archive.len() as u64
        {
            return Err(UnpackError::Unsafe {
                entry: format!("{declared} entries for {} names", archive.len()),
                why: "a duplicate entry",
            });
        }
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(corrupt)?;
            // The bytes as written: a name without zip's UTF-8 flag would be read as CP437,
            // another name than the one its author meant.
            let name = utf8(entry.name_raw(), "a name that is not UTF-8")?;
            let mode = entry.unix_mode();
            let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
            if entry.is_dir() {
                self.dir(&name)?;
            } else if is_link {
                if entry.size() > PATH_MAX as u64 {
                    return Err(UnpackError::Unsafe {
                        entry: name,
                        why: "a link target with a NUL byte or longer than 4,095 bytes",
                    });
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(PATH_MAX as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
                let target = utf8(&bytes, "a link target that is not UTF-8")
                    .map_err(|e| e.for_entry(&name))?;
                self.link(&name, &target)?;
            } else {
                let executable = mode.is_some_and(|m| m & 0o111 != 0);
                self.file(&name, &mut entry, executable)?;
            }
        }
        Ok(())
    }
}

/// `bytes` as a name, or refused as `why`.
fn utf8(bytes: &[u8], why: &'static str) -> Result<String, UnpackError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| UnpackError::Unsafe {
            entry: String::from_utf8_lossy(bytes).into_owned(),
            why,
        })
}

impl UnpackError {
    /// The same refusal, said of `entry`.
    fn for_entry(self, entry: &str) -> UnpackError {
        match self {
            UnpackError::Unsafe { why, .. } => UnpackError::Unsafe {
                entry: entry.to_owned(),
                why,
            },
            other => other,
        }
    }
}

/// Why writing `entry` at `path` failed: the archive's fault when what it asks for cannot be
/// (a path taken, a file where a directory must be, a name too long here), which no retry
/// changes; else this host's (a full disk, permissions), which may clear.
fn written(entry: &str, path: &Path, error: io::Error) -> UnpackError {
    let why = match error.raw_os_error() {
        Some(libc::EEXIST) => "a duplicate entry, or a file and a directory at one path",
        Some(libc::ENOTDIR) | Some(libc::EISDIR) => "a file and a directory at one path",
        Some(libc::ENAMETOOLONG) => "a name longer than this file system allows",
        Some(libc::ELOOP) => "a path through a link",
        _ => {
            return UnpackError::Io {
                path: path.display().to_string(),
                source: error,
            };
        }
    };
    UnpackError::Unsafe {
        entry: entry.to_owned(),
        why,
    }
}

/// The number of entries a zip's end-of-central-directory record declares (`None`: not found,
/// or a ZIP64 archive, whose record says 0xFFFF). The file is left at its start.
fn declared_zip_entries(file: &mut File) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let len = file.metadata().ok()?.len();
    let tail = len.min(22 + 65_535);
    file.seek(SeekFrom::Start(len - tail)).ok()?;
    let mut buffer = vec![0u8; tail as usize];
    let read = file.read_exact(&mut buffer);
    file.seek(SeekFrom::Start(0)).ok()?;
    read.ok()?;
    let at = buffer
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x05, 0x06])
        .filter(|at| at + 22 <= buffer.len())?;
    let total = u16::from_le_bytes([buffer[at + 10], buffer[at + 11]]);
    (total != u16::MAX).then_some(u64::from(total))
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
        assert_eq!(entries[2].sha256, crate::digest::sha256_hex(b"<h1>hi</h1>"));
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

    /// A zip of files (`None`: a link to the text) built by the `zip` crate.
    fn zip_of(entries: &[(&str, Option<&[u8]>, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, data, target) in entries {
            match data {
                Some(data) => {
                    writer.start_file(*name, options).unwrap();
                    writer.write_all(data).unwrap();
                }
                None => writer.add_symlink(*name, *target, options).unwrap(),
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn links_are_resolved_through_the_links_before_them() {
        let links = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(l, t)| (l.to_string(), t.to_string()))
                .collect()
        };
        let none = links(&[]);
        assert_eq!(
            resolve_link(&none, "a/b/ok", "../c"),
            Ok(vec!["a".into(), "c".into()])
        );
        assert_eq!(resolve_link(&none, "up", "../x"), Err(LinkError::Outside));
        // `d/u` is the release itself: going up twice from it is outside, whatever the text.
        let chain = links(&[("d/u", "..")]);
        assert_eq!(
            resolve_link(&chain, "s", "d/u/d/u/d/u/../../etc/passwd"),
            Err(LinkError::Outside)
        );
        assert_eq!(resolve_link(&chain, "s", "d/u/d/u/x"), Ok(vec!["x".into()]));
        // Through a link that stays inside: fine, to where it really leads.
        let lib = links(&[("lib", "usr/lib")]);
        assert_eq!(
            resolve_link(&lib, "bin/tool", "../lib/tool.so"),
            Ok(vec!["usr".into(), "lib".into(), "tool.so".into()])
        );
        let cycle = links(&[("a", "b"), ("b", "a")]);
        assert_eq!(resolve_link(&cycle, "c", "a/x"), Err(LinkError::Loop));
        assert_eq!(resolve_link(&none, "x", "/etc"), Err(LinkError::Absolute));
    }

    #[test]
    fn link_chains_that_escape_are_refused_in_tars_and_zips() {
        let escape = "d/u/d/u/d/u/d/u/../../../../etc/passwd";
        let tar = tar_gz(|b| {
            symlink(b, "d/u", "..");
            symlink(b, "s", escape);
        });
        let zip = zip_of(&[("d/u", None, ".."), ("s", None, escape)]);
        // Inside until a later link makes `a/q` the release itself.
        let later = tar_gz(|b| {
            symlink(b, "s", "a/q/../../y");
            symlink(b, "a/q", "..");
        });
        let later_zip = zip_of(&[("s", None, "a/q/../../y"), ("a/q", None, "..")]);
        for (archive, name) in [
            (tar, "x.tgz"),
            (zip, "x.zip"),
            (later, "x.tgz"),
            (later_zip, "x.zip"),
        ] {
            let (dir, result) = run(&archive, name, Limits::default());
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("`s`: a link that points outside the release: refused"),
                "{name}: {err}"
            );
            assert!(!dir.path().join("release").join("s").exists());
        }
        // A chain that stays inside unpacks, in both.
        let ok = tar_gz(|b| {
            symlink(b, "d/u", "..");
            symlink(b, "s", "d/u/d/u/x");
        });
        assert!(run(&ok, "x.tgz", Limits::default()).1.is_ok());
        let ok = zip_of(&[("d/u", None, ".."), ("s", None, "d/u/d/u/x")]);
        assert!(run(&ok, "x.zip", Limits::default()).1.is_ok());
    }

    #[test]
    fn names_that_cannot_be_unpacked_as_written_are_refused() {
        // Not UTF-8, in a tar header and in a zip's (no UTF-8 flag: read as CP437 before).
        let raw = tar_gz(|b| {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..5].copy_from_slice(b"caf\xe9x");
            header.set_size(1);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            b.append(&header, &b"x"[..]).unwrap();
        });
        let mut zip = zip_of(&[("QQQQ.txt", Some(b"x"), "")]);
        let at: Vec<usize> = (0..zip.len() - 4)
            .filter(|&i| &zip[i..i + 4] == b"QQQQ")
            .collect();
        assert_eq!(at.len(), 2, "the local and the central header");
        for i in at {
            zip[i] = 0xe9;
        }
        // A name given twice in a zip: `b.txt` renamed `a.txt` in both headers.
        let mut twice = zip_of(&[("a.txt", Some(b"1"), ""), ("b.txt", Some(b"2"), "")]);
        let at: Vec<usize> = (0..twice.len() - 5)
            .filter(|&i| &twice[i..i + 5] == b"b.txt")
            .collect();
        assert_eq!(at.len(), 2, "the local and the central header");
        for i in at {
            twice[i] = b'a';
        }
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (raw, "x.tgz", "a name that is not UTF-8"),
            (zip, "x.zip", "a name that is not UTF-8"),
            (twice, "x.zip", "a duplicate entry"),
            (
                tar_gz(|b| {
                    add(b, "a", b"1", 0o644);
                    add(b, "a", b"2", 0o644);
                }),
                "x.tgz",
                "a duplicate entry",
            ),
            (
                tar_gz(|b| {
                    symlink(b, "a", "b");
                    add(b, "a", b"2", 0o644);
                }),
                "x.tgz",
                "a duplicate entry",
            ),
            (
                tar_gz(|b| {
                    add(b, "a", b"1", 0o644);
                    add(b, "a/b", b"2", 0o644);
                }),
                "x.tgz",
                "a file and a directory at one path",
            ),
            (
                tar_gz(|b| {
                    let mut header = tar::Header::new_gnu();
                    header.set_size(1);
                    header.set_mode(0o644);
                    header.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut header, "x".repeat(300), &b"x"[..])
                        .unwrap();
                }),
                "x.tgz",
                "a name longer than 255 bytes",
            ),
        ];
        for (archive, name, why) in cases {
            let (_, result) = run(&archive, name, Limits::default());
            let err = result.unwrap_err();
            assert!(
                matches!(err, UnpackError::Unsafe { .. }),
                "{why}: refused, not an I/O error to retry: {err}"
            );
            assert!(err.to_string().contains(why), "{err}");
        }
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
