//! Promotions on the embedded forge: `promote`, `requests`, `approve`, `merge`, `close` and
//! `status set`, end to end through the real binary and real repositories.

use insta::assert_snapshot;
use serde_json::json;

use crate::common::{DIGEST, NOW, Sandbox};

const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// dev → staging → prod with `web` 1.0.0 → 1.1.0 and `api` 0.3.0 bumped in dev.
fn repo(sandbox: &Sandbox) -> String {
    let remote = sandbox.init("dev,staging,prod");
    bump(
        sandbox,
        &remote,
        &[
            "web",
            "1.0.0",
            "--add",
            "--url",
            "https://a.example/web/web-1.0.0.tgz",
            "--sha256",
            DIGEST,
        ],
    );
    bump(sandbox, &remote, &["web", "1.1.0", "--sha256", B]);
    bump(
        sandbox,
        &remote,
        &[
            "api",
            "0.3.0",
            "--add",
            "--url",
            "https://a.example/api/api-0.3.0.tgz",
            "--sha256",
            C,
        ],
    );
    remote
}

#[track_caller]
fn bump(sandbox: &Sandbox, remote: &str, args: &[&str]) {
    let mut all = vec!["bump"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--env", "dev", "--remote", remote]);
    sandbox.ferry(&all).run().assert_code(0);
}

/// `ferry ARGS --remote REMOTE`. `--as NAME` among the args also runs it as the login NAME:
/// the repository's hook checks that a record names who pushed it, and for a path that is
/// the login.
fn ferry(sandbox: &Sandbox, remote: &str, args: &[&str]) -> crate::common::Run {
    let mut f = sandbox.ferry(args).arg("--remote").arg(remote);
    if let Some(i) = args.iter().position(|a| *a == "--as") {
        f = f.env("USER", args[i + 1]);
    }
    f.run()
}

fn request(sandbox: &Sandbox, id: u64) -> serde_json::Value {
    serde_json::from_str(&sandbox.git(
        "deploy.git",
        &["show", &format!("refs/ferry/requests/{id}:request.json")],
    ))
    .unwrap()
}

fn pins(sandbox: &Sandbox, branch: &str) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_str(&sandbox.show(branch, "manifest.json")).unwrap();
    manifest["artifacts"].clone()
}

#[test]
fn promote_approve_merge() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.edit_env("staging", "staging", |e| {
        e["protection"] = json!({"required_approvals": 1})
    });
    let staging_before = sandbox.tip("staging");

    let run = ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    );
    assert_snapshot!(run.render());
    // The request branch holds staging's tip plus dev's pins; staging itself has not moved.
    assert_eq!(sandbox.tip("staging"), staging_before);
    assert_eq!(
        sandbox
            .git(
                "deploy.git",
                &["rev-parse", "ferry/promote/dev-to-staging~1"]
            )
            .trim(),
        staging_before
    );
    let proposed: serde_json::Value =
        serde_json::from_str(&sandbox.show("ferry/promote/dev-to-staging", "manifest.json"))
            .unwrap();
    assert_eq!(proposed["artifacts"], pins(&sandbox, "dev"));
    let stat = sandbox.git(
        "deploy.git",
        &["diff", "--stat", "staging", "ferry/promote/dev-to-staging"],
    );
    assert_eq!(
        stat.lines().count(),
        2,
        "only manifest.json changes: {stat}"
    );

    let body = request(&sandbox, 1);
    assert_eq!(body["labels"], json!(["promotion", "env:staging"]));
    assert_snapshot!(format!(
        "{}\n\n{}",
        body["title"].as_str().unwrap(),
        body["body"].as_str().unwrap()
    ));

    // Not yet: no approval; the author cannot approve; another person can.
    let run = ferry(&sandbox, &remote, &["merge", "1", "--as", "alice"]);
    assert_snapshot!(run.render());
    let run = ferry(&sandbox, &remote, &["approve", "1", "--as", "alice"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("authors cannot approve their own requests"),
        "{}",
        run.stderr
    );
    ferry(&sandbox, &remote, &["approve", "1", "--as", "bob"]).assert_code(0);
    assert_snapshot!(ferry(&sandbox, &remote, &["requests"]).render());

    let run = ferry(
        &sandbox,
        &remote,
        &["merge", "1", "--as", "alice", "--format", "json"],
    );
    run.assert_code(0);
    assert_eq!(run.json()["commit"], sandbox.tip("staging"));
    assert_eq!(pins(&sandbox, "staging"), pins(&sandbox, "dev"));
    let merged = request(&sandbox, 1);
    assert_eq!(merged["state"], "merged");
    assert_eq!(merged["merged_by"], "alice");
    assert_eq!(merged["approvals"][0]["by"], "bob");
    // The audit trail is the record's history.
    let log = sandbox.git(
        "deploy.git",
        &["log", "--format=%s", "refs/ferry/requests/1"],
    );
    assert_eq!(
        log,
        "request #1 merged by alice\nrequest #1 approved by bob\nrequest #1 opened by alice: dev → staging\n"
    );
    let trailers = sandbox.git(
        "deploy.git",
        &["log", "-1", "--format=%(trailers:only)", "staging"],
    );
    assert_eq!(
        trailers.trim(),
        "Ferry-Promotion: dev -> staging\nFerry-Moves: api none -> 0.3.0\nFerry-Moves: web none -> 1.1.0"
    );
    sandbox.git("deploy.git", &["fsck", "--strict"]);

    // Merged is final.
    ferry(&sandbox, &remote, &["merge", "1"]).assert_code(1);
    // And the next environment sees where the versions came from.
    assert_snapshot!(ferry(&sandbox, &remote, &["status"]).render());
}

