//! The README's walkthroughs run verbatim: the shell block after `<!-- tested:
//! tests/it/readme.rs -->` (a deployment repository of one's own) and the one after `<!--
//! tested: tests/it/readme.rs (signed) -->` (the signed loop), each in an empty directory, with
//! only the built `ferry`, git, ssh-keygen and python3 on PATH, a fresh HOME (no git identity)
//! and no `USER`.

use std::process::Command;

use crate::common::Sandbox;

/// The shell block that follows `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let (_, rest) = readme.split_once(marker).expect("the marker in the README");
    let (_, rest) = rest.split_once("```sh\n").expect("a shell block after it");
    let (block, _) = rest.split_once("\n```").expect("the block's end");
    block.to_owned()
}

/// Runs the README's block after `marker` in `sandbox/walkthrough`: its stdout and stderr.
fn walkthrough(sandbox: &Sandbox, marker: &str) -> (std::path::PathBuf, String, String) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = block_after(&readme, marker);
    let dir = sandbox.path().join("walkthrough");
    std::fs::create_dir(&dir).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ferry"))
        .parent()
        .expect("the binary's directory");
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(&dir)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        )
        .env("HOME", sandbox.path().join("home"))
        .env("XDG_CACHE_HOME", sandbox.path().join("cache"))
        .env("XDG_STATE_HOME", sandbox.path().join("state"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("bash runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(
        output.status.success(),
        "the walkthrough failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (dir, stdout, stderr)
}

#[test]
fn the_own_repository_walkthrough_runs_as_written() {
    let sandbox = Sandbox::new();
    let (dir, stdout, stderr) = walkthrough(&sandbox, "<!-- tested: tests/it/readme.rs -->");
    for env in ["dev", "staging"] {
        let page = dir.join(format!("host-{env}/srv/web/index.html"));
        assert_eq!(
            std::fs::read_to_string(&page).unwrap_or_default(),
            "hello from web 1.0.0\n",
            "{env}:\n{stdout}\n{stderr}"
        );
    }
    assert!(!dir.join("host-prod/srv/web").exists());
    // The last promotion waits for its soak, and says so.
    assert!(stderr.contains("soak"), "{stderr}");
    // Commits are attributed to the login, which the walkthrough exported.
    let log = Command::new("git")
        .args([
            "--git-dir",
            "deploy.git",
            "log",
            "-1",
            "--format=%an",
            "staging",
        ])
        .current_dir(&dir)
        .env("HOME", sandbox.path().join("home"))
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).trim(),
        crate::common::login()
    );
}

/// The signed loop: ferry signs with CI's key, git verifies, the agent trusting that key
/// deploys, and an unsigned bump is refused by the repository's hook.
#[test]
fn the_signed_walkthrough_runs_as_written() {
    let sandbox = Sandbox::new();
    let (dir, stdout, stderr) =
        walkthrough(&sandbox, "<!-- tested: tests/it/readme.rs (signed) -->");
    assert_eq!(
        std::fs::read_to_string(dir.join("host/srv/web/index.html")).unwrap_or_default(),
        "hello from web 1.0.0\n",
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("Good \"git\" signature for ci@example.com"),
        "{stderr}"
    );
    assert!(stderr.contains("is unsigned"), "{stderr}");
    let history: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("SIGNED"))
        .collect();
    assert!(history.len() >= 3, "{stdout}");
    assert!(history[1].contains("ci@example.com"), "{stdout}");
    assert!(history[1].contains("web (new) → 1.0.0"), "{stdout}");
}
