//! `ferry protect` on GitLab, field by field, on both plans: on Premium the people allowed to
//! push and merge (users and groups by id), code-owner approval, ferry's approval rule for the
//! branch and approvals reset on push are set, read back and checked; on Free (GitLab answering
//! 403 on approval rules) what needs Premium is said and what Free holds is set. Names are
//! looked up before anything is written; approval rules ferry did not create are left alone.

use serde_json::{Value, json};
use wiremock::MockServer;

use crate::common::hub::{Dialect, Hub};
use crate::common::{Run, Sandbox};

const ALICE: &str = "0123456789abcdef0123456789abcdef01234567";
const BOB: &str = "89abcdef0123456789abcdef0123456789abcdef";
const PROJECT: &str = "/api/v4/projects/acme%2Fdeploy";

/// Staging declaring everything GitLab Premium holds (and `ci/test`, which no plan holds by
/// name); the double over it, on Premium when asked, knowing `release-bot` and `acme/release`.
async fn world(premium: bool) -> (Sandbox, String, MockServer, Hub) {
    let users = [(ALICE, "alice"), (BOB, "bob")];
    let (sandbox, remote, server, hub) =
        crate::common::hub::world(Dialect::GitLab, &users, 0, |env| {
            env["protection"] = json!({
                "required_approvals": 2,
                "require_code_owner_review": true,
                "dismiss_stale_reviews": true,
                "required_checks": ["ci/test"],
                "allowed_pushers": ["release-bot"],
                "allowed_mergers": ["bob", "acme/release"],
            });
        })
        .await;
    hub.person("release-bot");
    hub.group("acme/release");
    if premium {
        hub.premium();
    }
    (sandbox, remote, server, hub)
}

async fn protect(sandbox: &Sandbox, remote: &str, server: &MockServer, verb: &str) -> Run {
    let f = sandbox
        .ferry(&["protect", verb, "--env", "staging"])
        .args([
            "--forge",
            "gitlab",
            "--repo",
            "acme/deploy",
            "--remote",
            remote,
        ])
        .env("GITLAB_API_URL", &format!("{}/api/v4", server.uri()))
        .env("GITLAB_TOKEN", ALICE);
    let run = tokio::task::spawn_blocking(move || f.run())
        .await
        .expect("ferry ran");
    assert!(
        !run.render().contains(ALICE),
        "a token shown: {}",
        run.render()
    );
    assert!(!run.render().contains("panicked"), "{}", run.render());
    run
}

/// The calls since the `from`th, as `VERB path?query` under the project (`/api/v4` elsewhere).
async fn calls_since(server: &MockServer, from: usize) -> Vec<String> {
    server.received_requests().await.unwrap()[from..]
        .iter()
        .map(|r| {
            let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{query}", r.method, r.url.path())
                .replace(&format!("{PROJECT}/"), "/")
                .replace("/api/v4", "")
        })
        .collect()
}

fn branch_now(hub: &Hub) -> Value {
    hub.gitlab_protection("staging").0
}

async fn seen(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

fn writes(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| !c.starts_with("GET ")).collect()
}

