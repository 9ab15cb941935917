//! The whole promotion loop on GitHub, through its API only: `ferry promote` opens the pull
//! request, `ferry requests` lists it, a second user approves it, `ferry merge` re-gates it and
//! merges it with the head pinned, the branch moves, the environment's agent deploys it and
//! reports to GitHub, and `ferry audit` tells it all. The forge is a stateful double over the
//! sandbox's real repository (tests/it/common/hub.rs); the tests assert each command's calls.

use serde_json::{Value, json};
use wiremock::{MockServer, Request};

use crate::common::hub::Hub;
use crate::common::{Run, Sandbox};

pub(crate) const ALICE: &str = "ghp_alice000000000000000000000000000000";
pub(crate) const BOB: &str = "ghp_bob00000000000000000000000000000000";
pub(crate) const AGENT: &str = "ghs_agent0000000000000000000000000000000";
pub(crate) const REPO: &str = "/repos/acme/deploy";

/// dev with `web` 1.0.0 pinned (a real artifact), staging declaring `web` at `/srv/web`,
/// protected by one approval, its deploys reported by `agent-staging`; the double over it,
/// with GitHub's activity of the push that declared it.
pub(crate) async fn world() -> (Sandbox, String, MockServer, Hub) {
    world_of(0).await
}

/// [`world`] with `extra` more apps pinned in dev.
pub(crate) async fn world_of(extra: usize) -> (Sandbox, String, MockServer, Hub) {
    let users = [(ALICE, "alice"), (BOB, "bob"), (AGENT, "agent-staging")];
    crate::common::hub::world(crate::common::hub::Dialect::GitHub, &users, extra, |_| {}).await
}

