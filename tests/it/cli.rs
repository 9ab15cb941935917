//! The command line as people expect it: shell completions, manual pages, and structured
//! logs for collectors.

use crate::common::Sandbox;

#[test]
fn completions_load_in_bash_and_name_every_command() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = sandbox.ferry(&["completions", shell]).run();
        run.assert_code(0);
        for command in ["quickstart", "promote", "agent"] {
            assert!(run.stdout.contains(command), "{shell}: no {command}");
        }
    }
    // bash itself loads the script and completes a subcommand.
    let script = sandbox.ferry(&["completions", "bash"]).run().stdout;
    std::fs::write(sandbox.path().join("ferry.bash"), script).unwrap();
    let output = std::process::Command::new("bash")
        .current_dir(sandbox.path())
        .args([
            "--norc",
            "-c",
            "source ./ferry.bash && COMP_WORDS=(ferry pro) COMP_CWORD=1 COMP_LINE='ferry pro' COMP_POINT=9 && _ferry ferry pro ferry && printf '%s\\n' \"${COMPREPLY[@]}\"",
        ])
        .output()
        .expect("bash");
    let replies = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        replies.split_whitespace().collect::<Vec<_>>(),
        ["promote", "protect"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // An unknown shell is a usage error.
    sandbox.ferry(&["completions", "tcsh"]).run().assert_code(2);
}

#[test]
fn man_writes_a_page_per_command_that_man_can_read() {
    let sandbox = Sandbox::new();
    let run = sandbox.ferry(&["man"]).run();
    run.assert_code(0);
    assert!(run.stdout.contains(".TH ferry 1"), "{}", run.stdout);
    let run = sandbox.ferry(&["man", "--out-dir", "man1"]).run();
    run.assert_code(0);
    let pages: Vec<String> = std::fs::read_dir(sandbox.path().join("man1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "ferry.1",
        "ferry-quickstart.1",
        "ferry-protect-check.1",
        "ferry-agent-retry.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
    }
    // Each page carries its command's examples.
    let bump = std::fs::read_to_string(sandbox.path().join("man1/ferry-bump.1")).unwrap();
    assert!(bump.contains("Examples:"), "{bump}");
    // man(1) renders it.
    crate::common::prereq::require("man", "Debian package man-db");
    let output = std::process::Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(sandbox.path().join("man1/ferry-promote.1"))
        .env("MANWIDTH", "80")
        .output()
        .expect("man runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("ferry-promote"), "{text}");
}

#[test]
fn json_logs_are_one_object_per_line_down_to_the_last_error() {
    let (sandbox, remote) = crate::agent::repo(serde_json::json!({}));
    let run = crate::agent::once(&sandbox, &["--remote", &remote, "--no-report"])
        .args(["-v", "--log-format", "json"])
        .run();
    run.assert_code(0);
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "{}", run.render());
    for line in &lines {
        for field in ["timestamp", "level", "message"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").contains("converged")),
        "{}",
        run.stderr
    );

    // The error that ends a command is a JSON line too, with its exit code and hint.
    let run = sandbox
        .ferry(&["validate", "no-such-dir"])
        .env("FERRY_LOG_FORMAT", "json")
        .run();
    run.assert_code(2);
    let last: serde_json::Value =
        serde_json::from_str(run.stderr.lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["exit_code"], 2, "{last}");
    assert!(
        last["hint"]
            .as_str()
            .unwrap_or("")
            .contains("manifest.json"),
        "{last}"
    );
}

/// A service that cannot be reached is exit 3 (retrying may help), not 1 (refused): a git
/// remote, a registry, GitHub's API.
#[test]
fn a_service_that_cannot_be_reached_exits_3() {
    let sandbox = crate::common::Sandbox::new();
    let remote = sandbox.init("dev,staging");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("127.0.0.1:{port}");
    let runs = [
        sandbox
            .ferry(&[
                "show",
                "dev",
                "--remote",
                &format!("http://{down}/deploy.git"),
            ])
            .run(),
        sandbox
            .ferry(&["publish", "dev", "--remote", &remote, "--to"])
            .arg(format!("oci://{down}/deploy"))
            .run(),
        sandbox
            .ferry(&[
                "promote",
                "dev",
                "staging",
                "--forge",
                "github",
                "--github-repo",
                "o/r",
                "--remote",
                &remote,
            ])
            .env("GITHUB_API_URL", &format!("http://{down}"))
            .env("GITHUB_TOKEN", "t")
            .run(),
    ];
    for run in runs {
        run.assert_code(3);
        assert!(
            run.stderr.lines().any(|l| l.starts_with("error: ")),
            "{}",
            run.render()
        );
    }
}
