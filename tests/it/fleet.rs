//! Fleets: one app on four hosts, one real agent process per host (each with its own root and
//! state, all on this machine), rolled out in waves through the statuses the agents write to
//! the deployment repository; a health endpoint per host that the test controls.

use serde_json::{Value, json};

use crate::agent::{artifact, bump};
use crate::common::{Run, Sandbox};
use crate::fleet_attacks::{Health, Running, root, serves};

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

/// dev with `web` 1.0.0 pinned, on the four hosts in waves `[1, "100%"]`, health-checked
/// per host.
fn fleet(health: &Health, rollout: Value) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    bump(
        &sandbox,
        &remote,
        "1.0.0",
        &artifact(&sandbox, "1.0.0"),
        true,
    );
    sandbox.edit_env("dev", "dev", |env| {
        env["rollout"] = rollout;
        env["apps"] = json!({ "web": {
            "hosts": HOSTS,
            "deployment_path": "/srv/web",
            "healthcheck_url": health.url,
            "healthcheck_timeout": "2s",
            "healthcheck_retries": 1,
        }});
    });
    (sandbox, remote)
}

/// One reconcile of `host`'s agent.
fn agent(sandbox: &Sandbox, remote: &str, host: &str) -> Run {
    let root = root(sandbox, host);
    std::fs::create_dir_all(root.join("root")).unwrap();
    sandbox
        .ferry(&["agent", "--env", "dev", "--once", "--remote", remote])
        .args(["--host", host])
        .arg("--root")
        .arg(root.join("root"))
        .arg("--state-dir")
        .arg(root.join("state"))
        .run()
}

/// The statuses record on dev's tip.
fn statuses(sandbox: &Sandbox) -> Value {
    let all = crate::fleet_attacks::record(sandbox);
    assert!(!all.is_null(), "no statuses record on dev's tip");
    all
}

fn status_json(sandbox: &Sandbox, remote: &str) -> Value {
    let run = sandbox
        .ferry(&["status", "dev", "--format", "json", "--remote", remote])
        .run();
    run.assert_code(0);
    serde_json::from_str::<Value>(&run.stdout).unwrap()[0].clone()
}

