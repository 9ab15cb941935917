//! Attacks on the GitHub forge: what someone with write access (or a hostile or broken API
//! answering in GitHub's shapes) can do to `ferry promote`, `requests`, `approve`, `merge`,
//! `close`, `status` and `audit`. Each test states the behaviour that must hold; a weakness
//! not fixed yet is `#[ignore = "finding: …"]`.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::hub::Hub;
use crate::common::{Run, Sandbox};
use crate::github_loop::{ALICE, BOB, REPO, calls_since, last, patch_pull, seen};

const CAROL: &str = "ghp_carol0000000000000000000000000000000";
const MALLORY: &str = "ghp_mallory00000000000000000000000000000";
const OUTSIDER: &str = "ghp_outsider0000000000000000000000000000";
const EVIL: &str = "ghp_evil000000000000000000000000000000000";
const TOKENS: [&str; 6] = [ALICE, BOB, CAROL, MALLORY, OUTSIDER, EVIL];
/// A login as a hostile API may spell it: an ANSI escape that clears the screen.
const EVIL_LOGIN: &str = "ev\u{1b}[2Jil";
const BRANCH: &str = "ferry/promote/dev-to-staging";

/// dev with `web` 1.0.0 pinned; staging declaring it, protected by one approval, its deploys
/// reported by `agent-staging`, then `edit` applied to staging's file; the double over it.
async fn world_with(edit: impl FnOnce(&mut Value)) -> (Sandbox, String, MockServer, Hub) {
    let users = [
        (ALICE, "alice"),
        (BOB, "bob"),
        (CAROL, "carol"),
        (MALLORY, "mallory"),
        (OUTSIDER, "outsider"),
        (EVIL, EVIL_LOGIN),
    ];
    crate::common::hub::world(crate::common::hub::Dialect::GitHub, &users, 0, edit).await
}

async fn world() -> (Sandbox, String, MockServer, Hub) {
    world_with(|_| {}).await
}

