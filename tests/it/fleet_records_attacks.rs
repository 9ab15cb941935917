//! Attacks on the hosts' own records (`refs/ferry/hosts/ENV/HOST`), on the push log that no
//! longer logs statuses-only pushes, and on the wave nudges, each asserting the safe
//! behaviour: records under aliases of a host's escaped name, written by another
//! environment's reporter or on another branch's commit, damaged records on a repository
//! without hooks, a second agent for one host, an agent killed between its report and the
//! aggregate, a branch change bundled with records to slip past the push log, and trigger
//! URLs that never answer or a flood of signed nudges. An attack that found a bug is kept
//! `#[ignore = "finding: …"]`.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::{artifact, bump, github_signature, http};
use crate::common::{NOW, Sandbox};
use crate::fleet_attacks::{
    Health, REPORTER, Running, agent, agent_command, aggregate, aggregate_writes, env,
    forge_record, main_record, promotion_passes, record, require_dev_deploy, serves, still_waits,
    wait_for, web,
};

/// `host`'s agent as the reporter, `--once`, on a machine of its own (`dir` under the
/// sandbox's hosts): a second agent started for a host another one already runs.
fn agent_elsewhere(sandbox: &Sandbox, remote: &str, host: &str, dir: &str) -> crate::common::Run {
    let root = sandbox.path().join("hosts").join(dir);
    std::fs::create_dir_all(root.join("root")).unwrap();
    sandbox
        .ferry(&["agent", "--env", "dev", "--once", "--remote", remote])
        .env("USER", REPORTER)
        .args(["--host", host])
        .arg("--root")
        .arg(root.join("root"))
        .arg("--state-dir")
        .arg(root.join("state"))
        .run_within(Duration::from_secs(120))
}

/// A success of `host` on `commit`, as its agent would write it, reported by `by`.
fn success_report(commit: &str, env: &str, host: &str, by: &str) -> Value {
    json!({"commit": commit, "check": format!("ferry/deploy/{env}/{host}"),
           "status": {"state": "success", "description": "deployed web 1.0.0", "by": by,
                      "at": NOW,
                      "apps": {"web": {"state": "deployed", "version": "1.0.0", "wave": [1, 2],
                                       "since": NOW}}}})
}

/// How many pushes the push log holds.
fn logged_pushes(sandbox: &Sandbox) -> usize {
    sandbox
        .git("deploy.git", &["rev-list", "--count", "refs/ferry/pushes"])
        .trim()
        .parse()
        .unwrap()
}

/// A commit of the record `name` holding `file` with `value`, made in the `forgery` clone
/// on the record's tip (not pushed).
fn record_commit(sandbox: &Sandbox, name: &str, file: &str, value: &Value) -> String {
    crate::fleet_attacks::record_commit_of_text(
        sandbox,
        name,
        file,
        &serde_json::to_string_pretty(value).unwrap(),
    )
}

// Attack 1: host records under other names, by other reporters, on other commits.

/// Hosts whose names are escaped in their record's name (`c:1` is `c%3A1`, `a.b` is
/// `a%2Eb`): the reporter pushes the canary's success under aliases that decode to the same
/// host (lowercase hex, escaped letters and digits, the raw name), so that a second record of
/// the canary says it deployed. Each is refused, and wave 2 keeps waiting. A host the fleet
/// does not list (`C:1`, which only differs in case) may have a record, but it opens nothing.
#[test]
fn a_hosts_record_under_an_alias_of_its_escaped_name_is_refused() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["c:1", "a.b"]), json!({"waves": [1, "100%"]}));
    let run = agent(&sandbox, &remote, "a.b");
    run.assert_code(1);
    let tip = sandbox.tip("dev");
    let before = sandbox.refs("deploy.git");
    for name in [
        "refs/ferry/hosts/dev/c%3a1",
        "refs/ferry/hosts/dev/%63%3A1",
        "refs/ferry/hosts/dev/c%3A%31",
        "refs/ferry/hosts/dev/c%253A1",
        "refs/ferry/hosts/Dev/c%3A1",
        "refs/ferry/hosts/dev/c%3A1/",
    ] {
        let report = success_report(&tip, "dev", "c:1", REPORTER);
        let (ok, stderr) = forge_record(&sandbox, REPORTER, name, "host.json", &report);
        assert!(!ok, "{name}: {stderr}");
    }
    // a.b's own success under its raw and lowercase names, beside its real record.
    for name in ["refs/ferry/hosts/dev/a.b", "refs/ferry/hosts/dev/a%2eb"] {
        let report = success_report(&tip, "dev", "a.b", REPORTER);
        let (ok, stderr) = forge_record(&sandbox, REPORTER, name, "host.json", &report);
        assert!(!ok, "{name}: {stderr}");
        assert!(
            stderr.contains("that host's deploy status only"),
            "{stderr}"
        );
    }
    assert_eq!(sandbox.refs("deploy.git"), before);
    // `C:1` is another host, which the fleet does not list: its success opens no wave.
    let report = success_report(&tip, "dev", "C:1", REPORTER);
    forge_record(
        &sandbox,
        REPORTER,
        "refs/ferry/hosts/dev/C%3A1",
        "host.json",
        &report,
    );
    still_waits(&sandbox, &remote, "a.b");
    assert!(aggregate(&sandbox).is_null(), "{}", record(&sandbox));
}