/// alice promotes dev → staging (#12) and bob approves it.
async fn promoted_and_approved(sandbox: &Sandbox, remote: &str, server: &MockServer) {
    ferry(
        sandbox,
        remote,
        server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await
    .assert_code(0);
    ferry(sandbox, remote, server, BOB, &["approve", "12"])
        .await
        .assert_code(0);
}

/// `ferry ARGS --forge github` as the token's user, on the double.
pub(crate) async fn ferry(
    sandbox: &Sandbox,
    remote: &str,
    server: &MockServer,
    token: &str,
    args: &[&str],
) -> Run {
    let f = sandbox
        .ferry(args)
        .args([
            "--forge",
            "github",
            "--github-repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env("GITHUB_API_URL", &server.uri())
        .env("GITHUB_TOKEN", token);
    let run = tokio::task::spawn_blocking(move || f.run())
        .await
        .expect("ferry ran");
    for token in [ALICE, BOB, AGENT] {
        assert!(
            !run.render().contains(token),
            "a token shown: {}",
            run.render()
        );
    }
    run
}

/// The calls made since `from`, as `METHOD /path?query` relative to the repository.
pub(crate) async fn calls_since(server: &MockServer, from: usize) -> Vec<String> {
    server.received_requests().await.unwrap()[from..]
        .iter()
        .map(|r| {
            let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{query}", r.method, r.url.path()).replace(REPO, "")
        })
        .collect()
}

pub(crate) async fn seen(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

pub(crate) async fn last(server: &MockServer) -> Request {
    server.received_requests().await.unwrap().pop().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_approve_merge_deploy_and_audit_through_the_api_only() {
    let (sandbox, remote, server, _hub) = world().await;

    // alice asks.
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await;
    run.assert_code(0);
    assert!(run.stdout.contains("#12"), "{}", run.render());
    let head = sandbox.tip("ferry/promote/dev-to-staging");

    // Anyone lists it: one page of pull requests, then its reviews and its checks.
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, BOB, &["requests"]).await;
    run.assert_code(0);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("#12"))
        .unwrap_or_default();
    for said in ["open", "dev → staging", "web 1.0.0", "alice"] {
        assert!(row.contains(said), "{said}: {}", run.render());
    }
    assert_eq!(
        calls_since(&server, from).await,
        [
            "GET /pulls?state=open&sort=created&direction=asc&per_page=100".to_owned(),
            "GET /pulls/12/reviews?per_page=100".to_owned(),
            format!("GET /commits/{head}/status?per_page=100"),
        ]
    );
    let from = seen(&server).await;
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["requests", "12", "--format", "json"],
    )
    .await;
    run.assert_code(0);
    let shown = run.json();
    assert_eq!(shown["from"], "dev");
    assert_eq!(shown["to"], "staging");
    assert_eq!(shown["author"], "alice");
    assert_eq!(shown["head"], head.as_str());
    assert_eq!(shown["moves"][0]["app"], "web");
    assert_eq!(shown["moves"][0]["to"], "1.0.0");
    assert_eq!(shown["mergeable"], true);
    assert_eq!(shown["url"], "https://github.com/acme/deploy/pull/12");
    assert_eq!(calls_since(&server, from).await.len(), 3);

    // Her own approval is refused before any write, as GitHub would.
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["approve", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("`alice` opened request #12: authors cannot approve their own requests"),
        "{}",
        run.render()
    );
    assert_eq!(
        calls_since(&server, from).await,
        ["GET /user", "GET /pulls/12"]
    );

    // Merging without an approval is refused by ferry's own gate, before any write.
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "request #12 has 0 approvals from people other than its author; `staging` requires 1"
        ),
        "{}",
        run.render()
    );
    assert!(
        calls_since(&server, from)
            .await
            .iter()
            .all(|c| c.starts_with("GET "))
    );

    // bob approves: three calls, the review pinned to the head.
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, BOB, &["approve", "12"]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        format!("#12 approved by bob (at {})", &head[..7])
    );
    assert_eq!(
        calls_since(&server, from).await,
        ["GET /user", "GET /pulls/12", "POST /pulls/12/reviews"]
    );
    let review: Value = serde_json::from_slice(&last(&server).await.body).unwrap();
    assert_eq!(review, json!({"commit_id": head, "event": "APPROVE"}));

    // alice merges: re-gated, the head's SHA pinned; the branch moves to the promoted tree.
    let staging_before = sandbox.tip("staging");
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("#12 merged: `staging` is at "),
        "{}",
        run.render()
    );
    assert!(!run.stderr.contains("warning"), "{}", run.render());
    let source = sandbox.tip("dev");
    let calls = calls_since(&server, from).await;
    assert_eq!(
        calls,
        [
            "GET /user".to_owned(),
            "GET /pulls/12".to_owned(),
            "GET /pulls/12/reviews?per_page=100".to_owned(),
            format!("GET /commits/{source}/status?per_page=100"),
            "PUT /pulls/12/merge".to_owned(),
        ]
    );
    assert!(calls.len() <= 8);
    let merge: Value = serde_json::from_slice(&last(&server).await.body).unwrap();
    assert_eq!(merge, json!({"sha": head, "merge_method": "merge"}));
    let staging = sandbox.tip("staging");
    assert_ne!(staging, staging_before);
    assert_eq!(
        sandbox.git("deploy.git", &["rev-parse", &format!("{staging}^{{tree}}")]),
        sandbox.git("deploy.git", &["rev-parse", &format!("{head}^{{tree}}")]),
        "the merged tree is the promoted state"
    );

    // The environment's agent deploys it and reports to GitHub with its own token.
    let f = sandbox
        .ferry(&["agent", "--env", "staging", "--once", "--host", "h1"])
        .args([
            "--forge",
            "github",
            "--github-repo",
            "acme/deploy",
            "--remote",
            &remote,
        ])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .env("GITHUB_API_URL", &server.uri())
        .env("GITHUB_TOKEN", AGENT);
    let run = tokio::task::spawn_blocking(move || f.run()).await.unwrap();
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("root/srv/web/index.html")).unwrap(),
        "web 1.0.0\n"
    );
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["status", "staging", "--format", "json"],
    )
    .await;
    run.assert_code(0);
    assert!(run.stdout.contains("\"success\""), "{}", run.render());

    // The audit: the promotion (who asked, approved, merged and pushed), the push before it.
    let from = seen(&server).await;
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["audit", "staging", "--format", "json"],
    )
    .await;
    run.assert_code(0);
    let changes = run.json();
    let promotion = &changes[0];
    assert_eq!(promotion["commit"], staging.as_str());
    assert_eq!(promotion["kind"], "promotion");
    assert_eq!(promotion["request"], 12);
    assert_eq!(promotion["requested_by"], "alice");
    assert_eq!(promotion["approved_by"], json!(["bob"]));
    assert_eq!(promotion["merged_by"], "alice");
    assert_eq!(promotion["pushed_by"], "alice");
    assert_eq!(promotion["protected"], true);
    assert_eq!(promotion["violations"], json!([]));
    assert_eq!(promotion["moves"][0]["app"], "web");
    let declared = &changes[1];
    assert_eq!(declared["kind"], "direct");
    assert_eq!(declared["pushed_by"], "ci-bot");
    assert_eq!(declared["protected"], false);
    let calls = calls_since(&server, from).await;
    let per_change = calls.len() as f64 / changes.as_array().unwrap().len() as f64;
    assert!(per_change <= 5.0, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| c.contains("/activity")).count(),
        1,
        "{calls:?}"
    );
}