/// `ferry ARGS --forge github` as the token's user, with `env` set; within a minute, and
/// never showing a token.
async fn gh_env(
    sandbox: &Sandbox,
    remote: &str,
    server: &MockServer,
    token: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut f = sandbox
        .ferry(args)
        .args([
            "--forge",
            "github",
            "--github-repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env("GITHUB_API_URL", &server.uri());
    if !token.is_empty() {
        f = f.env("GITHUB_TOKEN", token);
    }
    for (k, v) in env {
        f = f.env(k, v);
    }
    let run = tokio::task::spawn_blocking(move || f.run_within(Duration::from_secs(60)))
        .await
        .expect("ferry ran");
    let shown = run.render();
    for token in TOKENS {
        assert!(!shown.contains(token), "a token shown: {shown}");
    }
    assert!(!shown.contains("panicked"), "{shown}");
    run
}

async fn gh(
    sandbox: &Sandbox,
    remote: &str,
    server: &MockServer,
    token: &str,
    args: &[&str],
) -> Run {
    gh_env(sandbox, remote, server, token, args, &[]).await
}

/// alice promotes dev → staging (#12) and bob approves it; the head.
async fn promoted_and_approved(sandbox: &Sandbox, remote: &str, server: &MockServer) -> String {
    gh(
        sandbox,
        remote,
        server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await
    .assert_code(0);
    gh(sandbox, remote, server, BOB, &["approve", "12"])
        .await
        .assert_code(0);
    sandbox.tip(BRANCH)
}

/// One call to the double as `token`, the way GitHub's web page or another client makes it:
/// the status code and the JSON answer.
async fn api(
    server: &MockServer,
    token: &str,
    verb: &str,
    rest: &str,
    body: Value,
) -> (u16, Value) {
    let auth = format!("Authorization: Bearer {token}");
    crate::common::hub::raw_call(server, auth, verb, format!("{REPO}{rest}"), body).await
}

/// Only reads since `from`.
async fn only_reads(server: &MockServer, from: usize) {
    let calls = calls_since(server, from).await;
    assert!(calls.iter().all(|c| c.starts_with("GET ")), "{calls:?}");
}

/// A commit on `parent` with `parent`'s tree, made in the repository as GitHub's git would.
fn commit_on(sandbox: &Sandbox, parent: &str, message: &str) -> String {
    sandbox
        .git(
            "deploy.git",
            &[
                "commit-tree",
                &format!("{parent}^{{tree}}"),
                "-p",
                parent,
                "-m",
                message,
            ],
        )
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Pagination

/// A list whose `Link: rel="next"` points at the page just read ends with an error instead
/// of reading it forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_next_page_pointing_to_itself_does_not_loop_forever() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let itself = format!("{}{REPO}/pulls/12/reviews?per_page=100", server.uri());
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls/12/reviews")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .insert_header("link", format!("<{itself}>; rel=\"next\"").as_str()),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let run = gh(&sandbox, &remote, &server, BOB, &["requests", "12"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("already read"), "{}", run.render());
    let staging = sandbox.tip("staging");
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert_eq!(sandbox.tip("staging"), staging);
}

/// A list that never ends (each page naming one more) is cut short, with an error.
#[tokio::test(flavor = "multi_thread")]
async fn endless_pages_are_cut_short() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let base = server.uri();
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls/12/reviews")))
        .respond_with(move |request: &Request| {
            let page: u64 = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(1);
            let next = format!(
                "{base}{REPO}/pulls/12/reviews?per_page=100&page={}",
                page + 1
            );
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str())
        })
        .with_priority(1)
        .mount(&server)
        .await;
    let from = seen(&server).await;
    let run = gh(&sandbox, &remote, &server, BOB, &["requests", "12"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("pages"), "{}", run.render());
    assert!(calls_since(&server, from).await.len() <= 1_100);
}

/// A next page on another host is neither sent the token nor followed: its answer is not
/// GitHub's.
#[tokio::test(flavor = "multi_thread")]
async fn a_next_page_on_another_host_is_not_followed() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let elsewhere = MockServer::start().await;
    // What the other host would say: an approval by carol.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": 99, "user": {"login": "carol"}, "state": "APPROVED",
            "commit_id": sandbox.tip(BRANCH), "submitted_at": "2023-12-14T22:00:00Z",
            "author_association": "MEMBER"
        }])))
        .mount(&elsewhere)
        .await;
    let next = format!("{}{REPO}/pulls/12/reviews?page=2", elsewhere.uri());
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls/12/reviews")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str()),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let run = gh(&sandbox, &remote, &server, BOB, &["requests", "12"]).await;
    let asked = elsewhere.received_requests().await.unwrap();
    assert!(
        asked
            .iter()
            .all(|r| !r.headers.contains_key("authorization")),
        "the token went to another host"
    );
    run.assert_code(1);
    assert!(asked.is_empty(), "{} calls to another host", asked.len());
    assert!(run.stderr.contains("another host"), "{}", run.render());
}

/// Reviews spread over pages (GitHub's `per_page`): every page counts, and a later page's
/// request for changes withdraws an earlier approval.
#[tokio::test(flavor = "multi_thread")]
async fn reviews_over_several_pages_all_count() {
    let (sandbox, remote, server, hub) =
        world_with(|env| env["protection"]["required_approvals"] = json!(2)).await;
    hub.page_size(1);
    let head = promoted_and_approved(&sandbox, &remote, &server).await;
    hub.review(12, "mallory", "APPROVED", &head);
    hub.review(12, "mallory", "CHANGES_REQUESTED", &head);
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("has 1 approval from people other than its author"),
        "{}",
        run.render()
    );
    gh(&sandbox, &remote, &server, CAROL, &["approve", "12"])
        .await
        .assert_code(0);
    let run = gh(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["requests", "--format", "json"],
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.json()[0]["approvals"].as_array().unwrap().len(), 2);
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(0);
}

// ---------------------------------------------------------------------------------------
// Approvals

/// On GitHub anyone who can see a public repository may leave an approving review; GitHub's
/// own protection counts only reviewers with write access. Neither does ferry.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_by_someone_without_access_does_not_count() {
    let (sandbox, remote, server, hub) = world().await;
    hub.association("outsider", "NONE");
    gh(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await
    .assert_code(0);
    gh(&sandbox, &remote, &server, OUTSIDER, &["approve", "12"])
        .await
        .assert_code(0);
    let staging = sandbox.tip("staging");
    let from = seen(&server).await;
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("has 0 approvals from people other than its author"),
        "{}",
        run.render()
    );
    only_reads(&server, from).await;
    assert_eq!(sandbox.tip("staging"), staging);
}

