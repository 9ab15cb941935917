//! `ferry quickstart`: the whole loop runs (prod's fleet of three taking it canary first),
//! leaves a repository that tells the story, and leaves no process behind.

use crate::common::Sandbox;

/// A PATH with git and the shell's tools, and no `ferry` (as after a plain `cargo run`).
const PATH_WITHOUT_FERRY: &str = "/usr/local/bin:/usr/bin:/bin";

/// `ferry quickstart DIR` as a newcomer runs it: real time, no fixed dates, no git identity
/// (no `GIT_AUTHOR_NAME`, no `user.name`), and no `ferry` on PATH.
fn quickstart(sandbox: &Sandbox, args: &[&str]) -> crate::common::Run {
    let mut ferry = sandbox.ferry(&["quickstart"]).args(args);
    for var in [
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_DATE",
        "FERRY_NOW",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ] {
        ferry.command.env_remove(var);
    }
    ferry.command.env("PATH", PATH_WITHOUT_FERRY);
    ferry.run()
}

/// The lines the quickstart's epilogue says to paste, comments and all.
fn epilogue(stdout: &str) -> Vec<String> {
    stdout
        .split_once("Paste these lines in this shell to look around:\n")
        .expect("an epilogue")
        .1
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Agents running in `dir` (the quickstart starts its agents there, with paths relative to it):
/// processes whose working directory is `dir` and whose command line says `agent`.
fn agents_in(dir: &std::path::Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).expect("the quickstart's dir");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let (Ok(cmdline), Ok(cwd)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read_link(entry.path().join("cwd")),
        ) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cwd == dir && cmdline.contains(" agent ") {
            found.push(cmdline);
        }
    }
    found
}

/// The statuses reported on `branch`'s tip in the embedded forge's record.
fn statuses_on(sandbox: &Sandbox, remote: &std::path::Path, branch: &str) -> serde_json::Value {
    let remote = remote.display().to_string();
    let tip = sandbox.git(".", &["--git-dir", &remote, "rev-parse", branch]);
    crate::common::statuses_of(std::path::Path::new(&remote), tip.trim())
}