/// A commit pushed by hand to the request's branch after review is not merged: the head must
/// be exactly the promotion, one commit on the target's tip. Nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_changed_by_hand_is_not_merged() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    // mallory adds a commit to the request's branch (GitHub lets anyone with write do so).
    let branch = "ferry/promote/dev-to-staging";
    sandbox.git(
        "",
        &["clone", "-q", "--branch", branch, "deploy.git", "mallory"],
    );
    let manifest = sandbox.path().join("mallory/manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"1.0.0\"", "\"6.6.6\"");
    std::fs::write(&manifest, text).unwrap();
    sandbox.git("mallory", &["commit", "-qam", "tweak"]);
    let tweaked = sandbox
        .git("mallory", &["rev-parse", "HEAD"])
        .trim()
        .to_owned();
    sandbox.past_the_hook(|| sandbox.git("mallory", &["push", "-q", "origin", branch]));
    let staging = sandbox.tip("staging");
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "request #12's head {} is not the promotion it describes: its branch `{branch}` was changed by hand",
            &tweaked[..7]
        )),
        "{}",
        run.render()
    );
    assert!(
        calls_since(&server, from)
            .await
            .iter()
            .all(|c| c.starts_with("GET "))
    );
    assert_eq!(sandbox.tip("staging"), staging);
}

/// The target moved after the request was built: GitHub would merge a tree nobody reviewed,
/// so ferry refuses and says how to rebuild it; promoting again updates the same pull request.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_moved_needs_the_request_rebuilt() {
    let (sandbox, remote, server, hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let before = sandbox.tip("staging");
    sandbox.past_the_hook(|| {
        sandbox.commit_files("staging", &[("NOTES.md", "staging notes\n")], "notes")
    });
    hub.pushed("staging", &before, &sandbox.tip("staging"), "ci-bot");
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("`staging` moved since request #12 was built on it"),
        "{}",
        run.render()
    );
    assert!(
        run.stderr.contains("ferry promote dev staging"),
        "{}",
        run.render()
    );
    assert!(
        calls_since(&server, from)
            .await
            .iter()
            .all(|c| c.starts_with("GET "))
    );
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await;
    run.assert_code(0);
    assert!(run.stdout.contains("#12"), "{}", run.render());
    ferry(&sandbox, &remote, &server, BOB, &["approve", "12"])
        .await
        .assert_code(0);
    ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["merge", "12", "--method", "squash"],
    )
    .await
    .assert_code(0);
    let merge: Value = serde_json::from_slice(&last(&server).await.body).unwrap();
    assert_eq!(merge["merge_method"], "squash");
    assert!(
        sandbox
            .show("staging", "NOTES.md")
            .contains("staging notes")
    );
}

/// GitHub's own refusal (its branch protection) is shown in its words; nothing moves. `--as`
/// cannot name someone other than the token's user, and `FERRY_FORGE` stands for `--forge`.
#[tokio::test(flavor = "multi_thread")]
async fn github_says_no_in_its_own_words() {
    let (sandbox, remote, server, hub) = world().await;
    ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["promote", "dev", "staging"],
    )
    .await
    .assert_code(0);
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["approve", "12", "--as", "carol"],
    )
    .await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("on GitHub ferry acts as its token's user, `bob`, not `--as carol`"),
        "{}",
        run.render()
    );
    // FERRY_FORGE=github, no `--forge`.
    let f = sandbox
        .ferry(&[
            "approve",
            "12",
            "--github-repo",
            "acme/deploy",
            "--remote",
            &remote,
        ])
        .env("FERRY_FORGE", "github")
        .env("GITHUB_API_URL", &server.uri())
        .env("GITHUB_TOKEN", BOB);
    let run = tokio::task::spawn_blocking(move || f.run()).await.unwrap();
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("#12 approved by bob"),
        "{}",
        run.render()
    );

    let said = "At least 2 approving reviews are required by reviewers with write access.";
    hub.refuse_merges(said);
    let staging = sandbox.tip("staging");
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains(&format!("GitHub refused to merge #12: {said}")),
        "{}",
        run.render()
    );
    assert_eq!(sandbox.tip("staging"), staging);
}

/// On GitHub the audit flags a direct push to a protected branch by someone who may not push
/// there (from the repository's activity), and exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_flags_a_direct_push_to_a_protected_branch() {
    let (sandbox, remote, server, hub) = world().await;
    let before = sandbox.tip("staging");
    sandbox.past_the_hook(|| sandbox.commit_files("staging", &[("NOTES.md", "hello\n")], "notes"));
    hub.pushed("staging", &before, &sandbox.tip("staging"), "mallory");
    let run = ferry(&sandbox, &remote, &server, BOB, &["audit", "staging"]).await;
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("FLAGGED: pushed directly by mallory, who is not an allowed pusher (none)"),
        "{}",
        run.render()
    );
    assert!(run.stdout.contains("pushed by ci-bot"), "{}", run.render());
}

