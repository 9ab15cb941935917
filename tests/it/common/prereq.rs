//! What the tests need outside cargo, checked where it is used: a missing program or Python
//! module fails the test with one line naming the package that brings it (and `./test.sh`,
//! which installs every one), instead of a backtrace from deep inside a helper.

use std::path::PathBuf;
use std::process::Command;

/// The directory `./test.sh` puts the deploy checkers in (a venv's `checkers/`).
pub fn checkers_dir() -> PathBuf {
    if let Some(venv) = std::env::var_os("FERRY_CI_VENV") {
        return PathBuf::from(venv).join("checkers");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    cache.join("ferry-ci/venv/checkers")
}

/// PATH with `./test.sh`'s checkers first, so a plain `cargo test` after one `./test.sh`
/// finds them too.
pub fn path_with_checkers() -> std::ffi::OsString {
    let mut dirs = vec![checkers_dir()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).expect("PATH entries join")
}

/// Whether `program` is on PATH (or among the checkers).
pub fn on_path(program: &str) -> bool {
    std::env::split_paths(&path_with_checkers()).any(|dir| {
        let candidate = dir.join(program);
        std::fs::metadata(&candidate).is_ok_and(|m| m.is_file())
    })
}

/// Fails the test unless `program` is installed; `package` is what installs it.
pub fn require(program: &str, package: &str) {
    if !on_path(program) {
        missing(&format!("`{program}` ({package})"));
    }
}

/// Fails the test unless python3 can import `module`; `package` is its PyPI name and version.
pub fn require_python(module: &str, package: &str) {
    require("python3", "Debian package python3");
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing(&format!("the Python module `{module}` (PyPI {package})"));
    }
}

/// Fails the test with one line (no panic message or backtrace: `resume_unwind` skips the
/// panic hook).
fn missing(what: &str) -> ! {
    let line =
        format!("missing test prerequisite: {what}; `./test.sh` installs it and every other one");
    eprintln!("{line}");
    std::panic::resume_unwind(Box::new(line))
}

#[test]
fn a_missing_prerequisite_fails_in_one_line_naming_its_package() {
    let failure =
        std::panic::catch_unwind(|| require("ferry-no-such-tool", "Debian package nothing"))
            .expect_err("a missing program fails the test");
    let line = failure.downcast_ref::<String>().expect("the line");
    assert_eq!(
        line,
        "missing test prerequisite: `ferry-no-such-tool` (Debian package nothing); `./test.sh` installs it and every other one"
    );
    require("git", "Debian package git");
}