/// The body of the last `method` request to `path` (under the project).
async fn body_of(server: &MockServer, method: &str, path: &str) -> Value {
    let request = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .rfind(|r| r.method.as_str() == method && r.url.path() == format!("{PROJECT}{path}"))
        .expect("the request");
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

/// A change made by hand, through the API (`path` under the project): the status.
async fn by_hand(server: &MockServer, verb: &str, path: &str, body: Value) -> u16 {
    let auth = format!("PRIVATE-TOKEN: {ALICE}");
    let target = format!("{PROJECT}{path}");
    crate::common::hub::raw_call(server, auth, verb, target, body)
        .await
        .0
}

// The double's ids: users from 100 (alice, bob, release-bot), groups from 500 (acme,
// acme/release).
const ALICE_ID: u64 = 100;
const BOB_ID: u64 = 101;
const BOT_ID: u64 = 102;
const ACME_ID: u64 = 500;
const RELEASE_ID: u64 = 501;

#[tokio::test(flavor = "multi_thread")]
async fn premium_holds_people_code_owners_and_approvals_and_checks_clean() {
    let (sandbox, remote, server, hub) = world(true).await;
    let from = seen(&server).await;
    let apply = protect(&sandbox, &remote, &server, "apply").await;
    apply.assert_code(0);
    assert!(!apply.stderr.contains("Premium"), "{}", apply.render());
    assert!(
        apply
            .stderr
            .contains("GitLab requires pipelines, not named checks"),
        "{}",
        apply.render()
    );
    assert!(
        apply
            .stdout
            .contains("staging (`staging`): protection applied and confirmed"),
        "{}",
        apply.render()
    );
    let calls = calls_since(&server, from).await;
    assert_eq!(
        calls,
        [
            // Names first, each once; then the plan (approval rules answered: Premium) and
            // who approves (the project's group).
            "GET /users?username=release-bot",
            "GET /groups/acme%2Frelease?with_projects=false",
            "GET /users?username=bob",
            "GET /approval_rules?per_page=100",
            "GET /projects/acme%2Fdeploy",
            // The protected branch, ferry's approval rule, approvals reset on push.
            "GET /protected_branches/staging",
            "POST /protected_branches",
            "GET /approval_rules?per_page=100",
            "POST /approval_rules",
            "GET /approvals",
            "POST /approvals",
            // Read back: no lookup by id (the names are known).
            "GET /protected_branches?per_page=100",
            "GET /approval_rules?per_page=100",
            "GET /approvals",
        ],
        "{calls:#?}"
    );
    let branch = body_of(&server, "POST", "/protected_branches").await;
    assert_eq!(branch["name"], "staging");
    assert_eq!(
        branch["allowed_to_push"],
        json!([{"access_level": 0}, {"user_id": BOT_ID}])
    );
    assert_eq!(
        branch["allowed_to_merge"],
        json!([{"group_id": RELEASE_ID}, {"user_id": BOB_ID}, {"user_id": BOT_ID}])
    );
    assert_eq!(branch["code_owner_approval_required"], true);
    assert_eq!(branch["allow_force_push"], false);
    let (kept, rules) = hub.gitlab_protection("staging");
    let rule = body_of(&server, "POST", "/approval_rules").await;
    assert_eq!(
        rule,
        json!({"name": "ferry: staging", "approvals_required": 2,
               "protected_branch_ids": [kept["id"]], "group_ids": [ACME_ID]})
    );
    assert_eq!(rules.len(), 1);
    assert_eq!(
        body_of(&server, "POST", "/approvals").await,
        json!({"reset_approvals_on_push": true})
    );

    // Checked: in sync, reading the people back by id (one call each, not the names ferry
    // looked up: a new run).
    let from = seen(&server).await;
    let check = protect(&sandbox, &remote, &server, "check").await;
    check.assert_code(0);
    assert!(
        check.stdout.contains("staging (`staging`): in sync"),
        "{}",
        check.render()
    );
    assert!(writes(&calls_since(&server, from).await).is_empty());

    // Applied again: nothing to change, nothing written.
    let from = seen(&server).await;
    protect(&sandbox, &remote, &server, "apply")
        .await
        .assert_code(0);
    let calls = calls_since(&server, from).await;
    assert!(writes(&calls).is_empty(), "{calls:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn premium_drift_by_hand_is_reported_field_by_field_and_applied_back() {
    let (sandbox, remote, server, hub) = world(true).await;
    protect(&sandbox, &remote, &server, "apply")
        .await
        .assert_code(0);
    let (branch, rules) = hub.gitlab_protection("staging");
    // By hand: alice may push, bob no longer merges, one approval is enough, code owners no
    // longer needed.
    let bob = branch["merge_access_levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["user_id"] == json!(BOB_ID))
        .expect("bob merges")["id"]
        .clone();
    let patched = by_hand(
        &server,
        "PATCH",
        "/protected_branches/staging",
        json!({"code_owner_approval_required": false,
               "allowed_to_push": [{"user_id": ALICE_ID}],
               "allowed_to_merge": [{"id": bob, "_destroy": true}]}),
    )
    .await;
    assert_eq!(patched, 200);
    let ours = rules[0]["id"].as_u64().unwrap();
    let put = by_hand(
        &server,
        "PUT",
        &format!("/approval_rules/{ours}"),
        json!({"approvals_required": 1}),
    )
    .await;
    assert_eq!(put, 200);

    let from = seen(&server).await;
    let check = protect(&sandbox, &remote, &server, "check").await;
    check.assert_code(1);
    assert!(
        check
            .stdout
            .contains("staging (`staging`): 4 field(s) drifted"),
        "{}",
        check.render()
    );
    let row = |field: &str, declared: &str, actual: &str| {
        check.stdout.lines().any(|l| {
            let cells: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            cells == [field, declared, actual]
        })
    };
    assert!(row("required_approvals", "2", "1"), "{}", check.stdout);
    assert!(
        row("require_code_owner_review", "true", "false"),
        "{}",
        check.stdout
    );
    assert!(
        row("allowed_pushers", "release-bot", "alice, release-bot"),
        "{}",
        check.stdout
    );
    assert!(
        row(
            "allowed_mergers",
            "bob, release-bot, team release",
            "release-bot, team release"
        ),
        "{}",
        check.stdout
    );
    // Someone ferry did not name is read back by id, once; those it named are known.
    let calls = calls_since(&server, from).await;
    let lookups: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("GET /users/") || c.starts_with("GET /groups/5"))
        .collect();
    assert_eq!(lookups, [&format!("GET /users/{ALICE_ID}")], "{calls:#?}");

    // Applied back: only what drifted is written (alice removed, bob added, the rule updated
    // in place).
    let from = seen(&server).await;
    protect(&sandbox, &remote, &server, "apply")
        .await
        .assert_code(0);
    let calls = calls_since(&server, from).await;
    assert_eq!(
        writes(&calls),
        [
            "PATCH /protected_branches/staging",
            &format!("PUT /approval_rules/{ours}")
        ],
        "{calls:#?}"
    );
    let patch = body_of(&server, "PATCH", "/protected_branches/staging").await;
    let alice = branch_now(&hub)["push_access_levels"]
        .as_array()
        .map(|levels| levels.iter().any(|l| l["user_id"] == json!(ALICE_ID)));
    assert_eq!(alice, Some(false));
    assert_eq!(patch["allowed_to_push"].as_array().map(Vec::len), Some(1));
    assert_eq!(patch["allowed_to_push"][0]["_destroy"], true);
    assert_eq!(patch["allowed_to_merge"], json!([{"user_id": BOB_ID}]));
    assert_eq!(patch["code_owner_approval_required"], true);
    protect(&sandbox, &remote, &server, "check")
        .await
        .assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn free_says_what_needs_premium_and_sets_what_it_holds() {
    let (sandbox, remote, server, hub) = world(false).await;
    let from = seen(&server).await;
    let apply = protect(&sandbox, &remote, &server, "apply").await;
    apply.assert_code(0);
    let why = "needs GitLab Premium: this project's GitLab does not have it (it answered 403 on `approval_rules`)";
    for (field, instead) in [
        ("`required_approvals` (2)", "no approval rule set"),
        (
            "`dismiss_stale_reviews` (true)",
            "approvals are not reset on push",
        ),
        (
            "`require_code_owner_review` (true)",
            "code owners' approval not required",
        ),
        ("`allowed_pushers` (release-bot)", "nobody pushes directly"),
        (
            "`allowed_mergers` (bob, release-bot, team release)",
            "maintainers may merge",
        ),
    ] {
        let note = format!("warning: staging: {field} {why}: {instead}");
        assert!(apply.stderr.contains(&note), "{note}\n{}", apply.render());
    }
    let calls = calls_since(&server, from).await;
    // The names are still checked; nothing Premium is written.
    assert_eq!(writes(&calls), ["POST /protected_branches"], "{calls:#?}");
    let branch = body_of(&server, "POST", "/protected_branches").await;
    assert_eq!(branch["push_access_level"], 0);
    assert_eq!(branch["merge_access_level"], 40);
    assert_eq!(branch["code_owner_approval_required"], false);
    assert!(branch.get("allowed_to_push").is_none(), "{branch}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("GET /approval_rules"))
            .count(),
        1,
        "the plan is asked once: {calls:#?}"
    );
    let (kept, rules) = hub.gitlab_protection("staging");
    assert_eq!(kept["merge_access_levels"][0]["access_level"], 40);
    assert!(rules.is_empty());

    // Checked: the same notes, in sync with what Free holds.
    let check = protect(&sandbox, &remote, &server, "check").await;
    check.assert_code(0);
    assert!(check.stderr.contains(why), "{}", check.render());
    assert!(
        check.stdout.contains("staging (`staging`): in sync"),
        "{}",
        check.render()
    );

    // Pushes opened by hand to developers: drift, said as such.
    let (kept, _) = hub.gitlab_protection("staging");
    let no_one = kept["push_access_levels"][0]["id"].clone();
    let patched = by_hand(
        &server,
        "PATCH",
        "/protected_branches/staging",
        json!({"allowed_to_push": [{"id": no_one, "_destroy": true}, {"access_level": 30}]}),
    )
    .await;
    assert_eq!(patched, 200);
    let check = protect(&sandbox, &remote, &server, "check").await;
    check.assert_code(1);
    assert!(
        check.stdout.contains("allowed_pushers") && check.stdout.contains("team @developers"),
        "{}",
        check.render()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn free_refuses_people_on_a_protected_branch() {
    // What GitLab Free answers when someone is named (the double as GitLab EE unlicensed):
    // why ferry does not send them there.
    let (_sandbox, _remote, server, _hub) = world(false).await;
    let status = by_hand(
        &server,
        "POST",
        "/protected_branches",
        json!({"name": "prod", "allowed_to_push": [{"user_id": BOB_ID}]}),
    )
    .await;
    assert_eq!(status, 422);
    let status = by_hand(&server, "GET", "/approval_rules", Value::Null).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_user_or_group_is_refused_before_any_write() {
    for (premium, mergers, said) in [
        (
            true,
            json!(["bob", "nobody-here"]),
            "GitLab has no user `nobody-here` (named in `allowed_mergers`)",
        ),
        (
            false,
            json!(["nobody-here"]),
            "GitLab has no user `nobody-here` (named in `allowed_mergers`)",
        ),
        (
            true,
            json!(["acme/ghosts"]),
            "GitLab has no group `acme/ghosts` (named in `allowed_mergers`)",
        ),
    ] {
        let (sandbox, remote, server, _hub) = world(premium).await;
        sandbox.edit_env("staging", "staging", |env| {
            env["protection"]["allowed_mergers"] = mergers;
        });
        let from = seen(&server).await;
        let apply = protect(&sandbox, &remote, &server, "apply").await;
        apply.assert_code(1);
        assert!(apply.stderr.contains(said), "{}", apply.render());
        assert!(
            apply.stderr.contains("nothing was changed on GitLab"),
            "{}",
            apply.render()
        );
        let calls = calls_since(&server, from).await;
        assert!(writes(&calls).is_empty(), "{calls:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_rule_ferry_did_not_create_is_left_untouched() {
    let (sandbox, remote, server, hub) = world(true).await;
    let created = by_hand(
        &server,
        "POST",
        "/approval_rules",
        json!({"name": "Security", "approvals_required": 1, "group_ids": [ACME_ID]}),
    )
    .await;
    assert_eq!(created, 201);
    let (_, before) = hub.gitlab_protection("staging");
    let theirs = before[0].clone();
    let from = seen(&server).await;
    protect(&sandbox, &remote, &server, "apply")
        .await
        .assert_code(0);
    let calls = calls_since(&server, from).await;
    let id = theirs["id"].as_u64().unwrap();
    assert!(
        !calls
            .iter()
            .any(|c| c.contains(&format!("/approval_rules/{id}"))),
        "{calls:#?}"
    );
    let (_, after) = hub.gitlab_protection("staging");
    assert_eq!(after[0], theirs);
    assert_eq!(after.len(), 2);
    assert_eq!(after[1]["name"], "ferry: staging");

    // No approvals declared any more: ferry's rule goes, theirs stays (and GitLab still asks
    // its approval of staging: drift, said, and not "fixed" by touching their rule).
    sandbox.edit_env("staging", "staging", |env| {
        env["protection"]["required_approvals"] = json!(0);
    });
    let apply = protect(&sandbox, &remote, &server, "apply").await;
    let ours = after[1]["id"].as_u64().unwrap();
    let calls = calls_since(&server, from).await;
    assert!(
        calls.contains(&format!("DELETE /approval_rules/{ours}")),
        "{calls:#?}"
    );
    let (_, left) = hub.gitlab_protection("staging");
    assert_eq!(left, [theirs]);
    apply.assert_code(1);
    assert!(
        apply
            .stderr
            .contains("GitLab did not keep the protection of `staging`"),
        "{}",
        apply.render()
    );
}