/// What GitHub's reviews may hold does not make approvals: the author's own approval, an
/// approval of an older head under `dismiss_stale_reviews`, a dismissed one, one withdrawn by
/// a request for changes.
#[tokio::test(flavor = "multi_thread")]
async fn approvals_that_do_not_stand_are_not_counted() {
    let (sandbox, remote, server, hub) =
        world_with(|env| env["protection"]["dismiss_stale_reviews"] = json!(true)).await;
    gh(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await
    .assert_code(0);
    let head = sandbox.tip(BRANCH);
    hub.review(12, "alice", "APPROVED", &head);
    hub.review(12, "bob", "APPROVED", &"0".repeat(40));
    hub.review(12, "mallory", "DISMISSED", &head);
    hub.review(12, "carol", "APPROVED", &head);
    hub.review(12, "carol", "CHANGES_REQUESTED", &head);
    let staging = sandbox.tip("staging");
    let from = seen(&server).await;
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("has 0 approvals from people other than its author"),
        "{}",
        run.render()
    );
    assert!(
        run.stderr
            .contains("dismissed: bob approved an older head (`dismiss_stale_reviews`)"),
        "{}",
        run.render()
    );
    only_reads(&server, from).await;
    // Her own approval through ferry is refused before any write.
    let from = seen(&server).await;
    gh(&sandbox, &remote, &server, ALICE, &["approve", "12"])
        .await
        .assert_code(1);
    only_reads(&server, from).await;
    assert_eq!(sandbox.tip("staging"), staging);
    gh(&sandbox, &remote, &server, BOB, &["approve", "12"])
        .await
        .assert_code(0);
    gh(&sandbox, &remote, &server, ALICE, &["merge", "12"])
        .await
        .assert_code(0);
}

// ---------------------------------------------------------------------------------------
// Edited pull requests

/// A pull request that is not a promotion's (someone copied a promotion's body into it) is
/// neither approved, merged nor closed; nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_that_is_not_a_promotion_is_left_alone() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let (_, pr) = api(&server, ALICE, "GET", "/pulls/12", Value::Null).await;
    let feature = commit_on(&sandbox, &sandbox.tip("staging"), "feature");
    sandbox.git(
        "deploy.git",
        &["update-ref", "refs/heads/feature/x", &feature],
    );
    let (code, opened) = api(
        &server,
        MALLORY,
        "POST",
        "/pulls",
        json!({"title": pr["title"], "body": pr["body"], "head": "feature/x", "base": "staging"}),
    )
    .await;
    assert_eq!(code, 201, "{opened}");
    assert_eq!(opened["number"], 13);
    let staging = sandbox.tip("staging");
    for (token, args) in [
        (BOB, &["approve", "13"][..]),
        (ALICE, &["merge", "13"][..]),
        (ALICE, &["close", "13"][..]),
        (BOB, &["requests", "13"][..]),
    ] {
        let from = seen(&server).await;
        let run = gh(&sandbox, &remote, &server, token, args).await;
        run.assert_code(1);
        assert!(run.stderr.contains("#13"), "{}", run.render());
        only_reads(&server, from).await;
    }
    // A number that is no pull request at all.
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "99"]).await;
    run.assert_code(1);
    assert_eq!(sandbox.tip("staging"), staging);
}

/// A closed pull request is not approved, merged or closed again; a merged one neither.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_or_merged_pull_request_stays_so() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    assert_eq!(patch_pull(&server, json!({"state": "closed"})).await, 200);
    let staging = sandbox.tip("staging");
    for (token, args) in [
        (CAROL, &["approve", "12"][..]),
        (ALICE, &["merge", "12"][..]),
        (ALICE, &["close", "12"][..]),
    ] {
        let from = seen(&server).await;
        let run = gh(&sandbox, &remote, &server, token, args).await;
        run.assert_code(1);
        assert!(run.stderr.contains("closed"), "{}", run.render());
        only_reads(&server, from).await;
    }
    assert_eq!(sandbox.tip("staging"), staging);

    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    gh(&sandbox, &remote, &server, ALICE, &["merge", "12"])
        .await
        .assert_code(0);
    let staging = sandbox.tip("staging");
    for (token, args) in [
        (CAROL, &["approve", "12"][..]),
        (ALICE, &["merge", "12"][..]),
        (ALICE, &["close", "12"][..]),
    ] {
        let from = seen(&server).await;
        let run = gh(&sandbox, &remote, &server, token, args).await;
        run.assert_code(1);
        assert!(run.stderr.contains("merged"), "{}", run.render());
        only_reads(&server, from).await;
    }
    assert_eq!(sandbox.tip("staging"), staging);
}

