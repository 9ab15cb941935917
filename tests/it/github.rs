//! The GitHub forge against a test double that answers as GitHub does: recorded payloads from
//! `@octokit/fixtures` (tests/fixtures/github), GitHub's status codes, pagination and
//! rate-limit headers. The tests assert the exact requests ferry sends: paths, bodies, count.

use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::github::{fixture, recorded};
use crate::common::{DIGEST, Run, Sandbox};

const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const TOKEN: &str = "ghp_test0000000000000000000000000000000";
const REPO: &str = "/repos/acme/deploy";

/// The combined status of a commit, as GitHub records it, with these checks.
fn combined_status(checks: &[(&str, &str)]) -> Value {
    let mut body = fixture("combined-status.json")["body"].clone();
    let template = body["statuses"][0].clone();
    body["statuses"] = checks
        .iter()
        .map(|(context, state)| {
            let mut status = template.clone();
            status["context"] = json!(context);
            status["state"] = json!(state);
            status
        })
        .collect();
    body
}

/// dev with `web` pinned (and `n` more apps), staging empty: one promotion's worth.
fn repo(sandbox: &Sandbox, extra_apps: usize) -> String {
    let remote = sandbox.init("dev,staging,prod");
    sandbox
        .ferry(&[
            "bump",
            "web",
            "1.1.0",
            "--env",
            "dev",
            "--add",
            "--url",
            "https://a.example/web-1.1.0.tgz",
            "--sha256",
            B,
            "--remote",
            &remote,
        ])
        .run()
        .assert_code(0);
    if extra_apps > 0 {
        let mut manifest: Value =
            serde_json::from_str(&sandbox.show("dev", "manifest.json")).unwrap();
        for i in 0..extra_apps {
            manifest["artifacts"][format!("app{i:04}")] = json!({"version": "1.0.0", "url": format!("https://a.example/app{i:04}-1.0.0.tgz"), "sha256": DIGEST});
        }
        let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
        sandbox.commit_files("dev", &[("manifest.json", &text)], "dev: many apps");
    }
    remote
}

async fn promote(sandbox: &Sandbox, remote: &str, server: &MockServer, extra: &[&str]) -> Run {
    let mut f = sandbox
        .ferry(&[
            "promote",
            "dev",
            "staging",
            "--forge",
            "github",
            "--github-repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env("GITHUB_API_URL", &server.uri())
        .env("GITHUB_TOKEN", TOKEN);
    for arg in extra {
        f = f.arg(arg);
    }
    tokio::task::spawn_blocking(move || f.run())
        .await
        .expect("ferry ran")
}

/// The answers of a promotion that opens a new pull request.
async fn mount_new_promotion(server: &MockServer, checks: &[(&str, &str)]) {
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/repos/acme/deploy/commits/[0-9a-f]{40}/status$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(combined_status(checks)))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .and(query_param("state", "open"))
        .and(query_param("head", "acme:ferry/promote/dev-to-staging"))
        .and(query_param("base", "staging"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/trees")))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("tree.json")))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/commits")))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("commit.json")))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/refs")))
        .respond_with(recorded("create-ref.json"))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/7/labels")))
        .respond_with(recorded("add-labels.json"))
        .mount(server)
        .await;
}