/// dev and staging both run a host `h1`, each environment with its own reporter. staging's
/// reporter writes dev's `h1` record (and dev's reporter staging's), and dev's reporter puts
/// `h1`'s success on a commit of another branch (staging's tip, which the repository has)
/// or on the dev commit under staging's check. Each cross-environment write is refused; the
/// report on another branch's commit counts for nothing on dev's tip: h2 keeps waiting for
/// the canary, and no aggregate is written.
#[test]
fn another_environments_reporter_or_another_branchs_commit_opens_no_wave() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({"waves": [1, "100%"]}));
    sandbox.edit_env("staging", "staging", |env| {
        env["agent"] = json!({"interval": "1s", "reporters": ["agent-staging"]});
        env["apps"] = json!({"web": {"hosts": ["h1"], "deployment_path": "/srv/web"}});
    });
    agent(&sandbox, &remote, "h2").assert_code(1);
    let (tip, staging) = (sandbox.tip("dev"), sandbox.tip("staging"));
    let before = sandbox.refs("deploy.git");
    let refused = [
        (
            "agent-staging",
            "refs/ferry/hosts/dev/h1",
            success_report(&tip, "dev", "h1", "agent-staging"),
        ),
        (
            REPORTER,
            "refs/ferry/hosts/staging/h1",
            success_report(&staging, "staging", "h1", REPORTER),
        ),
        (
            REPORTER,
            "refs/ferry/hosts/dev/h1",
            success_report(&tip, "staging", "h1", REPORTER),
        ),
    ];
    for (user, name, report) in refused {
        let (ok, stderr) = forge_record(&sandbox, user, name, "host.json", &report);
        assert!(!ok, "{user} to {name}: {stderr}");
    }
    assert_eq!(sandbox.refs("deploy.git"), before);
    // dev's reporter, h1's success on staging's commit: whether or not it lands, dev's
    // canary has not deployed dev's tip.
    let report = success_report(&staging, "dev", "h1", REPORTER);
    forge_record(
        &sandbox,
        REPORTER,
        "refs/ferry/hosts/dev/h1",
        "host.json",
        &report,
    );
    still_waits(&sandbox, &remote, "h2");
    assert!(aggregate(&sandbox).is_null(), "{}", record(&sandbox));
    // The canary then reports on dev's tip, past what was written on staging's commit.
    agent(&sandbox, &remote, "h1").assert_code(0);
    agent(&sandbox, &remote, "h2").assert_code(0);
    assert_eq!(aggregate(&sandbox)["description"], "deployed on 2 hosts");
}

