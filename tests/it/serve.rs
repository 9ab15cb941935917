//! `ferry serve`: its pages in a real browser (Debian's chromium, headless: the DOM it builds
//! and a screenshot of each page under `target/serve-screenshots/`), its JSON API against the
//! CLI's `--format json` on the same repository, and what an attacker may try: markup in
//! commit messages and reports, a path traversal, other methods, a huge or slow request, a
//! flood of idle connections, another Host.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::Sandbox;

/// What attackers wrote into the repository: a report's description, a commit's subject, a
/// manifest's description. None of it may become markup.
const HOSTILE_DESCRIPTION: &str = "<script>alert('description')</script>";
const HOSTILE_SUBJECT: &str = "<script>alert('subject')</script> <img src=x onerror=alert(1)>";
const HOSTILE_URL: &str = "javascript:alert('url')";

/// A quickstart's repository (the whole loop: three environments, a fleet, two merged
/// requests), then an open request #3 whose head carries a hostile report, and a commit on dev
/// with a hostile subject. Built once for the tests of this module.
struct Fixture {
    sandbox: Sandbox,
    remote: String,
    /// "Now" for the server and the commands compared with it (an hour after the quickstart,
    /// which ran in real time): the same figures on both sides.
    now: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let sandbox = Sandbox::new();
        let mut quickstart = sandbox.ferry(&["quickstart", "demo"]);
        for var in ["GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "FERRY_NOW"] {
            quickstart.command.env_remove(var);
        }
        quickstart.run().assert_code(0);
        let remote = sandbox.path().join("demo/deploy.git").display().to_string();
        let ferry = |user: &str, args: &[&str]| {
            let mut f = sandbox
                .ferry(args)
                .args(["--remote", &remote])
                .env("USER", user);
            f.command.env_remove("FERRY_NOW");
            f.run()
        };
        ferry("alice", &["promote", "dev", "staging"]).assert_code(0);
        let head = ferry("alice", &["requests", "3", "--format", "json"]).json()["head"]
            .as_str()
            .expect("a head")
            .to_owned();
        ferry(
            "ci-bot",
            &[
                "status",
                "set",
                &head,
                "ci/test",
                "failure",
                "--description",
                HOSTILE_DESCRIPTION,
                "--url",
                HOSTILE_URL,
            ],
        )
        .assert_code(0);
        // A direct change of dev by its allowed pusher, with a hostile subject.
        sandbox.git("", &["clone", "-q", "-b", "dev", &remote, "hostile"]);
        let manifest = sandbox.path().join("hostile/manifest.json");
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        value["description"] = HOSTILE_SUBJECT.into();
        std::fs::write(&manifest, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        sandbox.git("hostile", &["commit", "-qam", HOSTILE_SUBJECT]);
        let (pushed, why) = sandbox.git_as("ci-bot", "hostile", &["push", "-q"], &[]);
        assert!(pushed, "{why}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            + 3600;
        Fixture {
            sandbox,
            remote,
            now: now.to_string(),
        }
    })
}

/// `ferry serve` of the fixture's repository.
fn serve_fixture() -> Server {
    let fixture = fixture();
    serve_with(
        &fixture.sandbox,
        &fixture.remote,
        &[("FERRY_NOW", &fixture.now)],
    )
}

/// A running `ferry serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    url: String,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry serve` of `remote` on a free port, once it prints its URL.
fn serve(sandbox: &Sandbox, remote: &str) -> Server {
    serve_with(sandbox, remote, &[])
}

