//! The README's walkthrough of a deployment repository of one's own runs verbatim: the shell
//! block after `<!-- tested: tests/it/readme.rs -->`, in an empty directory, with only the
//! built `ferry`, git and python3 on PATH, a fresh HOME (no git identity) and no `USER`.

use std::process::Command;

use crate::common::Sandbox;

/// The shell block that follows `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let (_, rest) = readme.split_once(marker).expect("the marker in the README");
    let (_, rest) = rest.split_once("```sh\n").expect("a shell block after it");
    let (block, _) = rest.split_once("\n```").expect("the block's end");
    block.to_owned()
}

#[test]
fn the_own_repository_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = block_after(&readme, "<!-- tested: tests/it/readme.rs -->");
    let sandbox = Sandbox::new();
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
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the walkthrough failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
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