#[test]
fn the_quickstart_runs_the_whole_loop_and_stops_its_agents() {
    let sandbox = Sandbox::new();
    let run = quickstart(&sandbox, &["demo"]);
    run.assert_code(0);
    let dir = sandbox.path().join("demo");
    let said = &run.stdout;
    // It ends by offering the dashboard over what it made.
    assert!(
        said.contains("Then see it in a browser") && said.contains("\n  ferry serve "),
        "{said}"
    );
    for step in [
        "1. A deployment repository",
        "$ ferry init",
        "$ USER=ci-bot ferry bump web 1.0.0 --env dev --add",
        "$ USER=agent ferry agent --env dev --host dev-web --root dev ",
        "$ USER=agent ferry agent --env prod --host prod-web-1 --root prod/web-1 --state-dir prod/web-1/var/lib/ferry-agent ",
        "$ USER=agent ferry agent --env prod --host prod-web-3 --root prod/web-3 ",
        "2> prod/web-3/var/log/ferry-agent.log &",
        "/{host}/healthz",
        "dev's agent deployed web 1.0.0",
        "$ USER=alice ferry promote dev staging",
        "$ USER=carol ferry merge 2",
        "requires 1",
        "(no approval yet: refused, exit 1; nothing changed)",
        "prod's agents rolled web 1.0.0 out in ",
        "     prod-web-1 (canary, wave 1 of 2) deployed at 20",
        "(wave 2 of 2) deployed ",
        "The last to finish reported ferry/deploy/prod: success, \"deployed on 3 hosts\"",
        "prod/web-1/srv/web, prod/web-2/srv/web, prod/web-3/srv/web now serve \"hello from web 1.0.0\"",
        "dev's agent deployed web 1.1.0",
        "prod     prod-web-2  http://127.0.0.1:",
        "$ ferry status",
        "deployed on 3 hosts",
        "Stopped the 5 agents",
    ] {
        assert!(said.contains(step), "no {step:?} in:\n{}", run.render());
    }
    // The canary first, then the rest, in the order the quickstart saw: each host of the
    // second wave said it waited before it deployed.
    let rollout: Vec<&str> = said
        .lines()
        .skip_while(|l| !l.contains("prod's agents rolled web 1.0.0 out"))
        .skip(1)
        .take_while(|l| l.starts_with("     "))
        .collect();
    assert!(
        rollout[0].contains("prod-web-1 (canary, wave 1 of 2) deployed at "),
        "{rollout:#?}"
    );
    for host in ["prod-web-2", "prod-web-3"] {
        let waited = rollout
            .iter()
            .position(|l| l.contains(host) && l.contains(" said \"waiting (wave 2 of 2): "));
        let deployed = rollout
            .iter()
            .position(|l| l.contains(host) && l.contains("(wave 2 of 2) deployed "));
        assert!(
            matches!((waited, deployed), (Some(w), Some(d)) if 0 < w && w < d),
            "{host} waited, then deployed: {rollout:#?}"
        );
    }

    // Each environment's hosts run what its branch pins: prod's three too.
    let page = |root: &str| {
        std::fs::read_to_string(dir.join(root).join("srv/web/index.html")).expect("deployed")
    };
    assert_eq!(page("dev"), "hello from web 1.1.0\n");
    assert_eq!(page("staging"), "hello from web 1.0.0\n");
    for root in ["prod/web-1", "prod/web-2", "prod/web-3"] {
        assert_eq!(page(root), "hello from web 1.0.0\n", "{root}");
    }

    // Nothing it started still runs, though five agents ran (each left its status).
    assert_eq!(agents_in(&dir), Vec::<String>::new());
    for root in ["dev", "staging", "prod/web-1", "prod/web-2", "prod/web-3"] {
        assert!(
            dir.join(root)
                .join("var/lib/ferry-agent/status.json")
                .is_file(),
            "{root}'s agent ran"
        );
    }

    // prod's tip records the rollout: each host's wave and since when it runs 1.0.0, the
    // canary first; and the aggregate that the last host to finish wrote.
    let statuses = statuses_on(&sandbox, &dir.join("deploy.git"), "prod");
    let web = |host: &str| statuses[format!("ferry/deploy/prod/{host}")]["apps"]["web"].clone();
    for (host, wave) in [("prod-web-1", 1), ("prod-web-2", 2), ("prod-web-3", 2)] {
        assert_eq!(web(host)["state"], "deployed", "{statuses:#}");
        assert_eq!(web(host)["version"], "1.0.0", "{statuses:#}");
        assert_eq!(
            web(host)["wave"],
            serde_json::json!([wave, 2]),
            "{statuses:#}"
        );
    }
    let since = |host: &str| web(host)["since"].as_i64().expect("since");
    assert!(
        since("prod-web-1") <= since("prod-web-2") && since("prod-web-1") <= since("prod-web-3"),
        "the canary deployed first: {statuses:#}"
    );
    assert!(
        since("prod-web-2") - since("prod-web-1") >= 3,
        "the second wave waited out the 3s pause: {statuses:#}"
    );
    assert_eq!(statuses["ferry/deploy/prod"]["state"], "success");
    assert_eq!(
        statuses["ferry/deploy/prod"]["description"],
        "deployed on 3 hosts"
    );

    // The repository stays, and tells what happened: each environment's deploy reported on
    // its tip, and prod's history through a request nobody bypassed.
    let remote = dir.join("deploy.git").display().to_string();
    let status = sandbox
        .ferry(&["status", "--format", "json", "--remote", &remote])
        .run();
    status.assert_code(0);
    let envs = status.json();
    let envs = envs.as_array().expect("an array");
    assert_eq!(envs.len(), 3, "{envs:?}");
    for env in envs {
        assert_eq!(env["deploy"]["state"], "success", "{env}");
    }
    assert_eq!(envs[0]["apps"]["web"], "1.1.0");
    assert_eq!(envs[2]["apps"]["web"], "1.0.0");
    let audit = sandbox
        .ferry(&["audit", "prod", "--format", "json", "--remote", &remote])
        .run();
    audit.assert_code(0);
    assert!(
        audit.stdout.contains("\"carol\""),
        "prod's change was merged by carol:\n{}",
        audit.stdout
    );

    // What it says to paste runs as printed, from the checkout the quickstart was typed in,
    // with no `ferry` on PATH to begin with.
    let lines: Vec<String> = epilogue(said)
        .into_iter()
        .map(|l| l.replace("[SANDBOX]", &sandbox.path().display().to_string()))
        .collect();
    assert!(lines[0].starts_with("export FERRY_REMOTE="), "{lines:?}");
    assert!(lines[1].starts_with("export PATH="), "{lines:?}");
    let script = format!("set -e\n{}\n", lines.join("\n"));
    let output = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", PATH_WITHOUT_FERRY)
        .env("HOME", sandbox.path().join("home"))
        .env_remove("FERRY_REMOTE")
        .output()
        .expect("bash runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{script}\n{stdout}\n{stderr}");
    for said in [
        // ferry history prod
        "web (new) → 1.0.0",
        // ferry audit prod: every check that gated the promotion, with its state and reporter
        "checks: ferry/deploy/staging success by agent on ",
        "merged by carol",
        // ferry requests 2, for people: no block for bots
        "## Gates",
        // ferry diff dev prod
        "1.1.0",
        // ferry status prod --hosts: each host's report, and the aggregate
        "prod-web-3  web  1.0.0    deployed  2/2",
        "deploy success",
        "deployed on 3 hosts",
    ] {
        assert!(stdout.contains(said), "no {said:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("ferry:promotion"), "{stdout}");
    assert!(!stdout.contains("not logged"), "{stdout}");
    assert!(dir.join("work/environments/prod.json").is_file());
}

#[test]
fn the_quickstart_refuses_a_directory_that_is_not_empty_and_speaks_json() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("taken");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "mine\n").expect("write");
    let run = quickstart(&sandbox, &["taken"]);
    run.assert_code(1);
    assert!(run.stderr.contains("is not empty"), "{}", run.render());
    let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
    assert_eq!(
        left.len(),
        1,
        "nothing was added to a directory that was not empty"
    );

    // With `--format json`, the narration goes to stderr and stdout holds one summary. With no
    // `USER` or `LOGNAME` (some containers), its pushes are still attributed: to the login.
    let run = {
        let mut ferry = sandbox.ferry(&["quickstart", "fresh", "--format", "json"]);
        for var in [
            "GIT_AUTHOR_DATE",
            "GIT_COMMITTER_DATE",
            "FERRY_NOW",
            "USER",
            "LOGNAME",
        ] {
            ferry.command.env_remove(var);
        }
        ferry.run()
    };
    run.assert_code(0);
    assert!(run.stderr.contains("$ ferry init"), "{}", run.render());
    let summary = run.json();
    let envs = summary["environments"].as_array().expect("environments");
    let hosts: Vec<(&str, &str, &str)> = envs
        .iter()
        .flat_map(|e| {
            let env = e["env"].as_str().unwrap_or("");
            e["hosts"].as_array().into_iter().flatten().map(move |h| {
                (
                    env,
                    h["host"].as_str().unwrap_or(""),
                    h["serves"].as_str().unwrap_or(""),
                )
            })
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("dev", "dev-web", "hello from web 1.1.0"),
            ("staging", "staging-web", "hello from web 1.0.0"),
            ("prod", "prod-web-1", "hello from web 1.0.0"),
            ("prod", "prod-web-2", "hello from web 1.0.0"),
            ("prod", "prod-web-3", "hello from web 1.0.0"),
        ]
    );
    let ready = envs
        .iter()
        .flat_map(|e| e["hosts"].as_array().into_iter().flatten())
        .all(|h| h["ready"] == "ready");
    assert!(ready, "{summary}");
    assert!(
        summary["environments"][2]["hosts"][1]["url"]
            .as_str()
            .is_some_and(|url| url.ends_with("/prod-web-2/")),
        "{summary}"
    );
    let remote = sandbox.path().join("fresh/deploy.git");
    let audit = sandbox
        .ferry(&["audit", "dev", "--remote"])
        .arg(&remote)
        .run();
    audit.assert_code(0);
    assert!(!audit.stdout.contains("not logged"), "{}", audit.stdout);
    let login = crate::common::login();
    assert!(
        audit.stdout.contains(&format!("pushed by {login}")),
        "init and the settings were pushed by {login}:\n{}",
        audit.stdout
    );
}
