//! Fetching an artifact into the content-addressed cache (`<root>/sha256/<hex>`), verifying
//! its SHA-256 while it streams. A download lands in `<root>/tmp/` first and is renamed into
//! place only once complete, verified and synced, so the cache never holds a partial or wrong
//! artifact; one whose digest differs is deleted and reported.
//!
//! Every download is bounded ([`Pace`]): in size (a `Content-Length` over the cap is refused
//! before a byte is read, and the bytes read are counted), in time (a total deadline, a minimum
//! rate, an idle timeout), and by the agent's stop (SIGTERM abandons it). What a killed
//! process left in `tmp/` is purged when the next one starts ([`Cache::purge_temporaries`]),
//! and what no release or pin needs any more is pruned ([`Cache::prune`]).

use crate::progress::Transfer;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;

use crate::deploy::spool::Spool;
use crate::digest::Hasher;
use crate::net::redirect::{self, MAX_REDIRECTS, RedirectError};
use crate::net::{self, NetError};
use crate::oci::{OciError, OciUrl, Registries};
use hyper::body::Bytes;

use crate::net::{Bounds, Pace};

/// The largest download when no `max_size` says otherwise.
pub const DEFAULT_MAX_SIZE: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "`{url}`: the download's SHA-256 is {actual} ({bytes} bytes), not the pinned {expected}: discarded"
    )]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
        bytes: u64,
    },
    #[error("`{url}`: HTTP {status}")]
    Status { url: String, status: u16 },
    /// Larger than the app's `max_size`, by its `Content-Length`, its declared size or the
    /// bytes that came: refused, the download discarded.
    #[error(
        "`{url}`: larger than the {limit} bytes allowed ({how}): refused (raise the app's `max_size` if it is right)"
    )]
    TooLarge {
        url: String,
        limit: u64,
        how: String,
    },
    /// The artifact could not be had: the server could not be reached, broke off, was too
    /// slow, or redirected where ferry does not follow; a `file://` that cannot be read.
    #[error("`{url}`: {why}")]
    Transfer { url: String, why: TransferError },
    #[error("`{url}`: only https://, http://, file:// and oci:// artifacts are fetched")]
    Scheme { url: String },
    /// An `oci://` artifact that cannot be deployed as it is (not a single layer, a manifest
    /// digest that is not the pinned one).
    #[error("`{url}`: {message}")]
    Artifact { url: String, message: String },
    #[error("the artifact cache `{path}`: {source}")]
    Cache { path: String, source: io::Error },
}

/// Why a transfer did not happen: the network, or the registry (unreachable, or refusing).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Registry(#[from] OciError),
}

impl TransferError {
    pub fn is_transient(&self) -> bool {
        match self {
            TransferError::Net(e) => e.is_transient(),
            TransferError::Registry(e) => e.is_transient(),
        }
    }
}

