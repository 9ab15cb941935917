//! The whole promotion loop on the self-hosted forges, Gitea (and Forgejo, whose API is
//! Gitea's) and GitLab, through their API and git only: `ferry promote` pushes the request
//! branch and opens the pull (merge) request, a second user approves it, `ferry merge`
//! re-gates and merges it with the head pinned, the agent deploys and reports, `ferry audit`
//! tells it all, and `ferry protect` sets and checks the branch protection. The forge is the
//! stateful double of tests/it/common/hub.rs answering as each, over the sandbox's real
//! repository (with no ferry hook: the forge runs its own).

use serde_json::{Value, json};
use wiremock::MockServer;

use crate::common::hub::{Dialect, Hub};
use crate::common::{Run, Sandbox};

const ALICE: &str = "0123456789abcdef0123456789abcdef01234567";
const BOB: &str = "89abcdef0123456789abcdef0123456789abcdef";
const AGENT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// What differs from one forge to the other: names, and the calls each command makes.
struct Side {
    dialect: Dialect,
    forge: &'static str,
    name: &'static str,
    noun: &'static str,
    api: &'static str,
    token: &'static str,
    api_var: &'static str,
    repo: &'static str,
    user: &'static str,
    list: &'static str,
    one: &'static str,
    approvals: &'static str,
    approve: &'static str,
    checks: &'static str,
    merge: &'static str,
    protections: &'static str,
}

const GITEA: Side = Side {
    dialect: Dialect::Gitea,
    forge: "gitea",
    name: "Gitea",
    noun: "pull request",
    api: "/api/v1",
    token: "GITEA_TOKEN",
    api_var: "GITEA_API_URL",
    repo: "/api/v1/repos/acme/deploy",
    user: "GET /api/v1/user",
    list: "GET /pulls?state=open&sort=oldest&limit=50",
    one: "GET /pulls/12",
    approvals: "GET /pulls/12/reviews?limit=50",
    approve: "POST /pulls/12/reviews",
    checks: "GET /commits/HEAD/status?limit=50",
    merge: "POST /pulls/12/merge",
    protections: "/branch_protections",
};

const GITLAB: Side = Side {
    dialect: Dialect::GitLab,
    forge: "gitlab",
    name: "GitLab",
    noun: "merge request",
    api: "/api/v4",
    token: "GITLAB_TOKEN",
    api_var: "GITLAB_API_URL",
    repo: "/api/v4/projects/acme%2Fdeploy",
    user: "GET /api/v4/user",
    list: "GET /merge_requests?state=opened&order_by=created_at&sort=asc&per_page=100",
    one: "GET /merge_requests/12",
    approvals: "GET /merge_requests/12/approvals",
    approve: "POST /merge_requests/12/approve",
    checks: "GET /repository/commits/HEAD/statuses?per_page=100",
    merge: "PUT /merge_requests/12/merge",
    protections: "/protected_branches",
};

/// dev with `web` 1.0.0 pinned, staging declaring it, protected by one approval and `ci/test`,
/// its deploys reported by `agent-staging`; the double over it answering as `side`.
async fn world(side: &Side) -> (Sandbox, String, MockServer, Hub) {
    let users = [(ALICE, "alice"), (BOB, "bob"), (AGENT, "agent-staging")];
    crate::common::hub::world(side.dialect, &users, 0, |env| {
        env["protection"]["required_checks"] = json!(["ci/test"]);
    })
    .await
}

