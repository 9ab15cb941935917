//! Branch protection enforced by the repository itself: the pre-receive hook `ferry init`
//! installs judges every push, by `git push` and by ferry, over a path and over smart HTTP.

use serde_json::{Value, json};

use crate::common::http::{GitHttp, project_root};
use crate::common::{DIGEST, Run, Sandbox};

const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// dev → staging → prod, `web` 1.0.0 pinned in dev, and `protection` on `env`.
fn repo(env: &str, protection: Value) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    as_user(
        &sandbox,
        "ci-bot",
        &["bump", "web", "1.0.0", "--env", "dev", "--add"],
    )
    .arg("--url")
    .arg("https://a.example/web-1.0.0.tgz")
    .arg("--sha256")
    .arg(DIGEST)
    .arg("--remote")
    .arg(&remote)
    .run()
    .assert_code(0);
    // Before this commit the branch is unprotected: the change itself goes in.
    sandbox.edit_env(env, env, |e| e["protection"] = protection);
    (sandbox, remote)
}

fn as_user(sandbox: &Sandbox, user: &str, args: &[&str]) -> crate::common::Ferry {
    sandbox.ferry(args).env("USER", user)
}

#[track_caller]
fn ferry_as(sandbox: &Sandbox, remote: &str, user: &str, args: &[&str]) -> Run {
    as_user(sandbox, user, args)
        .arg("--remote")
        .arg(remote)
        .run()
}

/// A clone of `branch` with one more commit, ready to push.
fn change(sandbox: &Sandbox, branch: &str, dir: &str) {
    sandbox.git("", &["clone", "-q", "--branch", branch, "deploy.git", dir]);
    std::fs::write(sandbox.path().join(dir).join("NOTES"), "by hand\n").unwrap();
    sandbox.git(dir, &["add", "NOTES"]);
    sandbox.git(dir, &["commit", "-qm", "a change by hand"]);
}