impl FetchError {
    /// Whether trying again later may succeed without anyone changing anything: the server
    /// could not be reached or answered 5xx (or 429).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Transfer { why, .. } => why.is_transient(),
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The artifact cache in a directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// How long a download may go on.
    pub bounds: Bounds,
    /// The cache's lock, held while this process uses it (see [`Cache::purge_temporaries`]).
    lock: Option<std::sync::Arc<File>>,
    /// Bytes downloaded into this cache by this process.
    fetched: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The registries `oci://` artifacts are pulled from.
    registries: std::sync::Arc<Registries>,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache {
            root: root.into(),
            bounds: Bounds::default(),
            lock: None,
            fetched: Default::default(),
            registries: Default::default(),
        }
    }

    /// The same cache, pulling `oci://` artifacts through `registries`.
    pub fn with_registries(mut self, registries: std::sync::Arc<Registries>) -> Cache {
        self.registries = registries;
        self
    }

    /// The artifact's file name, which says how it is unpacked: the last segment of its URL,
    /// or for an `oci://` artifact, its layer's title (or a name its media type implies).
    pub fn file_name(&self, url: &str, sha256: &str) -> String {
        if url.starts_with("oci://")
            && let Ok(name) = std::fs::read_to_string(self.name_path(sha256))
        {
            return name;
        }
        url.rsplit('/').next().unwrap_or(url).to_owned()
    }

    /// Keeps `bytes`, already verified to hash to `sha256`, in the cache (best effort: a
    /// cache that cannot be written is only slower).
    pub fn store(&self, sha256: &str, bytes: &[u8]) {
        let path = self.path(sha256);
        let temp = self
            .root
            .join("tmp")
            .join(format!("{sha256}.{}", std::process::id()));
        let stored = std::fs::create_dir_all(self.root.join("tmp"))
            .and_then(|()| std::fs::create_dir_all(self.root.join("sha256")))
            .and_then(|()| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = stored {
            let _ = std::fs::remove_file(&temp);
            tracing::debug!("cannot keep {sha256} in the cache: {e}");
        }
    }

    /// A pace for one download into this cache.
    pub fn pace(&self) -> Pace {
        Pace::new(self.bounds)
    }

    /// Takes the cache's lock (an exclusive `flock` on `lock`, held as long as this value and
    /// its clones live) and deletes the temporaries a killed process left in `tmp/`: all of
    /// them when the lock is had (no other process uses this cache), else those whose process
    /// is gone. The number deleted.
    pub fn purge_temporaries(&mut self) -> usize {
        use std::os::fd::AsRawFd;
        let _ = std::fs::create_dir_all(&self.root);
        let locked = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))
            .ok()
            // SAFETY: flock on a descriptor this owns; it only sets an advisory lock.
            .filter(|f| unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0);
        let mine = locked.is_some();
        if let Some(file) = locked {
            self.lock = Some(std::sync::Arc::new(file));
        }
        let Ok(dir) = std::fs::read_dir(self.root.join("tmp")) else {
            return 0;
        };
        let mut purged = 0;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('.').next().and_then(|p| p.parse::<i32>().ok());
            let stale = mine || pid.is_none_or(|pid| !alive(pid));
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                tracing::info!(
                    "removed `{}`, left by a process that was killed",
                    entry.path().display()
                );
                purged += 1;
            }
        }
        purged
    }

    /// Deletes the cached artifacts `needed` says no (by digest), with their names: the bytes
    /// freed.
    pub fn prune(&self, needed: &dyn Fn(&str) -> bool) -> u64 {
        let Ok(dir) = std::fs::read_dir(self.root.join("sha256")) else {
            return 0;
        };
        let mut freed = 0;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = name.strip_suffix(".name").unwrap_or(&name);
            if digest.len() != 64 || needed(digest) {
                continue;
            }
            let size = entry.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(entry.path()).is_ok() {
                freed += size;
            }
        }
        freed
    }

    fn name_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(format!("{sha256}.name"))
    }

    /// Bytes downloaded into this cache by this process.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the artifact with this digest is (or would be) cached.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// The cached artifact `sha256`, fetched from `url` first if the cache lacks it: at most
    /// `max_size` bytes.
    pub fn get(&self, url: &str, sha256: &str, max_size: u64) -> Result<PathBuf, FetchError> {
        let path = self.path(sha256);
        if path.is_file() {
            return Ok(path);
        }
        let cache_err = |path: &Path, source: io::Error| FetchError::Cache {
            path: path.display().to_string(),
            source,
        };
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(|e| cache_err(&tmp_dir, e))?;
        std::fs::create_dir_all(path.parent().expect("sha256 dir"))
            .map_err(|e| cache_err(&path, e))?;
        let temp = tmp_dir.join(format!("{sha256}.{}", std::process::id()));
        let file = File::create(&temp).map_err(|e| cache_err(&temp, e))?;
        let mut sink = Sink {
            file: Some(Spool::start(file).map_err(|e| cache_err(&temp, e))?),
            path: temp.clone(),
            url: url.to_owned(),
            limit: max_size,
            hash: Hasher::new(),
            bytes: 0,
            pinned: false,
            progress: Transfer::start(&format!("fetching {}", short_url(url))),
        };
        let fetched = if url.starts_with("oci://") {
            self.fetch_oci(url, sha256, &mut sink).and_then(|name| {
                std::fs::write(self.name_path(sha256), name)
                    .map_err(|e| cache_err(&self.name_path(sha256), e))
            })
        } else {
            fetch_url(url, &mut sink, &mut self.pace())
        };
        sink.progress.finish();
        let finished = fetched.and_then(|()| {
            if let Some(spool) = sink.file.take() {
                spool.finish().map_err(|e| cache_err(&temp, e))?;
            }
            let actual = sink.hash.finish_hex();
            if actual != sha256 && !sink.pinned {
                return Err(FetchError::Mismatch {
                    url: url.to_owned(),
                    expected: sha256.to_owned(),
                    actual,
                    bytes: sink.bytes,
                });
            }
            std::fs::rename(&temp, &path).map_err(|e| cache_err(&path, e))?;
            self.fetched
                .fetch_add(sink.bytes, std::sync::atomic::Ordering::Relaxed);
            if let Ok(dir) = File::open(path.parent().expect("sha256 dir")) {
                let _ = dir.sync_all();
            }
            Ok(path)
        });
        if finished.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        finished
    }
}

