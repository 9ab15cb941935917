//! `ferry dora` on a real history with known answers: real bumps, a real agent that deploys,
//! fails a health check and rolls back, real promotions (one a `--rollback`) and deploy
//! reports, each at a time the test sets (`GIT_AUTHOR_DATE` for commits, `FERRY_NOW` for
//! reports and requests).

use std::sync::atomic::Ordering;

use insta::assert_snapshot;
use serde_json::{Value, json};

use crate::agent::{artifact, bump_from, health_server, once, repo};
use crate::common::{Ferry, NOW, Sandbox};

/// Every commit of the fixture is at `T` unless the test says otherwise.
const T: i64 = 1_700_000_000;

/// `sandbox.ferry(args)` at `T + offset`: its commits, requests and reports.
fn at(sandbox: &Sandbox, offset: i64, args: &[&str]) -> Ferry {
    sandbox
        .ferry(args)
        .env("GIT_AUTHOR_DATE", &format!("{} +0000", T + offset))
        .env("FERRY_NOW", &(T + offset).to_string())
}

/// Pins `web` VERSION in dev at `T + offset`, from its artifact `file`.
fn bump_at(sandbox: &Sandbox, remote: &str, offset: i64, version: &str, extra: &[&str]) {
    let file = sandbox.path().join(format!("web-{version}.tgz"));
    if !file.exists() {
        artifact(sandbox, version);
    }
    let url = format!("file://{}", file.display());
    bump_from(sandbox, remote, version, &url, &file)
        .env("GIT_AUTHOR_DATE", &format!("{} +0000", T + offset))
        .env("FERRY_NOW", &(T + offset).to_string())
        .args(extra)
        .run()
        .assert_code(0);
}

/// One reconcile of dev's agent at `T + offset`, exiting `code`.
fn deploy_dev(sandbox: &Sandbox, remote: &str, offset: i64, code: i32) {
    once(sandbox, &["--remote", remote])
        .env("FERRY_NOW", &(T + offset).to_string())
        .run()
        .assert_code(code);
}

/// dev → staging, opened at `T + opened` and merged at `T + merged`.
fn promote(sandbox: &Sandbox, remote: &str, opened: i64, merged: i64, rollback: bool) {
    let mut args = vec!["promote", "dev", "staging", "--remote", remote];
    if rollback {
        args.push("--rollback");
    }
    at(sandbox, opened, &args).run().assert_code(0);
    let id = sandbox
        .git("deploy.git", &["for-each-ref", "refs/ferry/requests/"])
        .lines()
        .count()
        .to_string();
    at(sandbox, merged, &["merge", &id, "--remote", remote])
        .run()
        .assert_code(0);
}

/// staging's deploy reported green at `T + offset`, as its agent would.
fn staging_deployed(sandbox: &Sandbox, remote: &str, offset: i64) {
    at(
        sandbox,
        offset,
        &[
            "status",
            "set",
            "staging",
            "ferry/deploy/staging",
            "success",
            "--remote",
            remote,
        ],
    )
    .run()
    .assert_code(0);
}

fn figures(report: &Value) -> Value {
    json!({
        "deploys": report["deployment_frequency"]["deploys"],
        "per_day": report["deployment_frequency"]["per_day"],
        "lead": [
            report["lead_time"]["count"],
            report["lead_time"]["median_seconds"],
            report["lead_time"]["p90_seconds"],
        ],
        "failures": [
            report["change_failure_rate"]["failed"],
            report["change_failure_rate"]["deployments"],
        ],
        "restore": [
            report["time_to_restore"]["restored"],
            report["time_to_restore"]["median_seconds"],
            report["time_to_restore"]["p90_seconds"],
        ],
    })
}