/// The block for bots edited: a source that is not on dev, a second block appended (the last
/// one is read), a `-->` inside it, JSON nested past any parser's depth, a megabyte of it.
/// None is merged, none crashes `requests`.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_block_for_bots_is_not_merged() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let (_, pr) = api(&server, ALICE, "GET", "/pulls/12", Value::Null).await;
    let body = pr["body"].as_str().unwrap().to_owned();
    let start = body.rfind("<!-- ferry:promotion").unwrap();
    let block = &body[start..];
    let source = sandbox.tip("dev");
    let root = sandbox
        .git("deploy.git", &["rev-list", "--max-parents=0", "dev"])
        .trim()
        .to_owned();
    let staging = sandbox.tip("staging");
    let nested = format!(
        "{}\n<!-- ferry:promotion\n{{\"from\": \"dev\", \"to\": \"staging\", \"source\": \"{source}\", \"base\": \"{staging}\", \"moves\": {}{}}}\n-->",
        body,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases = [
        (body.replace(&source, &staging), "which is not on `dev`"),
        (
            format!("{body}\n{}", block.replace(&source, &root)),
            "`web` is not an artifact of the source environment",
        ),
        (
            body.replace("\"from\": \"dev\"", "\"from\": \"dev -->\""),
            "does not say which commit",
        ),
        (nested, "does not say which commit"),
        (
            format!(
                "{}{}",
                &body[..start],
                block.replace(
                    "\"rollback\"",
                    &format!("\"pad\": \"{}\", \"rollback\"", "x".repeat(1 << 20))
                )
            ),
            "",
        ),
    ];
    for (forged, said) in cases {
        assert_eq!(patch_pull(&server, json!({"body": forged})).await, 200);
        for args in [&["requests"][..], &["requests", "12"][..]] {
            gh(&sandbox, &remote, &server, BOB, args)
                .await
                .assert_code(0);
        }
        if said.is_empty() {
            continue;
        }
        let from = seen(&server).await;
        let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
        run.assert_code(1);
        assert!(run.stderr.contains(said), "{said}: {}", run.render());
        only_reads(&server, from).await;
        assert_eq!(sandbox.tip("staging"), staging);
    }
}

// ---------------------------------------------------------------------------------------
// Merging

/// How GitHub may answer the merge: its refusals (405, 409, 422) exit 1 in its words, a
/// server error exits 3 (trying again may help), an answer that is not JSON exits 1 and says
/// so; nothing moves, and the merge then succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn whatever_github_answers_to_the_merge_nothing_half_happens() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let staging = sandbox.tip("staging");
    let validation = json!({"message": "Validation Failed", "errors": [
        {"resource": "PullRequest", "field": "merge_method", "code": "invalid", "value": "merge"}
    ], "status": "422"});
    let answers = [
        (
            ResponseTemplate::new(405).set_body_json(
                json!({"message": "Base branch was modified. Review and try the merge again."}),
            ),
            1,
            "Base branch was modified",
        ),
        (
            ResponseTemplate::new(409)
                .set_body_json(json!({"message": "Head branch was modified."})),
            1,
            "request #12 changed during the merge",
        ),
        (
            ResponseTemplate::new(422).set_body_json(validation),
            1,
            "`merge_method` of PullRequest invalid (value `merge`)",
        ),
        (
            ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})),
            3,
            "500",
        ),
        (
            ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"),
            3,
            "502",
        ),
        (
            ResponseTemplate::new(200).set_body_string("<html>🙃</html>"),
            1,
            "does not understand",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"sha": 42, "merged": true})),
            1,
            "does not understand",
        ),
    ];
    for (answer, code, said) in answers {
        Mock::given(method("PUT"))
            .and(path(format!("{REPO}/pulls/12/merge")))
            .respond_with(answer)
            .with_priority(1)
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
        run.assert_code(code);
        assert!(run.stderr.contains(said), "{said}: {}", run.render());
        assert_eq!(sandbox.tip("staging"), staging);
    }
    gh(&sandbox, &remote, &server, ALICE, &["merge", "12"])
        .await
        .assert_code(0);
}

