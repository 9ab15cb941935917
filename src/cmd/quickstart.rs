//! `ferry quickstart`: the whole loop on the embedded default, narrated, in one directory: a
//! deployment repository, a demo artifact, a CI bump, one agent per host (dev and staging have
//! one host each, prod a fleet of three that rolls out canary first), two promotions under
//! the declared protection, and `ferry status`. Each step runs the real `ferry` command it
//! shows (this binary, as a child process), so what the user reads is what they can type
//! next; only the demo's scaffolding (the artifact, the environment files, a stand-in web
//! server per environment) is done in-process.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent::{rollout, server};
use crate::error::{Error, Outcome, Result};
use crate::forge::local::LocalForge;
use crate::forge::{AppStatus, CheckState, RolloutState, Status, Statuses};
use crate::output::{Format, Output};
use crate::store::{History, RefUpdate, Remote, Store, UpdateOutcome};

/// Build the whole loop locally and watch it run, in seconds: no network, no account.
///
/// In DIR (a new directory under the system's temp dir by default; an existing DIR must be
/// empty) it creates a deployment repository with dev, staging and prod, makes a demo
/// artifact, bumps it in dev as CI would, starts one agent per host (one in dev, one in
/// staging, three in prod; each serving `/healthz`, `/readyz` and `/metrics`, and
/// health-checking the app it deploys), promotes dev → staging → prod through requests that
/// are approved and merged under each environment's protection (prod's three hosts take it in
/// two waves: a canary, then the rest), and shows `ferry status`. Every step prints the
/// command it runs. It stops the agents it started and leaves DIR behind to explore.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry quickstart                      # in a new temp dir
  ferry quickstart ./ferry-demo         # in ./ferry-demo (created; must be empty)
  ferry quickstart --format json        # narration on stderr, a summary as JSON on stdout")]
pub struct QuickstartArgs {
    /// Where to build it: a directory that is empty or does not exist yet.
    pub dir: Option<PathBuf>,
}

/// The environments, in promotion order.
const ENVS: [&str; 3] = ["dev", "staging", "prod"];
/// The environment whose app runs on a fleet, and how many hosts it has.
const FLEET: (&str, usize) = ("prod", 3);
/// The fleet's rollout: the first host alone (the canary), then the rest, once the canary has
/// been healthy for `pause` (long enough that every agent of the second wave polls, and
/// reports that it waits, at least once).
const ROLLOUT: &str = r#"{ "waves": [1, "100%"], "pause": "3s" }"#;
/// How long an agent may take to deploy a version before the quickstart gives up.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(45);

pub fn run(args: QuickstartArgs, out: Output) -> Result<Outcome> {
    let dir = prepare_dir(args.dir)?;
    let mut run = Quickstart::new(dir, out)?;
    let result = run.steps();
    let stopped = run.stop_agents();
    match result {
        Ok(summary) => {
            run.say(format!(
                "\nStopped the {stopped} agents. Everything stays in {}:",
                run.dir.display()
            ));
            run.say(format!(
                "Paste these lines in this shell to look around:\n  export FERRY_REMOTE={}{}\n  ferry history prod          # each change of prod's branch\n  ferry audit prod            # who requested, approved, merged and pushed each change\n  ferry requests 2            # the promotion request, as its reviewers saw it\n  ferry diff dev prod         # what the next promotion would move\n  git clone -b prod $FERRY_REMOTE {}   # prod's branch (environments/*.json: what step 2 declared)\n  ferry status prod --hosts   # each prod host's report on prod's tip: version, state, wave, since\nThe pages on 127.0.0.1 were served by the quickstart itself, standing in for each host's web\nserver, and stopped with it; an agent started again would find no health check answering.\n\nThen see it in a browser: the matrix, the promotion graph, the requests and each\nenvironment's timeline, live (Ctrl-C stops it):\n  ferry serve                 # http://127.0.0.1:8080/",
                run.remote,
                run.path_line(),
                run.dir.join("work").display(),
            ));
            if out.format == Format::Json {
                out.json(&summary);
            }
            Ok(Outcome::Success)
        }
        Err(err) => {
            run.say(format!(
                "\nThe quickstart stopped; stopped the {stopped} agents it had started. What it made is in {} (each agent's log: HOST/var/log/ferry-agent.log, HOST being dev, staging, prod/web-1, …).",
                run.dir.display()
            ));
            Err(err)
        }
    }
}

