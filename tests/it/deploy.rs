//! The files under `deploy/` (systemd unit, container image, Kubernetes manifests, GitHub
//! workflows) pass their checkers: `deploy/check`, with this build's binary as the unit's
//! `ExecStart` and as the parser of the agent flags they use.

use std::process::Command;

#[test]
fn the_deploy_files_pass_their_checkers() {
    // PATH (where the checkers are) and FERRY_REQUIRE_CHECKERS are inherited.
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/check"))
        .env("FERRY_BIN", env!("CARGO_BIN_EXE_ferry"))
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