#[test]
fn promoting_again_updates_the_open_request_in_place() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    bump(&sandbox, &remote, &["web", "1.2.0", "--sha256", C]);
    let run = ferry(
        &sandbox,
        &remote,
        &[
            "promote", "dev", "staging", "--as", "alice", "--format", "json",
        ],
    );
    run.assert_code(0);
    assert_eq!(run.json()["request"]["id"], 1);
    let listed = ferry(&sandbox, &remote, &["requests", "--format", "json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["moves"][1]["to"], "1.2.0");
    let proposed: serde_json::Value =
        serde_json::from_str(&sandbox.show("ferry/promote/dev-to-staging", "manifest.json"))
            .unwrap();
    assert_eq!(proposed["artifacts"]["web"]["version"], "1.2.0");
}

#[test]
fn nothing_to_promote_closes_a_stale_request() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    ferry(
        &sandbox,
        &remote,
        &[
            "promote", "dev", "staging", "--apps", "api", "--as", "alice",
        ],
    )
    .assert_code(0);
    ferry(&sandbox, &remote, &["merge", "1"]).assert_code(0);
    ferry(
        &sandbox,
        &remote,
        &[
            "promote", "dev", "staging", "--apps", "web", "--as", "alice",
        ],
    )
    .assert_code(0);
    // Someone pins staging's web by hand to what dev has: request #2 is now stale.
    sandbox
        .ferry(&[
            "bump",
            "web",
            "1.1.0",
            "--env",
            "staging",
            "--add",
            "--url",
            "https://a.example/web/web-1.1.0.tgz",
            "--sha256",
            B,
            "--remote",
            &remote,
        ])
        .run()
        .assert_code(0);
    let run = ferry(&sandbox, &remote, &["promote", "dev", "staging"]);
    assert_snapshot!(run.render());
    assert_eq!(request(&sandbox, 2)["state"], "closed");
}

#[test]
fn rollback_needs_to_be_said() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    ferry(&sandbox, &remote, &["merge", "1"]).assert_code(0);
    bump(
        &sandbox,
        &remote,
        &["web", "1.0.1", "--sha256", C, "--allow-downgrade"],
    );
    let run = ferry(&sandbox, &remote, &["promote", "dev", "staging"]);
    assert_snapshot!(run.render());
    let run = ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--rollback"],
    );
    run.assert_code(0);
    let opened = request(&sandbox, 2);
    assert_eq!(opened["rollback"], true);
    assert!(
        opened["title"]
            .as_str()
            .unwrap()
            .starts_with("Roll back dev → staging: web 1.0.1"),
        "{}",
        opened["title"]
    );
    assert!(
        opened["body"]
            .as_str()
            .unwrap()
            .starts_with("**Rollback.**")
    );
    ferry(&sandbox, &remote, &["merge", "2"]).assert_code(0);
    assert_eq!(pins(&sandbox, "staging")["web"]["version"], "1.0.1");
}