/// Whether the first `name` on PATH is `exe`.
fn on_path_as(name: &str, exe: &Path) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_owned());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
        .is_some_and(|found| found == exe)
}

/// `dir`, created, empty and absolute; a new temp dir when not given.
fn prepare_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            if dir.exists() {
                let mut entries = std::fs::read_dir(&dir)
                    .map_err(|e| Error::failure(format!("cannot read `{}`: {e}", dir.display())))?;
                if entries.next().is_some() {
                    return Err(Error::failure(format!(
                        "`{}` is not empty",
                        dir.display()
                    ))
                    .hint("name a new or empty directory, or none for a temp dir; nothing was changed"));
                }
            } else {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::failure(format!("cannot create `{}`: {e}", dir.display()))
                })?;
            }
            dir
        }
        None => {
            let base = std::env::temp_dir();
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let dir = base.join(format!("ferry-quickstart-{stamp}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::failure(format!("cannot create `{}`: {e}", dir.display())))?;
            dir
        }
    };
    std::fs::canonicalize(&dir)
        .map_err(|e| Error::failure(format!("cannot resolve `{}`: {e}", dir.display())))
}

/// One host: the agent deploying there, and the directory standing in for it.
struct Host {
    name: String,
    /// Its `--root`, relative to DIR (`dev`, `prod/web-1`).
    root: String,
    agent: Option<Child>,
    agent_port: u16,
    /// When its agent started.
    started: Option<Instant>,
}

impl Host {
    fn new(name: String, root: String) -> Host {
        Host {
            name,
            root,
            agent: None,
            agent_port: 0,
            started: None,
        }
    }

    /// Its agent's log, relative to DIR.
    fn log(&self) -> String {
        format!("{}/var/log/ferry-agent.log", self.root)
    }

    /// Its app's live directory, relative to DIR.
    fn live(&self) -> String {
        format!("{}/srv/web", self.root)
    }
}

/// One environment's running pieces: its hosts, in rollout order, and the stand-in web server
/// of its app (for a fleet, one server answering for every host under `/HOST/`).
struct Env {
    name: &'static str,
    hosts: Vec<Host>,
    web_port: u16,
}

impl Env {
    fn fleet(&self) -> bool {
        self.hosts.len() > 1
    }

    /// The path of `host`'s pages on the web server.
    fn web_path(&self, host: &Host) -> String {
        if self.fleet() {
            format!("/{}/", host.name)
        } else {
            "/".to_owned()
        }
    }
}

struct Quickstart {
    dir: PathBuf,
    remote: String,
    exe: PathBuf,
    out: Output,
    envs: Vec<Env>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        self.stop_agents();
    }
}

