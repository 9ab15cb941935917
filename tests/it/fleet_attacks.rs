//! Attacks on fleets (issue 17), each asserting the safe behaviour: statuses records forged
//! with plain git by someone who is not a reporter (or crafted by a reporter), ten agents of one
//! environment reporting at once, a canary killed with SIGKILL while its health check is
//! pending, odd placements (a host in two apps, more waves than hosts, `max_failures` past the
//! fleet, a host name at the limit, a `pause` of centuries), and `ferry status` on halted,
//! partial and crafted records. An attack that found a bug is kept `#[ignore = "finding: …"]`.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agent::{artifact, bump};
use crate::common::{NOW, Run, Sandbox};

/// Who dev's agents push as (`agent.reporters`).
pub(crate) const REPORTER: &str = "agent-dev";

/// Health endpoints at `/HOST/health`: per host a code (200 unset) and a delay before the
/// answer; every request's host is recorded. Each connection is served on its own thread, so a
/// delayed answer holds up nobody else.
pub(crate) struct Health {
    pub(crate) url: String,
    answers: Arc<Mutex<HashMap<String, (u16, u64)>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Health {
    pub(crate) fn start() -> Health {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<HashMap<String, (u16, u64)>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (shared, seen) = (answers.clone(), hits.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let (shared, seen) = (shared.clone(), seen.clone());
                std::thread::spawn(move || {
                    let head = crate::common::http::read_request_head(&stream);
                    let host = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|path| path.split('/').nth(1))
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(host.clone());
                    let (code, delay) = shared
                        .lock()
                        .unwrap()
                        .get(&host)
                        .copied()
                        .unwrap_or((200, 0));
                    std::thread::sleep(Duration::from_millis(delay));
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                });
            }
        });
        Health {
            url: format!("http://127.0.0.1:{port}/{{host}}/health"),
            answers,
            hits,
        }
    }

    pub(crate) fn set(&self, host: &str, code: u16, delay_ms: u64) {
        self.answers
            .lock()
            .unwrap()
            .insert(host.to_owned(), (code, delay_ms));
    }

    pub(crate) fn hit(&self, host: &str) -> bool {
        self.hits.lock().unwrap().iter().any(|h| h == host)
    }
}

/// dev with `web` 1.0.0 pinned and `apps` (health-checked per host with `health`), rolled out
/// as `rollout` says; its deploys reported by `agent-dev` only.
pub(crate) fn env(apps: Value, rollout: Value) -> (Sandbox, String) {
    env_with(&[], apps, rollout)
}

/// [`env`], with `also` pinned beside `web` (at 1.0.0, the same artifact).
pub(crate) fn env_with(also: &[&str], apps: Value, rollout: Value) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let file = artifact(&sandbox, "1.0.0");
    bump(&sandbox, &remote, "1.0.0", &file, true);
    for app in also {
        sandbox
            .ferry(&[
                "bump", app, "1.0.0", "--env", "dev", "--add", "--remote", &remote,
            ])
            .args(["--url", &format!("file://{}", file.display())])
            .arg("--artifact")
            .arg(&file)
            .run()
            .assert_code(0);
    }
    sandbox.edit_env("dev", "dev", |env| {
        env["agent"] = json!({"interval": "1s", "reporters": [REPORTER]});
        env["rollout"] = rollout;
        env["apps"] = apps;
    });
    (sandbox, remote)
}

/// `web` on `hosts`, health-checked once per deploy within 60 s.
pub(crate) fn web(health: &Health, hosts: &[&str]) -> Value {
    json!({ "web": {
        "hosts": hosts,
        "deployment_path": "/srv/web",
        "healthcheck_url": health.url,
        "healthcheck_timeout": "60s",
        "healthcheck_retries": 1,
    }})
}

pub(crate) fn root(sandbox: &Sandbox, host: &str) -> PathBuf {
    sandbox.path().join("hosts").join(host)
}

/// `host`'s agent as the reporter, `--once` unless `once` is false.
pub(crate) fn agent_command(
    sandbox: &Sandbox,
    remote: &str,
    host: &str,
    once: bool,
) -> crate::common::Ferry {
    let root = root(sandbox, host);
    std::fs::create_dir_all(root.join("root")).unwrap();
    let mut f = sandbox
        .ferry(&["agent", "--env", "dev", "--remote", remote])
        .env("USER", REPORTER)
        .args(["--host", host])
        .arg("--root")
        .arg(root.join("root"))
        .arg("--state-dir")
        .arg(root.join("state"));
    if once {
        f = f.arg("--once");
    }
    f
}

/// One reconcile of `host`'s agent.
pub(crate) fn agent(sandbox: &Sandbox, remote: &str, host: &str) -> Run {
    agent_command(sandbox, remote, host, true).run_within(Duration::from_secs(120))
}

/// One reconcile of `host`'s agent: it waits for wave 2 of 2, serving nothing new.
#[track_caller]
pub(crate) fn still_waits(sandbox: &Sandbox, remote: &str, host: &str) {
    let before = serves(sandbox, host);
    let run = agent(sandbox, remote, host);
    run.assert_code(1);
    assert!(
        run.stdout.contains("waiting (wave 2 of 2)"),
        "{}",
        run.render()
    );
    assert_eq!(serves(sandbox, host), before, "{}", run.render());
}

/// What `host` serves at /srv/web.
pub(crate) fn serves(sandbox: &Sandbox, host: &str) -> Option<String> {
    std::fs::read_to_string(root(sandbox, host).join("root/srv/web/index.html")).ok()
}

