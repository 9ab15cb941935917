//! `ferry agent` deploying for real: artifacts made with the real `tar`, served from files and
//! by an HTTP server the test controls (health checks), a sandboxed `--root`, and the agent's
//! process stopped with a real SIGTERM.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::{Value, json};

use crate::common::{Run, Sandbox};

/// An artifact `NAME-VERSION.tgz` holding `index.html` (saying VERSION) and an executable.
pub(crate) fn artifact(sandbox: &Sandbox, version: &str) -> PathBuf {
    let dir = sandbox.path().join(format!("pkg-{version}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("index.html"), format!("web {version}\n")).unwrap();
    std::fs::write(dir.join("bin/web"), "#!/bin/sh\necho web\n").unwrap();
    std::fs::set_permissions(dir.join("bin/web"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = sandbox.path().join(format!("web-{version}.tgz"));
    let status = std::process::Command::new("tar")
        .arg("czf")
        .arg(&file)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    file
}

/// Pins `web` VERSION in dev, from its file.
pub(crate) fn bump(sandbox: &Sandbox, remote: &str, version: &str, file: &Path, add: bool) {
    let url = format!("file://{}", file.display());
    let mut command = bump_from(sandbox, remote, version, &url, file);
    if add {
        command = command.arg("--add");
    }
    command.run().assert_code(0);
}

/// `ferry bump web VERSION` in dev, fetched from `url`, its digest computed from `file`.
pub(crate) fn bump_from(
    sandbox: &Sandbox,
    remote: &str,
    version: &str,
    url: &str,
    file: &Path,
) -> crate::common::Ferry {
    sandbox
        .ferry(&["bump", "web", version, "--env", "dev", "--remote", remote])
        .args(["--url", url])
        .arg("--artifact")
        .arg(file)
}

/// dev with `web` 1.0.0 pinned and deployed at `/srv/web`, with `settings` on top.
pub(crate) fn repo(settings: Value) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let file = artifact(&sandbox, "1.0.0");
    bump(&sandbox, &remote, "1.0.0", &file, true);
    sandbox.edit_env("dev", "dev", |env| {
        let mut web = json!({"deployment_path": "/srv/web"});
        for (k, v) in settings.as_object().unwrap() {
            web[k] = v.clone();
        }
        env["apps"] = json!({ "web": web });
    });
    (sandbox, remote)
}

/// A first deploy whose health check fails leaves nothing live: there was nothing to roll
/// back to, and the release that failed is not served. The next reconcile does not retry it.
#[test]
fn a_failed_first_deploy_leaves_nothing_live() {
    let (url, answer) = health_server();
    answer.store(500, Ordering::SeqCst);
    let (sandbox, remote) = repo(json!({
        "healthcheck_url": url,
        "healthcheck_timeout": "1s",
        "healthcheck_retries": 1,
    }));
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(
        std::fs::symlink_metadata(live(&sandbox)).is_err(),
        "the failed release is not live"
    );
    let report = status(&sandbox);
    let message = report["apps"]["web"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("the live link was removed"), "{report}");
    agent(&sandbox, &remote, &[]).assert_code(1);
    assert!(std::fs::symlink_metadata(live(&sandbox)).is_err());
}

pub(crate) fn agent(sandbox: &Sandbox, remote: &str, extra: &[&str]) -> Run {
    once(sandbox, &["--remote", remote]).args(extra).run()
}

/// `ferry agent --env dev --once` reading from `source` (`--remote URL`, `--source URL`),
/// deploying into the sandbox's `root` with its state in `state`.
pub(crate) fn once(sandbox: &Sandbox, source: &[&str]) -> crate::common::Ferry {
    sandbox
        .ferry(&["agent", "--env", "dev", "--once"])
        .args(source)
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
}

/// `ferry agent --env dev --interval 1s` reading `remote`, deploying into the sandbox's
/// `root` with its state in `state`: a running agent, to spawn.
pub(crate) fn polling(sandbox: &Sandbox, remote: &str, state: &Path) -> crate::common::Ferry {
    sandbox
        .ferry(&[
            "agent",
            "--env",
            "dev",
            "--remote",
            remote,
            "--interval",
            "1s",
        ])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(state)
}

pub(crate) fn live(sandbox: &Sandbox) -> PathBuf {
    sandbox.path().join("root/srv/web")
}

pub(crate) fn status(sandbox: &Sandbox) -> Value {
    serde_json::from_slice(&std::fs::read(sandbox.path().join("state/status.json")).unwrap())
        .unwrap()
}

/// A health endpoint answering with the status the test sets.
pub(crate) fn health_server() -> (String, Arc<AtomicU16>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(AtomicU16::new(200));
    let shared = answer.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            crate::common::http::read_request_head(&stream);
            let mut stream = stream;
            let code = shared.load(Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (format!("http://127.0.0.1:{port}/healthz"), answer)
}

#[test]
fn deploys_verifies_activates_and_reports() {
    let activated = "activated.txt";
    let (sandbox, remote) = repo(json!({
        "activate": ["sh", "-c", format!("echo $FERRY_APP $FERRY_VERSION $FERRY_PATH > {activated}")]
    }));
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "dev: deployed");
    let link = std::fs::read_link(live(&sandbox)).unwrap();
    assert!(
        link.to_string_lossy().contains(".web.releases/1.0.0-"),
        "{link:?}"
    );
    assert_eq!(
        std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap(),
        "web 1.0.0\n"
    );
    let mode = std::fs::metadata(live(&sandbox).join("bin/web"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0);
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join(activated))
            .unwrap()
            .trim(),
        format!("web 1.0.0 {}", live(&sandbox).display())
    );
    assert_eq!(status(&sandbox)["state"], "deployed");
    assert_eq!(status(&sandbox)["apps"]["web"]["version"], "1.0.0");
    let matrix = sandbox.ferry(&["status", "--remote", &remote]).run();
    assert!(
        matrix.stdout.contains("deploy success"),
        "{}",
        matrix.stdout
    );
    // Nothing moved: nothing to do, and the same release stays.
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), link);
}