impl Cache {
    /// Pulls the single layer of the `oci://` artifact whose manifest digest is `sha256` into
    /// `sink`: its name (for unpacking).
    fn fetch_oci(&self, url: &str, sha256: &str, sink: &mut Sink) -> Result<String, FetchError> {
        let artifact = |message: String| FetchError::Artifact {
            url: url.to_owned(),
            message,
        };
        let oci = OciUrl::parse(url).map_err(|e| artifact(e.to_string()))?;
        let registry = self
            .registries
            .get(&oci.registry)
            .map_err(|e| from_oci(url, e))?;
        let (manifest, digest) = registry.manifest(&oci).map_err(|e| from_oci(url, e))?;
        if digest != format!("sha256:{sha256}") {
            return Err(artifact(format!(
                "its manifest digest is {digest}, not the pinned sha256:{sha256} (for an oci:// artifact, `sha256` pins the manifest digest): nothing deployed"
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(&manifest)
            .map_err(|e| artifact(format!("its manifest is not JSON: {e}")))?;
        let layers: Vec<oci_client::manifest::OciDescriptor> = value
            .get("layers")
            .cloned()
            .and_then(|l| serde_json::from_value(l).ok())
            .unwrap_or_default();
        let [layer] = <[_; 1]>::try_from(layers).map_err(|layers: Vec<_>| {
            artifact(format!(
                "it has {} layers: ferry deploys single-layer artifacts (one file or archive)",
                layers.len()
            ))
        })?;
        let name = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.title"))
            .and_then(|t| t.rsplit('/').next())
            .filter(|t| !t.is_empty() && *t != "." && *t != "..")
            .map(str::to_owned)
            .unwrap_or_else(|| name_for(&layer.media_type, &oci.repository));
        if layer.size < 0 || layer.size as u64 > sink.limit {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                limit: sink.limit,
                how: format!("its layer says {} bytes", layer.size),
            });
        }
        sink.progress.total(layer.size as u64);
        // The registry streams no more than the layer's declared size (checked as it comes),
        // which is within the cap.
        let mut unwritten = None;
        registry
            .blob(&oci, &layer, &mut self.pace(), &mut |data| {
                sink.progress.inc(data.len() as u64);
                match &mut sink.file {
                    Some(file) => file.write(Bytes::copy_from_slice(data)).inspect_err(|e| {
                        unwritten = Some(io::Error::new(e.kind(), e.to_string()));
                    }),
                    None => Ok(()),
                }
            })
            .map_err(|e| match unwritten.take() {
                // This host could not write it (a full disk): not the artifact's fault.
                Some(source) => FetchError::Cache {
                    path: sink.path.display().to_string(),
                    source,
                },
                None => from_oci(url, e),
            })?;
        // The file holds the layer (verified against its descriptor, which the pinned manifest
        // digest covers): what the cache checks from here is the pin.
        sink.bytes = layer.size.max(0) as u64;
        sink.pinned = true;
        Ok(name)
    }
}

/// A file name for a layer without a title: its media type's extension.
fn name_for(media_type: &str, repository: &str) -> String {
    let base = repository.rsplit('/').next().unwrap_or(repository);
    let extension = if media_type.ends_with("tar+gzip") || media_type.ends_with("gzip") {
        ".tar.gz"
    } else if media_type.ends_with(".tar") || media_type.ends_with("x-tar") {
        ".tar"
    } else if media_type.ends_with("zip") {
        ".zip"
    } else {
        ""
    };
    format!("{base}{extension}")
}

/// A registry's error, as the fetch errors the agent tells apart.
fn from_oci(url: &str, error: OciError) -> FetchError {
    match error {
        // Retried, as an artifact server that is down or refuses: the operator may fix it.
        OciError::Unreachable { .. } | OciError::Refused { .. } => FetchError::Transfer {
            url: url.to_owned(),
            why: error.into(),
        },
        OciError::Missing { .. } => FetchError::Status {
            url: url.to_owned(),
            status: 404,
        },
        other => FetchError::Artifact {
            url: url.to_owned(),
            message: other.to_string(),
        },
    }
}

/// Whether process `pid` is alive (a process of another user counts).
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) } == 0;
    sent || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Where a download goes: the file (none when only its digest is wanted), hashed as it is