/// Each agent of `runs` (one per host of `names`) exited 0, reported, and serves web 1.0.0,
/// and each host's status on dev's tip is success: the statuses record.
fn all_deployed_and_reported(sandbox: &Sandbox, names: &[&str], runs: &[Run]) -> Value {
    for (host, run) in names.iter().zip(runs) {
        run.assert_code(0);
        assert!(
            !run.stderr.contains("cannot report"),
            "{host}: {}",
            run.render()
        );
        assert_eq!(serves(sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    let all = record(sandbox);
    for host in names {
        assert_eq!(
            all[format!("ferry/deploy/dev/{host}")]["state"],
            "success",
            "{all}"
        );
    }
    all
}

/// The statuses on dev's tip (null when there are none), as ferry reads them.
pub(crate) fn record(sandbox: &Sandbox) -> Value {
    crate::common::statuses_of(&sandbox.path().join("deploy.git"), &sandbox.tip("dev"))
}

/// The statuses record of dev's tip as it is (null when there is none).
pub(crate) fn main_record(sandbox: &Sandbox) -> Value {
    record_at(
        sandbox,
        &format!("refs/ferry/statuses/{}", sandbox.tip("dev")),
    )
}

pub(crate) fn record_at(sandbox: &Sandbox, rev: &str) -> Value {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(sandbox.path().join("deploy.git"))
        .args(["show", &format!("{rev}:statuses.json")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The aggregate `ferry/deploy/dev` on dev's tip.
pub(crate) fn aggregate(sandbox: &Sandbox) -> Value {
    record(sandbox)["ferry/deploy/dev"].clone()
}

/// How many commits of dev's tip's record set the aggregate.
pub(crate) fn aggregate_writes(sandbox: &Sandbox) -> usize {
    let tip = sandbox.tip("dev");
    let log = sandbox.git(
        "deploy.git",
        &["log", "--format=%s", &format!("refs/ferry/statuses/{tip}")],
    );
    log.lines()
        .filter(|l| l.split(", ").any(|e| e.starts_with("ferry/deploy/dev: ")))
        .count()
}

/// Pushes, with plain git as `user`, a new commit of dev's tip's statuses record: the record
/// as it is, changed by `edit`. Whether the push landed, and git's stderr.
pub(crate) fn forge(
    sandbox: &Sandbox,
    user: &str,
    edit: impl FnOnce(&mut Value),
) -> (bool, String) {
    let name = format!("refs/ferry/statuses/{}", sandbox.tip("dev"));
    let mut value = main_record(sandbox);
    if value.is_null() {
        value = json!({});
    }
    edit(&mut value);
    forge_record(sandbox, user, &name, "statuses.json", &value)
}

/// Pushes, with plain git as `user`, a new commit of `host`'s record (`host.json`): its
/// report as it is (or one on dev's tip), changed by `edit`.
pub(crate) fn forge_host(
    sandbox: &Sandbox,
    user: &str,
    host: &str,
    edit: impl FnOnce(&mut Value),
) -> (bool, String) {
    let name = format!("refs/ferry/hosts/dev/{host}");
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(sandbox.path().join("deploy.git"))
        .args(["show", &format!("{name}:host.json")])
        .output()
        .unwrap();
    let mut value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        json!({"commit": sandbox.tip("dev"), "check": format!("ferry/deploy/dev/{host}"),
               "status": {}})
    });
    edit(&mut value);
    forge_record(sandbox, user, &name, "host.json", &value)
}

/// Pushes, with plain git as `user`, a commit holding `file` with `value` onto the record
/// `name` (its tip as the parent, when it has one).
pub(crate) fn forge_record(
    sandbox: &Sandbox,
    user: &str,
    name: &str,
    file: &str,
    value: &Value,
) -> (bool, String) {
    let commit = record_commit_of_text(
        sandbox,
        name,
        file,
        &serde_json::to_string_pretty(value).unwrap(),
    );
    let dir = "forgery";
    sandbox.git_as(
        user,
        dir,
        &["push", "origin", &format!("{commit}:{name}")],
        &[],
    )
}

/// A commit of the record `name` holding `file` with `text` as it is, made in the `forgery`
/// clone on the record's tip (not pushed).
pub(crate) fn record_commit_of_text(
    sandbox: &Sandbox,
    name: &str,
    file: &str,
    text: &str,
) -> String {
    let dir = "forgery";
    if !sandbox.path().join(dir).exists() {
        sandbox.git("", &["clone", "-q", "deploy.git", dir]);
    }
    sandbox.git(
        dir,
        &["fetch", "-q", "origin", "+refs/ferry/*:refs/ferry/*"],
    );
    let parent = std::process::Command::new("git")
        .current_dir(sandbox.path().join(dir))
        .args(["rev-parse", "--verify", "-q", name])
        .output()
        .unwrap();
    let parent = String::from_utf8(parent.stdout).unwrap().trim().to_owned();
    sandbox.git(dir, &["read-tree", "--empty"]);
    std::fs::write(sandbox.path().join(dir).join(file), text).unwrap();
    sandbox.git(dir, &["add", "-f", file]);
    let tree = sandbox.git(dir, &["write-tree"]);
    let mut args = vec!["commit-tree", tree.trim(), "-m", "crafted"];
    if !parent.is_empty() {
        args.extend(["-p", parent.as_str()]);
    }
    sandbox.git(dir, &args).trim().to_owned()
}

/// staging requires dev's deploy; whether `ferry promote dev staging` gets through.
pub(crate) fn promotion_passes(sandbox: &Sandbox, remote: &str) -> Run {
    sandbox
        .ferry(&["promote", "dev", "staging", "--remote", remote])
        .run()
}

pub(crate) fn require_dev_deploy(sandbox: &Sandbox) {
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["required_checks"] = json!(["ferry/deploy/dev"])
    });
}

/// A running agent, killed when the test ends (or by the test, with SIGKILL).
pub(crate) struct Running(std::process::Child);

impl Running {
    pub(crate) fn spawn(f: crate::common::Ferry) -> Running {
        let mut command = f.command;
        Running(
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

#[track_caller]
pub(crate) fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// Attack 1: forged records.

/// Each host reports to its own record, `refs/ferry/hosts/ENV/HOST`: even the reporter cannot
/// make one hold another host's status (which would let h2's record stand in for the canary),
/// report on a commit the repository does not have, add a field or a file, hide a record
/// under another name, or delete one (dropping a failure). Each push is refused and nothing
/// moves; the records the agents write pass the same hook.
#[test]
fn a_hosts_record_holds_that_hosts_report_on_a_commit_of_the_repository_only() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({"waves": [1, "100%"]}));
    let run = agent(&sandbox, &remote, "h2");
    run.assert_code(1);
    let before = sandbox.refs("deploy.git");
    fn success(r: &mut Value) {
        r["status"] = json!({"state": "success", "description": "deployed web 1.0.0",
                             "by": REPORTER, "at": NOW});
    }
    type Edit = fn(&mut Value);
    let attempts: [(&str, Edit); 3] = [
        ("holds that host's deploy status only", |r| {
            success(r);
            r["check"] = json!("ferry/deploy/dev/h1");
        }),
        ("a commit of this repository", |r| {
            success(r);
            r["commit"] = json!("1".repeat(40));
        }),
        ("a field ferry does not write", |r| {
            success(r);
            r["opens"] = json!("wave 2");
        }),
    ];
    for (refusal, edit) in attempts {
        let (ok, stderr) = forge_host(&sandbox, REPORTER, "h2", edit);
        assert!(!ok, "{stderr}");
        assert!(stderr.contains(refusal), "{refusal}: {stderr}");
    }
    // The canary's status, under a name no host has.
    let mut report = json!({"commit": sandbox.tip("dev"), "check": "ferry/deploy/dev/h1"});
    success(&mut report);
    for name in ["refs/ferry/hosts/dev/h1/extra", "refs/ferry/hosts/h1"] {
        let (ok, stderr) = forge_record(&sandbox, REPORTER, name, "host.json", &report);
        assert!(!ok, "{name}: {stderr}");
    }
    // Deleting h2's record.
    let (ok, stderr) = sandbox.git_as(
        REPORTER,
        "forgery",
        &["push", "origin", ":refs/ferry/hosts/dev/h2"],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("append-only"), "{stderr}");
    assert_eq!(sandbox.refs("deploy.git"), before);
    // Wave 2 still waits for the canary.
    still_waits(&sandbox, &remote, "h2");
}

/// mallory (who may push, but is not in `agent.reporters`) pushes statuses records with plain
/// git to open wave 2 before the canary, to shorten the canary's pause, and to fake the
/// aggregate. Each push is refused, the record does not move, and wave 2 keeps waiting.
#[test]
fn a_non_reporter_cannot_forge_a_hosts_report_or_the_aggregate() {
    let health = Health::start();
    let (sandbox, remote) = env(
        web(&health, &["h1", "h2", "h3"]),
        json!({"waves": [1, "100%"], "pause": "1h"}),
    );
    let deployed = |by: &str, since: i64| {
        json!({"state": "success", "description": "deployed web 1.0.0", "by": by, "at": since,
               "apps": {"web": {"state": "deployed", "version": "1.0.0", "wave": [1, 2],
                                "since": since}}})
    };
    // Before the canary ran: a record saying it deployed long ago, under either name.
    for by in ["mallory", REPORTER] {
        let (ok, stderr) = forge(&sandbox, "mallory", |r| {
            r["ferry/deploy/dev/h1"] = deployed(by, 1);
        });
        assert!(!ok, "{stderr}");
        assert!(stderr.contains("ferry/deploy/dev/h1"), "{stderr}");
    }
    assert!(record(&sandbox).is_null());
    still_waits(&sandbox, &remote, "h2");

    // The canary deploys; mallory moves its report back by two hours (to end the pause now),
    // keeping the reporter's name, and fakes the aggregate.
    agent(&sandbox, &remote, "h1").assert_code(0);
    let before = sandbox.refs("deploy.git");
    let (ok, stderr) = forge_host(&sandbox, "mallory", "h1", |r| {
        r["status"]["apps"]["web"]["since"] = json!(NOW - 7200);
        r["status"]["at"] = json!(NOW - 7200);
    });
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            "`ferry/deploy/dev/h1` is recorded as reported by `agent-dev`, but `mallory` is pushing"
        ),
        "{stderr}"
    );
    for (key, by) in [
        ("ferry/deploy/dev", "mallory"),
        ("ferry/deploy/dev", REPORTER),
        ("ferry/deploy/dev/h2", REPORTER),
    ] {
        let (ok, stderr) = forge(&sandbox, "mallory", |r| {
            r[key] = deployed(by, NOW);
        });
        assert!(!ok, "{key} by {by}: {stderr}");
    }
    // A host's own record: h2's report written by mallory, under either name.
    for by in ["mallory", REPORTER] {
        let (ok, stderr) = forge_host(&sandbox, "mallory", "h2", |r| {
            r["status"] = deployed(by, NOW);
        });
        assert!(!ok, "h2 by {by}: {stderr}");
    }
    assert_eq!(sandbox.refs("deploy.git"), before);
    // h2 still waits out the pause, and nobody wrote an aggregate.
    still_waits(&sandbox, &remote, "h2");
    assert!(aggregate(&sandbox).is_null(), "{}", record(&sandbox));
}

/// mallory deletes entries from the record: the failed host's report and the aggregate that
/// says dev's deploy failed. The record's history is append-only, but a new commit that drops
/// entries is accepted from anyone, so a reporter gated status can be removed by someone who
/// could not have written it. With an app that names no host ("counts the hosts that reported
/// it"), the healthy host's next report then writes the aggregate `success`, and the promotion
/// gated on it goes through: a failed deploy made green.
///
/// Reproduction (shell, a repository on a path with `agent.reporters: ["agent-dev"]`, app `web`
/// with no host and a health check that fails on host `a`): `USER=agent-dev ferry agent --once
/// --host b` (success), `--host a` (failure; aggregate failure); then as `USER=mallory`, a
/// commit of `refs/ferry/statuses/<tip>` whose `statuses.json` lacks `ferry/deploy/dev/a` and
/// `ferry/deploy/dev`, pushed with `git push`: accepted. `ferry agent --once --host b`: the
/// aggregate is `success`, "deployed on 1 host"; `--host a` does not report again.
#[test]
fn a_non_reporter_cannot_delete_a_failed_report_to_turn_the_deploy_green() {
    let health = Health::start();
    let (sandbox, remote) = env(
        json!({ "web": {
            "deployment_path": "/srv/web",
            "healthcheck_url": health.url,
            "healthcheck_timeout": "5s",
            "healthcheck_retries": 1,
        }}),
        json!({}),
    );
    require_dev_deploy(&sandbox);
    health.set("a", 500, 0);
    agent(&sandbox, &remote, "b").assert_code(0);
    agent(&sandbox, &remote, "a").assert_code(1);
    assert_eq!(aggregate(&sandbox)["state"], "failure");
    promotion_passes(&sandbox, &remote).assert_code(1);

    let before = sandbox.refs("deploy.git");
    let (ok, stderr) = forge(&sandbox, "mallory", |r| {
        let r = r.as_object_mut().unwrap();
        r.remove("ferry/deploy/dev/a");
        r.remove("ferry/deploy/dev");
    });
    let after = sandbox.refs("deploy.git");
    // What the agents make of the record now, whatever the hook said.
    agent(&sandbox, &remote, "b").assert_code(0);
    agent(&sandbox, &remote, "a");
    let shown = aggregate(&sandbox);
    let promoted = promotion_passes(&sandbox, &remote);
    assert!(
        !ok,
        "mallory's deletion landed; then dev's deploy became {shown} and the promotion exited {:?}",
        promoted.code
    );
    assert!(stderr.contains("ferry/deploy/dev"), "{stderr}");
    assert_eq!(before, after);
    assert_eq!(shown["state"], "failure", "{shown}");
    promoted.assert_code(1);
}

// Attack 2: races.

/// Ten agents of one environment deploy and report at the same moment: none fails on the
/// contention, every host's report lands, and the aggregate is written once, right.
#[test]
fn ten_agents_reporting_at_once_lose_nothing_and_write_the_aggregate_once() {
    let health = Health::start();
    let hosts: Vec<String> = (1..=10).map(|i| format!("h{i}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let (sandbox, remote) = env(web(&health, &names), json!({}));
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|host| scope.spawn(|| agent(&sandbox, &remote, host)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = all_deployed_and_reported(&sandbox, &names, &runs);
    assert_eq!(all["ferry/deploy/dev"]["state"], "success", "{all}");
    assert_eq!(
        all["ferry/deploy/dev"]["description"],
        "deployed on 10 hosts"
    );
    assert_eq!(aggregate_writes(&sandbox), 1);
}

/// Ten running agents (`--interval 1s`) roll out in waves `[1, 3, "100%"]` while someone else
/// keeps writing another check to the same record: the rollout completes, each host reports
/// deployed only after every host of the earlier waves did (replayed from the record's
/// history), and the aggregate is written once.
#[test]
fn ten_running_agents_and_a_busy_record_keep_the_waves_in_order() {
    let health = Health::start();
    let hosts: Vec<String> = (1..=10).map(|i| format!("h{i}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let (sandbox, remote) = env(web(&health, &names), json!({"waves": [1, 3, "100%"]}));
    let tip = sandbox.tip("dev");
    let _agents: Vec<Running> = names
        .iter()
        .map(|host| Running::spawn(agent_command(&sandbox, &remote, host, false)))
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // CI reporting a check on the same commit, over and over.
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let description = format!("run {n}");
                sandbox
                    .ferry(&[
                        "status", "set", &tip, "ci/test", "success", "--remote", &remote,
                    ])
                    .args(["--description", &description])
                    .run();
            }
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for("the aggregate", Duration::from_secs(120), || {
                aggregate(&sandbox)["state"] == "success"
            })
        }));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = outcome {
            std::panic::resume_unwind(e);
        }
    });
    for host in &names {
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    assert_eq!(
        aggregate(&sandbox)["description"],
        "deployed on 10 hosts",
        "{}",
        record(&sandbox)
    );
    assert_eq!(aggregate_writes(&sandbox), 1);
    // Each host's first health check, in the order the endpoint saw them: a host deploys
    // (and checks) only once its wave opened, after the earlier waves reported success.
    let hits = health.hits.lock().unwrap().clone();
    let first = |host: &str| hits.iter().position(|h| h == host).unwrap();
    let last_of = |wave: &[&str]| wave.iter().map(|h| first(h)).max().unwrap();
    let first_of = |wave: &[&str]| wave.iter().map(|h| first(h)).min().unwrap();
    assert!(last_of(&names[..1]) < first_of(&names[1..3]), "{hits:?}");
    assert!(last_of(&names[..3]) < first_of(&names[3..]), "{hits:?}");
    // CI's check is there too: nothing was lost to the agents' writes.
    assert_eq!(record(&sandbox)["ci/test"]["state"], "success");
}

/// Three running agents that poll every hour, each listening for triggers (signed with the
/// fleet's secret), `agent.trigger_urls` naming them all. h2 and h3 wait for the canary; when
/// h1's report finishes wave 1, h1 nudges them and they deploy within seconds, not at their
/// next poll half an hour away. A nudge is a trigger like the hook's: unsigned, it is refused.
#[test]
fn the_report_that_finishes_a_wave_nudges_the_next_waves_agents() {
    let health = Health::start();
    let names = ["h1", "h2", "h3"];
    let (sandbox, remote) = env(web(&health, &names), json!({"waves": [1, "100%"]}));
    let ports: Vec<u16> = names
        .iter()
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    sandbox.edit_env("dev", "dev", |env| {
        env["agent"]["interval"] = json!("1h");
        env["agent"]["trigger_urls"] = json!(
            ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}/trigger"))
                .collect::<Vec<_>>()
        );
    });
    let start = |i: usize, secret: &str| {
        Running::spawn(
            agent_command(&sandbox, &remote, names[i], false)
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", ports[i]))
                .env("FERRY_WEBHOOK_SECRET", secret),
        )
    };
    let waiting = |host: &str| {
        record(&sandbox)[format!("ferry/deploy/dev/{host}")]["apps"]["web"]["state"] == "waiting"
    };
    let _h2 = start(1, "fleet-secret");
    let _h3 = start(2, "fleet-secret");
    wait_for("h2 and h3 waiting", Duration::from_secs(60), || {
        waiting("h2") && waiting("h3")
    });

    // A canary whose nudges are unsigned (another secret): nobody moves.
    let mut h1 = start(0, "not-the-fleet-secret");
    wait_for("the canary's report", Duration::from_secs(60), || {
        record(&sandbox)["ferry/deploy/dev/h1"]["state"] == "success"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(waiting("h2") && waiting("h3"), "{}", record(&sandbox));
    assert_eq!(serves(&sandbox, "h2"), None);
    h1.kill();

    // The canary on a new commit, with the fleet's secret: its report nudges h2 and h3.
    sandbox.edit_env("dev", "dev", |env| env["description"] = json!("again"));
    let _h1 = start(0, "fleet-secret");
    wait_for("h2 and h3 deployed", Duration::from_secs(60), || {
        aggregate(&sandbox)["state"] == "success"
    });
    for host in names {
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
}

/// Eight agents over smart HTTP (each with its own cache, all pushing as the reporter with its
/// token) report at the same moment: the network push is the compare-and-swap, and nobody's
/// report is lost.
#[test]
fn eight_agents_over_http_reporting_at_once_lose_nothing() {
    let health = Health::start();
    let hosts: Vec<String> = (1..=8).map(|i| format!("h{i}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let (sandbox, _) = env(web(&health, &names), json!({}));
    let server = crate::common::http::GitHttp::serve_accounts(sandbox.path(), &[(REPORTER, "t0k")]);
    let url = server.url("deploy.git");
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|host| {
                let (url, sandbox) = (&url, &sandbox);
                scope.spawn(move || {
                    agent_command(sandbox, url, host, true)
                        .env("FERRY_GIT_TOKEN", "t0k")
                        .env("FERRY_USER", REPORTER)
                        .env(
                            "FERRY_CACHE_DIR",
                            &root(sandbox, host).join("cache").display().to_string(),
                        )
                        .run_within(Duration::from_secs(180))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = all_deployed_and_reported(&sandbox, &names, &runs);
    assert_eq!(
        all["ferry/deploy/dev"]["description"], "deployed on 8 hosts",
        "{all}"
    );
    assert_eq!(aggregate_writes(&sandbox), 1);
}

/// Arms a race, once: the next push that git receives for dev's tip's statuses
/// record finds that another writer's report (CI's `check`, success) landed while it was in
/// flight, so git refuses it as a lost compare-and-swap. The repository's own hook still
/// judges every push (it is wrapped, not replaced).
fn race_next_status_push(sandbox: &Sandbox, remote: &str, check: &str) {
    let tip = sandbox.tip("dev");
    let refname = format!("refs/ferry/statuses/{tip}");
    let before = sandbox.git("deploy.git", &["rev-parse", &refname]);
    sandbox
        .ferry(&["status", "set", &tip, check, "success", "--remote", remote])
        .run()
        .assert_code(0);
    let won = sandbox.git("deploy.git", &["rev-parse", &refname]);
    sandbox.git("deploy.git", &["update-ref", &refname, before.trim()]);
    let hooks = sandbox.path().join("deploy.git/hooks");
    if !hooks.join("pre-receive.ferry").exists() {
        std::fs::rename(hooks.join("pre-receive"), hooks.join("pre-receive.ferry")).unwrap();
        let wrapper = hooks.join("pre-receive");
        std::fs::write(
            &wrapper,
            "#!/bin/sh\n\
             # Once armed, on a push to the armed ref: another writer's push lands first\n\
             # (outside the quarantine).\n\
             input=$(cat)\n\
             if [ -f race ] && read -r refname new old < race \\\n\
             \t&& printf '%s\\n' \"$input\" | grep -q \" $refname\\$\" && rm race; then\n\
             \tenv -u GIT_QUARANTINE_PATH git update-ref \"$refname\" \"$new\" \"$old\" || exit 1\n\
             fi\n\
             printf '%s\\n' \"$input\" | \"$(dirname \"$0\")/pre-receive.ferry\"\n",
        )
        .unwrap();
        let mut mode = std::fs::metadata(&wrapper).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
        std::fs::set_permissions(&wrapper, mode).unwrap();
    }
    std::fs::write(
        sandbox.path().join("deploy.git/race"),
        format!("{refname} {} {}\n", won.trim(), before.trim()),
    )
    .unwrap();
}

/// bench/fleet.sh, 50 agents in waves `[1, "50%", "100%"]`: when every host reported to the
/// commit's one statuses record, the 49 waiting hosts and the reports of each wave refused
/// each other's compare-and-swap (153 to 262 pushes for 50 reports) and wave 2 opened 48 s
/// after the canary deployed. Each host now reports to its own record: a statuses record
/// that CI keeps busy (each push finds it moved) costs a host's report nothing, and the
/// aggregate, which does go to that record, is written again on the winner's statuses,
/// keeping them.
#[test]
fn hosts_report_past_a_busy_statuses_record_and_the_aggregate_keeps_what_ci_wrote() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({"waves": [1, "100%"]}));
    let server = crate::common::http::GitHttp::serve_accounts(sandbox.path(), &[(REPORTER, "t0k")]);
    let url = server.url("deploy.git");
    let over_http = |host: &str| {
        agent_command(&sandbox, &url, host, true)
            .env("FERRY_GIT_TOKEN", "t0k")
            .env("FERRY_USER", REPORTER)
            .run_within(Duration::from_secs(120))
    };
    let pushes = || {
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST ") && r.contains("git-receive-pack"))
            .count()
    };
    sandbox
        .ferry(&[
            "status",
            "set",
            &sandbox.tip("dev"),
            "ci/build",
            "success",
            "--remote",
            &remote,
        ])
        .run()
        .assert_code(0);

    race_next_status_push(&sandbox, &remote, "ci/test");
    let before = pushes();
    let run = over_http("h2");
    run.assert_code(1);
    assert!(
        run.stdout.contains("waiting (wave 2 of 2)"),
        "{}",
        run.render()
    );
    assert!(!run.stderr.contains("cannot report"), "{}", run.render());
    assert_eq!(pushes() - before, 1, "one push, to h2's own record");
    let all = record(&sandbox);
    assert_eq!(
        all["ferry/deploy/dev/h2"]["apps"]["web"]["state"], "waiting",
        "{all}"
    );
    assert!(
        sandbox.path().join("deploy.git/race").exists(),
        "the statuses record was not written"
    );

    // The canary reports to its own record too; wave 2 is still to go: no aggregate.
    let before = pushes();
    over_http("h1").assert_code(0);
    assert_eq!(pushes() - before, 1, "one push, to h1's own record");
    assert_eq!(record(&sandbox)["ferry/deploy/dev/h1"]["state"], "success");

    // h2 completes the rollout: its report, then the aggregate, which loses the race once
    // and lands on CI's statuses.
    let before = pushes();
    let run = over_http("h2");
    run.assert_code(0);
    assert!(!run.stderr.contains("cannot report"), "{}", run.render());
    assert!(
        !sandbox.path().join("deploy.git/race").exists(),
        "the race was run"
    );
    assert_eq!(
        pushes() - before,
        3,
        "h2's record, then the aggregate twice"
    );
    let all = record(&sandbox);
    assert_eq!(all["ferry/deploy/dev"]["state"], "success", "{all}");
    for check in [
        "ci/build",
        "ci/test",
        "ferry/deploy/dev/h1",
        "ferry/deploy/dev/h2",
    ] {
        assert!(all.get(check).is_some(), "{check} kept: {all}");
    }
    assert_eq!(aggregate_writes(&sandbox), 1);
}

// Attack 3: SIGKILL in the middle of a rollout.

/// Starts `host`'s agent (running), waits until its health check is under way (the endpoint
/// holds the answer), checks that `waiting` hosts still wait, and kills it with SIGKILL.
fn kill_mid_check(sandbox: &Sandbox, remote: &str, health: &Health, host: &str, waiting: &[&str]) {
    health.hits.lock().unwrap().clear();
    health.set(host, 200, 50_000);
    let mut agent_process = Running::spawn(agent_command(sandbox, remote, host, false));
    wait_for("the health check", Duration::from_secs(60), || {
        health.hit(host)
    });
    for other in waiting {
        still_waits(sandbox, remote, other);
    }
    agent_process.kill();
}

/// The canary's agent is killed (SIGKILL) while its health check is pending, on two commits:
/// restarted healthy, the rollout completes; restarted unhealthy, it halts. While the canary
/// is undecided, and after it failed, no host of wave 2 takes the new commit.
#[test]
fn a_canary_killed_during_its_health_check_never_lets_wave_two_in_early() {
    let health = Health::start();
    let (sandbox, remote) = env(
        web(&health, &["h1", "h2", "h3"]),
        json!({"waves": [1, "100%"]}),
    );
    kill_mid_check(&sandbox, &remote, &health, "h1", &["h2", "h3"]);
    assert_ne!(
        record(&sandbox)["ferry/deploy/dev/h1"]["state"],
        "success",
        "{}",
        record(&sandbox)
    );
    for host in ["h2", "h3"] {
        agent(&sandbox, &remote, host).assert_code(1);
        assert_eq!(serves(&sandbox, host), None);
    }
    // Restarted healthy, the canary finishes its switch; then wave 2.
    health.set("h1", 200, 0);
    agent(&sandbox, &remote, "h1").assert_code(0);
    assert_eq!(serves(&sandbox, "h1").as_deref(), Some("web 1.0.0\n"));
    for host in ["h2", "h3"] {
        agent(&sandbox, &remote, host).assert_code(0);
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    assert_eq!(aggregate(&sandbox)["description"], "deployed on 3 hosts");
    assert_eq!(aggregate_writes(&sandbox), 1);

    // 1.1.0: killed mid-check, then restarted unhealthy: halted, wave 2 keeps 1.0.0.
    bump(
        &sandbox,
        &remote,
        "1.1.0",
        &artifact(&sandbox, "1.1.0"),
        false,
    );
    kill_mid_check(&sandbox, &remote, &health, "h1", &["h2", "h3"]);
    health.set("h1", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    for host in ["h2", "h3"] {
        let run = agent(&sandbox, &remote, host);
        run.assert_code(1);
        assert!(
            run.stdout.contains("halted at wave 1 of 2"),
            "{}",
            run.render()
        );
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    assert_eq!(aggregate(&sandbox)["state"], "failure");
}

/// The canary's agent is killed (SIGKILL) while the health check of its new release is
/// pending; restarted, it runs the check it had not finished, which fails. The release that
/// failed stays live: the link is not put back on the previous release (nor removed, on a
/// first deploy), the host reports `failed` instead of `rolled back`, and the next reconciles
/// leave it so. Not specific to fleets: one host without `hosts` does the same.
///
/// Reproduction (one host): a health endpoint that holds its answer; `ferry agent --env dev
/// --root r` (running); once the link points at the new release, `kill -9`; make the endpoint
/// answer 500; `ferry agent --env dev --root r --once`: "failed: web: health check … HTTP 500",
/// and `readlink r/srv/web` is still the new release (1.1.0; expected 1.0.0, or no link on a
/// first deploy).
#[test]
fn a_canary_killed_during_its_health_check_rolls_back_when_the_check_fails_on_restart() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({"waves": [1, "100%"]}));
    // A first deploy: killed mid-check, unhealthy on restart: nothing may stay live.
    kill_mid_check(&sandbox, &remote, &health, "h1", &["h2"]);
    health.set("h1", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    let first = serves(&sandbox, "h1");
    // A later deploy: the previous release must come back.
    health.set("h1", 200, 0);
    sandbox
        .ferry(&["agent", "retry", "--env", "dev", "--state-dir"])
        .arg(root(&sandbox, "h1").join("state"))
        .run()
        .assert_code(0);
    agent(&sandbox, &remote, "h1").assert_code(0);
    agent(&sandbox, &remote, "h2").assert_code(0);
    bump(
        &sandbox,
        &remote,
        "1.1.0",
        &artifact(&sandbox, "1.1.0"),
        false,
    );
    kill_mid_check(&sandbox, &remote, &health, "h1", &["h2"]);
    health.set("h1", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    let later = serves(&sandbox, "h1");
    let reported = record(&sandbox)["ferry/deploy/dev/h1"]["apps"]["web"]["state"].clone();
    assert_eq!(
        first, None,
        "first deploy; later: {later:?}, reported {reported}"
    );
    assert_eq!(later.as_deref(), Some("web 1.0.0\n"), "reported {reported}");
    assert_eq!(reported, "rolled_back");
}

// Attack 4: odd placements.

/// `web` on [h1, h2] and `api` on [h2, h1], waves `[1, "100%"]`: each host is the other's
/// canary. Nobody deadlocks waiting for the other's whole host to finish, and each app's wave
/// 2 waits for that app's canary only.
#[test]
fn a_host_in_two_apps_at_different_waves_neither_deadlocks_nor_skips_a_wave() {
    let health = Health::start();
    let mut apps = web(&health, &["h1", "h2"]);
    apps["api"] = json!({"hosts": ["h2", "h1"], "deployment_path": "/srv/api"});
    let (sandbox, remote) = env_with(&["api"], apps, json!({"waves": [1, "100%"]}));
    let has = |host: &str, app: &str| root(&sandbox, host).join("root/srv").join(app).exists();
    // h1: web's canary, api's wave 2 (api's canary h2 has not run).
    let run = agent(&sandbox, &remote, "h1");
    run.assert_code(1);
    assert!(
        run.stdout.contains("api: waiting (wave 2 of 2)"),
        "{}",
        run.render()
    );
    assert!(has("h1", "web") && !has("h1", "api"));
    // h2: api's canary, and web's wave 2, open since h1 deployed web.
    agent(&sandbox, &remote, "h2").assert_code(0);
    assert!(has("h2", "web") && has("h2", "api"));
    agent(&sandbox, &remote, "h1").assert_code(0);
    assert!(has("h1", "api"));
    assert_eq!(aggregate(&sandbox)["description"], "deployed on 2 hosts");
}

/// Six waves for two hosts and `max_failures: 10`: both hosts fail. The rollout finishes as
/// a failure (never success), and `ferry status` counts two failed hosts.
#[test]
fn more_waves_than_hosts_and_max_failures_past_the_fleet_still_fail_when_all_fail() {
    let health = Health::start();
    let (sandbox, remote) = env(
        web(&health, &["h1", "h2"]),
        json!({"waves": [1, 2, 3, 4, 5, "100%"], "max_failures": 10}),
    );
    health.set("h1", 500, 0);
    health.set("h2", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    agent(&sandbox, &remote, "h2").assert_code(1);
    let all = aggregate(&sandbox);
    assert_eq!(all["state"], "failure", "{}", record(&sandbox));
    assert!(
        all["description"]
            .as_str()
            .unwrap()
            .starts_with("finished with 2 of 2 hosts failed"),
        "{all}"
    );
    let shown = sandbox
        .ferry(&["status", "dev", "--format", "json", "--remote", &remote])
        .run();
    shown.assert_code(0);
    let rollout = &shown.json()[0]["rollouts"]["web"];
    assert_eq!(rollout["failed"], 2, "{rollout}");
    assert_eq!(rollout["deployed"], 0, "{rollout}");
}

/// A fleet app beside an app that names no host: when the no-host app fails on a host outside
/// the fleet, the last fleet host completing its rollout does not write the aggregate back to
/// success.
#[test]
fn a_failed_app_without_hosts_keeps_the_aggregate_failed_when_the_fleet_completes() {
    let health = Health::start();
    let mut apps = web(&health, &["h1", "h2"]);
    apps["logs"] = json!({"deployment_path": "/srv/logs",
        "healthcheck_url": health.url, "healthcheck_retries": 1});
    let (sandbox, remote) = env_with(&["logs"], apps, json!({}));
    require_dev_deploy(&sandbox);
    health.set("x", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(0);
    agent(&sandbox, &remote, "x").assert_code(1);
    agent(&sandbox, &remote, "h2").assert_code(0);
    let all = aggregate(&sandbox);
    assert_eq!(all["state"], "failure", "{}", record(&sandbox));
    assert!(
        all["description"]
            .as_str()
            .unwrap()
            .contains("x 1.0.0 failed"),
        "{all}"
    );
    promotion_passes(&sandbox, &remote).assert_code(1);
}

/// Host names at the limit: a fleet whose host would make a status name past 128 characters
/// is refused by the hook (with the file, line and column); `--host` with anything but the
/// allowed characters is refused before any work (exit 2).
#[test]
fn host_names_past_the_limits_are_refused_before_anything_happens() {
    let sandbox = Sandbox::new();
    sandbox.init("development-east");
    let long = "h".repeat(100);
    sandbox.git(
        "",
        &[
            "clone",
            "-q",
            "-b",
            "development-east",
            "deploy.git",
            "work",
        ],
    );
    let path = sandbox
        .path()
        .join("work/environments/development-east.json");
    let mut env: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    env["apps"] = json!({"web": {"hosts": [long], "deployment_path": "/srv/web"}});
    std::fs::write(&path, serde_json::to_string_pretty(&env).unwrap()).unwrap();
    sandbox.git("work", &["commit", "-qam", "a long host"]);
    let (ok, stderr) = sandbox.git_as("ci-bot", "work", &["push", "origin", "HEAD"], &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("longer than a check name may be (128 characters)"),
        "{stderr}"
    );

    let remote = sandbox.remote();
    for host in ["a/b", "../x", "", "h 1", "é", "h1;rm", "..", "-h", "h\n1"] {
        let run = sandbox
            .ferry(&[
                "agent",
                "--env",
                "development-east",
                "--once",
                "--remote",
                &remote,
            ])
            .arg(format!("--host={host}"))
            .arg("--root")
            .arg(sandbox.path().join("root"))
            .run();
        run.assert_code(2);
        assert!(
            run.stderr.contains("cannot name a host"),
            "{}",
            run.render()
        );
    }
}

/// A `--host` of 100 characters is a valid host name, but in an environment whose name is
/// longer than 14 characters its status, `ferry/deploy/ENV/HOST`, is past the 128 characters a
/// check name may have. An app that names no host runs there: the agent deploys it, its report
/// is refused by the hook (a warning), and `--once` still exits 0, "deployed", with nothing
/// reported. The host name is refused only after the deploy; `a/b` is refused up front.
///
/// Reproduction: `ferry init --envs development-east`; pin `web` with no host; `ferry agent
/// --env development-east --once --host $(printf 'h%.0s' {1..100}) --root r`: WARN "cannot
/// report …: the check name … is longer than 128 characters", exit 0.
#[test]
fn a_host_whose_status_name_is_too_long_is_refused_up_front() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("development-east");
    let file = artifact(&sandbox, "1.0.0");
    sandbox
        .ferry(&["bump", "web", "1.0.0", "--env", "development-east", "--add"])
        .args(["--remote", &remote])
        .args(["--url", &format!("file://{}", file.display())])
        .arg("--artifact")
        .arg(&file)
        .run()
        .assert_code(0);
    sandbox.edit_env("development-east", "development-east", |env| {
        env["apps"] = json!({"web": {"deployment_path": "/srv/web"}});
    });
    let long = "h".repeat(100);
    let run = sandbox
        .ferry(&[
            "agent",
            "--env",
            "development-east",
            "--once",
            "--remote",
            &remote,
        ])
        .args(["--host", &long])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .run();
    let served = sandbox.path().join("root/srv/web/index.html").exists();
    assert_eq!(run.code, Some(2), "deployed: {served}\n{}", run.render());
    assert!(
        run.stderr.contains("cannot name a host"),
        "{}",
        run.render()
    );
    assert!(!served);
}

/// `rollout.pause` past 292 years (`106752d`), or a wave past 4,294,967,295 hosts: every other
/// duration of an environment file (`agent.interval`, `policy.soak`, `healthcheck_timeout`) is
/// refused there ("too long a duration"), and `max_failures` past 100,000 too. These are not:
/// `ferry validate` says the files are valid but counts one environment fewer ("2
/// environments ()"), the hook lets the push in, dev's agents stall with "branch `dev` has no
/// environment `dev`", and `ferry status` fails for every environment ("has no valid
/// environment branch").
///
/// Reproduction: in a checkout of a `ferry init` repository, add `"rollout": {"pause":
/// "106752d"}` (or `{"waves": [4294967296]}`, at the environment or in an app) to
/// `environments/dev.json`; `ferry validate .` exits 0 with "1 artifact, 2 environments ()";
/// `106751d` (or `4294967295`) gives 3 environments.
#[test]
fn a_pause_of_centuries_or_a_wave_of_billions_is_refused_as_invalid() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({"waves": [1, "100%"]}));
    sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", "work"]);
    let path = sandbox.path().join("work/environments/dev.json");
    let original: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let validate = |rollout: Value| {
        let mut file = original.clone();
        file["rollout"] = rollout;
        std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
        sandbox
            .ferry(&["validate"])
            .arg(sandbox.path().join("work"))
            .run()
    };
    let waves = validate(json!({"waves": [4_294_967_296_u64]}));
    let pause = validate(json!({"waves": [1, "100%"], "pause": "106752d"}));
    sandbox.git("work", &["commit", "-qam", "a pause of centuries"]);
    let (ok, stderr) = sandbox.git_as("ci-bot", "work", &["push", "origin", "dev"], &[]);
    let run = agent(&sandbox, &remote, "h1");
    assert_eq!(
        pause.code,
        Some(1),
        "pushed: {ok}; h1's agent: {}\n{}",
        run.render(),
        pause.render()
    );
    assert!(
        pause.stdout.contains("too long a duration"),
        "{}",
        pause.render()
    );
    assert!(!ok, "{stderr}");
    assert!(
        !run.stdout.contains("has no environment"),
        "{}",
        run.render()
    );
    assert_eq!(waves.code, Some(1), "{}", waves.render());
}

// Attack 5: clocks and crafted times.

/// The canary's clock is two hours behind: its report says it deployed two hours ago, and the
/// one-hour pause before wave 2 is measured from that. Wave 2 opens at once, although no
/// pause has passed on any clock since the report landed.
///
/// Reproduction: waves `[1, "100%"]`, pause `1h`; `FERRY_NOW=$((T-7200)) ferry agent --once
/// --host h1`, then `FERRY_NOW=$T ferry agent --once --host h2`: h2 deploys (expected: waiting,
/// "wave 2 opens at T+1h"). A reporter can also push `since: -9223372036854775808`: the hook
/// takes it, and wave 2 opens at once.
#[test]
fn a_canary_with_a_slow_clock_does_not_shorten_the_pause() {
    let health = Health::start();
    let (sandbox, remote) = env(
        web(&health, &["h1", "h2"]),
        json!({"waves": [1, "100%"], "pause": "1h"}),
    );
    agent_command(&sandbox, &remote, "h1", true)
        .env("FERRY_NOW", &(NOW - 7200).to_string())
        .run()
        .assert_code(0);
    let run = agent(&sandbox, &remote, "h2");
    assert_eq!(serves(&sandbox, "h2"), None, "{}", run.render());
    run.assert_code(1);
    assert!(
        run.stdout.contains("waiting (wave 2 of 2)"),
        "{}",
        run.render()
    );
    // An hour later by h2's clock, the wave opens.
    agent_command(&sandbox, &remote, "h2", true)
        .env("FERRY_NOW", &(NOW + 3600).to_string())
        .run()
        .assert_code(0);
}

// Attack 6: `ferry status` on halted, partial, unreported and crafted states.

/// `ferry status dev --hosts` and `--format json` before any report, with the canary's wave
/// under way, and halted: every host is listed, unreported ones as such, and the halt says
/// where and why.
#[test]
fn status_shows_unreported_partial_and_halted_rollouts() {
    let health = Health::start();
    let (sandbox, remote) = env(
        web(&health, &["h1", "h2", "h3"]),
        json!({"waves": [1, "100%"]}),
    );
    let status = |sandbox: &Sandbox| {
        let text = sandbox
            .ferry(&["status", "dev", "--hosts", "--remote", &remote])
            .run();
        text.assert_code(0);
        let json = sandbox
            .ferry(&[
                "status", "dev", "--hosts", "--format", "json", "--remote", &remote,
            ])
            .run();
        json.assert_code(0);
        (text.stdout, json.json()[0].clone())
    };
    // Nothing reported.
    let (text, json) = status(&sandbox);
    assert!(
        text.contains("web: 0/3 hosts at 1.0.0, wave 1 of 2"),
        "{text}"
    );
    assert_eq!(json["hosts"].as_array().unwrap().len(), 3, "{json}");
    assert!(
        json["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["state"] == "not reported"),
        "{json}"
    );
    assert!(json["deploy"].is_null(), "{json}");
    // h2 waits; the canary has not reported.
    agent(&sandbox, &remote, "h2").assert_code(1);
    let (text, json) = status(&sandbox);
    assert!(text.contains("h2    web  -        waiting"), "{text}");
    assert_eq!(json["rollouts"]["web"]["halted"], false, "{json}");
    // The canary fails: halted.
    health.set("h1", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    let (text, json) = status(&sandbox);
    assert!(
        text.contains("halted at wave 1 of 2: h1 1.0.0 failed"),
        "{text}"
    );
    assert_eq!(json["rollouts"]["web"]["halted"], true, "{json}");
    assert_eq!(json["deploy"]["state"], "failure", "{json}");
    assert!(text.contains("h3    web  -        not reported"), "{text}");
}

/// A reporter's record with `since` at the far ends of time (a broken clock, or a crafted
/// record the hook accepted): `ferry status dev --hosts` still answers. It panics instead
/// ("attempt to subtract with overflow", exit 101) on `since: -9223372036854775808`.
///
/// Reproduction: as `agent-dev`, push a commit of a host's record with `apps.web.since` set
/// to `-9223372036854775808`; `ferry status dev --hosts`: exit 101 (in a release build the
/// subtraction wraps instead).
#[test]
fn status_survives_a_since_at_the_ends_of_time() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1", "h2"]), json!({}));
    agent(&sandbox, &remote, "h1").assert_code(0);
    agent(&sandbox, &remote, "h2").assert_code(0);
    for since in [i64::MAX, i64::MIN, -1] {
        let (ok, stderr) = forge_host(&sandbox, REPORTER, "h1", |r| {
            r["status"]["apps"]["web"]["since"] = json!(since);
        });
        if !ok {
            // Refusing such a record is as safe as showing it.
            assert!(stderr.contains("since"), "{stderr}");
            continue;
        }
        for args in [&["--hosts"][..], &["--hosts", "--format", "json"], &[]] {
            let run = sandbox
                .ferry(&["status", "dev", "--remote", &remote])
                .args(args)
                .run();
            assert_eq!(
                run.code,
                Some(0),
                "since {since}, {args:?}: {}",
                run.render()
            );
        }
    }
}

/// A reporter's message with terminal control characters (an escape sequence, a carriage
/// return, a newline): `ferry status dev --hosts` prints it raw to the terminal, so whoever
/// shapes an agent's message recolours or rewrites the operator's screen. Expected: the hook
/// refuses control characters in a status, or `ferry status` shows them escaped.
///
/// Reproduction: as `agent-dev`, push a commit of the record whose `apps.web.message` of a host
/// is "X\n\u001b[31mRED\r"; `ferry status dev --hosts | cat -A` shows `^[[31mRED` on its own
/// line.
#[test]
fn status_never_prints_a_reporters_control_characters() {
    let health = Health::start();
    let (sandbox, remote) = env(web(&health, &["h1"]), json!({}));
    agent(&sandbox, &remote, "h1").assert_code(0);
    let (ok, _) = forge(&sandbox, REPORTER, |r| {
        r["ferry/deploy/dev/h1"]["apps"]["web"]["message"] = json!("X\n\u{1b}[31mRED\r");
    });
    let run = sandbox
        .ferry(&["status", "dev", "--hosts", "--remote", &remote])
        .run();
    run.assert_code(0);
    assert!(
        !ok || !run.stdout.contains('\u{1b}') && !run.stdout.contains('\r'),
        "{:?}",
        run.stdout
    );
}