#[test]
fn soak_refuses_until_it_has_passed() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.edit_env("staging", "staging", |e| e["policy"]["soak"] = json!("1h"));
    let committed = 1_700_000_000i64;
    let early = sandbox
        .ferry(&["promote", "dev", "staging", "--remote", &remote])
        .env("FERRY_NOW", &(committed + 600).to_string())
        .run();
    assert_snapshot!(early.render());
    let later = sandbox
        .ferry(&["promote", "dev", "staging", "--remote", &remote])
        .env("FERRY_NOW", &(committed + 3_600).to_string())
        .run();
    later.assert_code(0);
    let _ = NOW;
}

#[test]
fn required_checks_refuse_until_green() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["required_checks"] = json!(["ci/test", "ferry/deploy/dev"])
    });
    let run = ferry(&sandbox, &remote, &["promote", "dev", "staging"]);
    assert_snapshot!(run.render());
    ferry(
        &sandbox,
        &remote,
        &[
            "status",
            "set",
            "dev",
            "ci/test",
            "failure",
            "--description",
            "3 tests failed",
        ],
    )
    .assert_code(0);
    let dev = sandbox.tip("dev");
    ferry(
        &sandbox,
        &remote,
        &[
            "status",
            "set",
            &dev,
            "ferry/deploy/dev",
            "success",
            "--as",
            "agent-dev",
        ],
    )
    .assert_code(0);
    let run = ferry(&sandbox, &remote, &["promote", "dev", "staging"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("`ci/test` is failure"),
        "{}",
        run.stderr
    );
    ferry(
        &sandbox,
        &remote,
        &["status", "set", "dev", "ci/test", "success"],
    )
    .assert_code(0);
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    // The statuses are records too: the latest per check, the history of all.
    let log = sandbox.git(
        "deploy.git",
        &["log", "--format=%s", &format!("refs/ferry/statuses/{dev}")],
    );
    assert_eq!(
        log,
        "ci/test: success by ci-bot\nferry/deploy/dev: success by agent-dev\nci/test: failure by ci-bot\n"
    );
    // A merge re-checks: a check gone red since refuses it.
    ferry(
        &sandbox,
        &remote,
        &["status", "set", "dev", "ci/test", "error"],
    )
    .assert_code(0);
    let run = ferry(&sandbox, &remote, &["merge", "1"]);
    run.assert_code(1);
    assert!(run.stderr.contains("`ci/test` is error"), "{}", run.stderr);
}

#[test]
fn prereleases_only_where_allowed() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    bump(&sandbox, &remote, &["web", "2.0.0-rc.1", "--sha256", C]);
    let run = ferry(&sandbox, &remote, &["promote", "dev", "staging"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "prerelease: `web` 2.0.0-rc.1 is a prerelease, and `staging` does not allow them"
        ),
        "{}",
        run.stderr
    );
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["allow_prerelease"] = json!(true)
    });
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
}

#[test]
fn only_along_the_promotion_graph() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    let run = ferry(&sandbox, &remote, &["promote", "dev", "prod"]);
    assert_snapshot!(run.render());
    let run = ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--apps", "nope"],
    );
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("`nope` is not an artifact of the source environment"),
        "{}",
        run.stderr
    );
}

#[test]
fn merge_refuses_when_the_target_moved_and_the_plan_changed() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    // The target moves in a way that does not change the plan: the merge rebuilds on it.
    sandbox.edit_env("staging", "staging", |e| {
        e["description"] = json!("Staging, edited meanwhile")
    });
    let edited = sandbox.tip("staging");
    ferry(&sandbox, &remote, &["merge", "1"]).assert_code(0);
    assert_eq!(
        sandbox
            .git("deploy.git", &["rev-parse", "staging~1"])
            .trim(),
        edited
    );
    assert_eq!(pins(&sandbox, "staging"), pins(&sandbox, "dev"));
    // Now one that does: web is pinned in staging by hand to something else.
    bump(&sandbox, &remote, &["web", "1.2.0", "--sha256", DIGEST]);
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    sandbox
        .ferry(&[
            "bump", "web", "1.3.0", "--env", "staging", "--sha256", C, "--remote", &remote,
        ])
        .run()
        .assert_code(0);
    let before = sandbox.refs("deploy.git");
    let run = ferry(&sandbox, &remote, &["merge", "2"]);
    assert_snapshot!(run.render());
    assert_eq!(sandbox.refs("deploy.git"), before);
}

