//! `ferry quickstart`: the whole loop runs, leaves a repository that tells the story, and
//! leaves no process behind.

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
        "$ USER=ci-bot ferry bump web 1.0.0 --env dev --add",
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