#[test]
fn a_wrong_digest_is_refused_and_the_running_release_stays() {
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let before = std::fs::read_link(live(&sandbox)).unwrap();
    // 1.1.0 is pinned with its digest, then the file is replaced on the artifact server.
    let file = artifact(&sandbox, "1.1.0");
    bump(&sandbox, &remote, "1.1.0", &file, false);
    std::fs::write(&file, "tampered").unwrap();
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(run.stdout.contains("not the pinned"), "{}", run.stdout);
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);
    assert_eq!(status(&sandbox)["state"], "failed");
    let cached: Vec<_> = std::fs::read_dir(sandbox.path().join("state/artifacts/sha256"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1, "only 1.0.0 is cached");
}

#[test]
fn a_failed_health_check_rolls_back_and_is_not_retried_in_a_loop() {
    let (url, answer) = health_server();
    let (sandbox, remote) = repo(json!({
        "healthcheck_url": url, "healthcheck_timeout": "2s", "healthcheck_retries": 2
    }));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let v1 = std::fs::read_link(live(&sandbox)).unwrap();
    let file = artifact(&sandbox, "1.1.0");
    bump(&sandbox, &remote, "1.1.0", &file, false);
    answer.store(500, Ordering::SeqCst);
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("failed 2 time(s): HTTP 500") && run.stdout.contains("rolled back"),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), v1);
    assert_eq!(status(&sandbox)["apps"]["web"]["state"], "rolled-back");
    // The same revision is not tried again…
    answer.store(200, Ordering::SeqCst);
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("waiting for a new one"),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), v1);
    // …until asked to.
    let retry = sandbox
        .ferry(&["agent", "retry", "--env", "dev", "--state-dir"])
        .arg(sandbox.path().join("state"))
        .run();
    retry.assert_code(0);
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap(),
        "web 1.1.0\n"
    );
}

#[test]
fn drift_is_found_and_healed() {
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let release = std::fs::read_link(live(&sandbox)).unwrap();
    // A file changed by hand, one added, one removed.
    std::fs::write(release.join("index.html"), "hacked\n").unwrap();
    std::fs::write(release.join("extra"), "x").unwrap();
    std::fs::remove_file(release.join("bin/web")).unwrap();
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap(),
        "web 1.0.0\n"
    );
    assert!(!live(&sandbox).join("extra").exists());
    assert!(live(&sandbox).join("bin/web").exists());
    assert!(!release.exists(), "the drifted release is removed");
    assert_eq!(status(&sandbox)["drift_events"], 1);
    let events = std::fs::read_to_string(sandbox.path().join("state/events.jsonl")).unwrap();
    assert!(
        events.contains("bin/web is missing")
            && events.contains("extra was added")
            && events.contains("index.html was modified"),
        "{events}"
    );
    // The live link pointed elsewhere by hand: pointed back, and recorded.
    let healed = std::fs::read_link(live(&sandbox)).unwrap();
    let other = sandbox.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::remove_file(live(&sandbox)).unwrap();
    std::os::unix::fs::symlink(&other, live(&sandbox)).unwrap();
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), healed);
    assert_eq!(status(&sandbox)["drift_events"], 2);
    let events = std::fs::read_to_string(sandbox.path().join("state/events.jsonl")).unwrap();
    assert!(events.contains("the live link was pointed at"), "{events}");
    // The release directory deleted: unpacked again, and kept.
    std::fs::remove_dir_all(&healed).unwrap();
    for _ in 0..2 {
        agent(&sandbox, &remote, &[]).assert_code(0);
        let index = std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap();
        assert_eq!(index, "web 1.0.0\n");
    }
}

#[test]
fn an_invalid_state_or_a_malicious_archive_is_never_deployed() {
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let before = std::fs::read_link(live(&sandbox)).unwrap();
    // The repository's own hook refuses an invalid state; a forge that does not run it lets
    // it land, and the agent must hold.
    sandbox.past_the_hook(|| {
        sandbox.edit_env("dev", "dev", |env| env["policy"]["soak"] = json!("soon"))
    });
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("dev: stalled: the desired state on `dev` is invalid"),
        "{}",
        run.stdout
    );
    assert_eq!(status(&sandbox)["state"], "stalled");
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);

    let (sandbox, remote) = repo(json!({}));
    let evil = sandbox.path().join("web-6.6.6.tgz");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import io, sys, tarfile\n\
             t = tarfile.open(sys.argv[1], 'w:gz')\n\
             data = b'owned'\n\
             info = tarfile.TarInfo('../../escaped')\n\
             info.size = len(data)\n\
             t.addfile(info, io.BytesIO(data))\n\
             t.close()\n",
        )
        .arg(&evil)
        .status()
        .unwrap();
    assert!(made.success());
    bump(&sandbox, &remote, "6.6.6", &evil, false);
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("a path with `..`: refused"),
        "{}",
        run.stdout
    );
    assert!(!sandbox.path().join("escaped").exists());
    assert!(!sandbox.path().join("root/escaped").exists());
}