#[test]
fn protection_allowed_mergers_and_stale_approvals() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.edit_env("staging", "staging", |e| {
        e["protection"] = json!({"required_approvals": 1, "dismiss_stale_reviews": true, "allowed_mergers": ["carol"]});
    });
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    ferry(&sandbox, &remote, &["approve", "1", "--as", "bob"]).assert_code(0);
    // A new push to the request dismisses bob's approval.
    bump(&sandbox, &remote, &["api", "0.4.0", "--sha256", DIGEST]);
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    let run = ferry(&sandbox, &remote, &["merge", "1", "--as", "carol"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("has 0 approvals from people other than its author"),
        "{}",
        run.stderr
    );
    ferry(&sandbox, &remote, &["approve", "1", "--as", "bob"]).assert_code(0);
    let run = ferry(&sandbox, &remote, &["merge", "1", "--as", "bob"]);
    assert_snapshot!(run.render());
    ferry(&sandbox, &remote, &["merge", "1", "--as", "carol"]).assert_code(0);
}

#[test]
fn close_and_list() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    ferry(&sandbox, &remote, &["close", "1", "--as", "alice"]).assert_code(0);
    ferry(&sandbox, &remote, &["close", "1"]).assert_code(1);
    let run = ferry(&sandbox, &remote, &["requests"]);
    run.assert_code(0);
    assert_eq!(run.stdout, "");
    let all = ferry(
        &sandbox,
        &remote,
        &[
            "requests", "--state", "all", "--env", "staging", "--format", "json",
        ],
    )
    .json();
    assert_eq!(all[0]["state"], "closed");
    assert_eq!(all[0]["closed_by"], "alice");
    // A closed request is not updated: the next promotion opens a new one.
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    assert_eq!(request(&sandbox, 2)["state"], "open");
    ferry(&sandbox, &remote, &["approve", "7"]).assert_code(1);
}

#[test]
fn dry_run_and_json() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    let before = sandbox.refs("deploy.git");
    let run = ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--dry-run"],
    );
    assert_snapshot!(run.render());
    assert_eq!(sandbox.refs("deploy.git"), before);
    let run = ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--format", "json"],
    );
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["request"]["id"], 1);
    assert_eq!(report["request"]["branch"], "ferry/promote/dev-to-staging");
    assert_eq!(report["moves"].as_array().unwrap().len(), 2);
    assert!(
        report["gates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["passed"] == true)
    );
}

#[test]
fn over_smart_http() {
    let sandbox = Sandbox::new();
    let (_server, url) = sandbox.serve_http(None);
    sandbox
        .ferry(&["init", "--remote", &url])
        .run()
        .assert_code(0);
    sandbox
        .ferry(&[
            "bump",
            "web",
            "1.0.0",
            "--env",
            "dev",
            "--add",
            "--url",
            "https://a.example/w-1.0.0.tgz",
            "--sha256",
            B,
            "--remote",
            &url,
        ])
        .run()
        .assert_code(0);
    ferry(
        &sandbox,
        &url,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    ferry(&sandbox, &url, &["approve", "1", "--as", "bob"]).assert_code(0);
    ferry(
        &sandbox,
        &url,
        &["status", "set", "dev", "ci/test", "success"],
    )
    .assert_code(0);
    ferry(&sandbox, &url, &["merge", "1", "--as", "carol"]).assert_code(0);
    let records = sandbox.git(
        "srv/deploy.git",
        &["for-each-ref", "--format=%(refname)", "refs/ferry"],
    );
    assert!(
        records.contains("refs/ferry/requests/1") && records.contains("refs/ferry/statuses/"),
        "{records}"
    );
    let state = sandbox.git(
        "srv/deploy.git",
        &["show", "refs/ferry/requests/1:request.json"],
    );
    assert!(state.contains("\"merged_by\": \"carol\""), "{state}");
    sandbox.git("srv/deploy.git", &["fsck", "--strict"]);
}

#[test]
fn the_target_branch_templates_override_ferrys() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.commit_files(
        "staging",
        &[
            (
                "templates/promotion-title.hbs",
                "deploy({{to}}): {{#each moves}}{{app}}@{{version}} {{/each}}\n",
            ),
            (
                "templates/promotion-body.hbs",
                "Moving {{count}} apps.\n{{#each moves}}- {{app}}: {{kind}}\n{{/each}}",
            ),
        ],
        "staging: our own promotion requests",
    );
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    let opened = request(&sandbox, 1);
    assert_eq!(opened["title"], "deploy(staging): api@0.3.0 web@1.1.0");
    assert_eq!(opened["body"], "Moving 2 apps.\n- api: new\n- web: new");
    // A template naming what ferry does not provide is a clear error, and nothing opens.
    sandbox.commit_files(
        "staging",
        &[("templates/promotion-title.hbs", "{{nope}}\n")],
        "staging: broken",
    );
    bump(&sandbox, &remote, &["web", "1.2.0", "--sha256", C]);
    let before = sandbox.refs("deploy.git");
    let run = ferry(&sandbox, &remote, &["promote", "dev", "staging"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("template `staging:templates/promotion-title.hbs`"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
}

#[test]
fn the_history_names_who_requested_and_who_merged() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    // The target moves meanwhile without changing the plan: the merge rebuilds the commit.
    sandbox.edit_env("staging", "staging", |e| {
        e["description"] = json!("edited meanwhile")
    });
    ferry(&sandbox, &remote, &["merge", "#1", "--as", "carol"]).assert_code(0);
    let who = sandbox.git(
        "deploy.git",
        &["log", "-1", "--format=%an <%ae> / %cn <%ce>", "staging"],
    );
    assert_eq!(
        who.trim(),
        "alice <alice@ferry.invalid> / carol <carol@ferry.invalid>"
    );
    // A request reviewed as is lands as is: authored by its requester.
    bump(&sandbox, &remote, &["web", "1.2.0", "--sha256", DIGEST]);
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "dana"],
    )
    .assert_code(0);
    ferry(&sandbox, &remote, &["merge", "2", "--as", "erin"]).assert_code(0);
    let author = sandbox.git("deploy.git", &["log", "-1", "--format=%an", "staging"]);
    assert_eq!(author.trim(), "dana");
    assert_eq!(request(&sandbox, 2)["merged_by"], "erin");
}