/// Rate limits: a 429 with `Retry-After` is waited out and the merge lands once; a limit
/// that resets in an hour gives up at once with exit 3 (later, the same command may pass); a
/// plain 403 is a missing right (exit 1).
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_or_given_up() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    Mock::given(method("PUT"))
        .and(path(format!("{REPO}/pulls/12/merge")))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit."}))
                .insert_header("retry-after", "1"),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "API rate limit exceeded for user ID 1."}))
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header(
                    "x-ratelimit-reset",
                    (jiff::Timestamp::now().as_second() + 3_600)
                        .to_string()
                        .as_str(),
                ),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(3);
    assert!(run.stderr.contains("rate limit"), "{}", run.render());
    assert!(started.elapsed() < Duration::from_secs(20));
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                json!({"message": "Resource not accessible by personal access token"}),
            ),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    gh(&sandbox, &remote, &server, ALICE, &["merge", "12"])
        .await
        .assert_code(1);

    let from = seen(&server).await;
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(0);
    let puts = calls_since(&server, from)
        .await
        .into_iter()
        .filter(|c| c.starts_with("PUT "))
        .count();
    assert_eq!(puts, 2, "one refused by the rate limit, one merged");
}

/// `staging` moves between ferry's checks and GitHub's merge: the pinned head does not land
/// on a target nobody reviewed it against (the double, like GitHub with an up-to-date rule,
/// refuses); nothing of the promotion lands.
#[tokio::test(flavor = "multi_thread")]
async fn the_target_moving_during_the_merge_is_not_merged_over() {
    struct MoveFirst {
        hub: Hub,
        repo: std::path::PathBuf,
    }
    impl Respond for MoveFirst {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let repo = git2::Repository::open_bare(&self.repo).unwrap();
            let tip = repo.refname_to_id("refs/heads/staging").unwrap();
            let commit = repo.find_commit(tip).unwrap();
            let me = git2::Signature::now("sneaky", "sneaky@example.com").unwrap();
            let moved = repo
                .commit(
                    None,
                    &me,
                    &me,
                    "sneaky",
                    &commit.tree().unwrap(),
                    &[&commit],
                )
                .unwrap();
            repo.reference("refs/heads/staging", moved, true, "sneaky")
                .unwrap();
            self.hub.respond(request)
        }
    }
    let (sandbox, remote, server, hub) = world().await;
    let head = promoted_and_approved(&sandbox, &remote, &server).await;
    Mock::given(method("PUT"))
        .and(path(format!("{REPO}/pulls/12/merge")))
        .respond_with(MoveFirst {
            hub: hub.clone(),
            repo: sandbox.path().join("deploy.git"),
        })
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    let staging = sandbox.tip("staging");
    assert_ne!(
        sandbox.git("deploy.git", &["rev-parse", &format!("{staging}^{{tree}}")]),
        sandbox.git("deploy.git", &["rev-parse", &format!("{head}^{{tree}}")]),
    );
    // The request must be rebuilt on the new tip.
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("moved since request #12"),
        "{}",
        run.render()
    );
}

/// `--method rebase` (and `FERRY_MERGE_METHOD=squash`) land the promoted tree.
#[tokio::test(flavor = "multi_thread")]
async fn rebase_and_squash_land_the_promoted_tree() {
    for (flag, env) in [(Some("rebase"), None), (None, Some("squash"))] {
        let (sandbox, remote, server, _hub) = world().await;
        let head = promoted_and_approved(&sandbox, &remote, &server).await;
        let mut args = vec!["merge", "12"];
        if let Some(method) = flag {
            args.extend(["--method", method]);
        }
        let vars: Vec<(&str, &str)> = env.map(|m| ("FERRY_MERGE_METHOD", m)).into_iter().collect();
        gh_env(&sandbox, &remote, &server, ALICE, &args, &vars)
            .await
            .assert_code(0);
        let merge: Value = serde_json::from_slice(&last(&server).await.body).unwrap();
        assert_eq!(merge["merge_method"], flag.or(env).unwrap());
        assert_eq!(merge["sha"], head.as_str());
        let staging = sandbox.tip("staging");
        assert_eq!(
            sandbox.git("deploy.git", &["rev-parse", &format!("{staging}^{{tree}}")]),
            sandbox.git("deploy.git", &["rev-parse", &format!("{head}^{{tree}}")]),
        );
    }
}

