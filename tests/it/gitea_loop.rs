//! The whole promotion loop on Gitea (and Forgejo, whose API is Gitea's), through its API and
//! git only: `ferry promote` pushes the request branch and opens the pull request, a second
//! user approves it, `ferry merge` re-gates and merges it with the head pinned, the agent
//! deploys and reports, `ferry audit` tells it all, and `ferry protect` sets and checks the
//! branch protection. The forge is the stateful double of tests/it/common/hub.rs answering
//! as Gitea, over the sandbox's real repository (with no ferry hook: Gitea runs its own).

use serde_json::{Value, json};
use wiremock::MockServer;

use crate::common::hub::{Dialect, Hub};
use crate::common::{Run, Sandbox};

const ALICE: &str = "0123456789abcdef0123456789abcdef01234567";
const BOB: &str = "89abcdef0123456789abcdef0123456789abcdef";
const AGENT: &str = "fedcba9876543210fedcba9876543210fedcba98";
const REPO: &str = "/api/v1/repos/acme/deploy";

async fn world() -> (Sandbox, String, MockServer, Hub) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let file = crate::agent::artifact(&sandbox, "1.0.0");
    crate::agent::bump(&sandbox, &remote, "1.0.0", &file, true);
    let before = sandbox.tip("staging");
    sandbox.edit_env("staging", "staging", |env| {
        env["apps"] = json!({"web": {"deployment_path": "/srv/web"}});
        env["protection"] = json!({"required_approvals": 1, "required_checks": ["ci/test"]});
        env["agent"] = json!({"reporters": ["agent-staging"]});
    });
    // Gitea's server runs its own hooks, not ferry's.
    for hook in ["pre-receive", "post-receive"] {
        let _ = std::fs::remove_file(sandbox.path().join("deploy.git/hooks").join(hook));
    }
    let (server, hub) = Hub::start_as(
        Dialect::Gitea,
        &sandbox.path().join("deploy.git"),
        &[(ALICE, "alice"), (BOB, "bob"), (AGENT, "agent-staging")],
    )
    .await;
    hub.pushed("staging", &before, &sandbox.tip("staging"), "ci-bot");
    (sandbox, remote, server, hub)
}

async fn ferry(
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
            "gitea",
            "--repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env("GITEA_API_URL", &format!("{}/api/v1", server.uri()))
        .env("GITEA_TOKEN", token);
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

async fn calls_since(server: &MockServer, from: usize) -> Vec<String> {
    server.received_requests().await.unwrap()[from..]
        .iter()
        .map(|r| {
            let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{query}", r.method, r.url.path()).replace(REPO, "")
        })
        .collect()
}

async fn seen(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

async fn last_body(server: &MockServer) -> Value {
    let request = server.received_requests().await.unwrap().pop().unwrap();
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_approve_merge_deploy_audit_and_protect_on_gitea() {
    let (sandbox, remote, server, _hub) = world().await;

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
    assert!(
        run.stderr.contains("opened pull request #12"),
        "{}",
        run.render()
    );
    let head = sandbox.tip("ferry/promote/dev-to-staging");
    assert_eq!(
        sandbox
            .git("deploy.git", &["rev-parse", &format!("{head}^")])
            .trim(),
        sandbox.tip("staging")
    );

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
            "GET /pulls?state=open&sort=oldest&limit=50".to_owned(),
            "GET /pulls/12/reviews?limit=50".to_owned(),
            format!("GET /commits/{head}/status?limit=50"),
        ]
    );

    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, ALICE, &["approve", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("authors cannot approve their own requests"),
        "{}",
        run.render()
    );
    assert_eq!(
        calls_since(&server, from).await,
        ["GET /api/v1/user", "GET /pulls/12"]
    );

    let from = seen(&server).await;
    let run = ferry(&sandbox, &remote, &server, BOB, &["approve", "12"]).await;
    run.assert_code(0);
    assert_eq!(
        calls_since(&server, from).await,
        [
            "GET /api/v1/user",
            "GET /pulls/12",
            "POST /pulls/12/reviews"
        ]
    );
    assert_eq!(
        last_body(&server).await,
        json!({"event": "APPROVED", "commit_id": head, "body": ""})
    );

    // The protection requires `ci/test` green on the head: refused until CI says so.
    let run = ferry(&sandbox, &remote, &server, ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("requires ci/test green on the request's head"),
        "{}",
        run.render()
    );
    ferry(
        &sandbox,
        &remote,
        &server,
        BOB,
        &["status", "set", &head, "ci/test", "success"],
    )
    .await
    .assert_code(0);

    let from = seen(&server).await;
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["merge", "12", "--method", "squash"],
    )
    .await;
    run.assert_code(0);
    assert!(!run.stderr.contains("warning"), "{}", run.render());
    let calls = calls_since(&server, from).await;
    assert!(calls.len() <= 8, "{calls:?}");
    assert!(
        calls.contains(&"POST /pulls/12/merge".to_owned()),
        "{calls:?}"
    );
    let merge_body = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path().ends_with("/pulls/12/merge"))
        .unwrap();
    let merge_body: Value = serde_json::from_slice(&merge_body.body).unwrap();
    assert_eq!(merge_body["Do"], "squash");
    assert_eq!(merge_body["head_commit_id"], head.as_str());
    let staging = sandbox.tip("staging");
    assert_eq!(
        sandbox.git("deploy.git", &["rev-parse", &format!("{staging}^{{tree}}")]),
        sandbox.git("deploy.git", &["rev-parse", &format!("{head}^{{tree}}")]),
    );

    let f = sandbox
        .ferry(&["agent", "--env", "staging", "--once", "--host", "h1"])
        .args([
            "--forge",
            "gitea",
            "--repo",
            "acme/deploy",
            "--remote",
            &remote,
        ])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .env("GITEA_API_URL", &format!("{}/api/v1", server.uri()))
        .env("GITEA_TOKEN", AGENT);
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
    assert_eq!(promotion["checks"][0]["check"], "ci/test");
    assert_eq!(promotion["checks"][0]["state"], "success");
    assert_eq!(promotion["violations"], json!([]));
    assert_eq!(changes[1]["pushed_by"], "ci-bot");

    // Branch protection as code: missing, applied (a rule Gitea has no field for is said not
    // to be enforced), then in sync.
    sandbox.edit_env("staging", "staging", |env| {
        env["protection"]["linear_history"] = json!(true);
    });
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["protect", "check", "--env", "staging"],
    )
    .await;
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("staging (`staging`): not protected on Gitea"),
        "{}",
        run.render()
    );
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["protect", "apply", "--env", "staging"],
    )
    .await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("warning: staging: Gitea has no `linear_history` rule: not enforced there"),
        "{}",
        run.render()
    );
    let put = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .rfind(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/branch_protections"))
        .unwrap();
    let rule: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(rule["rule_name"], "staging");
    assert_eq!(rule["required_approvals"], 1);
    assert_eq!(rule["enable_status_check"], true);
    assert_eq!(rule["status_check_contexts"], json!(["ci/test"]));
    assert_eq!(rule["enable_push"], false);
    let run = ferry(
        &sandbox,
        &remote,
        &server,
        ALICE,
        &["protect", "check", "--env", "staging"],
    )
    .await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("staging (`staging`): in sync"),
        "{}",
        run.render()
    );
}
