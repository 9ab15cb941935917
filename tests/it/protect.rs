//! `ferry protect check|apply --forge github` against a GitHub double that answers with
//! GitHub's recorded branch-protection payloads (`@octokit/fixtures`, scenario
//! `branch-protection`: tests/fixtures/github/protection-*.json).

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::github::recorded;
use crate::common::{Run, Sandbox};

const TOKEN: &str = "ghp_test0000000000000000000000000000000";
const PROTECTION: &str = "/repos/acme/deploy/branches/prod/protection";

/// What the recorded protection holds, declared in prod's file: GitHub's answer to the
/// recorded PUT is then exactly the declaration.
fn as_recorded() -> Value {
    json!({
        "required_approvals": 1,
        "dismiss_stale_reviews": true,
        "required_checks": ["foo/bar"],
        "require_up_to_date": true,
        "allowed_mergers": ["octokit-fixture-user-a", "acme/a-team"],
        "enforce_admins": true
    })
}

fn repo(protection: Value) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    sandbox.edit_env("prod", "prod", |env| env["protection"] = protection);
    (sandbox, remote)
}

async fn protect(sandbox: &Sandbox, remote: &str, server: &MockServer, args: &[&str]) -> Run {
    let f = sandbox
        .ferry(&["protect"])
        .args(args)
        .args([
            "--forge",
            "github",
            "--env",
            "prod",
            "--github-repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env("GITHUB_API_URL", &server.uri())
        .env("GITHUB_TOKEN", TOKEN);
    tokio::task::spawn_blocking(move || f.run()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_an_unprotected_branch() {
    let (sandbox, remote) = repo(as_recorded());
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PROTECTION))
        .respond_with(recorded("protection-missing.json"))
        .expect(1)
        .mount(&server)
        .await;
    let run = protect(&sandbox, &remote, &server, &["check"]).await;
    run.assert_code(1);
    assert_eq!(
        run.stdout.trim(),
        "prod (`prod`): not protected on GitHub (run `ferry protect apply --env prod`)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_sets_the_declared_protection_and_confirms_it() {
    let (sandbox, remote) = repo(as_recorded());
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(PROTECTION))
        .respond_with(recorded("protection-set.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PROTECTION))
        .respond_with(recorded("protection-set.json"))
        .expect(2)
        .mount(&server)
        .await;
    let run = protect(&sandbox, &remote, &server, &["apply"]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        "prod (`prod`): protection applied and confirmed"
    );
    let put = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(
        body,
        json!({
            "required_status_checks": {"strict": true, "contexts": ["foo/bar"]},
            "enforce_admins": true,
            "required_pull_request_reviews": {
                "dismiss_stale_reviews": true,
                "require_code_owner_reviews": false,
                "required_approving_review_count": 1,
                "bypass_pull_request_allowances": {"users": [], "teams": []}
            },
            "restrictions": {"users": ["octokit-fixture-user-a"], "teams": ["a-team"], "apps": []},
            "required_linear_history": false,
            "allow_force_pushes": false,
            "allow_deletions": false
        })
    );
    // Checking afterwards finds no drift.
    let run = protect(&sandbox, &remote, &server, &["check"]).await;
    assert_eq!(run.stdout.trim(), "prod (`prod`): in sync");
}

/// `require_signed_commits` is GitHub's "required signatures", set at its own endpoint after
/// the protection (only when the protection's answer says otherwise), and read back from the
/// protection's `required_signatures`.
#[tokio::test(flavor = "multi_thread")]
async fn apply_requires_signed_commits_at_their_own_endpoint() {
    let mut declared = as_recorded();
    declared["require_signed_commits"] = json!(true);
    let (sandbox, remote) = repo(declared);
    let server = MockServer::start().await;
    let mut signed = crate::common::github::fixture("protection-set.json")["body"].clone();
    signed["required_signatures"] = json!({
        "url": "https://api.github.com/repos/acme/deploy/branches/prod/protection/required_signatures",
        "enabled": true
    });
    Mock::given(method("PUT"))
        .and(path(PROTECTION))
        .respond_with(recorded("protection-set.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{PROTECTION}/required_signatures")))
        .respond_with(ResponseTemplate::new(200).set_body_json(&signed["required_signatures"]))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PROTECTION))
        .respond_with(ResponseTemplate::new(200).set_body_json(&signed))
        .mount(&server)
        .await;
    let run = protect(&sandbox, &remote, &server, &["apply"]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout.trim(),
        "prod (`prod`): protection applied and confirmed"
    );
    let calls: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        calls,
        [
            format!("PUT {PROTECTION}"),
            format!("POST {PROTECTION}/required_signatures"),
            format!("GET {PROTECTION}"),
        ]
    );
    // A branch where GitHub still signs nothing: the drift is said.
    let unsigned = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PROTECTION))
        .respond_with(recorded("protection-set.json"))
        .mount(&unsigned)
        .await;
    let run = protect(&sandbox, &remote, &unsigned, &["check"]).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains("require_signed_commits"),
        "{}",
        run.render()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_prints_every_drifted_field() {
    let mut declared = as_recorded();
    declared["required_approvals"] = json!(2);
    declared["linear_history"] = json!(true);
    declared["allowed_pushers"] = json!(["ci-bot"]);
    declared["allowed_mergers"] = json!(["acme/release"]);
    let (sandbox, remote) = repo(declared);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PROTECTION))
        .respond_with(recorded("protection-set.json"))
        .mount(&server)
        .await;
    let run = protect(&sandbox, &remote, &server, &["check"]).await;
    run.assert_code(1);
    insta::assert_snapshot!(run.stdout, @r"
    prod (`prod`): 4 field(s) drifted
      field               declared              on GitHub
      required_approvals  2                     1
      allowed_pushers     ci-bot                nobody
      allowed_mergers     ci-bot, team release  octokit-fixture-user-a, team a-team
      linear_history      true                  false
    ");
    let run = protect(&sandbox, &remote, &server, &["check", "--format", "json"]).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(report[0]["state"], "drift");
    assert_eq!(
        report[0]["drift"][0],
        json!({"field": "required_approvals", "declared": "2", "actual": "1"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_admin_rights_is_told_so() {
    let (sandbox, remote) = repo(as_recorded());
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(PROTECTION))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/branches/branch-protection#update-branch-protection"
        })))
        .mount(&server)
        .await;
    let run = protect(&sandbox, &remote, &server, &["apply"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("403 Resource not accessible by integration"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("needs a token with admin rights on `acme/deploy`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_of_another_organization_is_refused_before_any_call() {
    let mut declared = as_recorded();
    declared["allowed_mergers"] = json!(["other-org/admins"]);
    let (sandbox, remote) = repo(declared);
    let server = MockServer::start().await;
    let run = protect(&sandbox, &remote, &server, &["apply"]).await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("team `other-org/admins` is not in `acme`"),
        "{}",
        run.stderr
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_branch_missing_on_github_is_said_so() {
    let (sandbox, remote) = repo(as_recorded());
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PROTECTION))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "Branch not found",
            "documentation_url": "https://docs.github.com/rest/branches/branch-protection#get-branch-protection"
        })))
        .mount(&server)
        .await;
    let run = protect(&sandbox, &remote, &server, &["check"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("404 Branch not found"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the branch `prod` must exist"),
        "{}",
        run.stderr
    );
}
