//! The test harness: temporary deployment repositories and runs of the real `ferry` binary,
//! rendered for snapshots with temporary paths replaced.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The crate's own example deployment repository.
pub const EXAMPLE_FILES: [&str; 4] = [
    "manifest.json",
    "environments/dev.json",
    "environments/staging.json",
    "environments/prod.json",
];

/// A deployment repository in a temporary directory.
pub struct Repo {
    dir: TempDir,
}

impl Repo {
    /// An empty directory.
    pub fn empty() -> Repo {
        Repo {
            dir: tempfile::Builder::new()
                .prefix("ferry-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// A copy of the example repository shipped with ferry.
    pub fn example() -> Repo {
        let repo = Repo::empty();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in EXAMPLE_FILES {
            let text = std::fs::read_to_string(root.join(file)).expect("example file");
            repo.write(file, &text);
        }
        repo
    }

    /// Writes (or overwrites) a file.
    #[track_caller]
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &Repo {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, contents).expect("write");
        self
    }

    pub fn remove(&self, path: &str) -> &Repo {
        std::fs::remove_file(self.dir.path().join(path)).expect("remove");
        self
    }

    /// Edits a JSON file of the repository through serde_json (key order is kept).
    #[track_caller]
    pub fn edit_json(&self, path: &str, edit: impl FnOnce(&mut serde_json::Value)) -> &Repo {
        let full = self.dir.path().join(path);
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&full).expect("read")).expect("json");
        edit(&mut value);
        let text = serde_json::to_string_pretty(&value).expect("serialize") + "\n";
        std::fs::write(full, text).expect("write");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `ferry ARGS… PATH-of-this-repo` from the repository's directory.
    pub fn validate(&self, args: &[&str]) -> Run {
        let mut all = vec!["validate"];
        all.extend_from_slice(args);
        ferry(&all).current_dir(self.path()).run()
    }
}

/// A `ferry` process to run.
pub struct Ferry {
    pub command: Command,
    pub replace: Vec<(String, String)>,
}

/// `ferry ARGS…` with a cleared, predictable environment.
pub fn ferry(args: &[&str]) -> Ferry {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    Ferry {
        command,
        replace: Vec::new(),
    }
}

impl Ferry {
    pub fn current_dir(mut self, dir: &Path) -> Ferry {
        self.command.current_dir(dir);
        self.replace
            .push((dir.display().to_string(), "[REPO]".to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Ferry {
        self.command.env(key, value);
        self
    }

    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Ferry {
        self.command.args(args);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Ferry {
        self.command.arg(arg);
        self
    }

    /// Replaces `path` with `[name]` in the rendered output.
    pub fn redact(mut self, path: &Path, name: &str) -> Ferry {
        self.replace
            .push((path.display().to_string(), format!("[{name}]")));
        self
    }

    /// [`Ferry::run`], failing the test when ferry has not finished within `limit` (it is
    /// killed): for inputs that used to hang it.
    #[track_caller]
    pub fn run_within(mut self, limit: std::time::Duration) -> Run {
        use std::io::Read;
        let mut child = self
            .command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ferry");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferry did not finish within {limit:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let output = std::process::Output {
            status,
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        };
        self.finish(output)
    }

    #[track_caller]
    pub fn run(mut self) -> Run {
        let output = self.command.output().expect("run ferry");
        self.finish(output)
    }

    fn finish(self, output: std::process::Output) -> Run {
        let clean = |bytes: &[u8]| {
            let mut text = String::from_utf8_lossy(bytes).into_owned();
            for (from, to) in &self.replace {
                text = text.replace(from, to);
            }
            text
        };
        Run {
            code: output.status.code(),
            stdout: clean(&output.stdout),
            stderr: clean(&output.stderr),
        }
    }
}

/// What a finished `ferry` process did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit code, stdout and stderr, for snapshots.
    pub fn render(&self) -> String {
        format!(
            "exit: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code.map_or("signal".to_owned(), |c| c.to_string()),
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "{}", self.render());
        self
    }
}

/// Path of a file in the crate.
pub fn crate_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A digest that satisfies the schema.
pub const DIGEST: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

pub mod github;
pub mod gpg;
pub mod http;
pub mod hub;
pub mod prereq;
pub mod registry;

/// Fixed identity and time for every commit made in tests, so commit ids are reproducible.
pub const AUTHOR_DATE: &str = "1700000000 +0000";

/// "Now" for ferry in tests: 30 days after every commit's date.
pub const NOW: i64 = 1_700_000_000 + 30 * 86_400;

/// The login name of the user running the tests (`id -un`).
pub fn login() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A hermetic place for git work: its own HOME (no user git config), cache and identity.
pub struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("ferry-sandbox-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        // Where agents deploy (`--root`): it must exist.
        std::fs::create_dir_all(dir.path().join("root")).expect("root");
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path of the sandbox's default deployment repository.
    pub fn remote(&self) -> String {
        self.path().join("deploy.git").display().to_string()
    }

    fn hermetic(&self, command: &mut Command) {
        command
            .env("HOME", self.path().join("home"))
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "CI Bot")
            .env("GIT_AUTHOR_EMAIL", "ci@example.com")
            .env("GIT_AUTHOR_DATE", AUTHOR_DATE)
            .env("GIT_COMMITTER_NAME", "CI Bot")
            .env("GIT_COMMITTER_EMAIL", "ci@example.com")
            .env("GIT_COMMITTER_DATE", AUTHOR_DATE)
            .env("FERRY_NOW", NOW.to_string())
            // The login: who a repository on a path sees pushing (its hook's pusher).
            .env("USER", "ci-bot")
            .env_remove("LOGNAME")
            .env_remove("FERRY_SIGNING_KEY")
            .env_remove("FERRY_USER")
            .env_remove("REMOTE_USER");
    }

    /// `ferry ARGS…` in the sandbox, its path shown as `[SANDBOX]`.
    pub fn ferry(&self, args: &[&str]) -> Ferry {
        let mut f = ferry(args).current_dir(self.path());
        self.hermetic(&mut f.command);
        f.replace.retain(|(_, to)| to != "[REPO]");
        f.replace
            .push((self.path().display().to_string(), "[SANDBOX]".to_owned()));
        f
    }

    /// An empty bare repository, `srv/deploy.git`, served over smart HTTP (with `token`,
    /// only to clients that send it); the server and the repository's URL.
    pub fn serve_http(&self, token: Option<&str>) -> (http::GitHttp, String) {
        let root = http::project_root(self.path());
        self.git("", &["init", "-q", "--bare", "srv/deploy.git"]);
        let server = http::GitHttp::serve(&root, token);
        let url = server.url("deploy.git");
        (server, url)
    }

    /// `ferry init` of the sandbox's repository with the given environments.
    #[track_caller]
    pub fn init(&self, envs: &str) -> String {
        let remote = self.remote();
        self.ferry(&["init", "--remote", &remote, "--envs", envs])
            .run()
            .assert_code(0);
        remote
    }

    /// `ferry bump APP VERSION --env dev --add` on `remote`, pinned by a digest (no artifact
    /// downloaded): the command, to run.
    pub fn pin(&self, remote: &str, app: &str, version: &str) -> Ferry {
        let url = format!("https://artifacts.example.com/{app}-{version}.tgz");
        self.ferry(&["bump", app, version, "--env", "dev", "--add", "--url", &url])
            .args(["--sha256", DIGEST, "--remote", remote])
    }

    /// Runs the real `git` in `dir` (relative to the sandbox) and returns its stdout.
    #[track_caller]
    pub fn git(&self, dir: &str, args: &[&str]) -> String {
        let mut command = Command::new("git");
        command.args(args).current_dir(self.path().join(dir));
        self.hermetic(&mut command);
        let output = command.output().expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the real `git` in `dir` as the login `user` (what a hook sees pushing to a path),
    /// with `env` on top: whether it succeeded, and its stderr.
    pub fn git_as(
        &self,
        user: &str,
        dir: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String) {
        let mut command = Command::new("git");
        command.args(args).current_dir(self.path().join(dir));
        self.hermetic(&mut command);
        command.env("USER", user);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().expect("run git");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs `f` with the repository's pre-receive hook set aside: its pushes land as on a forge
    /// that runs none of ferry's checks (GitHub without a required `validate`), so a test can
    /// put there what ferry's hook would refuse, such as an invalid state.
    #[track_caller]
    pub fn past_the_hook<T>(&self, f: impl FnOnce() -> T) -> T {
        let hook = self.path().join("deploy.git/hooks/pre-receive");
        let aside = self.path().join("deploy.git/hooks/pre-receive.aside");
        std::fs::rename(&hook, &aside).expect("set the hook aside");
        let result = f();
        std::fs::rename(&aside, &hook).expect("put the hook back");
        result
    }

    /// Commits `files` (path, contents) to `branch` of the sandbox's repository the way a
    /// person would: a clone, a commit and a plain `git push`.
    #[track_caller]
    pub fn commit_files(&self, branch: &str, files: &[(&str, &str)], message: &str) {
        let work = format!("work-{branch}");
        if self.path().join(&work).exists() {
            self.git(&work, &["pull", "-q", "--rebase", "origin", branch]);
        } else {
            self.git(
                "",
                &["clone", "-q", "--branch", branch, "deploy.git", &work],
            );
        }
        for (path, contents) in files {
            let full = self.path().join(&work).join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, contents).expect("write");
        }
        self.git(&work, &["add", "--all"]);
        self.git(&work, &["commit", "-qm", message]);
        self.git(&work, &["push", "-q", "origin", branch]);
    }

    /// Edits `environments/<env>.json` on `branch` as JSON and pushes the change with git.
    #[track_caller]
    pub fn edit_env(&self, branch: &str, env: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = format!("environments/{env}.json");
        let mut value: serde_json::Value =
            serde_json::from_str(&self.show(branch, &path)).expect("JSON");
        edit(&mut value);
        let text = serde_json::to_string_pretty(&value).expect("serialize") + "\n";
        self.commit_files(branch, &[(&path, &text)], &format!("{branch}: edit {env}"));
    }

    /// A file of `branch` in the sandbox's repository.
    #[track_caller]
    pub fn show(&self, branch: &str, path: &str) -> String {
        self.git("deploy.git", &["show", &format!("{branch}:{path}")])
    }

    /// The commit a branch of the sandbox's repository is at.
    #[track_caller]
    pub fn tip(&self, branch: &str) -> String {
        self.git(
            "deploy.git",
            &["rev-parse", &format!("refs/heads/{branch}")],
        )
        .trim()
        .to_owned()
    }

    /// Every ref of a repository and what it points at: to show that nothing changed.
    #[track_caller]
    pub fn refs(&self, repo: &str) -> String {
        self.git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"])
    }
}

/// The statuses on `commit` in the repository at `git_dir` (null when there are none), as
/// ferry reads them: the commit's record (`refs/ferry/statuses/COMMIT`), and each host's
/// whose own record (`refs/ferry/hosts/ENV/HOST`) reports on it, the later one winning.
pub fn statuses_of(git_dir: &std::path::Path, commit: &str) -> serde_json::Value {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(args)
            .output()
            .unwrap();
        out.stdout
    };
    let mut all: serde_json::Value = serde_json::from_slice(&git(&[
        "show",
        &format!("refs/ferry/statuses/{commit}:statuses.json"),
    ]))
    .unwrap_or(serde_json::Value::Null);
    let hosts = String::from_utf8(git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/ferry/hosts/",
    ]))
    .unwrap();
    for name in hosts.lines() {
        let report: serde_json::Value =
            serde_json::from_slice(&git(&["show", &format!("{name}:host.json")])).unwrap();
        if report["commit"] != commit {
            continue;
        }
        if all.is_null() {
            all = serde_json::json!({});
        }
        let check = report["check"].as_str().unwrap();
        let at = |v: &serde_json::Value| v["at"].as_i64().unwrap_or(i64::MIN);
        if at(&all[check]) <= at(&report["status"]) {
            all[check] = report["status"].clone();
        }
    }
    all
}