/// A repository on a path with no hook installed, where anyone writes anything: the
/// canary's record is not JSON, a blob, a tree, dev's own commit, a report missing fields or
/// with an unknown state, or h2's record holds the canary's success. `ferry status` (text and
/// JSON) answers each time, and h3 keeps waiting: a missing or garbled record never opens a
/// wave nor completes a rollout.
#[test]
fn damaged_host_records_on_a_repository_without_hooks_complete_nothing() {
    let health = Health::start();
    let (sandbox, remote) = env(
        web(&health, &["h1", "h2", "h3"]),
        json!({"waves": [1, "100%"]}),
    );
    for hook in ["pre-receive", "post-receive"] {
        std::fs::remove_file(sandbox.path().join("deploy.git/hooks").join(hook)).unwrap();
    }
    let tip = sandbox.tip("dev");
    let canary = "refs/ferry/hosts/dev/h1";
    let status_answers = |what: &str| {
        for args in [&["--hosts"][..], &["--hosts", "--format", "json"], &[]] {
            let run = sandbox
                .ferry(&["status", "dev", "--remote", &remote])
                .args(args)
                .run();
            assert_eq!(run.code, Some(0), "{what}, {args:?}: {}", run.render());
        }
    };
    let waits = |what: &str| {
        status_answers(what);
        let run = agent(&sandbox, &remote, "h3");
        assert_eq!(run.code, Some(1), "{what}: {}", run.render());
        assert!(
            run.stdout.contains("waiting (wave 2 of 2)"),
            "{what}: {}",
            run.render()
        );
        assert_eq!(serves(&sandbox, "h3"), None, "{what}");
        // The commit's own record, as it is (reading the hosts' records is what is attacked).
        let all = main_record(&sandbox);
        assert!(all["ferry/deploy/dev"].is_null(), "{what}: {all}");
    };
    let set = |target: &str| {
        sandbox.git("deploy.git", &["update-ref", canary, target]);
    };
    std::fs::write(sandbox.path().join("blob"), "hi\n").unwrap();
    let blob = sandbox.git("deploy.git", &["hash-object", "-w", "../blob"]);
    set(blob.trim());
    waits("a blob");
    set(&format!("{tip}^{{tree}}"));
    waits("a tree");
    set(&tip);
    waits("dev's commit");
    sandbox.git("deploy.git", &["update-ref", "-d", canary]);
    let texts = [
        "not json {".to_owned(),
        "[]".to_owned(),
        json!({"commit": tip, "check": "ferry/deploy/dev/h1", "status": {"state": "success"}})
            .to_string(),
        json!({"commit": tip, "check": "ferry/deploy/dev/h1",
               "status": {"state": "succes", "by": REPORTER, "at": NOW}})
        .to_string(),
        json!({"commit": tip, "check": "ferry/deploy/dev/h1",
               "status": {"state": "success", "by": REPORTER, "at": "now", "apps": 7}})
        .to_string(),
        json!({"commit": tip.to_uppercase(), "check": "ferry/deploy/dev/h1",
               "status": {"state": "success", "description": "", "by": REPORTER, "at": NOW}})
        .to_string(),
    ];
    for text in &texts {
        let name = "refs/ferry/hosts/dev/h1";
        let commit = crate::fleet_attacks::record_commit_of_text(&sandbox, name, "host.json", text);
        let (ok, stderr) = sandbox.git_as(
            "mallory",
            "forgery",
            &["push", "-f", "origin", &format!("{commit}:{name}")],
            &[],
        );
        assert!(ok, "{stderr}");
        waits(text);
    }
    // h2's record holding the canary's success.
    let report = success_report(&tip, "dev", "h1", REPORTER);
    let (ok, stderr) = forge_record(
        &sandbox,
        REPORTER,
        "refs/ferry/hosts/dev/h2",
        "host.json",
        &report,
    );
    assert!(ok, "{stderr}");
    waits("h2's record holding h1's status");
}

// Attack 2: two agents for one host, and a crash between the report and the aggregate.

/// Two agents started for the same host (`--host h1` on two machines) deploy and report at
/// the same moment as h2's: none fails on the contention, and the aggregate is written
/// once, success, on each of three commits.
#[test]
fn two_agents_for_one_host_reporting_at_once_write_the_aggregate_once() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({}));
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        if version != "1.0.0" {
            bump(
                &sandbox,
                &remote,
                version,
                &artifact(&sandbox, version),
                false,
            );
        }
        let runs = std::thread::scope(|scope| {
            let handles = [("h1", "h1"), ("h1", "h1-again"), ("h2", "h2")].map(|(host, dir)| {
                let (sandbox, remote) = (&sandbox, &remote);
                scope.spawn(move || agent_elsewhere(sandbox, remote, host, dir))
            });
            handles.map(|h| h.join().unwrap())
        });
        for run in &runs {
            run.assert_code(0);
            assert!(!run.stderr.contains("cannot report"), "{}", run.render());
        }
        let all = record(&sandbox);
        assert_eq!(all["ferry/deploy/dev"]["state"], "success", "{all}");
        assert_eq!(
            all["ferry/deploy/dev"]["description"],
            "deployed on 2 hosts"
        );
        assert_eq!(aggregate_writes(&sandbox), 1, "{version}");
    }
}