/// written, at most `limit` bytes.
struct Sink {
    file: Option<Spool>,
    /// The file's path, for errors.
    path: PathBuf,
    /// What is downloaded, for errors.
    url: String,
    limit: u64,
    hash: Hasher,
    bytes: u64,
    /// Verified by other means than the hash of its bytes (an `oci://` layer).
    pinned: bool,
    /// On a terminal, the transfer's bar.
    progress: Transfer,
}

impl Sink {
    fn write(&mut self, data: Bytes) -> Result<(), FetchError> {
        if self.bytes + data.len() as u64 > self.limit {
            return Err(FetchError::TooLarge {
                url: self.url.clone(),
                limit: self.limit,
                how: "more bytes came".to_owned(),
            });
        }
        self.hash.update(&data);
        self.bytes += data.len() as u64;
        self.progress.inc(data.len() as u64);
        match &mut self.file {
            Some(file) => file.write(data).map_err(|source| FetchError::Cache {
                path: self.path.display().to_string(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// A declared length over the limit: refused before anything is read.
    fn expect(&mut self, length: u64, how: &str) -> Result<(), FetchError> {
        if length > self.limit {
            return Err(FetchError::TooLarge {
                url: self.url.clone(),
                limit: self.limit,
                how: format!("{how} says {length} bytes"),
            });
        }
        self.progress.total(length);
        Ok(())
    }
}

/// The SHA-256 of the artifact at `url` (`https://`, `http://` or `file://`) and its size,
/// computed from its bytes as they stream in, the same way [`Cache::get`] verifies a pinned
/// one; nothing is kept. What `ferry migrate` pins a bare file name with: never a listing's or
/// a `.sha256` file's word for it.
pub fn digest(url: &str, idle_timeout: Duration) -> Result<(String, u64), FetchError> {
    let mut sink = Sink {
        file: None,
        path: PathBuf::new(),
        url: url.to_owned(),
        limit: DEFAULT_MAX_SIZE,
        hash: Hasher::new(),
        bytes: 0,
        pinned: false,
        progress: Transfer::start(&format!("hashing {}", short_url(url))),
    };
    let mut pace = Pace::new(Bounds {
        idle: idle_timeout,
        ..Bounds::default()
    });
    let fetched = fetch_url(url, &mut sink, &mut pace);
    sink.progress.finish();
    fetched?;
    Ok((sink.hash.finish_hex(), sink.bytes))
}

/// Streams the `file://`, `https://` or `http://` artifact at `url` into `sink`.
fn fetch_url(url: &str, sink: &mut Sink, pace: &mut Pace) -> Result<(), FetchError> {
    if let Some(rest) = url.strip_prefix("file://") {
        fetch_file(rest, sink)
    } else if url.starts_with("https://") || url.starts_with("http://") {
        fetch_http(url, sink, pace)
    } else {
        Err(FetchError::Scheme {
            url: url.to_owned(),
        })
    }
}

fn fetch_file(rest: &str, sink: &mut Sink) -> Result<(), FetchError> {
    let url = sink.url.clone();
    let transfer = |e: io::Error| FetchError::Transfer {
        url: url.clone(),
        why: NetError::Io(e).into(),
    };
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    // A regular file only: a FIFO would hang the agent, a device never end.
    let mut file = crate::files::open_regular(std::path::Path::new(path)).map_err(transfer)?;
    if let Ok(meta) = file.metadata() {
        sink.expect(meta.len(), "its size")?;
    }
    loop {
        let mut buffer = vec![0u8; 1 << 20];
        let n = file.read(&mut buffer).map_err(transfer)?;
        if n == 0 {
            return Ok(());
        }
        buffer.truncate(n);
        sink.write(Bytes::from(buffer))?;
    }
}

fn fetch_http(url: &str, sink: &mut Sink, pace: &mut Pace) -> Result<(), FetchError> {
    let transfer = |why: NetError| FetchError::Transfer {
        url: url.to_owned(),
        why: why.into(),
    };
    net::block_on(async {
        let mut target = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let request = net::request(hyper::Method::GET, &target)
                .map_err(transfer)?
                .body(net::Body::default())
                .map_err(|e| transfer(NetError::Request(e.to_string())))?;
            let peer = net::words::Peer::of(request.uri());
            let response = pace
                .bounded(net::http::send(request))
                .await
                .map_err(|abandoned| transfer(abandoned.into()))?
                .map_err(transfer)?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| transfer(RedirectError::NoLocation(status.as_u16()).into()))?;
                target = redirect::follow(&target, location).map_err(|e| transfer(e.into()))?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                });
            }
            if let Some(length) = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                sink.expect(length, "its Content-Length")?;
            }
            let mut body = response.into_body();
            loop {
                let frame = pace
                    .bounded(body.frame())
                    .await
                    .map_err(|abandoned| transfer(abandoned.into()))?;
                match frame {
                    None => return Ok(()),
                    Some(Err(e)) => {
                        return Err(transfer(NetError::Transport(net::words::explain(
                            &e, &peer,
                        ))));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let length = data.len() as u64;
                            sink.write(data)?;
                            pace.check(length, std::time::Instant::now())
                                .map_err(|abandoned| transfer(abandoned.into()))?;
                        }
                    }
                }
            }
        }
        Err(transfer(RedirectError::TooMany.into()))
    })
}