/// The history, offsets from `T` (every fixture commit is at `T`):
///
/// - dev: web 1.0.0 bumped at 0, deployed at 600; 1.1.0 bumped at 3600, its health check
///   fails at 4200 (the agent rolls back); 1.2.0 bumped at 7200, deployed at 9000; 1.0.0
///   pinned again at 13000 (never deployed);
/// - staging: 1.0.0 promoted at 1000, reported deployed at 2400; 1.2.0 promoted at 10000,
///   deployed at 12000; rolled back to 1.0.0 by a `--rollback` promotion opened at 14000,
///   deployed at 15000.
#[test]
fn dora_figures_of_a_known_history() {
    let (url, answer) = health_server();
    let (sandbox, remote) = repo(json!({
        "healthcheck_url": url, "healthcheck_timeout": "2s", "healthcheck_retries": 1
    }));
    let remote = remote.as_str();
    let sandbox = &sandbox;
    deploy_dev(sandbox, remote, 600, 0);
    promote(sandbox, remote, 1_000, 1_200, false);
    staging_deployed(sandbox, remote, 2_400);
    bump_at(sandbox, remote, 3_600, "1.1.0", &[]);
    answer.store(500, Ordering::SeqCst);
    deploy_dev(sandbox, remote, 4_200, 1);
    answer.store(200, Ordering::SeqCst);
    bump_at(sandbox, remote, 7_200, "1.2.0", &[]);
    deploy_dev(sandbox, remote, 9_000, 0);
    promote(sandbox, remote, 10_000, 10_200, false);
    staging_deployed(sandbox, remote, 12_000);
    bump_at(sandbox, remote, 13_000, "1.0.0", &["--allow-downgrade"]);
    promote(sandbox, remote, 14_000, 14_400, true);
    staging_deployed(sandbox, remote, 15_000);
    let refs = sandbox.refs("deploy.git");

    let run = sandbox
        .ferry(&["dora", "--format", "json", "--remote", remote])
        .run();
    run.assert_code(0);
    let reports = run.json();
    let envs: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["env"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["dev", "staging", "prod"]);
    let (dev, staging, prod) = (&reports[0], &reports[1], &reports[2]);
    for r in [dev, staging, prod] {
        assert_eq!(r["from"], T, "{r}");
        assert_eq!(r["until"], NOW);
        assert_eq!(r["days"], 30.0);
        assert_eq!(r["first_env"], "dev");
        assert_eq!(r["series"]["days"].as_array().unwrap().len(), 31);
        for key in [
            "deployment_frequency",
            "lead_time",
            "change_failure_rate",
            "time_to_restore",
        ] {
            assert!(r[key]["derivation"].as_str().unwrap().len() > 40, "{key}");
        }
    }
    // dev: deployed at 600 and 9000; 1.1.0 failed and was rolled back (restored at 9000);
    // lead times 600 (1.0.0) and 1800 (1.2.0).
    assert_eq!(
        figures(dev),
        json!({
            "deploys": 2, "per_day": 2.0 / 30.0,
            "lead": [2, 600, 1_800],
            "failures": [1, 3],
            "restore": [1, 4_800, 4_800],
        })
    );
    let failure = &dev["series"]["failures"][0];
    assert_eq!(failure["at"], T + 4_200);
    let causes: Vec<&str> = failure["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["failed_report", "agent_rollback"]);
    assert_eq!(failure["causes"][1]["apps"], json!(["web"]));
    let said = failure["causes"][1]["description"].as_str().unwrap();
    assert!(said.contains("rolled back"), "{said}");
    let incident = &dev["series"]["incidents"][0];
    assert_eq!(
        (&incident["failed_at"], &incident["restored_at"]),
        (&json!(T + 4_200), &json!(T + 9_000))
    );
    assert_eq!(
        dev["series"]["lead_times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("{} {}", l["version"], l["seconds"]))
            .collect::<Vec<_>>(),
        ["\"1.0.0\" 600", "\"1.2.0\" 1800"]
    );
    let day = &dev["series"]["days"][0];
    assert_eq!(day["date"], "2023-11-14");
    assert_eq!((&day["deploys"], &day["failures"]), (&json!(1), &json!(1)));
    // staging: deployed at 2400, 12000, 15000; the rollback promotion fails the 1.2.0
    // deploy, from its opening (14000) to its deploy (15000); lead times 2400 (1.0.0 from its
    // bump in dev at 0) and 4800 (1.2.0 from 7200); the rollback is no new change.
    assert_eq!(
        figures(staging),
        json!({
            "deploys": 3, "per_day": 3.0 / 30.0,
            "lead": [2, 2_400, 4_800],
            "failures": [1, 3],
            "restore": [1, 1_000, 1_000],
        })
    );
    assert_eq!(
        staging["series"]["failures"][0]["causes"],
        json!([{"kind": "rollback_promotion", "request": 3}])
    );
    assert_eq!(
        staging["series"]["lead_times"][1]["bumped_at"],
        json!(T + 7_200)
    );
    // prod: nothing deployed, no data (null), not zero.
    assert_eq!(
        figures(prod),
        json!({
            "deploys": 0, "per_day": null,
            "lead": [0, null, null],
            "failures": [0, 0],
            "restore": [0, null, null],
        })
    );
    assert_eq!(prod["change_failure_rate"]["rate"], Value::Null);

    // From 5000 on: dev's deploy at 9000 only, no failure, nothing to restore.
    let run = sandbox
        .ferry(&[
            "dora",
            "dev",
            "--since",
            "2023-11-14T23:36:40Z",
            "--format",
            "json",
            "--remote",
            remote,
        ])
        .run();
    run.assert_code(0);
    let since = &run.json()[0];
    assert_eq!(since["from"], T + 5_000);
    assert_eq!(
        figures(since),
        json!({
            "deploys": 1, "per_day": 1.0 / ((NOW - T - 5_000) as f64 / 86_400.0),
            "lead": [1, 1_800, 1_800],
            "failures": [0, 1],
            "restore": [0, null, null],
        })
    );
    assert_eq!(since["change_failure_rate"]["rate"], 0.0);

    // For people: one line per figure, then how each was derived.
    let text = sandbox
        .ferry(&["dora", "staging", "--remote", remote])
        .run();
    text.assert_code(0);
    assert_snapshot!(text.render());
    let text = sandbox.ferry(&["dora", "prod", "--remote", remote]).run();
    text.assert_code(0);
    assert!(
        text.stdout
            .contains("deployment frequency   no data: no successful deploy in the period [1]"),
        "{}",
        text.stdout
    );

    // Over smart HTTP (a cache fetching the branches and the records), the same figures.
    let root = crate::common::http::project_root(sandbox.path());
    sandbox.git(
        "",
        &["clone", "-q", "--mirror", "deploy.git", "srv/deploy.git"],
    );
    let server = crate::common::http::GitHttp::serve(&root, None);
    let over_http = sandbox
        .ferry(&[
            "dora",
            "--format",
            "json",
            "--remote",
            &server.url("deploy.git"),
        ])
        .run();
    over_http.assert_code(0);
    assert_eq!(over_http.json(), reports);

    // Nothing was written.
    assert_eq!(sandbox.refs("deploy.git"), refs);
}

#[test]
fn dora_refuses_an_unknown_environment_and_a_bad_date() {
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging,prod");
    let refs = sandbox.refs("deploy.git");
    let run = sandbox.ferry(&["dora", "qa", "--remote", &remote]).run();
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("error: `qa` is not an environment of `[SANDBOX]/deploy.git`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: its environments: dev, staging, prod"),
        "{}",
        run.stderr
    );
    let run = sandbox
        .ferry(&[
            "dora",
            "dev",
            "--since",
            "last tuesday",
            "--remote",
            &remote,
        ])
        .run();
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("error: `--since last tuesday` is not a date or a time"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    // A repository with no deploy yet: every figure says so.
    let run = sandbox
        .ferry(&["dora", "dev", "--format", "json", "--remote", &remote])
        .run();
    run.assert_code(0);
    assert_eq!(
        run.json()[0]["deployment_frequency"]["per_day"],
        Value::Null
    );
    assert_eq!(sandbox.refs("deploy.git"), refs);

    // A deploy reported by someone staging's `agent.reporters` (as its branch declares them
    // now) does not name is not counted, and ferry says so.
    staging_deployed(&sandbox, &remote, 600);
    let counted = |sandbox: &Sandbox| {
        let run = sandbox
            .ferry(&["dora", "staging", "--format", "json", "--remote", &remote])
            .run();
        run.assert_code(0);
        (
            run.json()[0]["deployment_frequency"]["deploys"].clone(),
            run.stderr,
        )
    };
    assert_eq!(counted(&sandbox).0, 1);
    sandbox.edit_env("staging", "staging", |e| {
        e["agent"] = json!({"reporters": ["staging-agent"]})
    });
    let (deploys, said) = counted(&sandbox);
    assert_eq!(deploys, 0);
    assert!(
        said.contains(
            "note: 1 deploy report(s) of staging by `ci-bot` not counted: staging's deploys are reported by its `agent.reporters` only (staging-agent)"
        ),
        "{said}"
    );
}