#[test]
fn a_canary_goes_first_a_failed_one_halts_and_a_new_commit_rolls_out_again() {
    let health = Health::start();
    let (sandbox, remote) = fleet(&health, json!({"waves": [1, "100%"]}));

    // Wave 2 waits for the canary: h2 keeps what it has (nothing) and says why.
    let run = agent(&sandbox, &remote, "h2");
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("web: waiting (wave 2 of 2): wave 1 not finished"),
        "{}",
        run.render()
    );
    assert_eq!(serves(&sandbox, "h2"), None);
    assert_eq!(
        statuses(&sandbox)["ferry/deploy/dev/h2"]["state"],
        "pending"
    );
    assert_eq!(
        statuses(&sandbox)["ferry/deploy/dev/h2"]["apps"]["web"]["state"],
        "waiting"
    );
    // The canary deploys; then the rest; the last one writes the aggregate.
    agent(&sandbox, &remote, "h1").assert_code(0);
    assert_eq!(serves(&sandbox, "h1").as_deref(), Some("web 1.0.0\n"));
    assert!(statuses(&sandbox).get("ferry/deploy/dev").is_none());
    for host in &HOSTS[1..] {
        agent(&sandbox, &remote, host).assert_code(0);
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    let all = statuses(&sandbox);
    assert_eq!(all["ferry/deploy/dev"]["state"], "success");
    assert_eq!(
        all["ferry/deploy/dev"]["description"],
        "deployed on 4 hosts"
    );
    let shown = status_json(&sandbox, &remote);
    assert_eq!(shown["rollouts"]["web"]["deployed"], 4);
    assert_eq!(shown["hosts"].as_array().unwrap().len(), 4);

    // 1.1.0: the canary's health check fails; it rolls back and the rollout halts.
    bump(
        &sandbox,
        &remote,
        "1.1.0",
        &artifact(&sandbox, "1.1.0"),
        false,
    );
    health.set("h1", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    assert_eq!(serves(&sandbox, "h1").as_deref(), Some("web 1.0.0\n"));
    for host in &HOSTS[1..] {
        let run = agent(&sandbox, &remote, host);
        run.assert_code(1);
        assert!(
            run.stdout
                .contains("halted at wave 1 of 2: h1 1.1.0 failed"),
            "{}",
            run.render()
        );
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    let all = statuses(&sandbox);
    assert_eq!(all["ferry/deploy/dev"]["state"], "failure", "{all}");
    let said = all["ferry/deploy/dev"]["description"].as_str().unwrap();
    assert!(
        said.starts_with("web: halted at wave 1 of 2: h1 1.1.0 failed"),
        "{said}"
    );
    // `ferry status` says where and why.
    let run = sandbox
        .ferry(&["status", "dev", "--hosts", "--remote", &remote])
        .run();
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("web: 0/4 hosts at 1.1.0, halted at wave 1 of 2: h1 1.1.0 failed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("h1    web  1.0.0    rolled back  1/2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("h2    web  1.0.0    waiting      2/2"),
        "{}",
        run.stdout
    );
    // A promotion gated on dev's deploy is refused.
    sandbox.edit_env("staging", "staging", |e| {
        e["policy"]["required_checks"] = json!(["ferry/deploy/dev"])
    });
    let run = sandbox
        .ferry(&["promote", "dev", "staging", "--remote", &remote])
        .run();
    run.assert_code(1);
    assert!(run.stderr.contains("ferry/deploy/dev"), "{}", run.render());

    // A new commit (the fix, 1.2.0) starts a new rollout, canary first.
    health.set("h1", 200, 0);
    bump(
        &sandbox,
        &remote,
        "1.2.0",
        &artifact(&sandbox, "1.2.0"),
        false,
    );
    agent(&sandbox, &remote, "h3").assert_code(1);
    agent(&sandbox, &remote, "h1").assert_code(0);
    for host in &HOSTS[1..] {
        agent(&sandbox, &remote, host).assert_code(0);
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.2.0\n"));
    }
    assert_eq!(statuses(&sandbox)["ferry/deploy/dev"]["state"], "success");
    sandbox
        .ferry(&["promote", "dev", "staging", "--remote", &remote])
        .run()
        .assert_code(0);
}

#[test]
fn max_failures_lets_one_failure_through() {
    let health = Health::start();
    let (sandbox, remote) = fleet(&health, json!({"waves": [1, "100%"], "max_failures": 1}));
    health.set("h1", 500, 0);
    agent(&sandbox, &remote, "h1").assert_code(1);
    assert_eq!(
        serves(&sandbox, "h1"),
        None,
        "a first deploy that fails leaves nothing"
    );
    for host in &HOSTS[1..] {
        agent(&sandbox, &remote, host).assert_code(0);
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    let all = statuses(&sandbox);
    assert_eq!(all["ferry/deploy/dev"]["state"], "failure");
    let said = all["ferry/deploy/dev"]["description"].as_str().unwrap();
    assert!(
        said.starts_with("finished with 1 of 4 hosts failed: h1 web:"),
        "{said}"
    );
    let run = sandbox.ferry(&["status", "--remote", &remote]).run();
    assert!(
        run.stdout.contains("web: 3/4 hosts at 1.0.0, 1 failed"),
        "{}",
        run.stdout
    );
}

#[test]
fn drift_heals_on_its_host_only_and_a_host_taken_out_stops_reporting() {
    let health = Health::start();
    let (sandbox, remote) = fleet(&health, json!({}));
    for host in HOSTS {
        agent(&sandbox, &remote, host).assert_code(0);
    }
    assert_eq!(
        statuses(&sandbox)["ferry/deploy/dev"]["description"],
        "deployed on 4 hosts"
    );
    // Someone edits h3's live release by hand: h3's agent heals it, nobody else has work.
    let index = root(&sandbox, "h3").join("root/srv/web/index.html");
    std::fs::write(&index, "defaced\n").unwrap();
    let drift = |host: &str| -> u64 {
        let path = root(&sandbox, host).join("state/status.json");
        let status: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        status["drift_events"].as_u64().unwrap()
    };
    for host in HOSTS {
        agent(&sandbox, &remote, host).assert_code(0);
    }
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "web 1.0.0\n");
    assert_eq!(HOSTS.map(drift), [0, 0, 1, 0]);

    // h4 leaves the fleet: its agent idles, and the new commit's rollout counts three hosts.
    sandbox.edit_env("dev", "dev", |env| {
        env["apps"]["web"]["hosts"] = json!(["h1", "h2", "h3"]);
    });
    let run = agent(&sandbox, &remote, "h4");
    run.assert_code(1);
    assert!(
        run.stdout.contains("no app of `dev` runs on host `h4`"),
        "{}",
        run.stdout
    );
    for host in &HOSTS[..3] {
        agent(&sandbox, &remote, host).assert_code(0);
    }
    let all = statuses(&sandbox);
    assert!(all.get("ferry/deploy/dev/h4").is_none(), "{all}");
    assert_eq!(
        all["ferry/deploy/dev"]["description"],
        "deployed on 3 hosts"
    );
}

/// Four running agents at once: the waves open by themselves, within an interval of the
/// reports they wait for, and the aggregate is written once whatever the races.
#[test]
fn running_agents_roll_out_wave_by_wave_and_write_the_aggregate_once() {
    let health = Health::start();
    let (sandbox, remote) = fleet(&health, json!({"waves": [1, 2, "100%"]}));
    sandbox.edit_env("dev", "dev", |env| env["agent"] = json!({"interval": "1s"}));
    let _agents: Vec<Running> = HOSTS
        .iter()
        .map(|host| {
            let root = root(&sandbox, host);
            std::fs::create_dir_all(root.join("root")).unwrap();
            Running::spawn(
                sandbox
                    .ferry(&["agent", "--env", "dev", "--remote", &remote])
                    .args(["--host", host])
                    .arg("--root")
                    .arg(root.join("root"))
                    .arg("--state-dir")
                    .arg(root.join("state")),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    while crate::fleet_attacks::record(&sandbox)["ferry/deploy/dev"]["state"] != "success" {
        assert!(
            started.elapsed().as_secs() < 60,
            "{}",
            crate::fleet_attacks::record(&sandbox)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for host in HOSTS {
        assert_eq!(serves(&sandbox, host).as_deref(), Some("web 1.0.0\n"));
    }
    // Wave by wave: each host deployed no earlier than the hosts of the waves before it.
    let all = statuses(&sandbox);
    let since = |host: &str| {
        all[format!("ferry/deploy/dev/{host}")]["apps"]["web"]["since"]
            .as_i64()
            .unwrap()
    };
    assert!(since("h1") <= since("h2"), "{all}");
    assert!(
        since("h2") <= since("h3") && since("h2") <= since("h4"),
        "{all}"
    );
    // The record's history: the aggregate was set once.
    assert_eq!(crate::fleet_attacks::aggregate_writes(&sandbox), 1);
}
