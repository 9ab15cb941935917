//! `ferry quickstart`: the whole loop runs, leaves a repository that tells the story, and
//! leaves no process behind.

use crate::common::Sandbox;

/// `ferry quickstart DIR` as a newcomer runs it: real time, no fixed dates.
fn quickstart(sandbox: &Sandbox, args: &[&str]) -> crate::common::Run {
    let mut ferry = sandbox.ferry(&["quickstart"]).args(args);
    for var in ["GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "FERRY_NOW"] {
        ferry.command.env_remove(var);
    }
    ferry.run()
}

/// Processes whose command line mentions `dir` (the agents it started would).
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && cmdline.contains("agent") {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn the_quickstart_runs_the_whole_loop_and_stops_its_agents() {
    let sandbox = Sandbox::new();
    let run = quickstart(&sandbox, &["demo"]);
    run.assert_code(0);
    let dir = sandbox.path().join("demo");
    let said = &run.stdout;
    for step in [
        "1. A deployment repository",
        "$ ferry init",
        "$ USER=ci-bot GIT_AUTHOR_NAME=ci-bot ferry bump web 1.0.0 --env dev --add",
        "$ USER=agent ferry agent --env prod",
        "dev's agent deployed web 1.0.0",
        "$ USER=alice ferry promote dev staging",
        "$ USER=carol ferry merge 2",
        "requires 1",
        "(no approval yet: refused, exit 1; nothing changed)",
        "prod's agent deployed web 1.0.0",
        "dev's agent deployed web 1.1.0",
        "$ ferry status",
        "Stopped the 3 agents",
    ] {
        assert!(said.contains(step), "no {step:?} in:\n{}", run.render());
    }

    // Each environment's host runs what its branch pins.
    let page = |env: &str| {
        std::fs::read_to_string(dir.join(env).join("srv/web/index.html")).expect("deployed")
    };
    assert_eq!(page("dev"), "hello from web 1.1.0\n");
    assert_eq!(page("staging"), "hello from web 1.0.0\n");
    assert_eq!(page("prod"), "hello from web 1.0.0\n");

    // Nothing it started still runs.
    assert_eq!(processes_in(&dir), Vec::<String>::new());

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

    // With `--format json`, the narration goes to stderr and stdout holds one summary.
    let run = quickstart(&sandbox, &["fresh", "--format", "json"]);
    run.assert_code(0);
    assert!(run.stderr.contains("$ ferry init"), "{}", run.render());
    let summary = run.json();
    let envs = summary["environments"].as_array().expect("environments");
    let serves: Vec<&str> = envs
        .iter()
        .map(|e| e["serves"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        serves,
        [
            "hello from web 1.1.0",
            "hello from web 1.0.0",
            "hello from web 1.0.0"
        ]
    );
    assert!(envs.iter().all(|e| e["ready"] == "ready"), "{summary}");
}