/// The end of a URL, for a progress bar: its last path segment (`web-2.1.0.tar.gz`).
fn short_url(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Serves each request's path from `routes` (status, extra header, body), in a thread.
    fn serve(routes: Vec<(&'static str, u16, &'static str, Vec<u8>)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
                        break;
                    }
                }
                let mut stream = stream;
                let (status, extra, body) = routes
                    .iter()
                    .find(|(p, ..)| *p == path)
                    .map(|(_, s, h, b)| (*s, *h, b.clone()))
                    .unwrap_or((404, "", b"not found".to_vec()));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn fetches_verifies_and_caches_over_http_and_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let data = vec![7u8; 3 << 20];
        let base = serve(vec![
            ("/a.tgz", 200, "", data.clone()),
            ("/moved", 302, "Location: /a.tgz\r\n", Vec::new()),
        ]);
        let path = cache
            .get(&format!("{base}/moved"), &sha(&data), DEFAULT_MAX_SIZE)
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(path, cache.path(&sha(&data)));

        let file = dir.path().join("b.bin");
        std::fs::write(&file, b"hello").unwrap();
        let url = format!("file://{}", file.display());
        let path = cache.get(&url, &sha(b"hello"), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"hello");
    }

    #[test]
    fn a_wrong_digest_or_status_is_refused_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let base = serve(vec![("/a.tgz", 200, "", b"tampered".to_vec())]);
        let pinned = sha(b"original");
        let err = cache
            .get(&format!("{base}/a.tgz"), &pinned, DEFAULT_MAX_SIZE)
            .unwrap_err();
        assert!(
            matches!(err, FetchError::Mismatch { bytes: 8, .. }),
            "{err}"
        );
        assert!(!cache.path(&pinned).exists());
        let leftovers = std::fs::read_dir(dir.path().join("cache/tmp"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0);
        let err = cache
            .get(&format!("{base}/missing.tgz"), &pinned, DEFAULT_MAX_SIZE)
            .unwrap_err();
        assert!(
            matches!(err, FetchError::Status { status: 404, .. }),
            "{err}"
        );
        let err = cache
            .get("ftp://r.example/x.tgz", &pinned, DEFAULT_MAX_SIZE)
            .unwrap_err();
        assert!(matches!(err, FetchError::Scheme { .. }), "{err}");
    }

    /// Serves, for any request, `head` then `body` chunks until `total` bytes, one every
    /// `pause`; counts the bytes it managed to send.
    fn hostile(
        head: &'static str,
        total: u64,
        pause: Duration,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten().take(4) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = stream;
                let _ = stream.write_all(head.as_bytes());
                let chunk = vec![0u8; 64 << 10];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if stream.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    left -= n as u64;
                    std::thread::sleep(pause);
                }
            }
        });
        (format!("http://127.0.0.1:{port}/a.tgz"), sent)
    }

    #[test]
    fn downloads_stop_at_the_size_cap() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let pinned = sha(b"x");
        // An endless stream (no Content-Length): stopped at the cap, nothing kept.
        let (url, sent) = hostile(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            1 << 40,
            Duration::ZERO,
        );
        let err = cache.get(&url, &pinned, 1 << 20).unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 1048576, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("more bytes came"), "{err}");
        std::thread::sleep(Duration::from_millis(200));
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 32 << 20, "{sent} bytes sent for a 1 MiB cap");
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache/tmp"))
                .unwrap()
                .count(),
            0
        );
        // A Content-Length over the cap: refused before the body.
        let (url, _) = hostile(
            "HTTP/1.1 200 OK\r\nContent-Length: 6442450944\r\nConnection: close\r\n\r\n",
            1 << 20,
            Duration::ZERO,
        );
        let err = cache.get(&url, &pinned, 1 << 20).unwrap_err();
        assert!(
            err.to_string()
                .contains("its Content-Length says 6442450944 bytes"),
            "{err}"
        );
        // A file over the cap.
        let file = dir.path().join("big.bin");
        std::fs::write(&file, vec![0u8; 2048]).unwrap();
        let err = cache
            .get(&format!("file://{}", file.display()), &pinned, 1024)
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn a_trickle_is_abandoned_by_its_rate_or_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::new(dir.path().join("cache"));
        cache.bounds.min_bytes = 1 << 20;
        cache.bounds.window = Duration::from_millis(500);
        let (url, _) = hostile(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n",
            1_000_000,
            Duration::from_millis(100),
        );
        let started = std::time::Instant::now();
        let err = cache.get(&url, &sha(b"x"), DEFAULT_MAX_SIZE).unwrap_err();
        assert!(err.to_string().contains("too slow"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn temporaries_of_dead_processes_are_purged_and_unneeded_artifacts_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::create_dir_all(root.join("sha256")).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let alive = std::process::id();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let temp = |pid: u32| root.join("tmp").join(format!("{a}.{pid}"));
        // Another holder of the lock: only the dead process's file goes.
        let mut holder = Cache::new(&root);
        std::fs::write(temp(dead), "x").unwrap();
        assert_eq!(holder.purge_temporaries(), 1);
        std::fs::write(temp(dead), "x").unwrap();
        std::fs::write(temp(alive), "x").unwrap();
        assert_eq!(Cache::new(&root).purge_temporaries(), 1);
        assert!(temp(alive).exists() && !temp(dead).exists());
        // Once nobody holds it, everything in tmp/ is stale.
        drop(holder);
        assert_eq!(Cache::new(&root).purge_temporaries(), 1);
        assert!(!temp(alive).exists());

        let cache = Cache::new(&root);
        for name in [a.clone(), b.clone(), format!("{b}.name")] {
            std::fs::write(root.join("sha256").join(name), "12345").unwrap();
        }
        assert_eq!(cache.prune(&|d| d == a), 10);
        let left: Vec<_> = std::fs::read_dir(root.join("sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [a]);
    }

    /// A redirect off the web (`file:`, `ftp:`) is refused in words, not as a parse error.
    #[test]
    fn a_redirect_to_another_scheme_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let base = serve(vec![(
            "/a.tgz",
            302,
            "Location: file:///etc/passwd\r\n",
            Vec::new(),
        )]);
        let err = cache
            .get(&format!("{base}/a.tgz"), &sha(b"x"), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refused a redirect to `file:///etc/passwd`"),
            "{err}"
        );
    }

    /// Each way a connection fails is said in words, with the host, not `client error (Connect)`.
    #[test]
    fn a_failed_connection_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let pinned = sha(b"x");
        let message = |url: &str| {
            cache
                .get(url, &pinned, DEFAULT_MAX_SIZE)
                .unwrap_err()
                .to_string()
        };

        // Nothing listens on a port just closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = message(&format!("http://127.0.0.1:{port}/a.tgz"));
        assert!(
            refused.contains(&format!("connection to 127.0.0.1:{port} refused")),
            "{refused}"
        );

        // `.invalid` never resolves (RFC 6761).
        let dns = message("http://artifacts.ferry.invalid/a.tgz");
        assert!(
            dns.contains("cannot resolve `artifacts.ferry.invalid` (DNS)"),
            "{dns}"
        );

        // A plain-HTTP server spoken to over TLS; one that hangs up in the handshake.
        for answer in [&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], b""] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let host = listener.local_addr().unwrap().to_string();
            std::thread::spawn(move || {
                if let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.write_all(answer);
                }
            });
            let tls = message(&format!("https://{host}/a.tgz"));
            assert!(tls.contains(&format!("TLS with {host} failed: ")), "{tls}");
            assert!(!tls.contains("client error"), "{tls}");
        }
    }

    #[test]
    fn a_digest_is_computed_from_the_bytes_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![3u8; 1 << 20];
        let base = serve(vec![("/a.zip", 200, "", data.clone())]);
        let (hex, bytes) = digest(&format!("{base}/a.zip"), Duration::from_secs(10)).unwrap();
        assert_eq!((hex, bytes), (sha(&data), data.len() as u64));
        let err = digest(&format!("{base}/gone.zip"), Duration::from_secs(10)).unwrap_err();
        assert!(
            matches!(err, FetchError::Status { status: 404, .. }),
            "{err}"
        );

        let file = dir.path().join("b.jar");
        std::fs::write(&file, b"jar").unwrap();
        let url = format!("file://{}", file.display());
        assert_eq!(digest(&url, Duration::from_secs(1)).unwrap().0, sha(b"jar"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = digest("oci://r.example/a:1", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, FetchError::Scheme { .. }), "{err}");
    }
}