/// `allowed_mergers`: anyone else is refused before any write.
#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_mergers_merge() {
    let (sandbox, remote, server, _hub) =
        world_with(|env| env["protection"]["allowed_mergers"] = json!(["carol"])).await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    for token in [ALICE, BOB, EVIL] {
        let from = seen(&server).await;
        let run = gh(&sandbox, &remote, &server, token, &["merge", "12"]).await;
        run.assert_code(1);
        assert!(
            run.stderr.contains("may not merge into `staging`"),
            "{}",
            run.render()
        );
        only_reads(&server, from).await;
    }
    gh(&sandbox, &remote, &server, CAROL, &["merge", "12"])
        .await
        .assert_code(0);
}

/// `policy.required_checks` on the promoted source and `protection.required_checks` on the
/// head: each re-read at merge, a failure reported after the promotion refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn required_checks_are_read_again_at_merge() {
    let (sandbox, remote, server, _hub) = world_with(|env| {
        env["policy"] = json!({"required_checks": ["ci/test"]});
        env["protection"]["required_checks"] = json!(["ci/head"]);
    })
    .await;
    let source = sandbox.tip("dev");
    let set = |sha: String, check: &'static str, state: &'static str| {
        let (sandbox, remote, server) = (&sandbox, &remote, &server);
        async move {
            gh(
                sandbox,
                remote,
                server,
                CAROL,
                &["status", "set", &sha, check, state],
            )
            .await
            .assert_code(0);
        }
    };
    set(source.clone(), "ci/test", "success").await;
    let head = promoted_and_approved(&sandbox, &remote, &server).await;
    let staging = sandbox.tip("staging");
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("ci/head"), "{}", run.render());
    set(head.clone(), "ci/head", "success").await;
    set(source.clone(), "ci/test", "failure").await;
    let from = seen(&server).await;
    let run = gh(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("ci/test"), "{}", run.render());
    only_reads(&server, from).await;
    assert_eq!(sandbox.tip("staging"), staging);
    set(source, "ci/test", "success").await;
    gh(&sandbox, &remote, &server, ALICE, &["merge", "12"])
        .await
        .assert_code(0);
}

/// A deploy status from someone not among the environment's `agent.reporters` does not
/// open the gate, on GitHub where anyone with the statuses permission may report it.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_status_from_a_non_reporter_opens_no_gate() {
    let (sandbox, remote, server, _hub) = world_with(|env| {
        env["policy"] = json!({"required_checks": ["ferry/deploy/dev"]});
    })
    .await;
    sandbox.edit_env("dev", "dev", |env| {
        env["agent"] = json!({"reporters": ["agent-dev"]});
    });
    let source = sandbox.tip("dev");
    let (code, _) = api(
        &server,
        MALLORY,
        "POST",
        &format!("/statuses/{source}"),
        json!({"state": "success", "context": "ferry/deploy/dev", "description": "trust me"}),
    )
    .await;
    assert_eq!(code, 201);
    let from = seen(&server).await;
    let run = gh(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await;
    run.assert_code(1);
    assert!(run.stderr.contains("mallory"), "{}", run.render());
    assert!(run.stderr.contains("ferry/deploy/dev"), "{}", run.render());
    only_reads(&server, from).await;
}

// ---------------------------------------------------------------------------------------
// Audit

/// A promotion's pull request merged on GitHub's page without any approval is flagged.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_flags_a_promotion_merged_without_approvals() {
    let (sandbox, remote, server, _hub) = world().await;
    gh(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await
    .assert_code(0);
    let (code, _) = api(
        &server,
        ALICE,
        "PUT",
        "/pulls/12/merge",
        json!({"merge_method": "merge"}),
    )
    .await;
    assert_eq!(code, 200);
    let run = gh(&sandbox, &remote, &server, BOB, &["audit", "staging"]).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "FLAGGED: 0 approval(s) from people other than alice when merged; 1 required"
        ),
        "{}",
        run.render()
    );
}