#[test]
fn sigterm_finishes_the_step_and_exits() {
    let (sandbox, remote) = repo(json!({}));
    let mut command = polling(&sandbox, &remote, &sandbox.path().join("state")).command;
    let mut running = Running(command.stderr(std::process::Stdio::null()).spawn().unwrap());
    let child = &mut running.0;
    let status_file = sandbox.path().join("state/status.json");
    let started = std::time::Instant::now();
    while !status_file.exists() && started.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(status_file.exists(), "the agent reconciled");
    // It keeps going: a new pin is deployed by the loop.
    let file = artifact(&sandbox, "1.2.0");
    bump(&sandbox, &remote, "1.2.0", &file, false);
    let index = live(&sandbox).join("index.html");
    while std::fs::read_to_string(&index).ok().as_deref() != Some("web 1.2.0\n")
        && started.elapsed().as_secs() < 30
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "web 1.2.0\n");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopped = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(stopped.elapsed().as_secs() < 10, "the agent did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

/// Files under `dir`, counted.
fn files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            n += files(&entry.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn killed_at_any_point_it_converges_and_never_serves_a_partial_release() {
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    // 2.0.0 is big enough for a deploy to take a while: 1,500 more files.
    let dir = sandbox.path().join("pkg-2.0.0");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for i in 0..1500 {
        std::fs::write(
            dir.join(format!("data/{i:04}")),
            format!("{i}").repeat(2000),
        )
        .unwrap();
    }
    let file = artifact(&sandbox, "2.0.0");
    bump(&sandbox, &remote, "2.0.0", &file, false);
    for delay in [0u64, 10, 30, 60, 100, 150, 250, 400, 600] {
        let mut command = sandbox
            .ferry(&["agent", "--env", "dev", "--remote", &remote, "--once"])
            .arg("--root")
            .arg(sandbox.path().join("root"))
            .arg("--state-dir")
            .arg(sandbox.path().join("state"))
            .command;
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever the moment, the live path is a whole release: 1.0.0 or all of 2.0.0.
        let index = std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap();
        let expected = if index == "web 2.0.0\n" { 1502 } else { 2 };
        assert!(index == "web 1.0.0\n" || index == "web 2.0.0\n", "{index}");
        assert_eq!(
            files(&live(&sandbox)),
            expected,
            "after a kill at {delay} ms"
        );
    }
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap(),
        "web 2.0.0\n"
    );
    assert_eq!(files(&live(&sandbox)), 1502);
    // What interrupted unpacks left is gone.
    let leftovers = std::fs::read_dir(sandbox.path().join("root/srv/.web.releases"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".unpacking-"))
        .count();
    assert_eq!(leftovers, 0);
}

/// When each request came.
type Hits = Arc<std::sync::Mutex<Vec<std::time::Instant>>>;

/// Serves `file` at `/NAME` with the status the test sets (the body only with 200), noting
/// when each request came.
fn artifact_server(file: PathBuf) -> (String, Arc<AtomicU16>, Hits) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(AtomicU16::new(200));
    let shared = answer.clone();
    let hits = Hits::default();
    let noted = hits.clone();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            crate::common::http::read_request_head(&stream);
            noted.lock().unwrap().push(std::time::Instant::now());
            let mut stream = stream;
            let code = shared.load(Ordering::SeqCst);
            let body = if code == 200 {
                std::fs::read(&file).unwrap()
            } else {
                b"unavailable".to_vec()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (format!("http://127.0.0.1:{port}/{name}"), answer, hits)
}

#[test]
fn an_artifact_server_down_keeps_the_release_and_is_retried_until_it_is_back() {
    let (sandbox, remote) = repo(json!({}));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let before = std::fs::read_link(live(&sandbox)).unwrap();
    let file = artifact(&sandbox, "1.1.0");
    let (url, answer, _) = artifact_server(file.clone());
    bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .run()
        .assert_code(0);
    for code in [503, 404] {
        answer.store(code, Ordering::SeqCst);
        let run = agent(&sandbox, &remote, &[]);
        run.assert_code(1);
        assert!(
            run.stdout
                .contains(&format!("dev: retrying: web: `{url}`: HTTP {code}")),
            "{}",
            run.stdout
        );
        assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);
        assert_eq!(status(&sandbox)["state"], "retrying");
        assert_eq!(status(&sandbox)["apps"]["web"]["state"], "unreachable");
    }
    // Not a failed revision: once the server is back, it deploys.
    answer.store(200, Ordering::SeqCst);
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap(),
        "web 1.1.0\n"
    );
}

