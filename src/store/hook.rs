//! The hooks ferry installs in a local deployment repository: `pre-receive`, so that every push
//! (a plain `git push` included, and ferry's own updates: see `Store::update`) is judged by
//! `ferry hook pre-receive` against each environment's declared protection, and
//! `post-receive`, which logs each accepted push for `ferry audit`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::Repository;

/// The hooks ferry installs, and whether a push is refused when the hook cannot run ferry.
const HOOKS: [(&str, bool); 2] = [("pre-receive", true), ("post-receive", false)];

/// Where git runs the hooks of `repo` from: `core.hooksPath` (relative to the repository),
/// else its `hooks/`.
pub fn dir(repo: &Repository) -> PathBuf {
    repo.config()
        .ok()
        .and_then(|c| c.get_path("core.hooksPath").ok())
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo.path().join(p)
            }
        })
        .unwrap_or_else(|| repo.path().join("hooks"))
}

/// What a repository has as one of its hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    None,
    /// Someone else's hook: ferry leaves it alone.
    Foreign,
    /// ferry's, but not executable: git ignores it.
    NotExecutable,
    /// ferry's, running `binary` (which may have gone since).
    Ferry {
        binary: PathBuf,
    },
}

/// What `repo` has as its hook `name` (`pre-receive`, `post-receive`).
pub fn installed(repo: &Repository, name: &str) -> Installed {
    let path = dir(repo).join(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Installed::None;
    };
    let runs = format!("exec \"$FERRY\" hook {name}");
    let binary = text
        .lines()
        .find_map(|l| l.strip_prefix("FERRY='"))
        .and_then(|v| v.strip_suffix('\''))
        .map(|v| PathBuf::from(v.replace("'\\''", "'")));
    let (true, Some(binary)) = (text.lines().any(|l| l.trim() == runs), binary) else {
        return Installed::Foreign;
    };
    if !is_executable(&path) {
        return Installed::NotExecutable;
    }
    Installed::Ferry { binary }
}

pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
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

/// Installs (or refreshes) ferry's hooks in the directory git runs them from, running this
/// ferry executable (or, should it be gone, the `ferry` on the server's PATH). Refuses to
/// replace another program's hook. Returns where the pre-receive hook is.
pub fn install(repo: &Repository) -> io::Result<PathBuf> {
    let dir = dir(repo);
    for (name, _) in HOOKS {
        if installed(repo, name) == Installed::Foreign {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "`{}` is another program's hook; ferry does not replace it (call `ferry hook {name}` from it)",
                    dir.join(name).display()
                ),
            ));
        }
    }
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(&dir)?;
    for (name, refuse) in HOOKS {
        let path = dir.join(name);
        let temp = path.with_extension("ferry-new");
        std::fs::write(&temp, script(&exe, name, refuse))?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&temp, &path)?;
    }
    Ok(dir.join("pre-receive"))
}