/// The aggregate went green, then a second agent for h1 (a host re-provisioned with an empty
/// state dir, or started twice by mistake) deploys the same commit, fails its health check
/// and reports h1 failed: h1's record says failure on the commit, so the aggregate must not
/// stay success, nor let the promotion gated on it through.
#[test]
fn a_hosts_failure_reported_after_the_aggregate_went_green_turns_it_red() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({}));
    require_dev_deploy(&sandbox);
    agent(&sandbox, &remote, "h1").assert_code(0);
    agent(&sandbox, &remote, "h2").assert_code(0);
    assert_eq!(aggregate(&sandbox)["state"], "success");
    health.set("h1", 500, 0);
    let run = agent_elsewhere(&sandbox, &remote, "h1", "h1-again");
    run.assert_code(1);
    let all = record(&sandbox);
    assert_eq!(all["ferry/deploy/dev/h1"]["state"], "failure", "{all}");
    let promoted = promotion_passes(&sandbox, &remote);
    assert_eq!(
        all["ferry/deploy/dev"]["state"], "failure",
        "h1 failed, the aggregate says {}; the promotion exited {:?}",
        all["ferry/deploy/dev"], promoted.code
    );
    promoted.assert_code(1);
}

/// Wraps the repository's pre-receive hook: while the file `crash` exists, a push to a
/// statuses record (the aggregate) holds in the hook (after writing `entered`) until `crash`
/// is gone, then is refused. Every other push is judged by ferry's hook.
fn hold_aggregate_pushes(sandbox: &Sandbox) {
    let hooks = sandbox.path().join("deploy.git/hooks");
    std::fs::rename(hooks.join("pre-receive"), hooks.join("pre-receive.ferry")).unwrap();
    let wrapper = hooks.join("pre-receive");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\n\
         input=$(cat)\n\
         if [ -f crash ] && printf '%s\\n' \"$input\" | grep -q ' refs/ferry/statuses/'; then\n\
         \ttouch entered\n\
         \twhile [ -f crash ]; do sleep 0.1; done\n\
         \texit 1\n\
         fi\n\
         printf '%s\\n' \"$input\" | \"$(dirname \"$0\")/pre-receive.ferry\"\n",
    )
    .unwrap();
    let mut mode = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&wrapper, mode).unwrap();
    std::fs::write(sandbox.path().join("deploy.git/crash"), "").unwrap();
}

/// The last host's agent is killed (SIGKILL) after its own report landed, while its push of
/// the aggregate is in flight (the push then fails). Nothing says dev deployed: no aggregate,
/// and the gated promotion is refused; the canary's next reconcile does not make one up
/// either. Restarted, the last host's agent writes the aggregate, once.
///
/// Found: an update of a repository on a path locked its refs, then ran the pre-receive hook
/// (seconds of `ferry hook`) with the locks held, so an agent killed there left
/// `refs/ferry/statuses/COMMIT.lock` behind, and every later write of that record, by any
/// agent or CI, gave up ("kept changing under ferry"): the aggregate was never written and the
/// promotion stayed blocked (a host's own record, or a branch, wedged the same way). Fixed:
/// as `git receive-pack`, the hook runs first, and the refs are locked and checked again only
/// to move them.
#[test]
fn an_agent_killed_between_its_report_and_the_aggregate_leaves_no_false_green() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({}));
    require_dev_deploy(&sandbox);
    agent(&sandbox, &remote, "h1").assert_code(0);
    assert!(aggregate(&sandbox).is_null());
    hold_aggregate_pushes(&sandbox);
    let mut h2 = Running::spawn(agent_command(&sandbox, &remote, "h2", false));
    let entered = sandbox.path().join("deploy.git/entered");
    wait_for("the aggregate's push", Duration::from_secs(60), || {
        entered.exists()
    });
    assert_eq!(record(&sandbox)["ferry/deploy/dev/h2"]["state"], "success");
    h2.kill();
    std::fs::remove_file(sandbox.path().join("deploy.git/crash")).unwrap();
    // The held push is refused once `crash` is gone; give it the time to end.
    std::thread::sleep(Duration::from_secs(1));
    assert!(aggregate(&sandbox).is_null(), "{}", record(&sandbox));
    promotion_passes(&sandbox, &remote).assert_code(1);
    agent(&sandbox, &remote, "h1").assert_code(0);
    let all = aggregate(&sandbox);
    assert!(all.is_null() || all["state"] == "success", "{all}");
    let run = agent(&sandbox, &remote, "h2");
    run.assert_code(0);
    assert_eq!(
        aggregate(&sandbox)["description"],
        "deployed on 2 hosts",
        "{}\n{}",
        run.render(),
        record(&sandbox)
    );
    assert_eq!(aggregate_writes(&sandbox), 1);
    promotion_passes(&sandbox, &remote).assert_code(0);
}