/// A pull request that is not a promotion's, merged into a protected branch, is a direct
/// change by who merged it: flagged.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_flags_another_pull_request_merged_into_a_protected_branch() {
    let (sandbox, remote, server, _hub) = world().await;
    let feature = commit_on(&sandbox, &sandbox.tip("staging"), "feature");
    sandbox.git(
        "deploy.git",
        &["update-ref", "refs/heads/feature/x", &feature],
    );
    let (code, pr) = api(
        &server,
        MALLORY,
        "POST",
        "/pulls",
        json!({"title": "feature", "body": "", "head": "feature/x", "base": "staging"}),
    )
    .await;
    assert_eq!(code, 201, "{pr}");
    let (code, _) = api(&server, MALLORY, "PUT", "/pulls/12/merge", json!({})).await;
    assert_eq!(code, 200);
    let run = gh(&sandbox, &remote, &server, BOB, &["audit", "staging"]).await;
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("FLAGGED: pushed directly by mallory, who is not an allowed pusher (none)"),
        "{}",
        run.render()
    );
}

/// mallory pushes a change directly to protected staging, then a junk commit; the release
/// manager force-pushes the junk away. The force push brought only its own commit: mallory's
/// change stays hers, and flagged.
#[tokio::test(flavor = "multi_thread")]
async fn a_force_push_does_not_launder_an_earlier_direct_push() {
    let (sandbox, remote, server, hub) =
        world_with(|env| env["protection"]["allowed_pushers"] = json!(["release"])).await;
    let declared = sandbox.tip("staging");
    let direct = commit_on(&sandbox, &declared, "mallory's change");
    let junk = commit_on(&sandbox, &direct, "junk");
    let fixed = commit_on(&sandbox, &direct, "fix");
    for (before, after, who) in [
        (&declared, &direct, "mallory"),
        (&direct, &junk, "mallory"),
        (&junk, &fixed, "release"),
    ] {
        sandbox.git("deploy.git", &["update-ref", "refs/heads/staging", after]);
        hub.pushed("staging", before, after, who);
    }
    let run = gh(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["audit", "staging", "--format", "json"],
    )
    .await;
    run.assert_code(1);
    let changes = run.json();
    let of = |commit: &str| {
        changes
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["commit"] == commit)
            .cloned()
            .unwrap()
    };
    assert_eq!(of(&fixed)["pushed_by"], "release");
    assert_eq!(of(&fixed)["violations"], json!([]));
    assert_eq!(of(&direct)["pushed_by"], "mallory");
    assert_eq!(
        of(&direct)["violations"],
        json!(["pushed directly by mallory, who is not an allowed pusher (release)"])
    );
    assert_eq!(of(&declared)["pushed_by"], "ci-bot");
}

/// An activity list naming another branch's push (the API answering beside its `ref`
/// filter) does not change who pushed to this one.
#[tokio::test(flavor = "multi_thread")]
async fn activity_of_another_branch_does_not_speak_for_this_one() {
    let (sandbox, remote, server, _hub) =
        world_with(|env| env["protection"]["allowed_pushers"] = json!(["release"])).await;
    let declared = sandbox.tip("staging");
    let direct = commit_on(&sandbox, &declared, "mallory's change");
    sandbox.git("deploy.git", &["update-ref", "refs/heads/staging", &direct]);
    let entry = |id: u64, refname: &str, before: &str, after: &str, who: &str| {
        json!({"id": id, "node_id": format!("RA_{id}"), "before": before, "after": after,
               "ref": refname, "timestamp": "2023-12-14T22:00:00Z", "activity_type": "push",
               "actor": {"login": who, "id": 3, "type": "User", "site_admin": false}})
    };
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/activity")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            entry(1, "refs/heads/staging", &declared, &direct, "mallory"),
            entry(2, "refs/heads/dev", &declared, &direct, "release"),
        ])))
        .with_priority(1)
        .mount(&server)
        .await;
    let run = gh(&sandbox, &remote, &server, BOB, &["audit", "staging"]).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "FLAGGED: pushed directly by mallory, who is not an allowed pusher (release)"
        ),
        "{}",
        run.render()
    );
}

// ---------------------------------------------------------------------------------------
// Output hygiene

