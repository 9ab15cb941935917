//! `ferry agent` against hostile input (issue 15): archives whose links chain out of the
//! release, names it cannot unpack as written, a `deployment_path` that climbs out of `--root`,
//! artifact servers that stream without end or trickle, and what a `kill -9` leaves behind.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent::{agent, artifact, bump, bump_from, live, once, polling, repo, status};
use crate::common::{Run, Sandbox};

/// `web-VERSION.EXT` made by `build` into the sandbox.
fn hostile_file(sandbox: &Sandbox, version: &str, ext: &str, bytes: Vec<u8>) -> PathBuf {
    let file = sandbox.path().join(format!("web-{version}.{ext}"));
    std::fs::write(&file, bytes).unwrap();
    file
}

/// A tar.gz of symbolic links (path, target) and files, written raw as an attacker would.
fn tar_gz(links: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_cksum();
        builder.append(&header, &[][..]).unwrap();
    }
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn zip_links(links: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, target) in links {
        writer.add_symlink(*name, *target, options).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Every path under `dir`, links not followed.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path());
        if entry.file_type().unwrap().is_dir() {
            out.extend(tree(&entry.path()));
        }
    }
    out
}

#[test]
fn link_chains_and_names_it_cannot_unpack_fail_the_revision() {
    let escape = "d/u/d/u/d/u/d/u/d/u/../../../../../etc/passwd";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tgz",
            tar_gz(&[("d/u", ".."), ("s", escape)], &[]),
            "`s`: a link that points outside the release: refused",
        ),
        (
            "zip",
            zip_links(&[("d/u", ".."), ("s", escape)]),
            "`s`: a link that points outside the release: refused",
        ),
        (
            "tgz",
            tar_gz(&[], &[("a", b"1"), ("a", b"2")]),
            "`a`: a duplicate entry: refused",
        ),
    ];
    for (i, (ext, bytes, why)) in cases.into_iter().enumerate() {
        let (sandbox, remote) = repo(json!({}));
        agent(&sandbox, &remote, &[]).assert_code(0);
        let before = std::fs::read_link(live(&sandbox)).unwrap();
        let version = format!("6.6.{i}");
        let file = hostile_file(&sandbox, &version, ext, bytes);
        bump(&sandbox, &remote, &version, &file, false);
        let run = agent(&sandbox, &remote, &[]);
        run.assert_code(1);
        assert!(run.stdout.contains(why), "{ext} {why}: {}", run.stdout);
        // Failed, not retried forever.
        assert_eq!(status(&sandbox)["state"], "failed", "{why}");
        assert_eq!(status(&sandbox)["apps"]["web"]["state"], "failed", "{why}");
        assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);
        // No link anywhere under the root resolves outside it.
        let root = std::fs::canonicalize(sandbox.path().join("root")).unwrap();
        for path in tree(&root) {
            if let Ok(real) = std::fs::canonicalize(&path) {
                assert!(real.starts_with(&root), "{path:?} → {real:?}");
            }
        }
    }
}

#[test]
fn a_deployment_path_out_of_the_root_is_refused_by_validate_and_the_agent() {
    let repo_dir = crate::common::Repo::example();
    repo_dir.edit_json("environments/dev.json", |env| {
        let apps = env["apps"].as_object_mut().unwrap();
        let first = apps.keys().next().unwrap().clone();
        apps[&first]["deployment_path"] = json!("/../../outside/web");
    });
    let run = repo_dir.validate(&[]);
    assert_eq!(run.code, Some(1), "{}", run.render());
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("environments/dev.json:")
            && all.contains("`/../../outside/web` has a `.` or `..` segment"),
        "{all}"
    );

    let (sandbox, remote) = repo(json!({}));
    for path in ["/../../outside/web", "/"] {
        sandbox.past_the_hook(|| {
            sandbox.edit_env("dev", "dev", |env| {
                env["apps"]["web"]["deployment_path"] = json!(path)
            })
        });
        let run = agent(&sandbox, &remote, &[]);
        run.assert_code(1);
        assert!(run.stdout.contains("dev: stalled:"), "{}", run.stdout);
        assert!(
            run.stdout.contains(&format!("dev:environments/dev.json:13:26: error: `{path}` has a `.` or `..` segment, or is `/` itself")),
            "{}",
            run.stdout
        );
    }
    let outside = sandbox.path().parent().unwrap().join("outside");
    assert!(!outside.exists(), "{outside:?}");
    assert!(!sandbox.path().join("root/.root.releases").exists());
}