// Attack 3: slipping a branch change past the push log.

/// Pushes of statuses only are not logged, so the reporter bundles a change of dev's branch
/// with a host's report and a statuses record in one push, hoping the push log takes it for
/// a report. It is logged, and `ferry audit dev` names who pushed the change; a push of
/// statuses only adds nothing to the log.
#[test]
fn a_branch_change_bundled_with_records_is_still_in_the_push_log() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1"]), json!({}));
    let tip = sandbox.tip("dev");
    let before = logged_pushes(&sandbox);
    sandbox
        .ferry(&[
            "status", "set", &tip, "ci/test", "success", "--remote", &remote,
        ])
        .run()
        .assert_code(0);
    agent(&sandbox, &remote, "h1").assert_code(0);
    assert_eq!(
        logged_pushes(&sandbox),
        before,
        "statuses only are not logged"
    );

    // A change of dev, made in a clone, fetched into the clone the records are made in.
    sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", "bundle"]);
    std::fs::write(sandbox.path().join("bundle/NOTES"), "sneaky\n").unwrap();
    sandbox.git("bundle", &["add", "NOTES"]);
    sandbox.git("bundle", &["commit", "-qm", "a change in the crowd"]);
    let change = sandbox
        .git("bundle", &["rev-parse", "HEAD"])
        .trim()
        .to_owned();
    // On the record's tip, a newer report (the `at` makes it differ).
    let mut report = success_report(&tip, "dev", "h1", REPORTER);
    report["status"]["at"] = json!(NOW + 1);
    let host = record_commit(&sandbox, "refs/ferry/hosts/dev/h1", "host.json", &report);
    let mut statuses = main_record(&sandbox);
    statuses["ci/lint"] = json!({"state": "success", "by": REPORTER, "at": NOW});
    let statuses = record_commit(
        &sandbox,
        &format!("refs/ferry/statuses/{tip}"),
        "statuses.json",
        &statuses,
    );
    sandbox.git("forgery", &["fetch", "-q", "../bundle", "dev"]);
    let (ok, stderr) = sandbox.git_as(
        REPORTER,
        "forgery",
        &[
            "push",
            "origin",
            &format!("{host}:refs/ferry/hosts/dev/h1"),
            &format!("{statuses}:refs/ferry/statuses/{tip}"),
            &format!("{change}:refs/heads/dev"),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(sandbox.tip("dev"), change);
    assert_eq!(logged_pushes(&sandbox), before + 1);
    let audit = sandbox.ferry(&["audit", "dev", "--remote", &remote]).run();
    let line = audit
        .stdout
        .split(&change[..7])
        .nth(1)
        .unwrap_or_else(|| panic!("{}", audit.render()));
    let pushed = line.lines().nth(1).unwrap_or_default();
    assert!(
        pushed.contains(&format!("pushed by {REPORTER}")),
        "{}",
        audit.render()
    );
}

// Attack 4: nudges.

/// A server that takes connections and never answers (nor reads): a trigger URL of a host
/// that is gone behind a firewall that drops nothing.
fn black_hole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `agent.trigger_urls` lists 200 URLs that never answer before the fleet's own: the hook's
/// triggers on each push, and the nudge of the report that finishes wave 1, wait on each.
/// Pushes still land (git's client is not held for minutes), the agents' loops do not stall:
/// the rollout completes, and so does the next one.
///
/// Found: the post-receive hook posted to each URL in turn, 2 s each, so each push to dev
/// held its pusher 400 s (the test's two pushes took 802 s); the nudge thread did the same,
/// the fleet's own agents last. Fixed: both post 64 at a time.
#[test]
fn trigger_urls_that_never_answer_stall_neither_pushes_nor_the_rollout() {
    let health = Health::start();
    let names = ["h1", "h2", "h3"];
    let (sandbox, remote) = env(web(&health, &names), json!({"waves": [1, "100%"]}));
    let hole = black_hole();
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let mut urls: Vec<String> = (0..200)
        .map(|i| format!("http://127.0.0.1:{hole}/trigger/{i}"))
        .collect();
    urls.extend(
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/trigger")),
    );
    let started = std::time::Instant::now();
    sandbox.edit_env("dev", "dev", |env| {
        env["agent"]["interval"] = json!("2s");
        env["agent"]["trigger_urls"] = json!(urls);
    });
    let _agents: Vec<Running> = names
        .iter()
        .zip(&ports)
        .map(|(host, port)| {
            Running::spawn(
                agent_command(&sandbox, &remote, host, false)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{port}"))
                    .env("FERRY_WEBHOOK_SECRET", "fleet-secret"),
            )
        })
        .collect();
    wait_for("the rollout of 1.0.0", Duration::from_secs(120), || {
        aggregate(&sandbox)["state"] == "success"
    });
    bump(
        &sandbox,
        &remote,
        "1.1.0",
        &artifact(&sandbox, "1.1.0"),
        false,
    );
    let pushed = started.elapsed();
    wait_for("the rollout of 1.1.0", Duration::from_secs(120), || {
        aggregate(&sandbox)["state"] == "success"
    });
    for host in names {
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.1.0\n"));
    }
    // Two pushes to 200 dead URLs, 2 s each, one after the other, would be 800 s.
    assert!(pushed < Duration::from_secs(180), "{pushed:?}");
}

/// A replayed nudge, correctly signed (anyone who saw one can send it again), a thousand
/// times, and as many unsigned ones, to a host waiting for its wave: it keeps waiting (the
/// canary has not reported), writes its waiting report once and not once per nudge, and
/// still deploys when the canary does.
#[test]
fn a_flood_of_replayed_signed_nudges_writes_nothing_and_opens_nothing() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({"waves": [1, "100%"]}));
    let port = free_port();
    sandbox.edit_env("dev", "dev", |env| env["agent"]["interval"] = json!("1h"));
    let _h2 = Running::spawn(
        agent_command(&sandbox, &remote, "h2", false)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("FERRY_WEBHOOK_SECRET", "fleet-secret"),
    );
    let waiting = || record(&sandbox)["ferry/deploy/dev/h2"]["apps"]["web"]["state"] == "waiting";
    wait_for("h2 waiting", Duration::from_secs(60), waiting);
    let writes = || {
        sandbox
            .git(
                "deploy.git",
                &["rev-list", "--count", "refs/ferry/hosts/dev/h2"],
            )
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let before = writes();
    let body = json!({"ref": "refs/ferry/hosts/dev/h1", "after": sandbox.tip("dev"),
                      "pusher": {"name": "h1"}})
    .to_string();
    let signed = format!(
        "X-GitHub-Event: push\r\nX-Hub-Signature-256: {}\r\n",
        github_signature("fleet-secret", body.as_bytes())
    );
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..125 {
                    let (code, _) = http(port, "POST", "/trigger", &signed, &body);
                    assert!((200..300).contains(&code), "{code}");
                    let (code, _) = http(port, "POST", "/trigger", "", &body);
                    assert_eq!(code, 401);
                }
            });
        }
    });
    // Let the last triggered reconciles run.
    std::thread::sleep(Duration::from_secs(3));
    assert!(waiting(), "{}", record(&sandbox));
    assert_eq!(serves(&sandbox, "h2"), None);
    assert!(
        writes() <= before + 1,
        "h2's record was written {} times",
        writes() - before
    );
    // The canary deploys; its report does not nudge (no trigger URLs): one signed nudge does.
    agent(&sandbox, &remote, "h1").assert_code(0);
    let (code, _) = http(port, "POST", "/trigger", &signed, &body);
    assert!((200..300).contains(&code), "{code}");
    wait_for("h2 deployed", Duration::from_secs(60), || {
        aggregate(&sandbox)["state"] == "success"
    });
    assert_eq!(serves(&sandbox, "h2").as_deref(), Some("web 1.0.0\n"));
}
