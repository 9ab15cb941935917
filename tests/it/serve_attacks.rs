//! `ferry serve` and `ferry dora` against what other people put in the repository and what
//! anything on the machine may send to the port: markup and hostile URLs in every record a
//! page shows (requests, statuses, host reports and their ref names, commits, manifests,
//! environment files, the SVG charts), odd Host headers and request framings, odd paths and
//! queries, a slow client, cross-origin reads, a repository changed or damaged under the
//! server, and reports with absurd dates.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{DIGEST, NOW, Sandbox};
use crate::serve::{Answer, Server, exchange, get, serve_with};

/// Every payload holds `<zz` (markup if it survives) and `zz"` (an attribute broken out of if
/// it survives).
const X: &str = "<zz onmouseover=alert(1)>zz\"q'";

/// The pages of a repository with dev, staging and prod.
const PAGES: &[&str] = &[
    "/",
    "/?q=%3Czz%22q",
    "/requests",
    "/requests?state=all",
    "/requests/1",
    "/env/dev",
    "/env/staging",
    "/env/prod",
    "/diff/staging/prod",
    "/diff/prod/staging",
    "/diff/dev/prod",
];

/// `git --git-dir deploy.git ARGS` with `input` on its stdin: its stdout, trimmed.
#[track_caller]
fn git_in(sandbox: &Sandbox, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(sandbox.path().join("deploy.git"))
        .args(args)
        .env("HOME", sandbox.path().join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "someone")
        .env("GIT_AUTHOR_EMAIL", "someone@example.com")
        .env("GIT_COMMITTER_NAME", "someone")
        .env("GIT_COMMITTER_EMAIL", "someone@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    child.stdin.take().expect("stdin").write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes a record as anyone who can push to the repository could: `refname` at a commit
/// whose tree holds `file` with `contents`.
#[track_caller]
fn plant(sandbox: &Sandbox, refname: &str, file: &str, contents: &str) {
    let blob = git_in(
        sandbox,
        &["hash-object", "-w", "--stdin"],
        contents.as_bytes(),
    );
    let tree = git_in(
        sandbox,
        &["mktree"],
        format!("100644 blob {blob}\t{file}\n").as_bytes(),
    );
    let commit = git_in(sandbox, &["commit-tree", &tree, "-m", "record"], b"");
    git_in(sandbox, &["update-ref", refname, &commit], b"");
}

/// A repository with dev, staging and prod, `web` 1.0.0 bumped in dev.
fn repo() -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    sandbox.pin(&remote, "web", "1.0.0").run().assert_code(0);
    (sandbox, remote)
}

/// [`repo`], then everything a stranger may write, each field a payload: a commit on prod
/// (past the hook, as on a forge that runs none of ferry's checks) with a hostile subject,
/// author, app name and environment file; statuses on it with hostile check names,
/// descriptions and URLs; a host report under a hostile host name; an open request whose
/// every field, and its body's Markdown, is hostile.
fn hostile_repo() -> (Sandbox, String, String) {
    let (sandbox, remote) = repo();
    sandbox.git("", &["clone", "-q", "-b", "prod", "deploy.git", "evil"]);
    let pin = json!({"version": "1.0.0", "url": "https://artifacts.example.com/web.tgz", "sha256": DIGEST});
    let manifest = sandbox.path().join("evil/manifest.json");
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    value["description"] = X.into();
    value["artifacts"] = json!({ "web": pin, "<zzapp>": pin });
    std::fs::write(&manifest, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let env_file = sandbox.path().join("evil/environments/prod.json");
    let mut env: Value =
        serde_json::from_str(&std::fs::read_to_string(&env_file).unwrap()).unwrap();
    env["protection"] =
        json!({"required_approvals": 1, "allowed_mergers": [X], "allowed_pushers": [X]});
    env["policy"] = json!({"required_checks": [X]});
    env["apps"] = json!({
        "web": {"deployment_path": "/srv/web", "healthcheck_url": "javascript:alert(5)"},
        "<zzapp>": {"deployment_path": "/srv/x", "hosts": ["prod-1", X]},
    });
    std::fs::write(&env_file, serde_json::to_string_pretty(&env).unwrap()).unwrap();
    sandbox.git("evil", &["add", "--all"]);
    let subject = format!("{X} javascript:alert(1)\n\n{X}");
    let (committed, why) = sandbox.git_as(
        "ci-bot",
        "evil",
        &["commit", "-qm", &subject],
        &[
            ("GIT_AUTHOR_NAME", "Eve zz\"q & co"),
            ("GIT_AUTHOR_EMAIL", "eve\"@x"),
        ],
    );
    assert!(committed, "{why}");
    sandbox.past_the_hook(|| sandbox.git("evil", &["push", "-q", "origin", "HEAD:prod"]));
    let prod = sandbox.tip("prod");
    let statuses = json!({
        "ferry/deploy/prod": {"state": "success", "description": X, "by": X, "at": NOW - 100, "url": "JAVASCRIPT:alert(1)"},
        X: {"state": "failure", "description": X, "by": "x", "at": NOW - 90, "url": " javascript:alert(2)"},
        "ci/a": {"state": "error", "description": "a", "by": "x", "at": NOW - 80, "url": "https://ok.example/zz\"q onclick=alert(3)"},
        "ci/b": {"state": "pending", "description": "b", "by": "x", "at": NOW - 70, "url": "java\tscript:alert(4)"},
        "ci/c": {"state": "pending", "description": "c", "by": "x", "at": NOW - 70, "url": "data:text/html,<zz>"},
        "ci/d": {"state": "pending", "description": "d", "by": "x", "at": NOW - 70, "url": "//evil.example/x"},
    });
    plant(
        &sandbox,
        &format!("refs/ferry/statuses/{prod}"),
        "statuses.json",
        &statuses.to_string(),
    );
    let host = json!({
        "commit": prod,
        "check": "ferry/deploy/prod/<zzhost>",
        "status": {"state": "failure", "description": X, "by": X, "at": NOW - 60,
                   "apps": {"<zzapp>": {"state": "rolled_back", "version": "<zzver>", "wave": [1, 2], "since": NOW - 65},
                            "web": {"state": "deployed", "version": "1.0.0", "wave": [99999999, 0], "since": -5}}},
    });
    plant(
        &sandbox,
        "refs/ferry/hosts/prod/<zzhost>",
        "host.json",
        &host.to_string(),
    );
    let body = format!(
        "# {X}\n[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) <javascript:alert(1)> \
         ![i](javascript:alert(1)) [c](data:text/html,<zz>) [d]( javascript:alert(1) ) \
         [e](https://x\" onclick=\"alert(1)) [f](//evil.example) [g](vbscript:x)\n\n\
         <zzraw onload=alert(1)>\n\n| {X} | b |\n|---|---|\n| `</code>{X}` | [h](javascript:x) |\n\n\
         ```\n</pre>{X}\n```\n\n<!-- ferry:promotion\n{{\"x\": \"{X}\"}}\n-->"
    );
    let request = json!({
        "id": 1, "from": "staging", "to": "prod", "branch": "ferry/promote/<zzbranch>",
        "state": "open", "title": X, "body": body, "labels": [X], "author": X,
        "created_at": NOW - 50, "updated_at": NOW - 50, "base": prod, "head": prod,
        "source": prod, "rollback": false,
        "moves": [{"app": "<zzapp>", "from": X, "to": X, "kind": "new",
                   "pin": {"version": X, "url": "javascript:alert(9)", "sha256": X}}],
        "approvals": [{"by": X, "at": NOW - 40, "head": prod}],
    });
    plant(
        &sandbox,
        "refs/ferry/requests/1",
        "request.json",
        &request.to_string(),
    );
    (sandbox, remote, prod)
}

/// The page at `path` once DORA's figures are computed (the charts drawn).
fn settled(server: &Server, path: &str) -> Answer {
    for _ in 0..40 {
        let fingerprint = get(server.port, "/api/fingerprint");
        if fingerprint.status == 200 && fingerprint.json()["computing"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    get(server.port, path)
}

/// Nothing in `body` is markup or a link that a payload made.
#[track_caller]
fn assert_inert(path: &str, body: &str) {
    assert!(!body.contains("<zz"), "{path}: markup got through:\n{body}");
    assert!(
        !body.contains("zz\""),
        "{path}: a quote got through:\n{body}"
    );
    let lower = body.to_ascii_lowercase();
    for attr in [
        "href=",
        "src=",
        "action=",
        "formaction=",
        "xlink:href=",
        "srcset=",
    ] {
        for (at, _) in lower.match_indices(attr) {
            let rest = &body[at + attr.len()..];
            assert!(
                rest.starts_with('"'),
                "{path}: an unquoted {attr}: {}",
                &rest[..rest.len().min(80)]
            );
            let value = &rest[1..rest[1..].find('"').map_or(rest.len(), |end| end + 1)];
            let safe = (value.starts_with('/') && !value.starts_with("//"))
                || value.starts_with('#')
                || value.starts_with('?')
                || value.starts_with("http://")
                || value.starts_with("https://");
            assert!(safe, "{path}: {attr}\"{value}\"");
        }
    }
}

#[test]
fn every_field_a_stranger_writes_stays_text() {
    let (sandbox, remote, _) = hostile_repo();
    let server = serve_with(&sandbox, &remote, &[]);
    for path in PAGES {
        let answer = settled(&server, path);
        assert!(
            answer.status == 200 || answer.status == 409,
            "{path}: {}",
            answer.head
        );
        assert_inert(path, &answer.body);
    }
    // The payloads did reach the pages (escaped): the test looked at them.
    let overview = get(server.port, "/").body;
    assert!(overview.contains("&lt;zzapp&gt;"), "{overview}");
    let request = get(server.port, "/requests/1").body;
    assert!(request.contains("&lt;zzraw onload"), "{request}");
    let prod = settled(&server, "/env/prod").body;
    assert!(prod.contains("<svg"), "{prod}");
    assert!(prod.contains("&lt;zz onmouseover"), "{prod}");
    // A 404 repeats the path it was given: escaped.
    let missing = get(server.port, "/env/%3Czz%20onload=alert(1)%3E%22");
    assert_eq!(missing.status, 404);
    assert_inert("404", &missing.body);
    // The JSON carries the payloads as they are, as JSON that no browser sniffs into a page.
    for path in [
        "/api/requests/1",
        "/api/overview",
        "/api/history/prod",
        "/api/dora/prod",
        "/api/dora/%3Czz%3E",
    ] {
        let answer = get(server.port, path);
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[test]
fn a_host_header_names_one_loopback_host() {
    let (sandbox, remote) = repo();
    let server = serve_with(&sandbox, &remote, &[]);
    let port = server.port;
    let ask = |head: &str| {
        exchange(
            port,
            format!("GET /api/fingerprint HTTP/1.1\r\n{head}\r\n").as_bytes(),
        )
    };
    // Names that only look like loopback: another host.
    for host in [
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "localhost@evil.example",
        "evil.example#localhost",
        "127.1",
        "0.0.0.0",
        "",
        "localhost evil",
    ] {
        let answer = ask(&format!("Host: {host}\r\n"));
        assert!(
            answer.status == 421 || answer.status == 400,
            "{host:?}: {}",
            answer.head
        );
    }
    // Two Host lines, or none in HTTP/1.1: malformed (RFC 9112 §3.2), whichever comes first.
    for head in [
        "Host: localhost\r\nHost: evil.example\r\n",
        "Host: evil.example\r\nHost: localhost\r\n",
        "",
    ] {
        let answer = ask(head);
        assert_eq!(answer.status, 400, "{head:?}: {}", answer.head);
    }
    // A request target in absolute form names its host: it wins over the Host line (RFC 9112
    // §3.2.2).
    let answer = exchange(
        port,
        b"GET http://evil.example/api/fingerprint HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(answer.status, 421, "{}", answer.head);
    let answer = exchange(
        port,
        format!(
            "GET http://127.0.0.1:{port}/api/fingerprint HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    // No page is built from the Host it was asked with or a proxy's headers: nothing to poison
    // a cache with, and nothing cached anyway.
    let answer = exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: localhost:31337\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: javascript\r\nForwarded: host=evil.example\r\n\r\n",
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(
        !answer.body.contains("31337") && !answer.body.contains("evil.example"),
        "{}",
        answer.body
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
}

#[test]
fn another_origin_cannot_read_the_api() {
    let (sandbox, remote) = repo();
    let server = serve_with(&sandbox, &remote, &[]);
    for path in ["/api/status", "/api/requests", "/api/dora/dev", "/"] {
        let answer = exchange(
            server.port,
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            !answer.head.to_ascii_lowercase().contains("access-control-"),
            "{path}: {}",
            answer.head
        );
    }
    let preflight = exchange(
        server.port,
        b"OPTIONS /api/status HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    );
    assert_eq!(preflight.status, 405, "{}", preflight.head);
    assert!(
        !preflight
            .head
            .to_ascii_lowercase()
            .contains("access-control-"),
        "{}",
        preflight.head
    );
}

#[test]
fn one_answer_per_connection_whatever_the_framing() {
    let (sandbox, remote) = repo();
    let server = serve_with(&sandbox, &remote, &[]);
    for request in [
        // Content-Length and Transfer-Encoding both, a second request hidden in the body.
        &b"GET /api/fingerprint HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        // Two Content-Lengths that disagree.
        b"GET /api/fingerprint HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
        // A chunked body on a GET.
        b"GET /api/fingerprint HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2c\r\nGET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n\r\n0\r\n\r\n",
        // Pipelined.
        b"GET /api/fingerprint HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(request).unwrap();
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
        assert!(!text.contains("\"apps\""), "the hidden request was answered: {text}");
    }
}

#[test]
fn odd_paths_and_queries_name_nothing_and_inject_nothing() {
    let (sandbox, remote) = repo();
    let server = serve_with(&sandbox, &remote, &[]);
    let long = format!("/env/{}", "a".repeat(15_000));
    for path in [
        "/env/dev%0d%0aSet-Cookie:%20x=1",
        "/requests?state=open%0d%0aSet-Cookie:%20x=1",
        "/env/dev%00",
        "/env/d%C3%A9v",
        "/env/%E2%80%AEved",
        "/env/%C0%AE%C0%AE",
        "/env/%2E%2E/%2E%2E/etc/passwd",
        "/env/.%2e",
        "/static/%2e%2e/%2e%2e/Cargo.toml",
        "/static/..\\..\\Cargo.toml",
        "/static/app.css%00.html",
        "/api/history/dev%5E",
        "/api/history/dev~1",
        "/api/diff/HEAD/dev",
        "/api/diff/--output=x/dev",
        "/api/requests/-1",
        "/api/requests/99999999999999999999999",
        "/api/dora/..%2fdev",
        "*",
        long.as_str(),
    ] {
        let answer = get(server.port, path);
        assert!(
            [400, 404, 414, 431].contains(&answer.status),
            "{}: {}",
            &path[..path.len().min(80)],
            answer.head
        );
        let head = answer.head.to_ascii_lowercase();
        assert!(!head.contains("set-cookie"), "{path}: {head}");
        assert!(!answer.body.contains("root:x:0") && !answer.body.contains("[package]"));
        if answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
        {
            assert_inert(path, &answer.body);
        }
    }
    // A raw NUL or CR in the request line: malformed.
    for request in [
        &b"GET /env/dev\x00 HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"GET /env/dev\rX HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let answer = exchange(server.port, request);
        assert_eq!(answer.status, 400, "{}", answer.head);
    }
    // Queries out of range are read as what they can mean, or refused; never a crash.
    for (path, expected) in [
        ("/?page=999999999999999999999999", 200),
        ("/?page=-1&q=%00%ff", 200),
        ("/api/history/dev?limit=18446744073709551616", 200),
        ("/api/history/dev?limit=0", 200),
        ("/api/audit/dev?since=%0d%0aX:y", 400),
        ("/api/audit/dev?since=99999-01-01", 400),
    ] {
        let answer = get(server.port, path);
        assert_eq!(answer.status, expected, "{path}: {}", answer.head);
    }
    let huge_query = format!("/?q={}", "%41".repeat(4000));
    assert_eq!(get(server.port, &huge_query).status, 200);
    assert_eq!(get(server.port, "/").status, 200);
}

#[test]
fn a_trickling_client_is_cut_off() {
    let (sandbox, remote) = repo();
    let server = serve_with(&sandbox, &remote, &[]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nX-A: ");
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(20) {
        if stream.write_all(b"a").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(server.port, "/").status, 200);
}

/// Waits for the server to see the refs move, then asks for `path`.
fn after_a_move(server: &Server, path: &str) -> Answer {
    std::thread::sleep(Duration::from_millis(600));
    settled(server, path)
}

#[test]
fn a_repository_changed_or_damaged_under_the_server_is_said_and_it_keeps_serving() {
    let (sandbox, remote) = repo();
    let server = serve_with(&sandbox, &remote, &[]);
    assert_eq!(settled(&server, "/").status, 200);
    let fingerprint = get(server.port, "/api/fingerprint").json()["fingerprint"].clone();
    let answered = |answer: &Answer, what: &str, says: &str| {
        assert!(
            answer.status == 409 || answer.status == 200,
            "{what}: {}\n{}",
            answer.head,
            answer.body
        );
        assert!(
            answer.body.contains(says),
            "{what}: does not say {says:?}:\n{}",
            answer.body
        );
    };
    // A branch deleted.
    let staging = sandbox.tip("staging");
    git_in(&sandbox, &["update-ref", "-d", "refs/heads/staging"], b"");
    let answer = after_a_move(&server, "/");
    answered(
        &answer,
        "staging deleted",
        "which does not exist (deleted?)",
    );
    assert_ne!(
        get(server.port, "/api/fingerprint").json()["fingerprint"],
        fingerprint
    );
    assert_eq!(get(server.port, "/requests").status, 200);
    git_in(
        &sandbox,
        &["update-ref", "refs/heads/staging", &staging],
        b"",
    );
    assert_eq!(after_a_move(&server, "/").status, 200);
    // A branch force-pushed to a stranger's history whose manifest is not JSON.
    let prod = sandbox.tip("prod");
    let blob = git_in(&sandbox, &["hash-object", "-w", "--stdin"], b"{not json");
    let tree = git_in(
        &sandbox,
        &["mktree"],
        format!("100644 blob {blob}\tmanifest.json\n").as_bytes(),
    );
    let orphan = git_in(&sandbox, &["commit-tree", &tree, "-m", "<zz>"], b"");
    git_in(&sandbox, &["update-ref", "refs/heads/prod", &orphan], b"");
    for path in ["/", "/env/prod", "/api/dora/prod", "/api/history/prod"] {
        let answer = after_a_move(&server, path);
        assert!(
            answer.status != 500 && answer.status != 0,
            "{path}: {}",
            answer.head
        );
        assert!(answer.body.contains("prod"), "{path}: {}", answer.body);
        assert_inert(path, &answer.body);
    }
    git_in(&sandbox, &["update-ref", "refs/heads/prod", &prod], b"");
    assert_eq!(after_a_move(&server, "/").status, 200);
    // A damaged record: the error names it.
    plant(
        &sandbox,
        &format!("refs/ferry/statuses/{prod}"),
        "statuses.json",
        "{\"ferry/deploy/prod\": {\"state\": \"succ",
    );
    answered(
        &after_a_move(&server, "/env/prod"),
        "damaged statuses",
        &format!("refs/ferry/statuses/{prod}"),
    );
    git_in(
        &sandbox,
        &["update-ref", "-d", &format!("refs/ferry/statuses/{prod}")],
        b"",
    );
    // A host's record that is no commit at all: passed over, as a damaged report is (a
    // missing report only holds a rollout back), by the page and by its DORA figures alike;
    // it does not take the environment's page down with an error that names nothing.
    let blob = git_in(&sandbox, &["hash-object", "-w", "--stdin"], b"not a record");
    git_in(
        &sandbox,
        &["update-ref", "refs/ferry/hosts/prod/h1", &blob],
        b"",
    );
    let answer = after_a_move(&server, "/env/prod");
    assert_eq!(
        answer.status, 200,
        "a host's record is a blob:\n{}",
        answer.body
    );
    assert!(answer.body.contains("<svg"), "{}", answer.body);
    assert_eq!(get(server.port, "/api/dora/prod").status, 200);
    git_in(
        &sandbox,
        &["update-ref", "-d", "refs/ferry/hosts/prod/h1"],
        b"",
    );
    // All well again: it still serves.
    assert_eq!(after_a_move(&server, "/env/prod").status, 200);
    assert_eq!(get(server.port, "/").status, 200);
}

/// dev deployed at `NOW - 3600`, with host reports on its tip at absurd times: an agent whose
/// clock was never set (`0`), one far in the past, one far in the future.
fn absurd_dates() -> (Sandbox, String) {
    let (sandbox, remote) = repo();
    let dev = sandbox.tip("dev");
    plant(
        &sandbox,
        &format!("refs/ferry/statuses/{dev}"),
        "statuses.json",
        &json!({"ferry/deploy/dev": {"state": "success", "description": "ok", "by": "agent", "at": NOW - 3600}}).to_string(),
    );
    for (host, at) in [
        ("epoch", 0),
        ("past", i64::MIN),
        ("future", i64::MAX),
        ("year-3000", 32_503_680_000),
    ] {
        let report = json!({
            "commit": dev,
            "check": format!("ferry/deploy/dev/{host}"),
            "status": {"state": "success", "description": "ok", "by": "agent", "at": at,
                       "apps": {"web": {"state": "deployed", "version": "1.0.0", "since": at}}},
        });
        plant(
            &sandbox,
            &format!("refs/ferry/hosts/dev/{host}"),
            "host.json",
            &report.to_string(),
        );
    }
    (sandbox, remote)
}

#[test]
fn dora_of_reports_at_absurd_dates_keeps_its_period() {
    let (sandbox, remote) = absurd_dates();
    let run = sandbox
        .ferry(&["dora", "dev", "--format", "json", "--remote", &remote])
        .run();
    run.assert_code(0);
    let report = &run.json()[0];
    // The period is the branch's: a report dated before the branch existed does not stretch it
    // to 1970 (or to the year -292 billion), which would make every rate nothing.
    let first_commit = 1_700_000_000;
    assert!(
        report["from"].as_i64().unwrap() >= first_commit,
        "{report:#}"
    );
    assert_eq!(report["until"], NOW, "{report:#}");
    assert_eq!(report["deployment_frequency"]["deploys"], 1, "{report:#}");
    assert!(report["days"].as_f64().unwrap() <= 31.0, "{report:#}");
    assert!(
        report["series"]["days"].as_array().unwrap().len() <= 31,
        "{report:#}"
    );
    // The text and the page say the same, and the page is drawn.
    sandbox
        .ferry(&["dora", "--remote", &remote])
        .run()
        .assert_code(0);
    let server = serve_with(&sandbox, &remote, &[]);
    let page = settled(&server, "/env/dev");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<svg"), "{}", page.body);
    let api = get(server.port, "/api/dora/dev");
    assert_eq!(api.json()[0]["from"], report["from"]);
}

#[test]
fn dora_since_in_odd_formats_is_refused_or_read_exactly() {
    let (sandbox, remote) = repo();
    for since in [
        "0",
        "",
        "yesterday",
        "2026-13-45",
        "2026-02-30",
        "9999-99-99",
        "1e99",
        "2026-10-01T25:00:00Z",
        "١٩٧٠-٠١-٠١",
    ] {
        let run = sandbox
            .ferry(&["dora", "--since", since, "--remote", &remote])
            .run();
        assert!(
            matches!(run.code, Some(1 | 2)),
            "{since:?}: {}",
            run.render()
        );
        assert!(
            run.stderr.contains("is not a date or a time"),
            "{since:?}: {}",
            run.render()
        );
    }
    // `-1` is an option to clap, not a date: a usage error, not a panic.
    let run = sandbox
        .ferry(&["dora", "--since", "-1", "--remote", &remote])
        .run();
    assert_eq!(run.code, Some(2), "{}", run.render());
    // A date long before the branch, or after now: an empty or whole period, never a crash.
    for since in ["1970-01-01", "2999-01-01", "2023-11-14T22:13:20+05:00"] {
        let run = sandbox
            .ferry(&[
                "dora", "--since", since, "--format", "json", "--remote", &remote,
            ])
            .run();
        run.assert_code(0);
        for report in run.json().as_array().unwrap() {
            assert!(
                report["days"].as_f64().unwrap() >= 1.0,
                "{since}: {report:#}"
            );
            assert!(
                report["series"]["days"].as_array().unwrap().len() <= 3660,
                "{since}: {report:#}"
            );
        }
    }
}