/// A running agent, killed if the test ends first.
pub(crate) struct Running(pub(crate) std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: the status and the body.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_push_triggers_the_agent_which_serves_metrics_and_health() {
    let (sandbox, remote) = repo(json!({}));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let trigger = format!("http://127.0.0.1:{port}/trigger");
    sandbox.edit_env("dev", "dev", |env| {
        env["agent"] = json!({
            "interval": "1h", "trigger_urls": [trigger], "trigger_secret": "FERRY_TRIGGER_SECRET"
        });
    });
    let mut command = sandbox
        .ferry(&["agent", "--env", "dev", "--remote", &remote])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .env("FERRY_WEBHOOK_SECRET", "s3cret")
        .command;
    let mut running = Running(command.stderr(std::process::Stdio::null()).spawn().unwrap());
    let started = std::time::Instant::now();
    let wait = |what: &dyn Fn() -> bool| {
        while !what() {
            assert!(started.elapsed().as_secs() < 30, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait(&|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    wait(&|| http(port, "GET", "/readyz", "", "").0 == 200);
    assert_eq!(
        http(port, "GET", "/healthz", "", ""),
        (200, "ok\n".to_owned())
    );
    // Unsigned, or signed with another secret: refused.
    assert_eq!(http(port, "POST", "/trigger", "", "{}").0, 401);
    let forged = "X-Hub-Signature-256: sha256=0000\r\n";
    assert_eq!(http(port, "POST", "/trigger", forged, "{}").0, 401);
    // The CI bot bumps dev: the repository's post-receive hook tells the agent, which
    // deploys at once (its interval is an hour).
    let file = artifact(&sandbox, "1.3.0");
    let url = format!("file://{}", file.display());
    // The hook reads its secret as the agent does: here from the file the variable's
    // `_FILE` names.
    let secret = sandbox.path().join("trigger-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    bump_from(&sandbox, &remote, "1.3.0", &url, &file)
        .env("FERRY_TRIGGER_SECRET_FILE", secret.to_str().unwrap())
        .run()
        .assert_code(0);
    let index = live(&sandbox).join("index.html");
    let bumped = std::time::Instant::now();
    wait(&|| std::fs::read_to_string(&index).ok().as_deref() == Some("web 1.3.0\n"));
    assert!(
        bumped.elapsed().as_secs() < 5,
        "deployed {:?} after the push",
        bumped.elapsed()
    );
    // The reconcile is counted once it is over (the switch comes before its end).
    let deployed_twice = "ferry_agent_reconciles_total{env=\"dev\",outcome=\"deployed\"} 2";
    wait(&|| {
        http(port, "GET", "/metrics", "", "")
            .1
            .contains(deployed_twice)
    });
    let (status, metrics) = http(port, "GET", "/metrics", "", "");
    assert_eq!(status, 200);
    for line in [
        "ferry_agent_reconciles_total{env=\"dev\",outcome=\"deployed\"} 2",
        "ferry_agent_triggers_total{env=\"dev\"} 1",
        "ferry_agent_errors_total{env=\"dev\",class=\"failed\"} 0",
        "# TYPE ferry_agent_reconcile_duration_seconds summary",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status();
    let exit = running.0.wait().unwrap();
    assert!(exit.success());
}

#[test]
fn a_state_store_down_keeps_the_release_and_the_agent_recovers_by_itself() {
    let (sandbox, _) = repo(json!({}));
    // The same repository, served over smart HTTP to the agent.
    let root = crate::common::http::project_root(sandbox.path());
    std::fs::rename(sandbox.path().join("deploy.git"), root.join("deploy.git")).unwrap();
    let path = root.join("deploy.git").display().to_string();
    let server = crate::common::http::GitHttp::serve(&root, None);
    let port = server.port;
    let url = server.url("deploy.git");
    let mut command = sandbox
        .ferry(&[
            "agent",
            "--env",
            "dev",
            "--remote",
            &url,
            "--interval",
            "1s",
        ])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .command;
    let _running = Running(command.stderr(std::process::Stdio::null()).spawn().unwrap());
    let started = std::time::Instant::now();
    let wait = |what: &dyn Fn() -> bool| {
        while !what() {
            assert!(started.elapsed().as_secs() < 60, "timed out");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let state = || {
        std::fs::read(sandbox.path().join("state/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| v["state"].as_str().unwrap_or_default().to_owned())
    };
    wait(&|| state().as_deref() == Some("deployed"));
    let release = std::fs::read_link(live(&sandbox)).unwrap();
    // The server goes down; a new pin lands meanwhile (on the server's side).
    drop(server);
    wait(&|| state().as_deref() == Some("retrying"));
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), release);
    let file = artifact(&sandbox, "1.4.0");
    bump(&sandbox, &path, "1.4.0", &file, false);
    // Back up: the agent converges on its own.
    let _server = crate::common::http::GitHttp::serve_at(&root, port);
    let index = live(&sandbox).join("index.html");
    wait(&|| std::fs::read_to_string(&index).ok().as_deref() == Some("web 1.4.0\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_are_reported_to_github_with_the_agents_own_token() {
    use wiremock::matchers::{body_json, method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let (sandbox, remote) = repo(json!({}));
    let server = MockServer::start().await;
    // What the commit has so far: nothing (GitHub's combined status, as documented).
    let mut none = crate::common::github::fixture("combined-status.json")["body"].clone();
    none["statuses"] = json!([]);
    none["total_count"] = json!(0);
    none["state"] = json!("pending");
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/repos/acme/deploy/commits/[0-9a-f]{40}/status$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(none))
        .expect(1)
        .mount(&server)
        .await;
    // The host's own status, then the environment's aggregate: this host completes it.
    for (context, description) in [
        ("ferry/deploy/dev/h1", "deployed web 1.0.0"),
        ("ferry/deploy/dev", "deployed on 1 host"),
    ] {
        Mock::given(method("POST"))
            .and(path_regex(r"^/repos/acme/deploy/statuses/[0-9a-f]{40}$"))
            .and(body_json(json!({
                "state": "success", "context": context, "description": description
            })))
            .respond_with(crate::common::github::recorded("create-status.json"))
            .expect(1)
            .mount(&server)
            .await;
    }
    let f = sandbox
        .ferry(&["agent", "--env", "dev", "--remote", &remote, "--once"])
        .args([
            "--forge",
            "github",
            "--github-repo",
            "acme/deploy",
            "--host",
            "h1",
        ])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .env("GITHUB_API_URL", &server.uri())
        .env("GITHUB_TOKEN", "ghs_agent0000000000000000000000000000000");
    let run = tokio::task::spawn_blocking(move || f.run()).await.unwrap();
    run.assert_code(0);
    let tip = sandbox.tip("dev");
    let requests = server.received_requests().await.unwrap();
    let paths: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "GET".to_owned(),
                format!("/repos/acme/deploy/commits/{tip}/status")
            ),
            (
                "POST".to_owned(),
                format!("/repos/acme/deploy/statuses/{tip}")
            ),
            (
                "POST".to_owned(),
                format!("/repos/acme/deploy/statuses/{tip}")
            ),
        ]
    );
}

#[test]
fn an_agent_for_one_host_deploys_only_that_hosts_apps() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let file = artifact(&sandbox, "1.0.0");
    bump(&sandbox, &remote, "1.0.0", &file, true);
    sandbox
        .ferry(&[
            "bump", "api", "2.0.0", "--env", "dev", "--add", "--remote", &remote,
        ])
        .arg("--url")
        .arg(format!("file://{}", file.display()))
        .arg("--artifact")
        .arg(&file)
        .run()
        .assert_code(0);
    sandbox.edit_env("dev", "dev", |env| {
        env["apps"] = json!({
            "web": {"host": "web-1", "deployment_path": "/srv/web"},
            "api": {"host": "api-1", "deployment_path": "/srv/api"}
        });
    });
    // A host no app runs on: nothing to do is not a success.
    let run = agent(&sandbox, &remote, &["--host", "db-1"]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("no app of `dev` runs on host `db-1`"),
        "{}",
        run.stdout
    );
    agent(&sandbox, &remote, &["--host", "api-1"]).assert_code(0);
    assert!(sandbox.path().join("root/srv/api/index.html").exists());
    assert!(!sandbox.path().join("root/srv/web").exists());
    assert_eq!(
        status(&sandbox)["apps"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["api"]
    );
}

/// A small file system (tmpfs), unmounted when dropped.
struct SmallDisk(PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_the_release_and_the_agent_deploys_once_space_is_back() {
    let (sandbox, remote) = repo(json!({}));
    // The agent's root on a 4 MiB file system (tests run as root, as CI does).
    let root = sandbox.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root");
    let _disk = SmallDisk(root.clone());
    agent(&sandbox, &remote, &[]).assert_code(0);
    let before = std::fs::read_link(live(&sandbox)).unwrap();
    // Something else fills the disk; 1.5.0 needs 2 MiB.
    let junk = root.join("junk");
    let _ = std::fs::write(&junk, vec![1u8; 4 << 20]);
    let dir = sandbox.path().join("pkg-1.5.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data"), vec![7u8; 2 << 20]).unwrap();
    let file = artifact(&sandbox, "1.5.0");
    bump(&sandbox, &remote, "1.5.0", &file, false);
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("dev: retrying: web: unpacking:")
            && run.stdout.contains("No space left"),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);
    assert_eq!(status(&sandbox)["apps"]["web"]["state"], "retrying");
    // Space is back: not a failed revision, so the next reconcile deploys it.
    std::fs::remove_file(&junk).unwrap();
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(live(&sandbox).join("index.html")).unwrap(),
        "web 1.5.0\n"
    );
}

/// `len` bytes that do not compress (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A running agent whose state dir is on a disk too small for its next artifact: each try
/// fills the disk again, so it waits 10 s (half of it jittered), doubling, whatever its
/// `--interval`; the running release stays, and once there is room it deploys by itself.
#[test]
fn a_full_disk_is_retried_after_a_backoff_not_every_interval() {
    let (sandbox, remote) = repo(json!({}));
    // The state dir (and its artifact cache) on a 2 MiB file system (tests run as root).
    let state = sandbox.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root");
    let _disk = SmallDisk(state.clone());
    agent(&sandbox, &remote, &[]).assert_code(0);
    let before = std::fs::read_link(live(&sandbox)).unwrap();
    // 1.1.0 is 3 MiB that does not compress, from an HTTP server: more than the disk holds.
    let dir = sandbox.path().join("pkg-1.1.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data"), noise(3 << 20)).unwrap();
    let file = artifact(&sandbox, "1.1.0");
    let (url, _, hits) = artifact_server(file.clone());
    bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .run()
        .assert_code(0);
    let log = sandbox.path().join("agent.log");
    let mut command = polling(&sandbox, &remote, &state).command;
    let _running = Running(
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    let seconds = std::time::Duration::from_secs;
    let first = loop {
        if let Some(first) = hits.lock().unwrap().first() {
            break *first;
        }
        assert!(started.elapsed() < seconds(30), "no download was tried");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    while status(&sandbox)["state"] != "retrying" {
        assert!(first.elapsed() < seconds(10), "{}", status(&sandbox));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let report = status(&sandbox);
    assert_eq!(report["apps"]["web"]["state"], "retrying", "{report}");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.starts_with("web: the artifact cache `")
            && message.contains("No space left on device"),
        "{report}"
    );
    // An interval of 1s, but no second try within 4.5s of the first.
    std::thread::sleep(
        seconds(4).saturating_sub(first.elapsed()) + std::time::Duration::from_millis(500),
    );
    let tries = hits.lock().unwrap().len();
    assert_eq!(tries, 1, "a try per interval");
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        said.matches("dev: retrying: web: the artifact cache")
            .count(),
        1,
        "{said}"
    );
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(state.join("artifacts/tmp"))
            .unwrap()
            .count(),
        0,
        "the partial download is removed"
    );
    // Room again: the next try (5 to 10 s after the first) deploys it, without a restart.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(grown.success());
    let index = live(&sandbox).join("index.html");
    while std::fs::read_to_string(&index).ok().as_deref() != Some("web 1.1.0\n") {
        assert!(
            first.elapsed() < seconds(30),
            "not deployed once there was room"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2);
    let waited = hits[1] - hits[0];
    assert!(waited >= seconds(5), "retried after {waited:?}");
}

#[test]
fn a_missing_root_is_refused_and_nothing_is_created() {
    let (sandbox, remote) = repo(json!({}));
    for root in ["rel-typo", "/nonexistent-ferry-root/srv"] {
        let run = sandbox
            .ferry(&[
                "agent", "--env", "dev", "--remote", &remote, "--once", "--root", root,
            ])
            .arg("--state-dir")
            .arg(sandbox.path().join("state"))
            .run();
        run.assert_code(2);
        assert!(
            run.stderr
                .contains(&format!("error: `--root {root}` does not exist")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("hint: "), "{}", run.stderr);
        assert!(!sandbox.path().join("rel-typo").exists());
        assert!(!std::path::Path::new("/nonexistent-ferry-root").exists());
        assert!(!sandbox.path().join("state").exists(), "no state either");
    }
    // A file is not a root.
    std::fs::write(sandbox.path().join("file"), "").unwrap();
    sandbox
        .ferry(&[
            "agent", "--env", "dev", "--remote", &remote, "--once", "--root", "file",
        ])
        .run()
        .assert_code(2);
}

#[test]
fn a_relative_root_gives_links_that_resolve() {
    let (sandbox, remote) = repo(json!({}));
    std::fs::create_dir(sandbox.path().join("rel")).unwrap();
    sandbox
        .ferry(&[
            "agent", "--env", "dev", "--remote", &remote, "--once", "--root", "rel",
        ])
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .run()
        .assert_code(0);
    let link = std::fs::read_link(sandbox.path().join("rel/srv/web")).unwrap();
    assert!(link.is_absolute(), "{link:?}");
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("rel/srv/web/index.html")).unwrap(),
        "web 1.0.0\n"
    );
}

/// Serves `file` for any request, slowly (64 KiB every 20 ms), with its Content-Length.
fn slow_server(file: &Path) -> String {
    let body = std::fs::read(file).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            crate::common::http::read_request_head(&stream);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            for chunk in body.chunks(64 << 10) {
                if stream.write_all(chunk).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    format!("http://127.0.0.1:{port}/web-1.1.0.tgz")
}

/// On a terminal (script(1) gives the agent one, with a `TERM`), a download draws a progress bar on stderr;
/// on a pipe, as in every other test, nothing of it shows.
#[test]
fn a_download_draws_a_progress_bar_on_a_terminal_only() {
    let (sandbox, remote) = repo(json!({}));
    // An artifact of over 1 MiB that does not compress, served in about half a second.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..3u32 << 19)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::create_dir_all(sandbox.path().join("pkg-1.1.0")).unwrap();
    std::fs::write(sandbox.path().join("pkg-1.1.0/noise.bin"), &noise).unwrap();
    let file = artifact(&sandbox, "1.1.0");
    let url = slow_server(&file);
    bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .run()
        .assert_code(0);
    let ferry = once(&sandbox, &["--remote", &remote, "--no-report"]);
    let mut line = format!("'{}'", ferry.command.get_program().to_string_lossy());
    for arg in ferry.command.get_args() {
        line.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    crate::common::prereq::require("script", "Debian package bsdutils");
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("TERM", "xterm");
    for (key, value) in ferry.command.get_envs() {
        if let Some(value) = value {
            script.env(key, value);
        }
    }
    let output = script.output().expect("script(1), from util-linux");
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    assert!(
        terminal.contains("fetching web-1.1.0.tgz") && terminal.contains(" MiB "),
        "no progress bar on a terminal:\n{terminal}"
    );

    // The same download on a pipe (a new state dir: nothing cached).
    std::fs::create_dir(sandbox.path().join("root-pipe")).unwrap();
    let run = sandbox
        .ferry(&["agent", "--env", "dev", "--once", "--no-report"])
        .args(["--remote", &remote])
        .arg("--state-dir")
        .arg(sandbox.path().join("state-pipe"))
        .arg("--root")
        .arg(sandbox.path().join("root-pipe"))
        .run();
    run.assert_code(0);
    assert!(!run.stderr.contains("fetching"), "{}", run.render());
}

/// `ferry agent --listen` for dev on a free port, `--interval 1h`, with `args` and `env` on
/// top, its open files limited to `nofile` (`ulimit -n`): the process, killed when dropped, and
/// its port, once `/healthz` answers.
fn listening(
    sandbox: &Sandbox,
    args: &[&str],
    env: &[(&str, &str)],
    nofile: Option<u64>,
) -> (Running, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ferry = sandbox
        .ferry(&["agent", "--interval", "1h"])
        .args(args)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"));
    for (key, value) in env {
        ferry = ferry.env(key, value);
    }
    let mut command = ferry.command;
    if let Some(limit) = nofile {
        // SAFETY: setrlimit is async-signal-safe and changes only the child's own limits.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                let limit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let running = Running(command.stderr(std::process::Stdio::null()).spawn().unwrap());
    let started = std::time::Instant::now();
    while get(port, "/healthz").map(|(code, _)| code) != Some(200) {
        assert!(
            started.elapsed().as_secs() < 30,
            "the endpoint never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (running, port)
}

/// `GET path` on 127.0.0.1:`port`, answered within 5 s: the status and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        b"",
    )
}

/// Sends `head` and `body` to 127.0.0.1:`port` and reads the answer, within 5 s each: the
/// status and the body.
fn request(port: u16, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let timeout = Some(std::time::Duration::from_secs(5));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(timeout).ok()?;
    stream.set_write_timeout(timeout).ok()?;
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`: the peak).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The CPU time process `pid` has used, all its threads, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's `(name)`: state is the first field, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}

/// The `X-Hub-Signature-256` GitHub sends for `body` (computed here, not by ferry).
pub(crate) fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Writes `head`, then up to `bytes` of body in 64 KiB pieces (as chunks, with `chunked`)
/// until the server stops taking them, and reads the status it answered, if any: one
/// attacker's connection, bounded in bytes and time.
fn flood(port: u16, head: &str, bytes: usize, chunked: bool) -> Option<u16> {
    let timeout = Some(std::time::Duration::from_secs(10));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(timeout).ok()?;
    stream.set_write_timeout(timeout).ok()?;
    let _ = stream.write_all(head.as_bytes());
    let piece = vec![b'a'; 64 << 10];
    let mut sent = 0;
    while sent < bytes {
        let written = if chunked {
            stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .and_then(|()| stream.write_all(&piece))
                .and_then(|()| stream.write_all(b"\r\n"))
        } else {
            stream.write_all(&piece)
        };
        if written.is_err() {
            break;
        }
        sent += piece.len();
    }
    let mut answer = [0u8; 64];
    let n = std::io::Read::read(&mut stream, &mut answer).ok()?;
    String::from_utf8_lossy(&answer[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn unsigned_25mb_bodies_and_a_1gib_header_do_not_grow_the_agent() {
    // Issue 15, item 13: a hundred unsigned 25 MB bodies took the agent to 2.59 GB (each
    // buffer was allocated by its Content-Length before the signature was checked), and one
    // 1 GiB header line to 2.64 GB.
    let (sandbox, remote) = repo(json!({}));
    let secret = "correct horse battery staple";
    let file = sandbox.path().join("webhook-secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let (running, port) = listening(
        &sandbox,
        &[
            "--env",
            "dev",
            "--remote",
            &remote,
            "--webhook-secret-env",
            "HOOK_SECRET",
        ],
        &[
            ("HOOK_SECRET_FILE", file.to_str().unwrap()),
            ("FERRY_WEBHOOK_SECRET", "not the one read"),
        ],
        None,
    );
    let pid = running.0.id();
    // Item 14: the secret is named, not given: neither `ps` nor the environment shows it.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for (what, bytes) in [("cmdline", cmdline), ("environ", environ)] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the secret is in /proc/{pid}/{what}"
        );
    }
    let before = proc_status_kb(pid, "VmHWM");
    let forged = format!("X-Hub-Signature-256: sha256={}\r\n", "00".repeat(32));
    let size = 25_000_000;
    let attackers: Vec<_> = (0..100)
        .map(|i| {
            // Half declare their length, half stream chunks: both with a signature to check.
            let head = if i % 2 == 0 {
                format!("POST /trigger HTTP/1.1\r\nHost: x\r\n{forged}Content-Length: {size}\r\n\r\n")
            } else {
                format!(
                    "POST /trigger HTTP/1.1\r\nHost: x\r\n{forged}Transfer-Encoding: chunked\r\n\r\n"
                )
            };
            std::thread::spawn(move || flood(port, &head, size, i % 2 == 1))
        })
        .collect();
    let big_header = std::thread::spawn(move || {
        flood(
            port,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
            1 << 30,
            false,
        )
    });
    let answers: Vec<Option<u16>> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    let header_answer = big_header.join().unwrap();
    let peak = proc_status_kb(pid, "VmHWM");
    let now = proc_status_kb(pid, "VmRSS");
    eprintln!(
        "VmHWM before {before} kB, after {peak} kB; VmRSS {now} kB; answers {answers:?}; header {header_answer:?}"
    );
    assert!(peak < 100_000, "the agent's peak RSS was {peak} kB");
    // Refused, never accepted: 413 when the answer arrived before the connection was reset.
    assert!(
        answers.iter().all(|a| matches!(a, None | Some(413))),
        "{answers:?}"
    );
    assert!(answers.contains(&Some(413)), "{answers:?}");
    assert!(
        matches!(header_answer, None | Some(431)),
        "{header_answer:?}"
    );
    assert_eq!(get(port, "/healthz"), Some((200, "ok\n".to_owned())));

    // A trigger signed with the secret from the file is still taken; one signed with the
    // variable's value, or too large, is not.
    let body = br#"{"ref":"refs/heads/dev"}"#;
    let post = |signature: &str, body: &[u8]| {
        let head = format!(
            "POST /trigger HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        request(port, &head, body).map(|(code, _)| code)
    };
    assert_eq!(post(&github_signature(secret, body), body), Some(202));
    assert_eq!(
        post(&github_signature("not the one read", body), body),
        Some(401)
    );
    let large = vec![b' '; (1 << 20) + 1];
    // Refused: 413 when the answer arrives before the server closes on the rest of the body
    // (then the client sees a reset); the count of triggers taken shows it was not taken.
    let answer = post(&github_signature(secret, &large), &large);
    assert!(matches!(answer, None | Some(413)), "{answer:?}");
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("ferry_agent_triggers_total{env=\"dev\"} 1\n"),
        "{metrics}"
    );
}

/// Holds `count` connections that sent half a request head to the agent with `nofile` open
/// files at most, and checks that it neither spins nor leaves `/healthz` unanswered.
fn slow_clients(count: usize, nofile: u64) {
    // This test's own side of the connections.
    // SAFETY: getrlimit/setrlimit on this process's own limits.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let (sandbox, remote) = repo(json!({}));
    let (running, port) = listening(
        &sandbox,
        &["--env", "dev", "--remote", &remote],
        &[],
        Some(nofile),
    );
    let pid = running.0.id();
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..count {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        slow.push(stream);
    }
    let opened = started.elapsed();
    // Let the agent take them in, then measure it idle among them.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let cpu = cpu_seconds(pid);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = cpu_seconds(pid) - cpu;
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        assert_eq!(get(port, "/healthz"), Some((200, "ok\n".to_owned())));
        let took = asked.elapsed();
        assert!(took.as_millis() < 2000, "/healthz took {took:?}");
    }
    eprintln!(
        "{count} slow connections opened in {opened:?}; the agent used {used:.2}s of CPU in 2s"
    );
    assert!(used < 0.5, "the agent used {used:.2}s of CPU in 2s");
    // The slow connections are still within the header deadline: none had an answer.
    assert!(started.elapsed().as_secs() < 9, "{:?}", started.elapsed());
    drop(slow);
}

#[test]
fn slow_clients_beyond_the_connection_cap_neither_spin_nor_starve_healthz() {
    // Issue 15, item 13: 600 slow connections at `ulimit -n 1024` made the accept loop spin
    // at 100 % CPU with `/healthz` dead.
    slow_clients(600, 1024);
}

#[test]
fn slow_clients_that_use_up_the_open_file_limit_neither_spin_nor_starve_healthz() {
    // Past `ulimit -n`, accept fails (EMFILE) and the connection stays queued.
    slow_clients(300, 128);
}

#[test]
fn label_values_are_escaped_in_metrics() {
    // An environment name with a quote, a backslash and a line feed cannot forge a sample.
    let sandbox = Sandbox::new();
    let env = "we\"ird\\env\nevil_metric 1";
    let (_running, port) = listening(
        &sandbox,
        &["--env", env, "--source", "oci://127.0.0.1:9/deploy:dev"],
        &[],
        None,
    );
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics
            .contains("ferry_agent_triggers_total{env=\"we\\\"ird\\\\env\\nevil_metric 1\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.lines().any(|l| l.starts_with("evil_metric")),
        "{metrics}"
    );
}

#[test]
fn a_webhook_secret_on_the_command_line_or_a_named_variable_unset_is_refused() {
    let sandbox = Sandbox::new();
    let run = |args: &[&str]| {
        sandbox
            .ferry(&["agent", "--env", "dev", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--root")
            .arg(sandbox.path().join("root"))
            .run()
    };
    let refused = run(&["--webhook-secret", "s3cret"]);
    refused.assert_code(2);
    assert!(refused.stderr.contains("`ps`"), "{}", refused.render());
    assert!(
        refused.stderr.contains("FERRY_WEBHOOK_SECRET_FILE"),
        "{}",
        refused.render()
    );
    let unset = run(&["--webhook-secret-env", "HOOK_SECRET"]);
    unset.assert_code(2);
    assert!(
        unset
            .stderr
            .contains("neither `HOOK_SECRET` nor `HOOK_SECRET_FILE` is set"),
        "{}",
        unset.render()
    );
}

/// A running agent (not `--once`: its memory stays in the process) told `ferry agent retry`
/// for a revision that then fails the same way again goes back to waiting: it must not
/// redeploy the broken release every interval (the memory it saved before the switch, and the
/// one `retry` rewrote, are what is on disk, not what it last wrote itself).
#[test]
fn a_retried_revision_that_fails_again_waits_in_a_running_agent() {
    let noted = std::env::temp_dir()
        .join(format!("ferry-it-retried-{}", std::process::id()))
        .display()
        .to_string();
    let _ = std::fs::remove_file(&noted);
    let (url, answer) = health_server();
    let (sandbox, remote) = repo(json!({
        "healthcheck_url": url, "healthcheck_timeout": "1s", "healthcheck_retries": 1,
        "activate": ["sh", "-c", format!("echo $FERRY_VERSION >> {noted}")],
    }));
    agent(&sandbox, &remote, &[]).assert_code(0);
    let file = artifact(&sandbox, "1.1.0");
    bump(&sandbox, &remote, "1.1.0", &file, false);
    answer.store(500, Ordering::SeqCst);
    let state_dir = sandbox.path().join("state");
    let mut command = polling(&sandbox, &remote, &state_dir).command;
    let _running = Running(
        command
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tries = || {
        std::fs::read_to_string(&noted)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "1.1.0")
            .count()
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(
                started.elapsed().as_secs() < 60,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for("the first failure", &|| {
        status(&sandbox)["state"] == "failed"
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let before = tries();
    assert_eq!(before, 1, "a failed revision waits");
    sandbox
        .ferry(&["agent", "retry", "--env", "dev", "--state-dir"])
        .arg(&state_dir)
        .run()
        .assert_code(0);
    wait_for("the retry", &|| tries() > before);
    // Several intervals (1 s) later, it has not been tried again.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let memory = std::fs::read_to_string(state_dir.join("agent.json")).unwrap();
    assert_eq!(tries(), before + 1, "retried once, then waiting: {memory}");
    let _ = std::fs::remove_file(&noted);
}