/// `ferry ARGS` on `side`'s forge as the token's user, on the double.
async fn ferry(
    side: &Side,
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
            side.forge,
            "--repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env(side.api_var, &format!("{}{}", server.uri(), side.api))
        .env(side.token, token);
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

async fn calls_since(side: &Side, server: &MockServer, from: usize) -> Vec<String> {
    server.received_requests().await.unwrap()[from..]
        .iter()
        .map(|r| {
            let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{query}", r.method, r.url.path()).replace(side.repo, "")
        })
        .collect()
}

async fn seen(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// The body of the last request whose path ends with `tail` (and whose method is `method`).
async fn body_of(server: &MockServer, method: &str, tail: &str) -> Value {
    let request = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .rfind(|r| r.method.as_str() == method && r.url.path().ends_with(tail))
        .expect("the request");
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_approve_merge_deploy_audit_and_protect_on_gitea() {
    the_loop(&GITEA).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_approve_merge_deploy_audit_and_protect_on_gitlab() {
    the_loop(&GITLAB).await;
}

async fn the_loop(side: &Side) {
    let (sandbox, remote, server, _hub) = world(side).await;
    let ferry = |token: &'static str, args: &'static [&'static str]| {
        ferry(side, &sandbox, &remote, &server, token, args)
    };

    let run = ferry(ALICE, &["promote", "dev", "staging"]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("#12"), "{}", run.render());
    assert!(
        run.stderr.contains(&format!("opened {} #12", side.noun)),
        "{}",
        run.render()
    );
    let head = sandbox.tip("ferry/promote/dev-to-staging");
    assert_eq!(
        sandbox
            .git("deploy.git", &["rev-parse", &format!("{head}^")])
            .trim(),
        sandbox.tip("staging"),
        "the request branch is one commit on the target's tip"
    );

    let from = seen(&server).await;
    let run = ferry(BOB, &["requests"]).await;
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
        calls_since(side, &server, from).await,
        [
            side.list.to_owned(),
            side.approvals.to_owned(),
            side.checks.replace("HEAD", &head)
        ]
    );

    let from = seen(&server).await;
    let run = ferry(ALICE, &["approve", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("authors cannot approve their own requests"),
        "{}",
        run.render()
    );
    assert_eq!(
        calls_since(side, &server, from).await,
        [side.user, side.one]
    );

    let from = seen(&server).await;
    let run = ferry(BOB, &["approve", "12"]).await;
    run.assert_code(0);
    assert_eq!(
        calls_since(side, &server, from).await,
        [side.user, side.one, side.approve]
    );
    let (method, tail) = side.approve.split_once(' ').unwrap();
    let approval = body_of(&server, method, tail).await;
    match side.dialect {
        Dialect::GitLab => assert_eq!(approval, json!({"sha": head})),
        _ => assert_eq!(
            approval,
            json!({"event": "APPROVED", "commit_id": head, "body": ""})
        ),
    }

    // The protection requires `ci/test` green on the head: refused until CI says so.
    let run = ferry(ALICE, &["merge", "12"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("requires ci/test green on the request's head"),
        "{}",
        run.render()
    );
    let set = [
        "status",
        "set",
        "ferry/promote/dev-to-staging",
        "ci/test",
        "success",
    ];
    ferry(BOB, Box::leak(Box::new(set))).await.assert_code(0);

    let from = seen(&server).await;
    let run = ferry(ALICE, &["merge", "12", "--method", "squash"]).await;
    run.assert_code(0);
    assert!(!run.stderr.contains("warning"), "{}", run.render());
    let calls = calls_since(side, &server, from).await;
    assert!(calls.len() <= 8, "{calls:?}");
    assert!(calls.contains(&side.merge.to_owned()), "{calls:?}");
    let (method, tail) = side.merge.split_once(' ').unwrap();
    let merge = body_of(&server, method, tail.rsplit_once("/12").unwrap().1).await;
    match side.dialect {
        Dialect::GitLab => {
            assert_eq!(merge["squash"], true);
            assert_eq!(merge["sha"], head.as_str());
        }
        _ => {
            assert_eq!(merge["Do"], "squash");
            assert_eq!(merge["head_commit_id"], head.as_str());
        }
    }
    let staging = sandbox.tip("staging");
    assert_eq!(
        sandbox.git("deploy.git", &["rev-parse", &format!("{staging}^{{tree}}")]),
        sandbox.git("deploy.git", &["rev-parse", &format!("{head}^{{tree}}")]),
        "the merged tree is the promoted state"
    );

    let f = sandbox
        .ferry(&["agent", "--env", "staging", "--once", "--host", "h1"])
        .args([
            "--forge",
            side.forge,
            "--repo",
            "acme/deploy",
            "--remote",
            &remote,
        ])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .env(side.api_var, &format!("{}{}", server.uri(), side.api))
        .env(side.token, AGENT);
    let run = tokio::task::spawn_blocking(move || f.run()).await.unwrap();
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("root/srv/web/index.html")).unwrap(),
        "web 1.0.0\n"
    );
    let run = ferry(BOB, &["status", "staging", "--format", "json"]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("\"success\""), "{}", run.render());

    let run = ferry(BOB, &["audit", "staging", "--format", "json"]).await;
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
    // With `--since`, a forge's long push log is read from then on only.
    let from = seen(&server).await;
    let since = [
        "audit",
        "staging",
        "--since",
        "2023-12-01",
        "--format",
        "json",
    ];
    ferry(BOB, Box::leak(Box::new(since))).await.assert_code(0);
    let calls = calls_since(side, &server, from).await;
    if side.dialect == Dialect::GitLab {
        let events = "GET /events?action=pushed&sort=asc&per_page=100&after=2023-11-30";
        assert!(calls.iter().any(|c| c == events), "{calls:?}");
    }

    // Branch protection as code: missing, applied (a rule the forge has no field for is said
    // not to be enforced there), then in sync.
    sandbox.edit_env("staging", "staging", |env| {
        env["protection"]["linear_history"] = json!(true);
    });
    let run = ferry(ALICE, &["protect", "check", "--env", "staging"]).await;
    run.assert_code(1);
    let missing = format!("staging (`staging`): not protected on {}", side.name);
    assert!(run.stdout.contains(&missing), "{}", run.render());
    let run = ferry(ALICE, &["protect", "apply", "--env", "staging"]).await;
    run.assert_code(0);
    let unheld = format!(
        "warning: staging: {} has no `linear_history` rule",
        side.name
    );
    assert!(run.stderr.contains(&unheld), "{}", run.render());
    let rule = body_of(&server, "POST", side.protections).await;
    match side.dialect {
        Dialect::GitLab => {
            assert_eq!(rule["name"], "staging");
            assert_eq!(rule["push_access_level"], 0);
            assert_eq!(rule["merge_access_level"], 30);
            assert!(
                run.stderr
                    .contains("`required_approvals` (1) needs GitLab Premium: this project's GitLab does not have it (it answered 403 on `approval_rules`)"),
                "{}",
                run.render()
            );
        }
        _ => {
            assert_eq!(rule["rule_name"], "staging");
            assert_eq!(rule["required_approvals"], 1);
            assert_eq!(rule["enable_status_check"], true);
            assert_eq!(rule["status_check_contexts"], json!(["ci/test"]));
            assert_eq!(rule["enable_push"], false);
        }
    }
    let run = ferry(ALICE, &["protect", "check", "--env", "staging"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("staging (`staging`): in sync"),
        "{}",
        run.render()
    );
}