/// [`serve`] with `env` set.
pub(crate) fn serve_with(sandbox: &Sandbox, remote: &str, env: &[(&str, &str)]) -> Server {
    let mut ferry = sandbox.ferry(&["serve", "--listen", "127.0.0.1:0", "--remote", remote]);
    for (key, value) in env {
        ferry.command.env(key, value);
    }
    let mut child = ferry
        .command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry serve starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let url = String::from_utf8(line).expect("a URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .expect("a port");
    Server { child, url, port }
}

/// An answer: status, headers (lowercase names), body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends `request` as it is and reads the answer until the server closes.
pub(crate) fn exchange(port: u16, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

pub(crate) fn get(port: u16, path: &str) -> Answer {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// Where the screenshots go: `target/serve-screenshots/`.
fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    // target/debug/deps/it-… → target
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the target directory")
        .to_owned();
    let dir = target.join("serve-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshots' directory");
    dir
}

/// Headless chromium with the flags that work as root in a container, and a profile of its own.
fn chromium(profile: &Path, args: &[&str]) -> String {
    crate::common::prereq::require("chromium", "Debian package chromium");
    let output = Command::new("timeout")
        .arg("90")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DOM chromium builds from `url` (scripts run), and a screenshot of it as `name.png`.
fn browse(url: &str, name: &str) -> String {
    let profile = tempfile::tempdir().expect("a profile");
    let dom = chromium(profile.path(), &["--dump-dom", url]);
    let shot = screenshots().join(format!("{name}.png"));
    chromium(
        profile.path(),
        &[&format!("--screenshot={}", shot.display()), url],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    dom
}

/// No element the attackers' text would have made: their text is there, as text.
#[track_caller]
fn inert(dom: &str) {
    for made in [
        "<script>alert",
        "<img src=\"x\"",
        "<img src=x",
        "href=\"javascript:",
    ] {
        assert!(!dom.contains(made), "{made:?} in the DOM:\n{dom}");
    }
}

#[test]
fn each_page_loads_in_a_real_browser() {
    let server = serve_fixture();
    let url = &server.url;

    let dom = browse(url, "overview");
    inert(&dom);
    for said in [
        "<h1>Overview</h1>",
        // Each environment's deploy, and prod's fleet by state.
        "deploy success",
        "3 deployed",
        "1 app rolled out on every host",
        // The promotion graph: what would move on each edge.
        "dev → staging",
        "staging → prod",
        "nothing would move",
        // The matrix.
        "<th scope=\"row\">web</th>",
        "apps 1–1 of 1",
        // The script ran: the page refreshes itself.
        "live: reloads when the repository changes",
    ] {
        assert!(dom.contains(said), "no {said:?} in the overview:\n{dom}");
    }

    let dom = browse(&format!("{url}requests"), "requests");
    inert(&dom);
    for said in ["#3", "dev → staging", "ci/test failure", "#2", "merged"] {
        assert!(dom.contains(said), "no {said:?} in the requests:\n{dom}");
    }

    let dom = browse(&format!("{url}requests/3"), "request");
    inert(&dom);
    for said in [
        // The hostile report: shown as text, its URL not a link.
        "&lt;script&gt;alert('description')&lt;/script&gt;",
        // The body, rendered: its table and its gates.
        "<h3>Gates</h3>",
        "<code>required_checks</code>",
        "nobody yet",
    ] {
        assert!(dom.contains(said), "no {said:?} in request 3:\n{dom}");
    }
    assert!(!dom.contains("ferry:promotion"), "{dom}");

    // DORA's figures are computed beside the pages: a page waits a moment for them, then
    // says they are being computed and reloads itself once they are.
    let started = Instant::now();
    while !get(server.port, "/env/prod")
        .body
        .contains("Deployment frequency")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no DORA charts"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(server.port, "/api/fingerprint").json()["computing"], 0);
    let dom = browse(&format!("{url}env/prod"), "environment");
    inert(&dom);
    for said in [
        "<h1>prod</h1>",
        "prod-web-3",
        "Protection, as declared",
        "allowed_mergers",
        "carol",
        "request <a href=\"/requests/2\">#2</a>",
        "approved by bob",
        "merged by carol",
        "pushed by carol",
        // The DORA charts, drawn on the server: prod deployed once.
        "DORA metrics",
        "Deployment frequency: <strong>1 a day (1 deploy)</strong>",
        "<rect class=\"bar deploys\"",
        "Lead time for changes: <strong>median ",
        "Change failure rate: <strong>0.0% (0 of 1 failed)</strong>",
    ] {
        assert!(dom.contains(said), "no {said:?} in prod's page:\n{dom}");
    }

    let dom = browse(&format!("{url}env/dev"), "environment-dev");
    inert(&dom);
    assert!(
        dom.contains(
            "&lt;script&gt;alert('subject')&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;"
        ),
        "{dom}"
    );

    let dom = browse(&format!("{url}diff/dev/prod"), "diff");
    inert(&dom);
    assert!(dom.contains("1.1.0") && dom.contains("up"), "{dom}");

    let dom = browse(&format!("{url}env/..%2f..%2fetc%2fpasswd"), "not-found");
    assert!(dom.contains("404 Not Found"), "{dom}");
    assert!(!dom.contains("root:"), "{dom}");
}

#[test]
fn the_api_answers_what_the_cli_prints() {
    let fixture = fixture();
    let server = serve_fixture();
    let cli = |args: &[&str]| {
        let mut ferry =
            fixture
                .sandbox
                .ferry(args)
                .args(["--format", "json", "--remote", &fixture.remote]);
        // The documents as they are, paths included, at the server's time.
        ferry.replace.clear();
        ferry.command.env("FERRY_NOW", &fixture.now);
        let run = ferry.run();
        assert!(
            run.code == Some(0) || run.code == Some(1),
            "{}",
            run.render()
        );
        run.json()
    };
    for (path, args) in [
        ("/api/status", vec!["status"]),
        ("/api/status?env=prod", vec!["status", "prod"]),
        ("/api/requests", vec!["requests"]),
        ("/api/requests?state=all", vec!["requests", "--all"]),
        (
            "/api/requests?state=merged&env=prod",
            vec!["requests", "--state", "merged", "--env", "prod"],
        ),
        ("/api/requests/2", vec!["requests", "2"]),
        ("/api/requests/3", vec!["requests", "3"]),
        // A page of a history not built whole yet, then the whole.
        (
            "/api/history/prod?limit=2",
            vec!["history", "prod", "--limit", "2"],
        ),
        (
            "/api/history/staging?app=web&limit=1",
            vec!["history", "staging", "--app", "web", "--limit", "1"],
        ),
        ("/api/history/prod", vec!["history", "prod"]),
        ("/api/history/dev", vec!["history", "dev"]),
        (
            "/api/history/dev?app=web&limit=1",
            vec!["history", "dev", "--app", "web", "--limit", "1"],
        ),
        ("/api/audit/prod", vec!["audit", "prod"]),
        ("/api/audit/dev", vec!["audit", "dev"]),
        (
            "/api/audit/dev?since=2020-01-01",
            vec!["audit", "dev", "--since", "2020-01-01"],
        ),
        ("/api/diff/dev/prod", vec!["diff", "dev", "prod"]),
        ("/api/dora/prod", vec!["dora", "prod"]),
        ("/api/dora/dev", vec!["dora", "dev"]),
        (
            "/api/dora/staging?since=2020-01-01",
            vec!["dora", "staging", "--since", "2020-01-01"],
        ),
    ] {
        let answer = get(server.port, path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(answer.json(), cli(&args), "{path} and `ferry {args:?}`");
    }
    // The overview's own document, and the fingerprint the pages poll.
    let overview = get(server.port, "/api/overview").json();
    assert_eq!(
        overview["env_names"],
        serde_json::json!(["dev", "staging", "prod"])
    );
    let fingerprint = get(server.port, "/api/fingerprint").json();
    assert_eq!(fingerprint["fingerprint"].as_str().map(str::len), Some(24));
    // What names nothing is a JSON 404.
    let missing = get(server.port, "/api/history/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no environment `nope`");
    assert_eq!(get(server.port, "/api/requests/99").status, 404);
    assert_eq!(get(server.port, "/api/requests?state=weird").status, 404);
    assert_eq!(
        get(server.port, "/api/audit/prod?since=yesterday").status,
        400
    );
}

#[test]
fn pages_refresh_when_refs_move() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let server = serve(&sandbox, &remote);
    let before = get(server.port, "/api/fingerprint").json()["fingerprint"].clone();
    let page = get(server.port, "/");
    assert!(
        page.body.contains(&format!(
            "<meta name=\"ferry-fingerprint\" content=\"{}\">",
            before.as_str().unwrap()
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("no app matches"), "{}", page.body);
    sandbox.pin(&remote, "web", "1.0.0").run().assert_code(0);
    // The refs are listed again at most every 250 ms on a path.
    std::thread::sleep(Duration::from_millis(400));
    let after = get(server.port, "/api/fingerprint").json()["fingerprint"].clone();
    assert_ne!(before, after);
    let page = get(server.port, "/");
    assert!(
        page.body.contains("<th scope=\"row\">web</th>"),
        "{}",
        page.body
    );
    // The script that reloads is served, with the page's policy.
    let script = get(server.port, "/static/live.js");
    assert_eq!(script.status, 200);
    assert!(script.body.contains("/api/fingerprint"), "{}", script.body);
}

#[test]
fn the_matrix_is_paginated_and_filtered() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let mut artifacts = serde_json::Map::new();
    for i in 0..250 {
        artifacts.insert(
            format!("app-{i:03}"),
            serde_json::json!({
                "version": "1.0.0",
                "url": format!("https://artifacts.example.com/app-{i:03}-1.0.0.tgz"),
                "sha256": crate::common::DIGEST,
            }),
        );
    }
    let manifest = serde_json::json!({ "artifacts": artifacts });
    sandbox.commit_files(
        "dev",
        &[(
            "manifest.json",
            &serde_json::to_string_pretty(&manifest).unwrap(),
        )],
        "250 apps",
    );
    let server = serve(&sandbox, &remote);
    let first = get(server.port, "/");
    assert!(first.body.contains("apps 1–100 of 250"), "{}", first.body);
    assert!(
        first.body.contains("rel=\"next\" href=\"/?page&#x3D;2\""),
        "{}",
        first.body
    );
    assert!(!first.body.contains("app-100"), "{}", first.body);
    let third = get(server.port, "/?page=3");
    assert!(third.body.contains("apps 201–250 of 250"), "{}", third.body);
    assert!(third.body.contains("app-249"), "{}", third.body);
    let filtered = get(server.port, "/?q=APP-12");
    assert!(
        filtered.body.contains("apps 1–10 of 10"),
        "{}",
        filtered.body
    );
    let json = get(server.port, "/api/overview?page=2").json();
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(100));
    assert_eq!(json["rows"][0]["app"], "app-100");
}

#[test]
fn only_get_and_head_are_answered_and_every_answer_is_hardened() {
    let server = serve_fixture();
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ] {
        let answer = exchange(
            server.port,
            format!(
                "{method} /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
            )
            .as_bytes(),
        );
        assert_eq!(answer.status, 405, "{method}: {}", answer.head);
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method}");
    }
    let head = exchange(
        server.port,
        b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.body, "");
    for path in ["/", "/api/status", "/static/app.css", "/nope", "/env/nope"] {
        let answer = get(server.port, path);
        let csp = answer.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    // No inline script or style in a page, which the policy would block anyway.
    let page = get(server.port, "/requests/3").body;
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
}

#[test]
fn traversals_name_nothing() {
    let server = serve_fixture();
    for path in [
        "/env/..%2f..",
        "/env/..%2f..%2f..%2fetc%2fpasswd",
        "/env/%2e%2e",
        "/static/../Cargo.toml",
        "/static/..%2f..%2fCargo.toml",
        "/api/history/..%2fprod",
        "/api/diff/dev/..%2fprod",
        "/requests/..%2f1",
        "/env/%ff%fe",
        "//etc/passwd",
    ] {
        let answer = get(server.port, path);
        assert!(
            answer.status == 404 || answer.status == 400,
            "{path}: {}",
            answer.head
        );
        assert!(!answer.body.contains("root:x:0"), "{path}");
        assert!(!answer.body.contains("[package]"), "{path}");
    }
}

#[test]
fn a_page_for_another_host_is_refused() {
    let server = serve_fixture();
    // A page elsewhere that rebinds its name to 127.0.0.1 still sends its own name.
    let answer = exchange(
        server.port,
        b"GET /api/status HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.status, 421, "{}", answer.head);
    for host in ["localhost", "127.0.0.1:1234", "[::1]:80"] {
        let answer = exchange(
            server.port,
            format!("GET /api/fingerprint HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(answer.status, 200, "{host}: {}", answer.head);
    }
}

#[test]
fn huge_slow_and_many_requests_do_not_take_it_down() {
    let server = serve_fixture();
    // A huge head: refused.
    let mut huge = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    huge.resize(1 << 20, b'a');
    let answer = exchange(server.port, &huge);
    assert!(
        answer.status == 431 || answer.status == 0,
        "{}",
        answer.head
    );
    // A huge declared body on a GET: never read, answered.
    let answer = exchange(
        server.port,
        b"GET /api/fingerprint HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999\r\n\r\n",
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    // A slow head: closed at the deadline, unanswered.
    let started = Instant::now();
    let answer = exchange(server.port, b"GET / HTTP/1.1\r\nHost: local");
    assert_eq!(answer.status, 0, "{}", answer.head);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // More idle connections than it serves at once: a real request still gets its page.
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    for mut stream in idle.iter().take(50) {
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n");
    }
    let started = Instant::now();
    let answer = get(server.port, "/");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    // And many at once, each answered or told to retry, never a dead server.
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || get(port, "/env/prod").status)
        })
        .collect();
    for thread in threads {
        let status = thread.join().unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }
    assert_eq!(get(server.port, "/").status, 200);
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = sandbox
        .ferry(&["serve", "--listen", &addr, "--remote", &remote])
        .run_within(Duration::from_secs(30));
    run.assert_code(1);
    assert!(
        run.stderr
            .contains(&format!("error: cannot listen on `{addr}`")),
        "{}",
        run.render()
    );
    assert!(
        run.stderr.contains("`127.0.0.1:0` picks a free one"),
        "{}",
        run.render()
    );
    // A bad address is a usage error; a repository that is not one, a failure.
    sandbox
        .ferry(&["serve", "--listen", "nowhere", "--remote", &remote])
        .run()
        .assert_code(2);
    sandbox
        .ferry(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--remote",
            "/nonexistent/deploy.git",
        ])
        .run_within(Duration::from_secs(30))
        .assert_code(1);
}

#[test]
fn help_says_what_it_serves() {
    insta::assert_snapshot!(crate::common::ferry(&["serve", "--help"]).run().render());
}

#[test]
fn a_network_remote_is_served_and_commands_still_run_beside_it() {
    let sandbox = Sandbox::new();
    let (_git, url) = sandbox.serve_http(None);
    sandbox
        .ferry(&["init", "--remote", &url])
        .run()
        .assert_code(0);
    let bump = |version: &str| {
        sandbox
            .pin(&url, "web", version)
            .run_within(Duration::from_secs(60))
            .assert_code(0);
    };
    bump("1.0.0");
    let server = serve(&sandbox, &url);
    let page = get(server.port, "/");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("<th scope=\"row\">web</th>"),
        "{}",
        page.body
    );
    // A command on the same remote is not kept waiting by the server's cache.
    let cli = sandbox
        .ferry(&["status", "--format", "json", "--remote", &url])
        .run_within(Duration::from_secs(60));
    cli.assert_code(0);
    assert_eq!(get(server.port, "/api/status").json(), cli.json());
    let mut history = sandbox.ferry(&["history", "dev", "--format", "json", "--remote", &url]);
    history.replace.clear();
    assert_eq!(
        get(server.port, "/api/history/dev").json(),
        history.run_within(Duration::from_secs(60)).json()
    );
}