/// `requests`, `approve` and `merge` cost the same number of calls for 1 app and for 300.
#[tokio::test(flavor = "multi_thread")]
async fn the_calls_do_not_grow_with_the_number_of_apps() {
    let mut counts = Vec::new();
    for extra in [0, 299] {
        let (sandbox, remote, server, _hub) = world_of(extra).await;
        ferry(
            &sandbox,
            &remote,
            &server,
            ALICE,
            &["promote", "dev", "staging"],
        )
        .await
        .assert_code(0);
        let mut count = Vec::new();
        for (token, args) in [
            (BOB, &["requests"][..]),
            (BOB, &["requests", "12"][..]),
            (BOB, &["approve", "12"][..]),
            (ALICE, &["merge", "12"][..]),
        ] {
            let from = seen(&server).await;
            let run = ferry(&sandbox, &remote, &server, token, args).await;
            run.assert_code(0);
            count.push(calls_since(&server, from).await.len());
        }
        let merged = sandbox.show("staging", "manifest.json");
        assert_eq!(merged.matches("\"1.0.0\"").count(), extra + 1);
        counts.push(count);
    }
    assert_eq!(counts[0], [3, 3, 3, 5]);
    assert_eq!(counts[0], counts[1]);
}

/// What anyone with write access can edit on GitHub does not redirect a merge: a pull request
/// whose base was changed to another branch, or whose block for bots was edited to name other
/// environments, is refused before any write.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_pull_request_is_not_merged_elsewhere() {
    let (sandbox, remote, server, _hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    let staging = sandbox.tip("staging");
    assert_eq!(patch_pull(&server, json!({"base": "prod"})).await, 200);
    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("request #12 merges into `prod`, not into `staging` (`staging`'s branch)"),
        "{}",
        run.render()
    );
    assert!(
        calls_since(&server, from)
            .await
            .iter()
            .all(|c| c.starts_with("GET "))
    );

    assert_eq!(patch_pull(&server, json!({"base": "staging"})).await, 200);
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["requests", "12", "--raw"],
    )
    .await;
    let edited = run.stdout[run.stdout.find("<!-- ferry:promotion").unwrap()..]
        .replace("\"to\": \"staging\"", "\"to\": \"prod\"");
    assert!(edited.contains("\"to\": \"prod\""), "{edited}");
    assert_eq!(patch_pull(&server, json!({"body": edited})).await, 200);
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("request #12 does not say which commit of `dev` it promotes"),
        "{}",
        run.render()
    );
    assert_eq!(sandbox.tip("staging"), staging);
}

/// A PATCH of pull request #12 as alice, the way GitHub's web page edits it; the status code.
pub(crate) async fn patch_pull(server: &MockServer, body: Value) -> u16 {
    let auth = format!("Authorization: Bearer {ALICE}");
    let target = format!("{REPO}/pulls/12");
    crate::common::hub::raw_call(server, auth, "PATCH", target, body)
        .await
        .0
}

/// The target moves between ferry's checks and GitHub's merge (nothing in GitHub's merge API
/// can pin the base): GitHub merges the head onto it, and ferry says the result is not the
/// promoted state, exit 1, with what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_moves_during_the_merge_is_a_failure_said_so() {
    let (sandbox, remote, server, hub) = world().await;
    promoted_and_approved(&sandbox, &remote, &server).await;
    hub.race_the_next_merge();
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("but its tree is not the promoted state: `staging` moved between ferry's checks and the merge"),
        "{}",
        run.render()
    );
    assert!(
        run.stderr.contains("require_up_to_date"),
        "{}",
        run.render()
    );
}

/// A password in GITHUB_API_URL is dropped: the token is the credential, and the URL shows in
/// errors and in `-vv`'s logs.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_the_api_url_is_never_shown() {
    let (sandbox, remote, server, _hub) = world().await;
    let api = server.uri().replace("http://", "http://ops:sekrit-pass@");
    let f = sandbox
        .ferry(&[
            "requests",
            "-vv",
            "--forge",
            "github",
            "--repo",
            "acme/deploy",
        ])
        .args(["--remote", &remote])
        .env("GITHUB_API_URL", &api)
        .env("GITHUB_TOKEN", BOB);
    let run = tokio::task::spawn_blocking(move || f.run()).await.unwrap();
    run.assert_code(0);
    assert!(!run.render().contains("sekrit-pass"), "{}", run.render());
    assert!(!run.render().contains(BOB), "{}", run.render());
}
