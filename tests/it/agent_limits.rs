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

use crate::agent::{agent, artifact, bump, bump_from, live, once, repo, status};
use crate::common::Sandbox;

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
            run.stdout.contains(&format!("dev:environments/dev.json:14:26: error: `{path}` has a `.` or `..` segment, or is `/` itself")),
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
        sandbox
            .ferry(&[
                "agent",
                "--env",
                "dev",
                "--remote",
                &remote,
                "--interval",
                "1s",
            ])
            .arg("--root")
            .arg(sandbox.path().join("root"))
            .arg("--state-dir")
            .arg(sandbox.path().join("state"))
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