/// Tokens, from GITHUB_TOKEN or GITHUB_TOKEN_FILE, are never shown: not at trace level, not
/// in JSON logs, not when GitHub refuses them, not when they are not a valid header.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_never_shown() {
    let (sandbox, remote, server, _hub) = world().await;
    let file = sandbox.path().join("bob.token");
    std::fs::write(&file, format!("{BOB}\n")).unwrap();
    let file = file.display().to_string();
    gh(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging", "-vvv"],
    )
    .await
    .assert_code(0);
    for (args, env) in [
        (
            &["requests", "12", "-vvv"][..],
            vec![("GITHUB_TOKEN_FILE", file.as_str())],
        ),
        (
            &["approve", "12"][..],
            vec![("GITHUB_TOKEN_FILE", file.as_str()), ("FERRY_LOG", "trace")],
        ),
        (
            &["status", "staging", "-vvv", "--log-format", "json"][..],
            vec![("GITHUB_TOKEN_FILE", file.as_str()), ("FERRY_LOG", "trace")],
        ),
    ] {
        gh_env(&sandbox, &remote, &server, "", args, &env)
            .await
            .assert_code(0);
    }
    let run = gh_env(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["merge", "12", "-vvv", "--log-format", "json"],
        &[("FERRY_LOG", "trace")],
    )
    .await;
    run.assert_code(0);
    assert!(run.stderr.contains("GitHub API"), "{}", run.render());
    // A token GitHub does not know, and one that is no valid header.
    let unknown = "ghp_unknown000000000000000000000000000000";
    let run = gh_env(
        &sandbox,
        &remote,
        &server,
        unknown,
        &["requests", "-vvv"],
        &[("FERRY_LOG", "trace")],
    )
    .await;
    run.assert_code(1);
    assert!(!run.render().contains(unknown), "{}", run.render());
    let bad = "ghp_bad\u{1}secret0000000000000000000000000";
    let run = gh_env(
        &sandbox,
        &remote,
        &server,
        bad,
        &["requests", "-vvv"],
        &[("FERRY_LOG", "trace")],
    )
    .await;
    assert_ne!(run.code, Some(0));
    assert!(!run.render().contains("secret0000"), "{}", run.render());
}

/// Control characters from GitHub (a title, a body, a move's app in the block, a status's
/// description, a login, a refusal's message) are not printed raw: no terminal escape
/// reaches the terminal.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_from_github_are_not_printed_raw() {
    let (sandbox, remote, server, _hub) = world().await;
    let head = promoted_and_approved(&sandbox, &remote, &server).await;
    gh(&sandbox, &remote, &server, EVIL, &["approve", "12"])
        .await
        .assert_code(0);
    let (_, pr) = api(&server, ALICE, "GET", "/pulls/12", Value::Null).await;
    let body = pr["body"]
        .as_str()
        .unwrap()
        .replacen("\n", "\n\u{1b}]0;pwned\u{7}\r\u{1b}[2K", 1);
    assert_eq!(
        patch_pull(
            &server,
            json!({"title": "promote \u{1b}[31mred\u{1b}[0m\u{9b}1m", "body": body})
        )
        .await,
        200
    );
    let (code, _) = api(
        &server,
        MALLORY,
        "POST",
        &format!("/statuses/{head}"),
        json!({"state": "pending", "context": "ci/x", "description": "\u{1b}[1;1Hall green"}),
    )
    .await;
    assert_eq!(code, 201);
    let source = sandbox.tip("dev");
    let (code, _) = api(
        &server,
        MALLORY,
        "POST",
        &format!("/statuses/{source}"),
        json!({"state": "success", "context": "ferry/deploy/dev", "description": "\u{1b}[1;1Hdeployed"}),
    )
    .await;
    assert_eq!(code, 201);
    let mut shown = String::new();
    for (token, args) in [
        (BOB, &["requests"][..]),
        (BOB, &["requests", "12"][..]),
        (BOB, &["requests", "12", "--raw"][..]),
        (BOB, &["status"][..]),
        (ALICE, &["merge", "12"][..]),
        (BOB, &["audit", "staging"][..]),
        (BOB, &["requests", "--state", "all"][..]),
    ] {
        let run = gh(&sandbox, &remote, &server, token, args).await;
        shown.push_str(&run.stdout);
        shown.push_str(&run.stderr);
    }
    let hostile: Vec<char> = shown
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(hostile.is_empty(), "{hostile:?} in {shown}");
}