#[test]
fn init_installs_the_hook_and_protect_checks_it() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,prod");
    let hook = sandbox.path().join("deploy.git/hooks/pre-receive");
    assert!(
        std::fs::read_to_string(&hook)
            .unwrap()
            .contains("hook pre-receive")
    );
    let check = |code| {
        let run = sandbox
            .ferry(&["protect", "check", "--forge", "local", "--remote", &remote])
            .run();
        run.assert_code(code);
        run
    };
    let run = check(0);
    assert!(
        run.stdout.contains("pre-receive hook installed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("prod (`prod`): declares no `protection`: anyone who can push may change it"),
        "{}",
        run.stdout
    );
    std::fs::remove_file(&hook).unwrap();
    assert!(check(1).stdout.contains("pushes are not checked"));
    let apply = || {
        sandbox
            .ferry(&["protect", "apply", "--remote", &remote])
            .run()
            .assert_code(0);
    };
    apply();
    check(0);
    // A hook git ignores is no hook.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        check(1)
            .stdout
            .contains("is not executable: git ignores it")
    );
    apply();
    // Hooks run from core.hooksPath when it is set: check looks there, apply installs there.
    sandbox.git("deploy.git", &["config", "core.hooksPath", "shared-hooks"]);
    assert!(
        check(1)
            .stdout
            .contains("shared-hooks: pushes are not checked")
    );
    apply();
    assert!(
        sandbox
            .path()
            .join("deploy.git/shared-hooks/pre-receive")
            .exists()
    );
    check(0);
    // A network remote has no hook ferry can reach.
    let run = sandbox
        .ferry(&[
            "protect",
            "check",
            "--forge",
            "local",
            "--remote",
            "https://example.com/deploy.git",
        ])
        .run();
    run.assert_code(2);
    assert!(
        run.stderr.contains("not a repository on this machine"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_direct_push_needs_an_allowed_pusher() {
    let (sandbox, remote) = repo("prod", json!({"allowed_pushers": ["release-bot"]}));
    let before = sandbox.tip("prod");
    change(&sandbox, "prod", "work");
    let (ok, stderr) = sandbox.git_as("mallory", "work", &["push", "origin", "prod"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "prod (prod): `mallory` may not push to it directly (allowed pushers: release-bot)"
        ),
        "{stderr}"
    );
    assert_eq!(sandbox.tip("prod"), before);
    // ferry's own update of a path is judged the same way.
    let run = ferry_as(
        &sandbox,
        &remote,
        "ci-bot",
        &[
            "bump",
            "web",
            "1.0.0",
            "--env",
            "prod",
            "--add",
            "--url",
            "https://a.example/web-1.0.0.tgz",
            "--sha256",
            DIGEST,
        ],
    );
    run.assert_code(1);
    assert!(
        run.stderr.contains("pre-receive hook declined"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("remote:   prod (prod): `ci-bot` may not push"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.tip("prod"), before);
    let (ok, stderr) = sandbox.git_as("release-bot", "work", &["push", "origin", "prod"], &[]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_protected_history_is_not_rewritten_deleted_or_merged() {
    let (sandbox, _) = repo(
        "prod",
        json!({"allowed_pushers": ["release-bot"], "linear_history": true}),
    );
    let before = sandbox.tip("prod");
    change(&sandbox, "prod", "work");
    // prod back to its parent: a rewrite.
    let (ok, stderr) = sandbox.git_as(
        "release-bot",
        "work",
        &["push", "--force", "origin", "origin/prod~1:prod"],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("not a fast-forward"), "{stderr}");
    let (ok, stderr) = sandbox.git_as("release-bot", "work", &["push", "origin", ":prod"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("deleting a protected branch is not allowed"),
        "{stderr}"
    );
    // A merge commit, on a branch with linear history.
    sandbox.git("work", &["checkout", "-q", "-b", "side", "origin/prod"]);
    sandbox.git("work", &["commit", "-q", "--allow-empty", "-m", "side"]);
    sandbox.git("work", &["checkout", "-q", "prod"]);
    sandbox.git(
        "work",
        &["merge", "-q", "--no-ff", "-m", "merge side", "side"],
    );
    let (ok, stderr) = sandbox.git_as("release-bot", "work", &["push", "origin", "prod"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("on a branch with `linear_history`"),
        "{stderr}"
    );
    assert_eq!(sandbox.tip("prod"), before);
}

/// Merges request #1 into staging by hand as `user`: its record marked merged by `user`
/// and staging moved to `head`, in one plain `git push`. Whether it landed, and git's stderr.
fn merge_by_hand(sandbox: &Sandbox, user: &str, head: &str) -> (bool, String) {
    let _ = std::fs::remove_dir_all(sandbox.path().join("work"));
    sandbox.git("", &["clone", "-q", "deploy.git", "work"]);
    sandbox.git(
        "work",
        &[
            "fetch",
            "-q",
            "origin",
            "refs/ferry/requests/1",
            "ferry/promote/dev-to-staging",
        ],
    );
    sandbox.git("work", &["checkout", "-q", "FETCH_HEAD"]);
    let path = sandbox.path().join("work/request.json");
    let mut request: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    request["state"] = json!("merged");
    request["merged_by"] = json!(user);
    request["merged_at"] = json!(crate::common::NOW);
    request["merge_commit"] = json!(head);
    std::fs::write(&path, serde_json::to_string_pretty(&request).unwrap()).unwrap();
    sandbox.git("work", &["commit", "-qam", &format!("merged by {user}")]);
    sandbox.git_as(
        user,
        "work",
        &[
            "push",
            "origin",
            "HEAD:refs/ferry/requests/1",
            &format!("{head}:refs/heads/staging"),
        ],
        &[],
    )
}

/// The target's promotion gate (`policy.required_checks` on the promoted commit) holds in the
/// hook too, not only in `ferry merge`: a merge made by hand after dev's deploy turned red is
/// refused.
#[test]
fn a_merge_by_hand_passes_the_promotion_gate_too() {
    let (sandbox, remote) = repo("prod", json!({}));
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["required_checks"] = json!(["ferry/deploy/dev"]);
        e["protection"] = json!({"required_approvals": 1, "allowed_mergers": ["carol"]});
    });
    let source = sandbox.tip("dev");
    let report = |state: &str| {
        ferry_as(
            &sandbox,
            &remote,
            "agent",
            &["status", "set", &source, "ferry/deploy/dev", state],
        )
        .assert_code(0);
    };
    report("success");
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    ferry_as(&sandbox, &remote, "bob", &["approve", "1"]).assert_code(0);
    // dev's deploy of that commit failed after all.
    report("failure");
    ferry_as(&sandbox, &remote, "carol", &["merge", "1"]).assert_code(1);
    let head = sandbox.git("deploy.git", &["rev-parse", "ferry/promote/dev-to-staging"]);
    let before = sandbox.tip("staging");
    let (ok, stderr) = merge_by_hand(&sandbox, "carol", head.trim());
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("promotion gate needs ferry/deploy/dev green on the promoted dev commit"),
        "{stderr}"
    );
    assert_eq!(sandbox.tip("staging"), before);
    // Green again, the same merge by hand lands.
    report("success");
    let (ok, stderr) = merge_by_hand(&sandbox, "carol", head.trim());
    assert!(ok, "{stderr}");
}

#[test]
fn a_merge_needs_approvals_green_checks_and_an_allowed_merger() {
    let (sandbox, remote) = repo(
        "staging",
        json!({"required_approvals": 1, "allowed_mergers": ["carol"], "required_checks": ["ci/test"]}),
    );
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    let head = sandbox.git("deploy.git", &["rev-parse", "ferry/promote/dev-to-staging"]);
    let head = head.trim();
    let run = ferry_as(&sandbox, &remote, "carol", &["merge", "1"]);
    run.assert_code(1);
    assert!(run.stderr.contains("0 approvals"), "{}", run.stderr);
    ferry_as(&sandbox, &remote, "bob", &["approve", "1"]).assert_code(0);
    let run = ferry_as(&sandbox, &remote, "bob", &["merge", "1"]);
    run.assert_code(1);
    assert!(run.stderr.contains("`bob` may not merge"), "{}", run.stderr);
    // The checks the protection requires, on the request's head: ferry says so first…
    let before = sandbox.tip("staging");
    let run = ferry_as(&sandbox, &remote, "carol", &["merge", "1"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "`staging` requires ci/test green on the request's head {}",
            &head[..7]
        )) && run.stderr.contains("ferry status set"),
        "{}",
        run.stderr
    );
    // …and the hook holds when the merge is made by hand: the branch and the record marked
    // merged, in one plain `git push`.
    let (ok, stderr) = merge_by_hand(&sandbox, "carol", head);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "required check(s) not green on its head {}: ci/test",
            &head[..7]
        )),
        "{stderr}"
    );
    assert_eq!(sandbox.tip("staging"), before);
    ferry_as(
        &sandbox,
        &remote,
        "ci-bot",
        &["status", "set", head, "ci/test", "success"],
    )
    .assert_code(0);
    ferry_as(&sandbox, &remote, "carol", &["merge", "1"]).assert_code(0);
    assert_eq!(sandbox.tip("staging"), head);
    let record: Value = serde_json::from_str(&sandbox.git(
        "deploy.git",
        &["show", "refs/ferry/requests/1:request.json"],
    ))
    .unwrap();
    assert_eq!(record["merged_by"], "carol");
    sandbox.git("deploy.git", &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn a_record_names_who_pushed_it_and_is_append_only() {
    let (sandbox, remote) = repo("staging", json!({"required_approvals": 1}));
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    // mallory claims to be bob, with ferry and by hand.
    let run = ferry_as(
        &sandbox,
        &remote,
        "mallory",
        &["approve", "1", "--as", "bob"],
    );
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("an approval is recorded as `bob`, but `mallory` is pushing"),
        "{}",
        run.stderr
    );
    sandbox.git("", &["clone", "-q", "deploy.git", "work"]);
    sandbox.git("work", &["fetch", "-q", "origin", "refs/ferry/requests/1"]);
    sandbox.git("work", &["checkout", "-q", "FETCH_HEAD"]);
    let path = sandbox.path().join("work/request.json");
    let mut request: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let head = request["head"].clone();
    request["approvals"] = json!([{"by": "bob", "at": 1, "head": head}]);
    std::fs::write(&path, serde_json::to_string_pretty(&request).unwrap()).unwrap();
    sandbox.git("work", &["commit", "-qam", "approved by bob"]);
    let (ok, stderr) = sandbox.git_as(
        "mallory",
        "work",
        &["push", "origin", "HEAD:refs/ferry/requests/1"],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("but `mallory` is pushing"), "{stderr}");
    // Rewriting or deleting a record.
    sandbox.git("work", &["checkout", "-q", "--orphan", "rewritten"]);
    sandbox.git("work", &["commit", "-q", "-m", "history rewritten"]);
    let (ok, stderr) = sandbox.git_as(
        "alice",
        "work",
        &["push", "--force", "origin", "HEAD:refs/ferry/requests/1"],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("this rewrites its history"), "{stderr}");
    let (ok, stderr) = sandbox.git_as(
        "alice",
        "work",
        &["push", "origin", ":refs/ferry/requests/1"],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("records are append-only"), "{stderr}");
    // bob, as bob, is fine.
    ferry_as(&sandbox, &remote, "bob", &["approve", "1"]).assert_code(0);
}

#[test]
fn over_smart_http_the_server_says_who_pushes() {
    const ALICE: &str = "token-of-alice";
    const BOB: &str = "token-of-bob";
    let sandbox = Sandbox::new();
    let root = project_root(sandbox.path());
    let path = root.join("deploy.git").display().to_string();
    // Made on the server: `init` on a path installs the hook.
    sandbox
        .ferry(&["init", "--remote", &path, "--envs", "dev,staging"])
        .run()
        .assert_code(0);
    let server = GitHttp::serve_accounts(&root, &[("alice", ALICE), ("bob", BOB)]);
    let url = server.url("deploy.git");
    let as_token = |token: &str, user: &str, args: &[&str]| {
        sandbox
            .ferry(args)
            .arg("--remote")
            .arg(&url)
            .env("FERRY_GIT_TOKEN", token)
            .env("FERRY_USER", user)
            .run()
    };
    as_token(
        ALICE,
        "alice",
        &[
            "bump",
            "web",
            "1.0.0",
            "--env",
            "dev",
            "--add",
            "--url",
            "https://a.example/w.tgz",
            "--sha256",
            B,
        ],
    )
    .assert_code(0);
    as_token(ALICE, "alice", &["promote", "dev", "staging"]).assert_code(0);
    // alice's token, bob's name: the server says alice.
    let run = as_token(ALICE, "bob", &["approve", "1"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("remote:   refs/ferry/requests/1: an approval is recorded as `bob`, but `alice` is pushing"),
        "{}",
        run.stderr
    );
    as_token(BOB, "bob", &["approve", "1"]).assert_code(0);
    let record = sandbox.git(
        "srv/deploy.git",
        &["show", "refs/ferry/requests/1:request.json"],
    );
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["approvals"][0]["by"], "bob");
    // A plain git push over HTTP is judged the same.
    let protect = json!({"allowed_pushers": ["bob"]});
    let mut env: Value = serde_json::from_str(&sandbox.git(
        "srv/deploy.git",
        &["show", "staging:environments/staging.json"],
    ))
    .unwrap();
    env["protection"] = protect;
    let authed = url.replace("http://", &format!("http://alice:{ALICE}@"));
    sandbox.git("", &["clone", "-q", "--branch", "staging", &authed, "work"]);
    std::fs::write(
        sandbox.path().join("work/environments/staging.json"),
        serde_json::to_string_pretty(&env).unwrap() + "\n",
    )
    .unwrap();
    sandbox.git("work", &["commit", "-qam", "staging: protected"]);
    sandbox.git("work", &["push", "-q", "origin", "staging"]); // unprotected until now
    sandbox.git("work", &["commit", "-q", "--allow-empty", "-m", "by alice"]);
    let (ok, stderr) = sandbox.git_as("root", "work", &["push", "origin", "staging"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("`alice` may not push to it directly"),
        "{stderr}"
    );
    let bob = url.replace("http://", &format!("http://bob:{BOB}@"));
    let (ok, stderr) = sandbox.git_as("root", "work", &["push", &bob, "staging"], &[]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_hook_without_its_ferry_refuses_every_push() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,prod");
    let hook = sandbox.path().join("deploy.git/hooks/pre-receive");
    let script = std::fs::read_to_string(&hook).unwrap();
    let script: String = script
        .lines()
        .map(|l| {
            if l.starts_with("FERRY=") {
                "FERRY='/nonexistent/ferry'".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&hook, script + "\n").unwrap();
    change(&sandbox, "dev", "work");
    let (ok, stderr) = sandbox.git_as(
        "ci-bot",
        "work",
        &["push", "origin", "dev"],
        &[("PATH", "/usr/bin:/bin")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("this repository's pre-receive hook needs the ferry binary"),
        "{stderr}"
    );
    let run = sandbox
        .ferry(&["protect", "check", "--forge", "local", "--remote", &remote])
        .env("PATH", "/usr/bin:/bin")
        .run();
    run.assert_code(1);
    assert!(run.stdout.contains("which is gone"), "{}", run.stdout);
}

#[test]
fn audit_says_who_approved_merged_and_pushed_and_flags_what_broke_protection() {
    let (sandbox, remote) = repo(
        "staging",
        json!({"required_approvals": 1, "allowed_mergers": ["carol"]}),
    );
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    ferry_as(&sandbox, &remote, "bob", &["approve", "1"]).assert_code(0);
    ferry_as(&sandbox, &remote, "carol", &["merge", "1"]).assert_code(0);
    let audit = |args: &[&str]| {
        ferry_as(
            &sandbox,
            &remote,
            "ci-bot",
            &[&["audit", "staging"], args].concat(),
        )
    };
    let run = audit(&[]);
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("request #1 by alice: web (new) → 1.0.0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("approved by bob; merged by carol; no checks required; pushed by carol"),
        "{}",
        run.stdout
    );
    // Someone turns the guard off and pushes by hand: the push log still says who.
    std::fs::remove_file(sandbox.path().join("deploy.git/hooks/pre-receive")).unwrap();
    change(&sandbox, "staging", "work");
    let (ok, stderr) = sandbox.git_as("mallory", "work", &["push", "origin", "staging"], &[]);
    assert!(ok, "{stderr}");
    let run = audit(&[]);
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("FLAGGED: pushed directly by mallory, who is not an allowed pusher (none)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("1 change reached `staging` without satisfying its protection"),
        "{}",
        run.stderr
    );
    // Over a path, the pusher is what USER says; the login that really pushed is kept beside
    // it, and shown when they differ.
    let login = crate::common::login();
    assert!(
        run.stdout.contains(&format!(
            "pushed by mallory (USER said so; the login was {login})"
        )),
        "{}",
        run.stdout
    );
    let json = audit(&["--format", "json"]).json();
    assert_eq!(json[0]["kind"], "direct");
    assert_eq!(json[0]["pushed_by"], "mallory");
    assert_eq!(json[0]["pushed_from_login"], login.as_str());
    assert_eq!(json[1]["kind"], "promotion");
    assert_eq!(json[1]["request"], 1);
    assert_eq!(json[1]["approved_by"], json!(["bob"]));
    assert_eq!(json[1]["violations"], json!([]));
    // A period with no change; a date that is not one.
    audit(&["--since", "2999-01-01"]).assert_code(0);
    let run = audit(&["--since", "last tuesday"]);
    run.assert_code(2);
    assert!(run.stderr.contains("is not a date"), "{}", run.stderr);
}

#[test]
fn an_invalid_state_is_refused_with_its_positions_and_nothing_lands() {
    let (sandbox, _remote) = repo("staging", json!({"allowed_pushers": ["alice"]}));
    let before = sandbox.refs("deploy.git");
    sandbox.git(
        "",
        &["clone", "-q", "--branch", "staging", "deploy.git", "work"],
    );
    let path = sandbox.path().join("work/environments/staging.json");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "\"name\": \"staging\"",
        "\"name\": \"staging\",\n  \"polcy\": {}",
    );
    std::fs::write(&path, text).unwrap();
    sandbox.git("work", &["commit", "-qam", "a typo"]);
    // alice may push to staging: the state itself is what is refused.
    let (ok, stderr) = sandbox.git_as("alice", "work", &["push", "origin", "staging"], &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("staging: the pushed state is invalid (1 error;")
            && stderr.contains("environments/staging.json:4:3: unknown field `polcy`"),
        "{stderr}"
    );
    // The same hint as `ferry validate` gives for the typo.
    assert!(stderr.contains("hint: did you mean `policy`?"), "{stderr}");
    assert_eq!(sandbox.refs("deploy.git"), before);
    // Fixed, it lands.
    sandbox.git("work", &["reset", "-q", "--hard", "HEAD~1"]);
    change(&sandbox, "staging", "work2");
    let (ok, stderr) = sandbox.git_as("alice", "work2", &["push", "origin", "staging"], &[]);
    assert!(ok, "{stderr}");
}

#[test]
fn deploys_are_reported_by_the_agents_the_environment_names() {
    let (sandbox, remote) = repo("dev", json!({"allowed_pushers": ["ci-bot", "alice"]}));
    // dev's deploys come from its agents, which push as `agent-dev`.
    sandbox.edit_env("dev", "dev", |e| {
        e["agent"] = json!({"reporters": ["agent-dev"]})
    });
    let dev = sandbox.tip("dev");
    let set = |user: &str, extra: &[&str]| {
        let mut args = vec!["status", "set", dev.as_str(), "ferry/deploy/dev", "success"];
        args.extend_from_slice(extra);
        ferry_as(&sandbox, &remote, user, &args)
    };
    // alice cannot fake a deploy, under her name or the agent's.
    let run = set("alice", &[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "`ferry/deploy/dev` is reported by dev's agents only (`agent.reporters`: agent-dev), not by `alice`"
        ),
        "{}",
        run.stderr
    );
    let run = set("alice", &["--as", "agent-dev"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("is recorded as reported by `agent-dev`, but `alice` is pushing"),
        "{}",
        run.stderr
    );
    // A host's own deploy status is the agents' too: alice cannot say a host deployed.
    let run = ferry_as(
        &sandbox,
        &remote,
        "alice",
        &["status", "set", &dev, "ferry/deploy/dev/web-1", "success"],
    );
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "`ferry/deploy/dev/web-1` is reported by dev's agents only (`agent.reporters`: agent-dev), not by `alice`"
        ),
        "{}",
        run.stderr
    );
    // Other checks are anyone's (who names themself); the agent reports its own.
    ferry_as(
        &sandbox,
        &remote,
        "alice",
        &["status", "set", &dev, "ci/test", "success"],
    )
    .assert_code(0);
    set("agent-dev", &[]).assert_code(0);
    let status = sandbox.ferry(&["status", "--remote", &remote]).run();
    assert!(
        status.stdout.contains("deploy success") && status.stdout.contains("by agent-dev"),
        "{}",
        status.stdout
    );
}

// Issue 15: an outside attacker's pushes, each made with plain git (`git commit-tree`, `git
// push`) as another user. Each is refused with its reason, and no ref moves.

/// A clone of the sandbox's repository with ferry's records, to craft commits in.
fn workshop(sandbox: &Sandbox, dir: &str) {
    sandbox.git("", &["clone", "-q", "deploy.git", dir]);
    sandbox.git(
        dir,
        &["fetch", "-q", "origin", "+refs/ferry/*:refs/ferry/*"],
    );
}

/// A commit made with `git commit-tree` in `dir`: the tree of `base` (none: empty) with `files`
/// written over it, on `parent` (none: a root commit). Whatever ferry would write, anyone can
/// push this.
fn craft(
    sandbox: &Sandbox,
    dir: &str,
    base: Option<&str>,
    files: &[(&str, String)],
    parent: Option<&str>,
) -> String {
    match base {
        Some(base) => sandbox.git(dir, &["read-tree", base]),
        None => sandbox.git(dir, &["read-tree", "--empty"]),
    };
    for (path, text) in files {
        let full = sandbox.path().join(dir).join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
        sandbox.git(dir, &["add", "-f", path]);
    }
    let tree = sandbox.git(dir, &["write-tree"]);
    let mut args = vec!["commit-tree", tree.trim(), "-m", "crafted"];
    if let Some(parent) = parent {
        args.extend(["-p", parent]);
    }
    sandbox.git(dir, &args).trim().to_owned()
}

fn record(sandbox: &Sandbox, id: u64) -> Value {
    serde_json::from_str(&sandbox.git(
        "deploy.git",
        &["show", &format!("refs/ferry/requests/{id}:request.json")],
    ))
    .unwrap()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn approvals_forged_at_record_creation_are_refused() {
    let (sandbox, remote) = repo("staging", json!({"required_approvals": 1}));
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    ferry_as(&sandbox, &remote, "alice", &["close", "1"]).assert_code(0);
    // alice opens #2 by hand: its first commit already says bob approved it.
    let mut forged = record(&sandbox, 1);
    let head = forged["head"].clone();
    forged["id"] = json!(2);
    forged["state"] = json!("open");
    forged.as_object_mut().unwrap().remove("closed_by");
    forged.as_object_mut().unwrap().remove("closed_at");
    forged["approvals"] = json!([{"by": "bob", "at": 1, "head": head}]);
    workshop(&sandbox, "work");
    let commit = craft(
        &sandbox,
        "work",
        None,
        &[("request.json", pretty(&forged))],
        None,
    );
    let before = sandbox.refs("deploy.git");
    let (ok, stderr) = sandbox.git_as(
        "alice",
        "work",
        &[
            "push",
            "origin",
            &format!("{commit}:refs/ferry/requests/2"),
            &format!(
                "{}:refs/heads/ferry/promote/dev-to-staging",
                head.as_str().unwrap()
            ),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains(
            "refs/ferry/requests/2: a new request has no approvals, but this one arrives with 1 (by bob)"
        ),
        "{stderr}"
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
    let run = ferry_as(&sandbox, &remote, "carol", &["merge", "2"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("there is no request #2"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_merged_record_is_never_rewritten() {
    let (sandbox, remote) = repo("staging", json!({"required_approvals": 1}));
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    ferry_as(&sandbox, &remote, "bob", &["approve", "1"]).assert_code(0);
    ferry_as(&sandbox, &remote, "carol", &["merge", "1"]).assert_code(0);
    workshop(&sandbox, "work");
    let tip = sandbox.git("deploy.git", &["rev-parse", "refs/ferry/requests/1"]);
    let tip = tip.trim();
    let before = sandbox.refs("deploy.git");
    let forgeries: [(&str, &str, Value); 3] = [
        ("mallory", "merged_by", json!("mallory")),
        ("carol", "title", json!("Promote nothing at all")),
        (
            "carol",
            "head",
            json!("0123456789012345678901234567890123456789"),
        ),
    ];
    for (who, field, value) in forgeries {
        let mut forged = record(&sandbox, 1);
        forged[field] = value;
        let commit = craft(
            &sandbox,
            "work",
            None,
            &[("request.json", pretty(&forged))],
            Some(tip),
        );
        let (ok, stderr) = sandbox.git_as(
            who,
            "work",
            &["push", "origin", &format!("{commit}:refs/ferry/requests/1")],
            &[],
        );
        assert!(!ok, "{field}");
        assert!(
            stderr.contains(
                "refs/ferry/requests/1: request #1 is merged already: its record no longer changes"
            ),
            "{field}: {stderr}"
        );
    }
    assert_eq!(sandbox.refs("deploy.git"), before);
    let run = ferry_as(&sandbox, &remote, "ci-bot", &["audit", "staging"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("approved by bob; merged by carol"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_branch_named_like_an_environment_does_not_take_it_over() {
    // prod lives on `production`, as `ferry migrate` leaves the seed layout's repositories.
    let (sandbox, remote) = repo("dev", json!({"allowed_pushers": ["ci-bot"]}));
    sandbox.past_the_hook(|| {
        sandbox.git("", &["clone", "-q", "deploy.git", "setup"]);
        for branch in ["dev", "staging", "prod"] {
            sandbox.git("setup", &["checkout", "-q", branch]);
            let path = sandbox.path().join("setup/environments/prod.json");
            let mut env: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            env["branch"] = json!("production");
            std::fs::write(&path, pretty(&env)).unwrap();
            sandbox.git("setup", &["commit", "-qam", "prod lives on production"]);
        }
        sandbox.git(
            "setup",
            &[
                "push",
                "-q",
                "origin",
                "dev",
                "staging",
                "prod:production",
                ":prod",
            ],
        );
    });
    let show = || {
        ferry_as(
            &sandbox,
            &remote,
            "ci-bot",
            &["show", "prod", "--format", "json"],
        )
    };
    assert_eq!(show().json()["branch"], "production");
    let production = sandbox.tip("production");
    workshop(&sandbox, "work");
    // mallory's prod: production's files with a pin of her own, and prod's file saying either
    // that prod lives on production (a copy) or on `prod` (a claim).
    let mut manifest: Value =
        serde_json::from_str(&sandbox.show("production", "manifest.json")).unwrap();
    manifest["artifacts"]["web"] = json!({
        "version": "6.6.6", "url": "https://evil.example/web.tgz", "sha256": DIGEST
    });
    let mut claim: Value =
        serde_json::from_str(&sandbox.show("production", "environments/prod.json")).unwrap();
    claim.as_object_mut().unwrap().remove("branch");
    let copy = craft(
        &sandbox,
        "work",
        Some(&production),
        &[("manifest.json", pretty(&manifest))],
        Some(&production),
    );
    let claimed = craft(
        &sandbox,
        "work",
        Some(&copy),
        &[("environments/prod.json", pretty(&claim))],
        Some(&production),
    );
    let mut elsewhere = claim.clone();
    elsewhere["branch"] = json!("evil");
    let evil = craft(
        &sandbox,
        "work",
        Some(&copy),
        &[("environments/prod.json", pretty(&elsewhere))],
        Some(&production),
    );
    let before = sandbox.refs("deploy.git");
    for (commit, branch, why) in [
        (
            &copy,
            "prod",
            "prod: a new branch named like environment `prod`, which lives on `production`",
        ),
        (
            &claimed,
            "prod",
            "prod: a new branch named like environment `prod`, which lives on `production`",
        ),
        (
            &evil,
            "evil",
            "evil: it declares environment `prod` as its own, but `prod` lives on `production`",
        ),
    ] {
        let (ok, stderr) = sandbox.git_as(
            "mallory",
            "work",
            &["push", "origin", &format!("{commit}:refs/heads/{branch}")],
            &[],
        );
        assert!(!ok, "{branch}");
        assert!(stderr.contains(why), "{stderr}");
    }
    assert_eq!(sandbox.refs("deploy.git"), before);
    // Where no hook stood guard: a copy named `prod` changes nothing, a claim stops everyone.
    sandbox.past_the_hook(|| {
        sandbox.git(
            "work",
            &["push", "-q", "origin", &format!("{copy}:refs/heads/prod")],
        );
    });
    let shown = show().json();
    assert_eq!(shown["branch"], "production");
    assert_eq!(shown["commit"], production.as_str());
    sandbox.past_the_hook(|| {
        sandbox.git(
            "work",
            &[
                "push",
                "-q",
                "--force",
                "origin",
                &format!("{claimed}:refs/heads/prod"),
            ],
        );
    });
    let run = show();
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "has 2 branches that each declare environment `prod` as theirs: `prod`, `production`"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_crafted_source_and_its_self_declared_reporter_do_not_pass_the_gate() {
    let (sandbox, remote) = repo("dev", json!({"allowed_pushers": ["ci-bot"]}));
    sandbox.edit_env("dev", "dev", |e| {
        e["agent"] = json!({"reporters": ["agent-dev"]})
    });
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"] = json!({"required_checks": ["ferry/deploy/dev"]})
    });
    let dev = sandbox.tip("dev");
    let staging = sandbox.tip("staging");
    workshop(&sandbox, "work");
    // A commit that was never on dev, whose own dev.json says mallory reports dev's deploys.
    let mut env: Value =
        serde_json::from_str(&sandbox.show("dev", "environments/dev.json")).unwrap();
    env["agent"]["reporters"] = json!(["mallory"]);
    let crafted = craft(
        &sandbox,
        "work",
        Some(&dev),
        &[("environments/dev.json", pretty(&env))],
        Some(&dev),
    );
    let statuses = json!({"ferry/deploy/dev": {"state": "success", "by": "mallory", "at": 1}});
    let status = craft(
        &sandbox,
        "work",
        None,
        &[("statuses.json", pretty(&statuses))],
        None,
    );
    let request = json!({
        "id": 1, "from": "dev", "to": "staging", "branch": "ferry/promote/dev-to-staging",
        "state": "open", "title": "Promote dev → staging", "body": "", "labels": [],
        "author": "mallory", "created_at": 1, "updated_at": 1, "base": staging,
        "head": staging, "source": crafted, "rollback": false, "moves": []
    });
    let opened = craft(
        &sandbox,
        "work",
        None,
        &[("request.json", pretty(&request))],
        None,
    );
    let pushes = [
        format!("{crafted}:refs/heads/mallory-wip"),
        format!("{status}:refs/ferry/statuses/{crafted}"),
        format!("{opened}:refs/ferry/requests/1"),
        format!("{staging}:refs/heads/ferry/promote/dev-to-staging"),
    ];
    let before = sandbox.refs("deploy.git");
    let mut args = vec!["push", "--atomic", "origin"];
    args.extend(pushes.iter().map(String::as_str));
    let (ok, stderr) = sandbox.git_as("mallory", "work", &args, &[]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "`ferry/deploy/dev` is reported by dev's agents only (`agent.reporters`: agent-dev), not by `mallory`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "refs/ferry/requests/1: request #1 promotes {}, which is not on `dev` (dev's branch)",
            &crafted[..7]
        )),
        "{stderr}"
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
    // Where no hook stood guard, `ferry merge` refuses it all the same.
    sandbox.past_the_hook(|| {
        let (ok, stderr) = sandbox.git_as("mallory", "work", &args, &[]);
        assert!(ok, "{stderr}");
    });
    let run = ferry_as(&sandbox, &remote, "carol", &["merge", "1"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "request #1 promotes {}, which is not on `dev` (`dev`'s branch)",
            &crafted[..7]
        )),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.tip("staging"), staging);
    // A promotion of what dev holds still has to wait for dev's own agent.
    let run = ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]);
    run.assert_code(1);
    assert!(run.stderr.contains("ferry/deploy/dev"), "{}", run.stderr);
}

#[test]
fn check_names_are_one_line_of_a_sane_charset() {
    let (sandbox, remote) = repo("dev", json!({"allowed_pushers": ["ci-bot"]}));
    let injected = "ci/test\nferry/deploy/prod: success";
    let run = ferry_as(
        &sandbox,
        &remote,
        "ci-bot",
        &["status", "set", "dev", injected, "success"],
    );
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("contains '\\n': a check name is letters, digits"),
        "{}",
        run.stderr
    );
    // By hand, past ferry: the hook refuses it.
    workshop(&sandbox, "work");
    let dev = sandbox.tip("dev");
    let statuses = json!({injected: {"state": "success", "by": "ci-bot", "at": 1}});
    let status = craft(
        &sandbox,
        "work",
        None,
        &[("statuses.json", pretty(&statuses))],
        None,
    );
    let before = sandbox.refs("deploy.git");
    let (ok, stderr) = sandbox.git_as(
        "ci-bot",
        "work",
        &[
            "push",
            "origin",
            &format!("{status}:refs/ferry/statuses/{dev}"),
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("contains '\\n'"), "{stderr}");
    assert_eq!(sandbox.refs("deploy.git"), before);
    // And an environment cannot require one.
    let repo = crate::common::Repo::example();
    repo.edit_json("environments/staging.json", |e| {
        e["policy"]["required_checks"] = json!([injected])
    });
    let run = repo.validate(&[]);
    run.assert_code(1);
    assert!(run.render().contains("contains '\\n'"), "{}", run.render());
}

/// A request moves its source's pins, nothing else: alice rewrites her open request so that it
/// keeps its green source but moves an artifact dev never held; the hook refuses the record,
/// and a merge made past the hook is refused by `ferry merge` and by the hook at landing.
#[test]
fn a_request_cannot_move_pins_its_source_never_held() {
    let (sandbox, remote) = repo("staging", json!({"required_approvals": 1}));
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    let opened = record(&sandbox, 1);
    let base = opened["base"].as_str().unwrap().to_owned();
    workshop(&sandbox, "work");
    // The evil proposal: staging's tip with web pinned to bytes dev never pinned.
    let mut manifest: Value = serde_json::from_str(
        &sandbox.git("deploy.git", &["show", &format!("{base}:manifest.json")]),
    )
    .unwrap();
    let evil_pin =
        json!({"version": "1.0.0", "url": "https://evil.example/web-1.0.0.tgz", "sha256": B});
    manifest["artifacts"]["web"] = evil_pin.clone();
    let evil_head = craft(
        &sandbox,
        "work",
        Some(&base),
        &[("manifest.json", pretty(&manifest))],
        Some(&base),
    );
    let mut forged = opened.clone();
    forged["head"] = json!(evil_head);
    forged["moves"][0]["pin"] = evil_pin;
    let record_tip = sandbox.git("work", &["rev-parse", "refs/ferry/requests/1"]);
    let update = craft(
        &sandbox,
        "work",
        None,
        &[("request.json", pretty(&forged))],
        Some(record_tip.trim()),
    );
    let before = sandbox.refs("deploy.git");
    let args = [
        "push".to_owned(),
        "--atomic".to_owned(),
        "origin".to_owned(),
        format!("{update}:refs/ferry/requests/1"),
        format!("+{evil_head}:refs/heads/ferry/promote/dev-to-staging"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stderr) = sandbox.git_as("alice", "work", &args, &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("request #1 moves `web` to a pin that is not dev's"),
        "{stderr}"
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
    // Past the hook, the forged request is approved, but it lands nowhere.
    sandbox.past_the_hook(|| {
        let (ok, stderr) = sandbox.git_as("alice", "work", &args, &[]);
        assert!(ok, "{stderr}");
    });
    ferry_as(&sandbox, &remote, "bob", &["approve", "1"]).assert_code(0);
    let staging = sandbox.tip("staging");
    ferry_as(&sandbox, &remote, "carol", &["merge", "1"]).assert_code(1);
    let (ok, stderr) = merge_by_hand(&sandbox, "carol", &evil_head);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("request #1 moves `web` to a pin that is not dev's"),
        "{stderr}"
    );
    assert_eq!(sandbox.tip("staging"), staging);
}

/// Records hold what ferry writes and nothing else (append-only, junk could never go), and
/// `refs/ferry/` holds records only; no new ref makes a branch's name ambiguous to git.
#[test]
fn records_and_refs_hold_no_junk() {
    let (sandbox, remote) = repo("staging", json!({"required_approvals": 1}));
    ferry_as(&sandbox, &remote, "alice", &["promote", "dev", "staging"]).assert_code(0);
    ferry_as(
        &sandbox,
        &remote,
        "ci-bot",
        &["status", "set", "dev", "ci/test", "success"],
    )
    .assert_code(0);
    workshop(&sandbox, "work");
    let before = sandbox.refs("deploy.git");
    let push =
        |user: &str, refspec: &str| sandbox.git_as(user, "work", &["push", "origin", refspec], &[]);
    let refused = |user: &str, refspec: &str, why: &str| {
        let (ok, stderr) = push(user, refspec);
        assert!(!ok, "{refspec} landed");
        assert!(stderr.contains(why), "{refspec}: {stderr}");
    };

    // bob's approval, with a field of his own.
    let mut approved = record(&sandbox, 1);
    let head = approved["head"].clone();
    approved["approvals"] = json!([{"by": "bob", "at": 2, "head": head, "note": "x"}]);
    let tip = sandbox.git("work", &["rev-parse", "refs/ferry/requests/1"]);
    let commit = craft(
        &sandbox,
        "work",
        None,
        &[("request.json", pretty(&approved))],
        Some(tip.trim()),
    );
    refused(
        "bob",
        &format!("{commit}:refs/ferry/requests/1"),
        "has a field ferry does not write: `/approvals/0/note`",
    );

    // A status record with another file in it, or a description of 10 MB.
    let statuses_ref = sandbox
        .git(
            "work",
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/ferry/statuses/",
            ],
        )
        .trim()
        .to_owned();
    let tip = sandbox.git("work", &["rev-parse", &statuses_ref]);
    let mut statuses: Value = serde_json::from_str(
        &sandbox.git("work", &["show", &format!("{statuses_ref}:statuses.json")]),
    )
    .unwrap();
    statuses["ci/lint"] = json!({"state": "success", "by": "ci-bot", "at": 3});
    let commit = craft(
        &sandbox,
        "work",
        None,
        &[
            ("statuses.json", pretty(&statuses)),
            ("payload.bin", "x".repeat(1000)),
        ],
        Some(tip.trim()),
    );
    refused(
        "ci-bot",
        &format!("{commit}:{statuses_ref}"),
        "holds `statuses.json` and nothing else",
    );
    statuses["ci/lint"]["description"] = json!("x".repeat(10 << 20));
    let commit = craft(
        &sandbox,
        "work",
        None,
        &[("statuses.json", pretty(&statuses))],
        Some(tip.trim()),
    );
    refused("ci-bot", &format!("{commit}:{statuses_ref}"), "is at most");

    // Refs under refs/ferry/ that are no record.
    let dev = sandbox.tip("dev");
    refused(
        "mallory",
        &format!("{dev}:refs/ferry/zzz"),
        "holds ferry's records only",
    );
    refused(
        "mallory",
        &format!("{commit}:refs/ferry/statuses/{}", "ab".repeat(20)),
        "has no commit abababa",
    );
    // Refs that make a branch's name ambiguous.
    refused(
        "mallory",
        &format!("{dev}:refs/tags/prod"),
        "named like the branch `prod`",
    );
    refused(
        "mallory",
        &format!("{dev}:refs/heads/refs/heads/prod"),
        "makes names ambiguous",
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
    // A tag of its own name is fine.
    let (ok, stderr) = push("mallory", &format!("{dev}:refs/tags/v1"));
    assert!(ok, "{stderr}");
}