/// Serves `/a.tgz` as a redirect to `/endless`, which streams zeros without a length (up to
/// 256 MiB, or until the client goes), and `/liar`, whose Content-Length says 6 GiB. The bytes
/// it sent.
fn endless_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(8) {
            let head = crate::common::http::read_request_head(&stream);
            let mut stream = stream;
            if head.contains("/a.tgz") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nLocation: /endless\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            }
            let length = if head.contains("/liar") {
                "Content-Length: 6442450944\r\n"
            } else {
                ""
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n"
            );
            let chunk = vec![0u8; 64 << 10];
            for _ in 0..4096 {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    });
    (format!("http://127.0.0.1:{port}"), sent)
}

#[test]
fn an_endless_or_lying_download_stops_at_max_size() {
    let (sandbox, remote) = repo(json!({"max_size": "1MiB"}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let (base, sent) = endless_server();
    let file = artifact(&sandbox, "1.1.0");
    for (i, (path, how)) in [
        ("/a.tgz", "more bytes came"),
        ("/liar", "its Content-Length says 6442450944 bytes"),
    ]
    .into_iter()
    .enumerate()
    {
        let version = format!("1.1.{i}");
        bump_from(&sandbox, &remote, &version, &format!("{base}{path}"), &file)
            .run()
            .assert_code(0);
        let started = Instant::now();
        let run = agent(&sandbox, &remote, &[]);
        run.assert_code(1);
        assert!(
            run.stdout.contains("larger than the 1048576 bytes allowed")
                && run.stdout.contains(how),
            "{}",
            run.stdout
        );
        assert_eq!(status(&sandbox)["state"], "failed");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 24 << 20, "{sent} bytes sent for a 1 MiB cap");
    let tmp = sandbox.path().join("state/artifacts/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

/// Sends a Content-Length of 1000, then one byte every 200 ms.
fn trickle_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(8) {
            std::thread::spawn(move || {
                crate::common::http::read_request_head(&stream);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
                );
                for _ in 0..1000 {
                    if stream
                        .write_all(b"x")
                        .and_then(|()| stream.flush())
                        .is_err()
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}/web-1.1.0.tgz")
}

/// Waits up to 20 s for a partial download in `tmp`: its path.
fn partial(tmp: &Path) -> PathBuf {
    let started = Instant::now();
    loop {
        if let Some(entry) = std::fs::read_dir(tmp)
            .into_iter()
            .flatten()
            .flatten()
            .next()
        {
            return entry.path();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no download started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_trickle_is_bounded_sigterm_abandons_it_and_a_kill_9_leftover_is_purged() {
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let url = trickle_server();
    let file = artifact(&sandbox, "1.1.0");
    bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .run()
        .assert_code(0);
    let tmp = sandbox.path().join("state/artifacts/tmp");
    let spawn = || {
        polling(&sandbox, &remote, &sandbox.path().join("state"))
            .command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };

    // SIGTERM while the trickle goes on: the download is abandoned at once.
    let mut child = spawn();
    let temp = partial(&tmp);
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if stopped.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("SIGTERM did not stop the download within 5s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(!temp.exists(), "the partial download is removed");

    // kill -9 leaves the partial download; the next agent removes it at start.
    let mut child = spawn();
    let temp = partial(&tmp);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(temp.exists());
    // And a download that goes on past --download-timeout is given up (and retried).
    let started = Instant::now();
    let run = once(&sandbox, &["--remote", &remote, "--download-timeout", "2s"]).run();
    run.assert_code(1);
    assert!(
        run.stdout.contains("dev: retrying: web:") && run.stdout.contains("not done within 2s"),
        "{}",
        run.stdout
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!temp.exists(), "the kill -9 leftover is purged");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn the_cache_keeps_only_what_kept_releases_and_pins_need() {
    let (sandbox, remote) = repo(json!({}));
    let cached = || {
        std::fs::read_dir(sandbox.path().join("state/artifacts/sha256"))
            .unwrap()
            .count()
    };
    agent(&sandbox, &remote, &["--keep", "2"]).assert_code(0);
    for version in ["1.1.0", "1.2.0", "1.3.0"] {
        let file = artifact(&sandbox, version);
        bump(&sandbox, &remote, version, &file, false);
        agent(&sandbox, &remote, &["--keep", "2"]).assert_code(0);
    }
    let releases = std::fs::read_dir(sandbox.path().join("root/srv/.web.releases"))
        .unwrap()
        .count();
    assert_eq!(releases, 2);
    assert_eq!(cached(), 2, "1.2.0 and 1.3.0");
}

/// What [`HostileRegistry`] serves: manifests by repository and tag (and by their digest),
/// tags a `HEAD` resolves to a digest (repository, tag, digest), and blobs by digest; a `GET`
/// of an `endless` digest (a manifest's or a blob's) is answered with a body that never ends.
#[derive(Default)]
struct Contents {
    manifests: Vec<(String, String, Vec<u8>)>,
    tags: Vec<(String, String, String)>,
    blobs: std::collections::HashMap<String, Vec<u8>>,
    endless: Vec<String>,
}

/// A hostile OCI registry on 127.0.0.1, speaking the reads of the distribution API (`GET
/// /v2/`, a manifest's `HEAD` and `GET`, a blob's `GET`), one request per connection. An
/// endless blob streams zeros without a length for at most 1 GiB or 60 s, or until the client
/// goes. It counts the bytes of endless bodies sent, and keeps each request line.
struct HostileRegistry {
    port: u16,
    sent: Arc<AtomicU64>,
    /// Endless bodies still being written.
    streaming: Arc<AtomicU64>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl HostileRegistry {
    fn start(contents: Contents) -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let registry = HostileRegistry {
            port,
            sent: Arc::default(),
            streaming: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let contents = Arc::new(contents);
        let (sent, streaming, requests, stop) = (
            registry.sent.clone(),
            registry.streaming.clone(),
            registry.requests.clone(),
            registry.stop.clone(),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut served = 0;
            while served < 256
                && started.elapsed() < Duration::from_secs(120)
                && !stop.load(Ordering::Relaxed)
            {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                served += 1;
                stream.set_nonblocking(false).unwrap();
                let (contents, sent, streaming, requests, stop) = (
                    contents.clone(),
                    sent.clone(),
                    streaming.clone(),
                    requests.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let line = crate::common::http::read_request_head(&stream);
                    requests.lock().unwrap().push(line.trim().to_owned());
                    answer(stream, &line, &contents, &sent, &streaming, &stop);
                });
            }
        });
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The bytes of endless bodies sent so far, once every one of them has stopped (at most
    /// 10 s).
    fn sent_when_done(&self) -> u64 {
        let started = Instant::now();
        while self.streaming.load(Ordering::SeqCst) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "an endless body is still being written 10 s after the client went"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.sent.swap(0, Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers one request (its line is `line`) from `contents`.
fn answer(
    mut stream: std::net::TcpStream,
    line: &str,
    contents: &Contents,
    sent: &AtomicU64,
    streaming: &AtomicU64,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let found = |status: &str, kind: &str, extra: &str, body: &[u8]| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        )
    };
    let reference = ["/manifests/", "/blobs/"]
        .iter()
        .find_map(|kind| rest.split_once(kind))
        .map_or("", |(_, reference)| reference);
    if method == "GET" && contents.endless.iter().any(|d| d == reference) {
        streaming.fetch_add(1, Ordering::SeqCst);
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n"
        );
        let chunk = vec![b' '; 64 << 10];
        let started = Instant::now();
        for _ in 0..(1 << 14) {
            if started.elapsed() > Duration::from_secs(60)
                || stop.load(Ordering::Relaxed)
                || stream.write_all(&chunk).is_err()
            {
                break;
            }
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        streaming.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let (head, body): (String, &[u8]) = if rest.is_empty() {
        (found("200 OK", "application/json", "", b"{}"), b"{}")
    } else if let Some((repository, reference)) = rest.split_once("/manifests/") {
        let tagged = contents
            .tags
            .iter()
            .find(|(r, tag, _)| r == repository && tag == reference);
        match contents.manifests.iter().find(|(r, tag, bytes)| {
            r == repository && (tag == reference || sha256(bytes) == reference)
        }) {
            None if method == "HEAD" && tagged.is_some() => {
                let digest = &tagged.expect("found").2;
                let head = found(
                    "200 OK",
                    "application/vnd.oci.image.manifest.v1+json",
                    &format!("Docker-Content-Digest: {digest}\r\n"),
                    b"",
                );
                (head, b"")
            }
            Some((_, _, bytes)) => (
                found(
                    "200 OK",
                    "application/vnd.oci.image.manifest.v1+json",
                    &format!("Docker-Content-Digest: {}\r\n", sha256(bytes)),
                    bytes,
                ),
                bytes,
            ),
            None => (found("404 Not Found", "text/plain", "", b""), b""),
        }
    } else if let Some((_, digest)) = rest.split_once("/blobs/") {
        match contents.blobs.get(digest) {
            Some(bytes) => (
                found("200 OK", "application/octet-stream", "", bytes),
                bytes.as_slice(),
            ),
            None => (found("404 Not Found", "text/plain", "", b""), b""),
        }
    } else {
        (found("404 Not Found", "text/plain", "", b""), b"")
    };
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(body);
    }
}

/// An OCI image manifest of `config` (its media type and bytes) and one layer that declares
/// `size` bytes of `layer_digest`.
fn oci_manifest(
    artifact_type: &str,
    config: (&str, &[u8]),
    layer: (&str, &str, u64, &str),
    annotations: serde_json::Value,
) -> Vec<u8> {
    let (layer_type, layer_digest, size, title) = layer;
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {"mediaType": config.0, "digest": sha256(config.1), "size": config.1.len()},
        "layers": [{
            "mediaType": layer_type,
            "digest": layer_digest,
            "size": size,
            "annotations": {"org.opencontainers.image.title": title},
        }],
        "annotations": annotations,
    }))
    .unwrap()
}

/// Runs the agent `command` against the hostile `registry` (killed past 30 s) and checks that
/// it ended in time, that the registry could send it little of `what` it asked for, and that
/// the agent stayed small.
#[track_caller]
fn against(registry: &HostileRegistry, command: std::process::Command, what: &str) -> Run {
    let started = Instant::now();
    let (run, peak_kb) = run_measured(command, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{}",
        run.render()
    );
    let sent = registry.sent_when_done();
    assert!(sent < 64 << 20, "{sent} bytes sent for {what}");
    assert!(peak_kb < 100 << 10, "peak RSS {peak_kb} kB");
    run
}

/// Runs `command` until it exits (killed past `limit`), reaping it with `wait4` for its peak
/// resident memory: the run (stdout and stderr kept) and the peak in kB.
#[expect(
    clippy::zombie_processes,
    reason = "reaped with wait4, which gives its resource usage"
)]
fn run_measured(mut command: std::process::Command, limit: Duration) -> (crate::common::Run, u64) {
    use std::io::Read;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: wait4 on this test's own child, with pointers to locals.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4: {}", std::io::Error::last_os_error());
        if reaped == pid {
            break;
        }
        if !killed && started.elapsed() > limit {
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = crate::common::Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        !killed,
        "ferry did not finish within {limit:?}\n{}",
        run.render()
    );
    (run, usage.ru_maxrss as u64)
}

/// A registry that streams a blob without end, past the size its descriptor declares (the
/// state's layer, held in memory, and an `oci://` artifact's layer, written to the cache): the
/// agent cuts it off at that size, within seconds and without growing.
#[test]
fn a_registry_streaming_past_a_blobs_declared_size_is_cut_off() {
    let state_layer = sha256(b"a state layer that never ends");
    let artifact_layer = sha256(b"an artifact layer that never ends");
    let meta = br#"{"environment":"dev","branch":"dev","revision":"0000000000000000000000000000000000000000","source":"hostile","created":"2026-01-01T00:00:00Z"}"#;
    let state = oci_manifest(
        "application/vnd.ferry.state.v1",
        ("application/vnd.ferry.state.config.v1+json", meta),
        (
            "application/vnd.ferry.state.content.v1.tar+gzip",
            &state_layer,
            1000,
            "ferry-state.tar.gz",
        ),
        json!({
            "org.opencontainers.image.revision": "0000000000000000000000000000000000000000",
            "org.opencontainers.image.source": "hostile",
        }),
    );
    let empty = b"{}";
    let artifact = oci_manifest(
        "application/vnd.example.web",
        ("application/vnd.oci.empty.v1+json", empty),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &artifact_layer,
            1000,
            "web-2.0.0.tar.gz",
        ),
        json!({}),
    );
    let (state_digest, artifact_digest) = (sha256(&state), sha256(&artifact));
    let registry = HostileRegistry::start(Contents {
        manifests: vec![
            ("deploy".into(), "dev".into(), state),
            ("web".into(), "2.0.0".into(), artifact),
        ],
        blobs: [
            (sha256(meta), meta.to_vec()),
            (sha256(empty), empty.to_vec()),
        ]
        .into(),
        endless: vec![state_layer.clone(), artifact_layer.clone()],
        ..Contents::default()
    });

    // The state, from `--source`.
    let sandbox = Sandbox::new();
    let source = format!("oci://{}/deploy:dev", registry.host());
    let command = once(&sandbox, &["--source", &source, "--no-report"]).command;
    let run = against(&registry, command, "a 1000-byte layer");
    run.assert_code(1);
    let said = format!(
        "dev: stalled: oci://{}/deploy@{} (blob {state_layer}): the registry sent more than the 1000 bytes its descriptor says: refused",
        registry.host(),
        state_digest
    );
    assert!(run.stdout.contains(&said), "{}", run.render());
    assert_eq!(status(&sandbox)["state"], "stalled");
    assert!(
        status(&sandbox)["message"]
            .as_str()
            .unwrap()
            .contains("the registry sent more than the 1000 bytes"),
        "{}",
        status(&sandbox)
    );
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.starts_with(&format!("GET /v2/deploy/blobs/{state_layer}"))),
        "{:#?}",
        registry.requests()
    );

    // An `oci://` artifact pinned in the manifest, by its manifest's digest.
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let before = std::fs::read_link(live(&sandbox)).unwrap();
    let url = format!("oci://{}/web:2.0.0", registry.host());
    sandbox
        .ferry(&["bump", "web", "2.0.0", "--env", "dev", "--remote", &remote])
        .args(["--url", &url, "--sha256", &artifact_digest])
        .run()
        .assert_code(0);
    let command = once(&sandbox, &["--remote", &remote]).command;
    let run = against(&registry, command, "a 1000-byte layer");
    run.assert_code(1);
    assert!(
        run.stdout.contains("dev: failed: web:")
            && run.stdout.contains(&format!(
                "{url} (blob {artifact_layer}): the registry sent more than the 1000 bytes its descriptor says: refused"
            )),
        "{}",
        run.render()
    );
    assert_eq!(status(&sandbox)["apps"]["web"]["state"], "failed");
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);
    let tmp = sandbox.path().join("state/artifacts/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

/// A registry whose manifest never ends (a manifest has no descriptor to bound it): the agent
/// stops reading it at 4 MiB, as oras and containerd do, for the state and for an `oci://`
/// artifact.
#[test]
fn an_endless_manifest_does_not_grow_the_agent() {
    let endless = sha256(b"a manifest that never ends");
    let registry = HostileRegistry::start(Contents {
        tags: vec![("deploy".into(), "dev".into(), endless.clone())],
        endless: vec![endless.clone(), "huge".into()],
        ..Contents::default()
    });
    let sandbox = Sandbox::new();
    let source = format!("oci://{}/deploy:dev", registry.host());
    let command = once(&sandbox, &["--source", &source, "--no-report"]).command;
    let run = against(&registry, command, "a manifest");
    run.assert_code(1);
    assert!(
        run.stdout.contains(&format!(
            "dev: stalled: oci://{}/deploy@{endless}: its manifest is larger than 4194304 bytes: refused",
            registry.host()
        )),
        "{}",
        run.render()
    );

    let (sandbox, remote) = repo(json!({}));
    let url = format!("oci://{}/web:huge", registry.host());
    sandbox
        .ferry(&["bump", "web", "2.0.0", "--env", "dev", "--remote", &remote])
        .args(["--url", &url, "--sha256", &endless])
        .run()
        .assert_code(0);
    let command = once(&sandbox, &["--remote", &remote]).command;
    let run = against(&registry, command, "a manifest");
    run.assert_code(1);
    assert!(
        run.stdout.contains("dev: failed: web:")
            && run.stdout.contains(&format!(
                "{url}: its manifest is larger than 4194304 bytes: refused"
            )),
        "{}",
        run.render()
    );
}