fn calls(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{query}", r.method, r.url.path()).replace(REPO, "")
        })
        .collect()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_is_seven_calls_of_which_five_write() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    let server = MockServer::start().await;
    mount_new_promotion(&server, &[]).await;
    let run = promote(&sandbox, &remote, &server, &["--format", "json"]).await;
    run.assert_code(0);
    assert_eq!(run.json()["request"]["id"], 7);
    assert_eq!(
        run.json()["request"]["url"],
        "https://github.com/acme/deploy/pull/7"
    );

    let requests = server.received_requests().await.expect("recorded");
    let source = sandbox.tip("dev");
    let staging = sandbox.tip("staging");
    let staging_tree = sandbox
        .git("deploy.git", &["rev-parse", "staging^{tree}"])
        .trim()
        .to_owned();
    assert_eq!(
        calls(&requests),
        [
            format!("GET /commits/{source}/status?per_page=100"),
            "GET /pulls?state=open&head=acme:ferry/promote/dev-to-staging&base=staging&per_page=100".to_owned(),
            "POST /git/trees".to_owned(),
            "POST /git/commits".to_owned(),
            "POST /git/refs".to_owned(),
            "POST /pulls".to_owned(),
            "POST /issues/7/labels".to_owned(),
        ]
    );
    let writes = requests
        .iter()
        .filter(|r| r.method.as_str() != "GET")
        .count();
    assert_eq!(writes, 5);
    // The token is sent, as GitHub expects it.
    let auth = requests[0]
        .headers
        .get("authorization")
        .expect("authorization")
        .to_str()
        .unwrap();
    assert!(auth.ends_with(TOKEN), "{auth}");

    // The proposal: staging's tree with dev's pins, inline, on staging's tip.
    let tree = body(&requests[2]);
    assert_eq!(tree["base_tree"], staging_tree);
    assert_eq!(tree["tree"][0]["path"], "manifest.json");
    assert_eq!(tree["tree"][0]["mode"], "100644");
    let manifest: Value =
        serde_json::from_str(tree["tree"][0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        manifest["artifacts"]["web"],
        json!({"version": "1.1.0", "url": "https://a.example/web-1.1.0.tgz", "sha256": B})
    );
    let commit = body(&requests[3]);
    assert_eq!(commit["tree"], "0000000000000000000000000000000000000002");
    assert_eq!(commit["parents"], json!([staging]));
    assert!(
        commit["message"]
            .as_str()
            .unwrap()
            .contains("Ferry-Moves: web none -> 1.1.0")
    );
    assert_eq!(
        body(&requests[4]),
        json!({"ref": "refs/heads/ferry/promote/dev-to-staging", "sha": "0000000000000000000000000000000000000003"})
    );
    let pull = body(&requests[5]);
    assert_eq!(pull["head"], "ferry/promote/dev-to-staging");
    assert_eq!(pull["base"], "staging");
    assert_eq!(pull["title"], "Promote dev → staging: web 1.1.0");
    assert!(
        pull["body"]
            .as_str()
            .unwrap()
            .contains("| web | — | 1.1.0 | new |")
    );
    assert_eq!(
        body(&requests[6]),
        json!({"labels": ["promotion", "env:staging"]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_call_count_does_not_grow_with_the_number_of_apps() {
    for extra in [0, 999] {
        let sandbox = Sandbox::new();
        let remote = repo(&sandbox, extra);
        let server = MockServer::start().await;
        mount_new_promotion(&server, &[]).await;
        promote(&sandbox, &remote, &server, &[])
            .await
            .assert_code(0);
        let requests = server.received_requests().await.expect("recorded");
        assert_eq!(
            requests.len(),
            7,
            "{} apps: {:?}",
            extra + 1,
            calls(&requests)
        );
        let tree = body(&requests[2]);
        let manifest: Value =
            serde_json::from_str(tree["tree"][0]["content"].as_str().unwrap()).unwrap();
        assert_eq!(manifest["artifacts"].as_object().unwrap().len(), extra + 1);
        let pull = body(&requests[5]);
        let (title, text) = (
            pull["title"].as_str().unwrap(),
            pull["body"].as_str().unwrap(),
        );
        assert!(title.chars().count() <= 255, "{title}");
        assert!(text.len() <= 65_536, "{} bytes", text.len());
        if extra > 0 {
            // Truncated: the changelog goes first, then the bot block's detail; never the table.
            assert!(title.ends_with('…'), "{title}");
            for i in 0..extra {
                assert!(
                    text.contains(&format!("| app{i:04} | — | 1.0.0 | new |")),
                    "row app{i:04}"
                );
            }
            assert!(text.contains("_The changelog was truncated"), "the note");
            assert!(text.contains("\"moves\":\"in the Ferry-Moves trailers of the head commit\""));
            let commit = body(&requests[3]);
            assert_eq!(
                commit["message"]
                    .as_str()
                    .unwrap()
                    .matches("Ferry-Moves: ")
                    .count(),
                extra + 1
            );
            // How a truncated body begins and ends (the shas vary with the test repository).
            let lines: Vec<&str> = text.lines().collect();
            let shown = format!(
                "{title}\n\n{}\n[… {} lines of table …]\n{}",
                lines[..8].join("\n"),
                lines.len() - 8 - 14,
                lines[lines.len() - 14..].join("\n")
            );
            let (dev, staging) = (sandbox.tip("dev"), sandbox.tip("staging"));
            let shown = shown
                .replace(&dev, "[DEV]")
                .replace(&staging, "[STAGING]")
                .replace(&dev[..7], "[DEV]")
                .replace(&staging[..7], "[STAGING]");
            insta::assert_snapshot!("truncated_body", shown);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_pull_request_is_updated_not_duplicated() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    // The request branch exists (an earlier promotion), and its pull request is open.
    let dev = sandbox.tip("dev");
    sandbox.git(
        "deploy.git",
        &[
            "update-ref",
            "refs/heads/ferry/promote/dev-to-staging",
            &dev,
        ],
    );
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([fixture("pull-request.json")])),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!(
            "{REPO}/git/refs/heads/ferry/promote/dev-to-staging"
        )))
        .and(body_partial_json(json!({"force": true})))
        .respond_with(recorded("update-ref.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/7")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    mount_new_promotion(&server, &[]).await;
    promote(&sandbox, &remote, &server, &[])
        .await
        .assert_code(0);
    let requests = server.received_requests().await.expect("recorded");
    let made: Vec<String> = calls(&requests)
        .into_iter()
        .filter(|c| !c.starts_with("GET"))
        .collect();
    assert_eq!(
        made,
        [
            "POST /git/trees",
            "POST /git/commits",
            "PATCH /git/refs/heads/ferry/promote/dev-to-staging",
            "PATCH /pulls/7",
            "POST /issues/7/labels"
        ]
    );
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_that_already_exists_is_found_and_updated() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    let server = MockServer::start().await;
    // The first listing misses it (opened meanwhile); creating says it exists; the second finds it.
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([fixture("pull-request.json")])),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(ResponseTemplate::new(422).set_body_json(fixture("pull-exists.json")))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/7")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    mount_new_promotion(&server, &[]).await;
    let run = promote(&sandbox, &remote, &server, &[]).await;
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("#7  Promote dev → staging"),
        "{}",
        run.render()
    );
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secondary_rate_limits_are_waited_out() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/trees")))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "4990")
                .set_body_json(fixture("secondary-rate-limit.json")),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/git/commits")))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "1")
                .set_body_json(fixture("secondary-rate-limit.json")),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_new_promotion(&server, &[]).await;
    let started = std::time::Instant::now();
    promote(&sandbox, &remote, &server, &[])
        .await
        .assert_code(0);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let requests = server.received_requests().await.expect("recorded");
    let trees = calls(&requests)
        .iter()
        .filter(|c| *c == "POST /git/trees")
        .count();
    let commits = calls(&requests)
        .iter()
        .filter(|c| *c == "POST /git/commits")
        .count();
    assert_eq!((trees, commits), (2, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_are_read_across_pages_for_the_gates() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["required_checks"] = json!(["ci/test", "ferry/deploy/dev"])
    });
    let server = MockServer::start().await;
    let source = sandbox.tip("dev");
    let page2 = format!(
        "{}{REPO}/commits/{source}/status?per_page=100&page=2",
        server.uri()
    );
    // GitHub's Link header, as recorded, pointing at the second page.
    let link = fixture("paginated-page-1.json")["headers"]["link"]
        .as_str()
        .unwrap()
        .replace(
            "https://api.github.com/repositories/1000/issues?per_page=3&page=2",
            &page2,
        );
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{source}/status")))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(combined_status(&[("ferry/deploy/dev", "success")])),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{source}/status")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", link.as_str())
                .set_body_json(combined_status(&[("ci/test", "success")])),
        )
        .mount(&server)
        .await;
    mount_new_promotion(&server, &[]).await;
    let run = promote(&sandbox, &remote, &server, &[]).await;
    run.assert_code(0);
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(
        calls(&requests)[1],
        format!("GET /commits/{source}/status?per_page=100&page=2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_red_check_refuses_before_anything_is_written() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["required_checks"] = json!(["ci/test"])
    });
    let server = MockServer::start().await;
    mount_new_promotion(&server, &[("ci/test", "failure")]).await;
    let run = promote(&sandbox, &remote, &server, &[]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("`ci/test` is failure on the promoted `dev` commit"),
        "{}",
        run.stderr
    );
    let requests = server.received_requests().await.expect("recorded");
    assert!(
        requests.iter().all(|r| r.method.as_str() == "GET"),
        "{:?}",
        calls(&requests)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_token_is_a_clear_error_that_never_shows_it() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401"
        })))
        .mount(&server)
        .await;
    let run = promote(&sandbox, &remote, &server, &["-vvv"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("401 Bad credentials"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("hint: the token is missing, expired or invalid"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(TOKEN) && !run.stdout.contains(TOKEN));
    // Without a token at all, nothing is even tried.
    let f = sandbox
        .ferry(&[
            "promote",
            "dev",
            "staging",
            "--forge",
            "github",
            "--github-repo",
            "acme/deploy",
            "--remote",
            &remote,
        ])
        .env("GITHUB_API_URL", &server.uri());
    let run = tokio::task::spawn_blocking(move || f.run()).await.unwrap();
    run.assert_code(1);
    assert!(
        run.stderr.contains("GITHUB_TOKEN is not set"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_to_promote_closes_the_stale_pull_request() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([fixture("pull-request.json")])),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/7")))
        .and(body_partial_json(json!({"state": "closed"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    let run = promote(&sandbox, &remote, &server, &[]).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("closed pull request #7: nothing left to promote"),
        "{}",
        run.stderr
    );
    server.verify().await;
}

/// `ferry close N --forge github` closes the promotion's pull request: one read that it is an
/// open promotion, one write; anything else is refused before any write.
#[tokio::test(flavor = "multi_thread")]
async fn close_closes_an_open_promotion_and_nothing_else() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    let server = MockServer::start().await;
    let open = fixture("pull-request.json");
    let mut other = open.clone();
    other["number"] = json!(8);
    other["head"]["ref"] = json!("feature/login");
    let mut merged = open.clone();
    merged["number"] = json!(9);
    merged["state"] = json!("closed");
    merged["merged_at"] = json!("2026-11-30T00:00:00Z");
    for pr in [&open, &other, &merged] {
        Mock::given(method("GET"))
            .and(path(format!("{REPO}/pulls/{}", pr["number"])))
            .respond_with(ResponseTemplate::new(200).set_body_json(pr.clone()))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls/404")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#get-a-pull-request"
        })))
        .mount(&server)
        .await;
    let mut closed = open.clone();
    closed["state"] = json!("closed");
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/7")))
        .and(body_partial_json(json!({"state": "closed"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(closed))
        .expect(1)
        .mount(&server)
        .await;
    let close = |id: &str| {
        let f = sandbox
            .ferry(&[
                "close",
                id,
                "--forge",
                "github",
                "--github-repo",
                "acme/deploy",
            ])
            .args(["--remote", &remote])
            .env("GITHUB_API_URL", &server.uri())
            .env("GITHUB_TOKEN", TOKEN);
        tokio::task::spawn_blocking(move || f.run())
    };
    let run = close("7").await.unwrap();
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "#7 closed");
    for (id, said) in [
        ("8", "no request #8"),
        ("9", "request #9 is already merged"),
        ("404", "no request #404"),
    ] {
        let run = close(id).await.unwrap();
        run.assert_code(1);
        assert!(run.stderr.contains(said), "{id}: {}", run.render());
        assert!(!run.stderr.contains(TOKEN));
    }
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        calls(&requests),
        [
            "GET /pulls/7",
            "PATCH /pulls/7",
            "GET /pulls/8",
            "GET /pulls/9",
            "GET /pulls/404"
        ]
    );
}

/// `ferry status --forge github` reads one combined status per environment, whatever the
/// number of apps; a deploy reported by someone the environment does not list in
/// `agent.reporters` is ignored, with a warning naming its creator. `ferry status set` is one
/// write to the statuses API.
#[tokio::test(flavor = "multi_thread")]
async fn status_reads_and_sets_checks_through_the_statuses_api() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox, 0);
    sandbox.edit_env("dev", "dev", |e| {
        e["agent"] = json!({"reporters": ["agent-dev"]})
    });
    let server = MockServer::start().await;
    let dev = sandbox.tip("dev");
    let mut forged = combined_status(&[("ferry/deploy/dev", "success"), ("ci/test", "success")]);
    for status in forged["statuses"].as_array_mut().unwrap() {
        status["creator"]["login"] = json!("mallory");
    }
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{dev}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(forged))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/repos/acme/deploy/commits/[0-9a-f]{40}/status$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(combined_status(&[])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{dev}")))
        .and(wiremock::matchers::body_json(json!({
            "state": "failure", "context": "ci/test", "description": "3 tests failed",
            "target_url": "https://ci.example/run/7"
        })))
        .respond_with(recorded("create-status.json"))
        .expect(1)
        .mount(&server)
        .await;
    let ferry = |args: &[&str]| {
        let f = sandbox
            .ferry(args)
            .args([
                "--forge",
                "github",
                "--github-repo",
                "acme/deploy",
                "--remote",
                &remote,
            ])
            .env("GITHUB_API_URL", &server.uri())
            .env("GITHUB_TOKEN", TOKEN);
        tokio::task::spawn_blocking(move || f.run())
    };
    let run = ferry(&["status"]).await.unwrap();
    run.assert_code(0);
    assert!(run.stdout.contains("dev: dev at "), "{}", run.render());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("dev: ") && l.ends_with("deploy not reported")),
        "{}",
        run.render()
    );
    assert!(
        run.stderr.contains(
            "ignoring `ferry/deploy/dev` (success) reported by `mallory`: dev's deploys are reported by its `agent.reporters` only (agent-dev)"
        ),
        "{}",
        run.render()
    );
    let reads = calls(&server.received_requests().await.unwrap());
    assert_eq!(reads.len(), 3, "one per environment: {reads:?}");
    let run = ferry(&[
        "status",
        "set",
        "dev",
        "ci/test",
        "failure",
        "--description",
        "3 tests failed",
        "--url",
        "https://ci.example/run/7",
    ])
    .await
    .unwrap();
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("dev: ci/test failure on {}", &dev[..7])
    );
    assert!(!format!("{}{}", run.stdout, run.stderr).contains(TOKEN));
}
