//! The `pre-receive` hook ferry installs in a local deployment repository, so that every push
//! (a plain `git push` included, and ferry's own updates: see `Store::update`) is judged by
//! `ferry hook pre-receive` against each environment's declared protection.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the hook script runs, to recognize ferry's hook.
const MARKER: &str = "hook pre-receive";

/// The pre-receive hook of the bare repository at `git_dir`.
pub fn path(git_dir: &Path) -> PathBuf {
    git_dir.join("hooks").join("pre-receive")
}

/// What a repository has as its pre-receive hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    None,
    /// Someone else's hook: ferry leaves it alone.
    Foreign,
    /// ferry's, running `binary` (which may have gone since).
    Ferry {
        binary: PathBuf,
    },
}

pub fn installed(git_dir: &Path) -> Installed {
    let Ok(text) = std::fs::read_to_string(path(git_dir)) else {
        return Installed::None;
    };
    if !text.contains(MARKER) {
        return Installed::Foreign;
    }
    let binary = text
        .lines()
        .find_map(|l| l.strip_prefix("FERRY="))
        .map(|v| PathBuf::from(v.trim_matches('\'').replace("'\\''", "'")))
        .unwrap_or_default();
    Installed::Ferry { binary }
}

/// The script of hook `name`, running `exe` (or the `ferry` on PATH). Without a ferry, a hook
/// that judges (`refuse`) refuses the push; one that only records lets it be.
fn script(exe: &Path, name: &str, refuse: bool) -> String {
    let quoted = format!("'{}'", exe.display().to_string().replace('\'', "'\\''"));
    let shown = exe
        .display()
        .to_string()
        .replace(['"', '$', '`', '\\'], "_");
    let missing = if refuse {
        format!(
            "\techo \"ferry: this repository's {name} hook needs the ferry binary ({shown}), and this server has none: push refused\" >&2\n\texit 1\n"
        )
    } else {
        format!(
            "\techo \"ferry: this repository's {name} hook needs the ferry binary ({shown}): the push landed but is not logged\" >&2\n\texit 0\n"
        )
    };
    format!(
        "#!/bin/sh\n\
         # Installed by ferry (`ferry init`, `ferry protect apply --forge local`): every push is\n\
         # checked against the `protection` of each environment, as declared on its own branch,\n\
         # and logged for `ferry audit`.\n\
         FERRY={quoted}\n\
         if [ ! -x \"$FERRY\" ]; then FERRY=$(command -v ferry 2>/dev/null || true); fi\n\
         if [ -z \"$FERRY\" ] || [ ! -x \"$FERRY\" ]; then\n{missing}fi\n\
         exec \"$FERRY\" hook {name}\n"
    )
}

fn write_script(path: &Path, script: &str) -> io::Result<()> {
    let temp = path.with_extension("ferry-new");
    std::fs::write(&temp, script)?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&temp, path)
}

/// Installs (or refreshes) ferry's hook, running this ferry executable (or, should it be gone,
/// the `ferry` on the server's PATH). Refuses to replace someone else's hook.
pub fn install(git_dir: &Path) -> io::Result<PathBuf> {
    if installed(git_dir) == Installed::Foreign {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "`{}` is another program's hook; ferry does not replace it (call `ferry hook pre-receive` from it)",
                path(git_dir).display()
            ),
        ));
    }
    let exe = std::env::current_exe()?;
    let hooks = git_dir.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let hook = path(git_dir);
    write_script(&hook, &script(&exe, "pre-receive", true))?;
    // The push log for `ferry audit`, unless the repository has a post-receive of its own.
    let post = hooks.join("post-receive");
    let ours = std::fs::read_to_string(&post).map_or(true, |t| t.contains("hook post-receive"));
    if ours {
        write_script(&post, &script(&exe, "post-receive", false))?;
    } else {
        tracing::warn!(
            "{} is another program's hook: pushes are not logged for `ferry audit` (call `ferry hook post-receive` from it)",
            post.display()
        );
    }
    Ok(hook)
}