impl Quickstart {
    fn new(dir: PathBuf, out: Output) -> Result<Quickstart> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::failure(format!("cannot find the ferry binary itself: {e}")))?;
        let remote = dir.join("deploy.git").display().to_string();
        let mut envs = Vec::new();
        for name in ENVS {
            let hosts: Vec<Host> = if name == FLEET.0 {
                (1..=FLEET.1)
                    .map(|n| Host::new(format!("{name}-web-{n}"), format!("{name}/web-{n}")))
                    .collect()
            } else {
                vec![Host::new(format!("{name}-web"), name.to_owned())]
            };
            // A single host's pages at `/`; a fleet's under `/HOST/`.
            let sites = hosts
                .iter()
                .map(|host| {
                    let prefix = if hosts.len() > 1 {
                        host.name.clone()
                    } else {
                        String::new()
                    };
                    (prefix, dir.join(host.live()))
                })
                .collect();
            envs.push(Env {
                name,
                hosts,
                web_port: serve_web(name, sites)?,
            });
        }
        Ok(Quickstart {
            dir,
            remote,
            exe,
            out,
            envs,
        })
    }

    /// Narration: stdout, or stderr when stdout carries JSON.
    fn say(&self, line: impl AsRef<str>) {
        match self.out.format {
            Format::Json => self.out.stderr(line),
            _ => self.out.data(line),
        }
    }

    fn step(&self, n: u32, title: &str) {
        self.say(format!("\n{n}. {title}"));
    }

    /// `export PATH=…` putting this binary first, when `ferry` on PATH is not it (under
    /// `cargo run`, say), so that every command shown runs as printed; else nothing.
    fn path_line(&self) -> String {
        if on_path_as("ferry", &self.exe) {
            return String::new();
        }
        match self.exe.parent() {
            Some(bin) => format!(
                "\n  export PATH=\"{}:$PATH\"   # the ferry this ran (to keep it: cargo install --locked --path .)",
                bin.display()
            ),
            None => String::new(),
        }
    }

    fn steps(&mut self) -> Result<serde_json::Value> {
        self.say(format!(
            "ferry quickstart: the whole loop in {dir} (no network, no account)\nEach step shows the command it runs, as if after\n  cd {dir}\n  export FERRY_REMOTE=$PWD/deploy.git{path}",
            dir = self.dir.display(),
            path = self.path_line(),
        ));

        self.step(
            1,
            "A deployment repository: one branch per environment, dev → staging → prod",
        );
        self.ferry("you", &["init"])?;

        self.step(
            2,
            "Each environment declares where web runs, its health check, its gates and who may change it",
        );
        self.configure()?;
        self.say("   dev:     web on dev-web; only ci-bot pushes (CI's bumps land here)");
        self.say(
            "   staging: web on staging-web; promoted from dev once dev's deploy is green; 1 approval; carol merges (and alone edits its settings)",
        );
        let prod = self
            .envs
            .iter()
            .find(|e| e.name == FLEET.0)
            .expect("the fleet's environment");
        let hosts: Vec<&str> = prod.hosts.iter().map(|h| h.name.as_str()).collect();
        self.say(format!(
            "   prod:    web on {}; promoted from staging once staging's deploy is green; 1 approval; carol merges (and alone edits its settings)",
            hosts.join(", "),
        ));
        self.say(format!(
            "            rolled out in two waves: {} alone (the canary), then the others 3s after it is healthy (\"rollout\": {ROLLOUT});",
            hosts[0],
        ));
        self.say(format!(
            "            each host checked at http://127.0.0.1:{}/{{host}}/healthz, its agent putting its name for {{host}}",
            prod.web_port,
        ));
        self.say(
            "   By hand: git clone deploy.git work, edit work/environments/*.json, commit, then",
        );
        self.say("   git -C work push origin HEAD:dev HEAD:staging HEAD:prod (one commit, on every branch).");
        self.say("   Each file says so: git --git-dir deploy.git show prod:environments/prod.json");
        self.say("   From now on the repository's pre-receive hook refuses any push that breaks these rules,");
        self.say("   an invalid state, and a deploy reported by anyone but the agents (`agent.reporters`).");

        self.step(3, "CI builds web 1.0.0 and bumps dev, as its bot");
        self.bump("1.0.0", true)?;

        self.step(
            4,
            "One agent per host (prod has three) pulls its environment's branch every second and deploys what it pins",
        );
        for env in 0..self.envs.len() {
            for host in 0..self.envs[env].hosts.len() {
                self.start_agent(env, host)?;
            }
        }
        let started = self.envs[0].hosts[0].started.unwrap_or_else(Instant::now);
        self.deployed("dev", "1.0.0", started)?;

        self.step(
            5,
            "alice promotes dev → staging; bob approves; carol merges",
        );
        self.ferry("alice", &["promote", "dev", "staging"])?;
        self.ferry("bob", &["approve", "1"])?;
        self.ferry("carol", &["merge", "1"])?;
        self.deployed("staging", "1.0.0", Instant::now())?;

        self.step(6, "staging → prod, under prod's protection");
        self.ferry("alice", &["promote", "staging", "prod"])?;
        self.refused("carol", &["merge", "2"], "no approval yet: refused")?;
        self.ferry("bob", &["approve", "2"])?;
        self.ferry("carol", &["merge", "2"])?;
        self.deployed("prod", "1.0.0", Instant::now())?;

        self.step(7, "CI ships web 1.1.0: dev moves on, staging and prod stay");
        self.bump("1.1.0", false)?;
        self.deployed("dev", "1.1.0", Instant::now())?;

        self.step(8, "Where everything stands");
        let mut environments = Vec::new();
        for env in &self.envs {
            let mut hosts = Vec::new();
            for host in &env.hosts {
                let path = env.web_path(host);
                let page = http_get(env.web_port, &path).unwrap_or_default();
                let ready = http_get(host.agent_port, "/readyz").unwrap_or_default();
                self.say(format!(
                    "   {:<8} {:<11} http://127.0.0.1:{}{path} serves {:?}; its agent's http://127.0.0.1:{}/readyz says {:?}",
                    env.name,
                    host.name,
                    env.web_port,
                    page.trim(),
                    host.agent_port,
                    ready.trim()
                ));
                hosts.push(json!({
                    "host": host.name,
                    "root": self.dir.join(&host.root),
                    "url": format!("http://127.0.0.1:{}{path}", env.web_port),
                    "serves": page.trim(),
                    "ready": ready.trim(),
                }));
            }
            environments.push(json!({ "env": env.name, "hosts": hosts }));
        }
        self.ferry("you", &["status"])?;
        Ok(json!({
            "dir": self.dir,
            "remote": self.remote,
            "environments": environments,
        }))
    }

    /// CI's part: makes web `version` and pins it in dev as `ci-bot` (`add`: its first pin).
    fn bump(&self, version: &str, add: bool) -> Result<()> {
        let (artifact, url) = self.artifact(version)?;
        let mut args = vec!["bump", "web", version, "--env", "dev"];
        if add {
            args.push("--add");
        }
        args.extend(["--url", &url, "--artifact", &artifact]);
        self.ferry("ci-bot", &args)
    }

    /// Runs `ferry ARGS` as `user` (the login a repository on a path sees pushing), showing
    /// the command and its output; its failure stops the quickstart.
    fn ferry(&self, user: &str, args: &[&str]) -> Result<()> {
        let output = self.child(user, args)?;
        if !output.status.success() {
            return Err(Error::failure(format!(
                "`ferry {}` failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim_end()
            )));
        }
        self.show_output(&output.stdout);
        Ok(())
    }

    /// Runs `ferry ARGS` as `user`, which must be refused (exit 1): protection at work.
    fn refused(&self, user: &str, args: &[&str], why: &str) -> Result<()> {
        let output = self.child(user, args)?;
        if output.status.code() != Some(1) {
            return Err(Error::failure(format!(
                "`ferry {}` should have been refused ({why}), but exited with {}",
                args.join(" "),
                output.status
            )));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        self.say(format!("     {first}"));
        self.say(format!("     ({why}, exit 1; nothing changed)"));
        Ok(())
    }

    fn child(&self, user: &str, args: &[&str]) -> Result<std::process::Output> {
        let prefix = match user {
            "you" => String::new(),
            user => format!("USER={user} "),
        };
        self.say(format!(
            "   $ {prefix}ferry {}",
            shown_args(args, &self.dir)
        ));
        let mut command = self.command(user);
        command.args(args);
        command
            .output()
            .map_err(|e| Error::failure(format!("cannot run `{}`: {e}", self.exe.display())))
    }

    fn show_output(&self, stdout: &[u8]) {
        for line in String::from_utf8_lossy(stdout).lines() {
            self.say(format!("     {line}"));
        }
    }

    /// The ferry binary, in DIR, as `user`, against the quickstart's repository.
    fn command(&self, user: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .current_dir(&self.dir)
            .env("FERRY_REMOTE", &self.remote)
            .env_remove("FERRY_USER")
            .env_remove("FERRY_CACHE_DIR")
            .stdin(Stdio::null());
        if user != "you" {
            // The login is who a repository on a path sees pushing, and who ferry says is acting.
            command.env("USER", user).env("LOGNAME", user);
        }
        command
    }

    /// One commit on all three branches (they all hold every environment file): where web
    /// runs, its health check, the promotion gates and the protection. Pushed before any
    /// protection is in force, as the repository's owner would.
    fn configure(&self) -> Result<()> {
        let remote = Remote::parse(&self.remote);
        let store = Store::open(&remote, &self.dir.join(".cache"))?;
        let base = store.tip("dev", History::Tip)?;
        let mut files = Vec::new();
        for (i, env) in self.envs.iter().enumerate() {
            let mut file = json!({
                "$schema": "../schemas/environment.schema.json",
                "name": env.name,
                "description": match env.name {
                    "dev" => "Development: CI's bumps land here",
                    "staging" => "Staging: what prod will run, tested",
                    _ => "Production",
                },
                "branch": env.name,
                "policy": { "allow_prerelease": i == 0 },
                // Its deploys are reported by its agents only (they push as `agent`).
                "agent": { "interval": "1s", "reporters": ["agent"] },
                "apps": { "web": web_settings(env) },
            });
            if env.fleet() {
                file["rollout"] = serde_json::from_str(ROLLOUT).expect("the rollout is JSON");
            }
            if i == 0 {
                file["protection"] = json!({ "allowed_pushers": ["ci-bot"] });
            } else {
                let from = self.envs[i - 1].name;
                file["promotes_from"] = json!(from);
                file["policy"]["required_checks"] = json!([format!("ferry/deploy/{from}")]);
                file["protection"] = json!({
                    "required_approvals": 1,
                    "dismiss_stale_reviews": true,
                    "allowed_mergers": ["carol"],
                    "allowed_pushers": ["carol"],
                });
            }
            let mut text = serde_json::to_string_pretty(&file).expect("JSON serializes");
            text.push('\n');
            files.push((format!("environments/{}.json", env.name), text.into_bytes()));
        }
        let signature = crate::cmd::shared::signature(&store)?;
        let commit = store.write_commit(
            Some(base),
            &files,
            "Declare where web runs, its health check, the gates and the protection",
            &signature,
            &signature,
        )?;
        let updates: Vec<RefUpdate> = ENVS
            .iter()
            .map(|env| RefUpdate::branch(env, Some(base), commit))
            .collect();
        match store.update(&updates, false, "ferry quickstart")? {
            UpdateOutcome::Updated => Ok(()),
            UpdateOutcome::Moved { refname, .. } => Err(Error::failure(format!(
                "`{refname}` moved while the quickstart configured it"
            ))),
        }
    }

    /// The demo artifact of web `version`: an index page and the health file its check
    /// reads; its path relative to DIR and its `file://` URL.
    fn artifact(&self, version: &str) -> Result<(String, String)> {
        let relative = format!("artifacts/web-{version}.tar.gz");
        let path = self.dir.join(&relative);
        let io = |e: std::io::Error| Error::failure(format!("cannot write `{relative}`: {e}"));
        std::fs::create_dir_all(path.parent().expect("a parent")).map_err(io)?;
        let file = std::fs::File::create(&path).map_err(io)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let files = [
            (
                "index.html",
                format!("hello from web {version}\n").into_bytes(),
            ),
            ("healthz", b"ok\n".to_vec()),
        ];
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, name, data.as_slice())
                .map_err(io)?;
        }
        tar.into_inner().and_then(|gz| gz.finish()).map_err(io)?;
        let hex = crate::digest::sha256_file(&path).map_err(io)?;
        self.say(format!(
            "   made {relative}: index.html and healthz (sha256 {}…)",
            &hex[..12]
        ));
        Ok((relative, format!("file://{}", path.display())))
    }

    /// Starts the agent of `envs[env].hosts[host]` on a free loopback port and waits until it
    /// listens. A port is free only when it is looked at: should another process take it
    /// before the agent binds it, another is tried.
    fn start_agent(&mut self, env: usize, host: usize) -> Result<()> {
        let name = self.envs[env].name;
        let (host_name, root, log) = {
            let host = &self.envs[env].hosts[host];
            (host.name.clone(), host.root.clone(), host.log())
        };
        let log_path = self.dir.join(&log);
        std::fs::create_dir_all(log_path.parent().expect("a parent"))
            .map_err(|e| Error::failure(format!("cannot create `{root}`: {e}")))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log_file = std::fs::File::create(&log_path)
                .map_err(|e| Error::failure(format!("cannot create `{log}`: {e}")))?;
            let listen = format!("127.0.0.1:{port}");
            let state_dir = format!("{root}/var/lib/ferry-agent");
            let args = [
                "agent",
                "--env",
                name,
                "--host",
                &host_name,
                "--root",
                &root,
                "--state-dir",
                &state_dir,
                "--listen",
                &listen,
                "-v",
            ];
            let mut command = self.command("agent");
            command.args(args).stdout(Stdio::null()).stderr(log_file);
            // The agents end with the quickstart, however it ends.
            // SAFETY: prctl is async-signal-safe and touches only the child's own settings.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child = command.spawn().map_err(|e| {
                Error::failure(format!("cannot start the agent of {host_name}: {e}"))
            })?;
            let started = Instant::now();
            let listening = loop {
                if child.try_wait().ok().flatten().is_some() {
                    break false;
                }
                if http_get(port, "/healthz").is_ok() {
                    break true;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    // Slow, not gone: what it does next is `deployed`'s to judge.
                    break true;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let taken = !listening
                && std::fs::read_to_string(&log_path)
                    .is_ok_and(|text| text.contains("Address already in use"));
            if taken && attempt < 5 {
                continue;
            }
            self.say(format!(
                "   $ USER=agent ferry {} 2> {log} &",
                args.join(" ")
            ));
            let host = &mut self.envs[env].hosts[host];
            host.agent_port = port;
            host.agent = Some(child);
            host.started = Some(started);
            return Ok(());
        }
    }

    /// Waits until `env`'s agents report web `version` deployed (the aggregate
    /// `ferry/deploy/ENV` on the branch's tip, which the next promotion's gate reads), then
    /// says so, with the time since `from` (the change landed, or the agent started after
    /// it): for a fleet, how the rollout went, from its hosts' statuses.
    fn deployed(&mut self, env: &str, version: &str, from: Instant) -> Result<()> {
        let started = Instant::now();
        let check = rollout::env_check(env);
        let index = self
            .envs
            .iter()
            .position(|e| e.name == env)
            .expect("a quickstart environment");
        // What each host of a fleet last said while it waited for its wave.
        let mut waited: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let store = Store::open(&Remote::parse(&self.remote), &self.dir.join(".cache"))?;
            let tip = store.tip(env, History::Tip)?;
            let mut statuses = LocalForge::new(&store).statuses(tip)?;
            for host in &self.envs[index].hosts {
                if let Some(web) = web_status(&statuses, env, &host.name)
                    && web.state == RolloutState::Waiting
                {
                    waited.insert(host.name.clone(), web.message.clone());
                }
            }
            match statuses.remove(&check) {
                Some(s) if s.state == CheckState::Success => {
                    self.say_deployed(index, version, from.elapsed(), &s, &statuses, &waited);
                    return Ok(());
                }
                Some(s) if matches!(s.state, CheckState::Failure | CheckState::Error) => {
                    let host = self.undeployed(index, &statuses);
                    return Err(self.agent_failed(
                        index,
                        host,
                        &format!(
                            "it reported {check} {}: {}",
                            s.state.as_str(),
                            s.description
                        ),
                    ));
                }
                _ => {}
            }
            for host in 0..self.envs[index].hosts.len() {
                if let Some(agent) = self.envs[index].hosts[host].agent.as_mut()
                    && let Ok(Some(exit)) = agent.try_wait()
                {
                    return Err(self.agent_failed(index, host, &format!("it exited ({exit})")));
                }
            }
            if started.elapsed() > DEPLOY_TIMEOUT {
                let host = self.undeployed(index, &statuses);
                return Err(self.agent_failed(
                    index,
                    host,
                    &format!(
                        "{check} did not say web {version} deployed within {}s",
                        DEPLOY_TIMEOUT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The first host of `envs[index]` whose status does not say web deployed (the first
    /// host when all do): the one whose log tells what went wrong.
    fn undeployed(&self, index: usize, statuses: &Statuses) -> usize {
        let env = &self.envs[index];
        env.hosts
            .iter()
            .position(|h| {
                web_status(statuses, env.name, &h.name)
                    .is_none_or(|web| web.state != RolloutState::Deployed)
            })
            .unwrap_or(0)
    }

    /// Says that `envs[index]` runs web `version`, as `aggregate` reported after `took`: for a
    /// fleet, each host's wave and since when it runs it (its status), and what the hosts of
    /// a later wave said while they `waited` for it.
    fn say_deployed(
        &self,
        index: usize,
        version: &str,
        took: Duration,
        aggregate: &Status,
        statuses: &Statuses,
        waited: &BTreeMap<String, String>,
    ) {
        let env = &self.envs[index];
        let name = env.name;
        let check = rollout::env_check(name);
        let pages: Vec<(String, String)> = env
            .hosts
            .iter()
            .map(|host| {
                let page = http_get(env.web_port, &env.web_path(host)).unwrap_or_default();
                (host.live(), page.trim().to_owned())
            })
            .collect();
        if !env.fleet() {
            self.say(format!(
                "   {name}'s agent deployed web {version} in {:.1}s; its health check passed and it reported {check}: success\n   {} now serves {:?}",
                took.as_secs_f64(),
                pages[0].0,
                pages[0].1,
            ));
            return;
        }
        self.say(format!(
            "   {name}'s agents rolled web {version} out in {:.1}s, as their statuses {check}/HOST on {name}'s tip say:",
            took.as_secs_f64()
        ));
        // The hosts in rollout order, those of one wave that deployed in the same second
        // together.
        let mut groups: Vec<Landing<'_>> = Vec::new();
        for host in &env.hosts {
            let Some(web) = web_status(statuses, name, &host.name) else {
                continue;
            };
            match groups.last_mut() {
                Some(last) if last.wave == web.wave && last.since == web.since => {
                    last.hosts.push(&host.name);
                }
                _ => groups.push(Landing {
                    hosts: vec![&host.name],
                    wave: web.wave,
                    since: web.since,
                }),
            }
        }
        let (first, first_hosts) = groups
            .first()
            .map(|g| (g.since, g.hosts.join(", ")))
            .unwrap_or_default();
        for Landing { hosts, wave, since } in &groups {
            // What they said while they waited, said the same way by several.
            let mut said: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for host in hosts {
                if let Some(message) = waited.get(*host) {
                    said.entry(message).or_default().push(host);
                }
            }
            for (message, who) in said {
                self.say(format!("     {} said {message:?}", who.join(", ")));
            }
            let place = match wave {
                Some((1, of)) if hosts.len() == 1 => format!(" (canary, wave 1 of {of})"),
                Some((n, of)) => format!(" (wave {n} of {of})"),
                None => String::new(),
            };
            let when = if *since == first {
                format!("at {}", crate::output::format_time(*since))
            } else {
                format!("{}s after {first_hosts}", since - first)
            };
            self.say(format!("     {}{place} deployed {when}", hosts.join(", ")));
        }
        self.say(format!(
            "   The last to finish reported {check}: {}, {:?}",
            aggregate.state.as_str(),
            aggregate.description
        ));
        let page = &pages[0].1;
        if pages.iter().all(|(_, p)| p == page) {
            let lives: Vec<&str> = pages.iter().map(|(live, _)| live.as_str()).collect();
            self.say(format!("   {} now serve {page:?}", lives.join(", ")));
        } else {
            for (live, page) in &pages {
                self.say(format!("   {live} now serves {page:?}"));
            }
        }
    }

    fn agent_failed(&self, env: usize, host: usize, what: &str) -> Error {
        let host = &self.envs[env].hosts[host];
        let log = self.dir.join(host.log());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let mut error = Error::failure(format!("the agent of {}: {what}", host.name));
        for line in tail.into_iter().rev() {
            error = error.detail(line.to_owned());
        }
        error.hint(format!("its whole log: {}", log.display()))
    }

    /// SIGTERM to every agent (each finishes its step and exits), SIGKILL to one that has
    /// not after ten seconds; how many were running.
    fn stop_agents(&mut self) -> usize {
        let mut children: Vec<Child> = self
            .envs
            .iter_mut()
            .flat_map(|env| env.hosts.iter_mut())
            .filter_map(|host| host.agent.take())
            .collect();
        for child in &children {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: a signal to our own child, which we have not reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        children.len()
    }
}

/// Where `env`'s web runs and how it is checked: on one `host`, or on a fleet's `hosts`,
/// each checked at its own URL (`{host}` replaced by the agent checking it).
fn web_settings(env: &Env) -> serde_json::Value {
    let mut web = serde_json::Map::new();
    let url = if env.fleet() {
        let hosts: Vec<&str> = env.hosts.iter().map(|h| h.name.as_str()).collect();
        web.insert("hosts".into(), json!(hosts));
        format!("http://127.0.0.1:{}/{{host}}/healthz", env.web_port)
    } else {
        web.insert("host".into(), json!(env.hosts[0].name));
        format!("http://127.0.0.1:{}/healthz", env.web_port)
    };
    web.insert("deployment_path".into(), json!("/srv/web"));
    web.insert("healthcheck_url".into(), json!(url));
    web.insert("healthcheck_timeout".into(), json!("10s"));
    serde_json::Value::Object(web)
}

/// Hosts of one wave that reported a version deployed in the same second.
struct Landing<'a> {
    hosts: Vec<&'a str>,
    /// Their wave and the number of waves, from 1.
    wave: Option<(usize, usize)>,
    /// Unix seconds.
    since: i64,
}

/// What `host`'s status on the tip says of web, the quickstart's one app.
fn web_status<'s>(statuses: &'s Statuses, env: &str, host: &str) -> Option<&'s AppStatus> {
    statuses
        .get(&rollout::host_check(env, host))
        .and_then(|status| status.apps.get("web"))
}

/// The arguments as shown: paths inside DIR relative to it.
fn shown_args(args: &[&str], dir: &Path) -> String {
    let prefix = format!("{}/", dir.display());
    args.iter()
        .map(|a| a.replace(&prefix, "$PWD/"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A port free on loopback now (for an agent's `--listen`).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::failure(format!("cannot listen on loopback: {e}")))?;
    Ok(listener.local_addr().expect("a bound address").port())
}

/// The stand-in for the app's own server in `env`: serves the files of each host's live
/// release (`sites`: a URL prefix, empty for a single host, and its live directory; `/` is
/// `index.html`), so that a host's `/healthz` answers once a release is deployed there. A
/// thread; it ends with the process.
fn serve_web(env: &str, sites: Vec<(String, PathBuf)>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::failure(format!("cannot listen on loopback for {env}'s web: {e}")))?;
    let port = listener.local_addr().expect("a bound address").port();
    let sites: std::sync::Arc<BTreeMap<String, PathBuf>> =
        std::sync::Arc::new(sites.into_iter().collect());
    server::serve_on(listener, server::Limits::default(), move |request| {
        std::future::ready(answer(request.uri().path(), &sites))
    })
    .map_err(|e| Error::failure(format!("cannot serve {env}'s web: {e}")))?;
    Ok(port)
}

/// The file at `path` of the live release it names (`/HOST/NAME`, or `/NAME` for a single
/// host), or 404.
fn answer(path: &str, sites: &BTreeMap<String, PathBuf>) -> server::Reply {
    let path = path.trim_start_matches('/');
    let (live, name) = match path.split_once('/') {
        Some((host, name)) if !host.is_empty() && sites.contains_key(host) => {
            (sites.get(host), name)
        }
        _ => (sites.get(""), path),
    };
    let name = if name.is_empty() { "index.html" } else { name };
    let file = live
        .filter(|_| !name.contains("..") && !name.contains('/'))
        .and_then(|live| std::fs::read(live.join(name)).ok());
    match file {
        Some(body) => server::reply(hyper::StatusCode::OK, body, "text/plain"),
        None => server::reply(hyper::StatusCode::NOT_FOUND, "not deployed\n", "text/plain"),
    }
}

/// The body of `GET path` on a loopback port (a plain HTTP/1.1 exchange, closed after).
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