#[test]
fn the_promotion_graph_holds_even_when_nothing_would_move() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    for (from, to) in [("prod", "staging"), ("dev", "dev"), ("staging", "dev")] {
        let run = ferry(&sandbox, &remote, &["promote", from, to]);
        run.assert_code(1);
        assert!(
            run.stderr
                .contains(&format!("promotion {from} → {to} refused")),
            "{}",
            run.stderr
        );
    }
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
}

#[test]
fn one_request_in_full_and_json_everywhere() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.edit_env("staging", "staging", |e| {
        e["protection"] = json!({"required_approvals": 1, "dismiss_stale_reviews": true})
    });
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    let approved = ferry(
        &sandbox,
        &remote,
        &["approve", "#1", "--as", "bob", "--format", "json"],
    );
    approved.assert_code(0);
    assert_eq!(approved.json()["approved_by"], "bob");
    // bob's approval goes stale when the request moves on; the listing and the merge say so.
    bump(&sandbox, &remote, &["web", "1.2.0", "--sha256", DIGEST]);
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    let listed = ferry(&sandbox, &remote, &["requests"]);
    assert!(listed.stdout.contains("bob (stale)"), "{}", listed.stdout);
    let merge = ferry(&sandbox, &remote, &["merge", "1"]);
    merge.assert_code(1);
    assert!(
        merge
            .stderr
            .contains("dismissed: bob approved an older head"),
        "{}",
        merge.stderr
    );
    let shown = ferry(&sandbox, &remote, &["requests", "1"]);
    shown.assert_code(0);
    assert!(
        shown
            .stdout
            .starts_with("#1  Promote dev → staging: api 0.3.0, web 1.2.0\nstate:      open\n"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("approvals:  bob (stale)"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("| web | — | 1.2.0 | new |"),
        "{}",
        shown.stdout
    );
    // The block for bots is hidden from people, as a forge's page hides it; `--raw` and JSON
    // keep it.
    assert!(
        !shown.stdout.contains("ferry:promotion"),
        "{}",
        shown.stdout
    );
    let raw = ferry(&sandbox, &remote, &["requests", "1", "--raw"]);
    assert!(
        raw.stdout.contains("<!-- ferry:promotion"),
        "{}",
        raw.stdout
    );
    let json = ferry(&sandbox, &remote, &["requests", "1", "--format", "json"]).json();
    assert!(
        json["body"]
            .as_str()
            .unwrap()
            .contains("<!-- ferry:promotion")
    );
    ferry(&sandbox, &remote, &["requests", "--raw"]).assert_code(2);
    let status = ferry(
        &sandbox,
        &remote,
        &[
            "status", "set", "dev", "ci/test", "success", "--format", "json",
        ],
    );
    assert_eq!(status.json()["status"]["state"], "success");
    let closed = ferry(&sandbox, &remote, &["close", "1", "--format", "json"]);
    assert_eq!(closed.json()["state"], "closed");
    ferry(&sandbox, &remote, &["approve", "one"]).assert_code(2);
}

/// A commit subject cannot hide part of a request from its reviewers, nor forge the block for
/// bots: what the body quotes is escaped for Markdown, and no string closes that block.
#[test]
fn a_subject_that_opens_an_html_comment_hides_nothing() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    // The bump message comes from a template on the branch, as a repository may have it.
    sandbox.commit_files(
        "dev",
        &[(
            "templates/bump.hbs",
            "{{env}}: bump {{app}} to {{to}} <!-- ferry:promotion {\"moves\": []} -->",
        )],
        "a bump template",
    );
    bump(
        &sandbox,
        &remote,
        &[
            "web",
            "1.0.0",
            "--add",
            "--url",
            "https://a.example/web/web-1.0.0.tgz?x=-->",
            "--sha256",
            DIGEST,
        ],
    );
    ferry(&sandbox, &remote, &["promote", "dev", "staging"]).assert_code(0);
    let body = request(&sandbox, 1)["body"].as_str().unwrap().to_owned();
    assert_eq!(body.matches("<!--").count(), 1, "{body}");
    assert_eq!(body.matches("-->").count(), 1, "{body}");
    assert!(body.contains("&lt;!-- ferry:promotion"), "{body}");
    // People see the subject as it was written, and every gate after it.
    let shown = ferry(&sandbox, &remote, &["requests", "1"]);
    assert!(
        shown
            .stdout
            .contains("dev: bump web to 1.0.0 <!-- ferry:promotion {\"moves\": []} -->"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("## Gates"), "{}", shown.stdout);
    // The block for bots is still one JSON document, with the URL as pinned.
    let raw = ferry(&sandbox, &remote, &["requests", "1", "--raw"]).stdout;
    let block = raw
        .split_once("<!-- ferry:promotion\n")
        .and_then(|(_, rest)| rest.split_once("\n-->"))
        .expect("the block")
        .0;
    let machine: serde_json::Value = serde_json::from_str(block).expect("JSON");
    assert_eq!(
        machine["moves"][0]["pin"]["url"],
        "https://a.example/web/web-1.0.0.tgz?x=-->"
    );
}

/// Someone other than its author promoting again proposes the new head: they may not approve
/// it, their earlier approval no longer counts, and the repository's hook holds both (the
/// record names the proposer, who must be the pusher).
#[test]
fn who_promotes_again_cannot_approve_what_they_proposed() {
    let sandbox = Sandbox::new();
    let remote = repo(&sandbox);
    sandbox.edit_env("staging", "staging", |e| {
        e["protection"] = json!({"required_approvals": 1})
    });
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "alice"],
    )
    .assert_code(0);
    ferry(&sandbox, &remote, &["approve", "1", "--as", "bob"]).assert_code(0);
    bump(
        &sandbox,
        &remote,
        &[
            "web",
            "1.2.0",
            "--url",
            "https://a.example/web-1.2.0.tgz",
            "--sha256",
            &"c".repeat(64),
        ],
    );
    ferry(
        &sandbox,
        &remote,
        &["promote", "dev", "staging", "--as", "bob"],
    )
    .assert_code(0);
    let record = request(&sandbox, 1);
    assert_eq!(record["author"], "alice");
    assert_eq!(record["proposed_by"], "bob");

    let run = ferry(&sandbox, &remote, &["approve", "1", "--as", "bob"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("`bob` proposed request #1's current head"),
        "{}",
        run.render()
    );
    let run = ferry(&sandbox, &remote, &["merge", "1", "--as", "alice"]);
    run.assert_code(1);
    assert!(run.stderr.contains("has 0 approvals"), "{}", run.render());
    ferry(&sandbox, &remote, &["approve", "1", "--as", "carol"]).assert_code(0);
    ferry(&sandbox, &remote, &["merge", "1", "--as", "alice"]).assert_code(0);
}
