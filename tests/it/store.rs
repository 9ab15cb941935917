//! The git state store: `init`, `bump`, `show`, `diff`, `history` against real bare
//! repositories, over a path and over smart HTTP, checked with the real `git`.

use insta::assert_snapshot;
use serde_json::json;

use crate::common::http::{GitDaemon, project_root};
use crate::common::{DIGEST, Sandbox};

const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// A repository with `web` 1.0.0 pinned in dev.
fn with_web(sandbox: &Sandbox) -> String {
    let remote = sandbox.init("dev,staging,prod");
    sandbox
        .ferry(&[
            "bump",
            "web",
            "1.0.0",
            "--env",
            "dev",
            "--add",
            "--url",
            "https://a.example/web/web-1.0.0.tgz",
        ])
        .arg("--sha256")
        .arg(DIGEST)
        .arg("--remote")
        .arg(&remote)
        .run()
        .assert_code(0);
    remote
}

mod init {
    use super::*;

    #[test]
    fn an_empty_repository_made_by_git_clones_onto_the_first_environment() {
        let sandbox = Sandbox::new();
        sandbox.git("", &["init", "-q", "--bare", "deploy.git"]);
        let remote = sandbox.remote();
        sandbox
            .ferry(&["init", "--remote", &remote])
            .run()
            .assert_code(0);
        let head = sandbox.git("deploy.git", &["symbolic-ref", "HEAD"]);
        assert_eq!(head.trim(), "refs/heads/dev");
        sandbox.git("", &["clone", "-q", "deploy.git", "work"]);
        let branch = sandbox.git("work", &["branch", "--show-current"]);
        assert_eq!(branch.trim(), "dev");
    }

    #[test]
    fn creates_a_bare_repository_with_a_branch_per_environment() {
        let sandbox = Sandbox::new();
        let remote = sandbox.remote();
        let run = sandbox.ferry(&["init", "--remote", &remote]).run();
        assert_snapshot!(run.render());
        sandbox.git("deploy.git", &["fsck", "--strict", "--no-dangling"]);
        assert_eq!(
            sandbox
                .git("deploy.git", &["rev-parse", "--is-bare-repository"])
                .trim(),
            "true"
        );
        let tree = sandbox.git("deploy.git", &["ls-tree", "-r", "--name-only", "prod"]);
        assert_snapshot!(tree, @r"
        environments/dev.json
        environments/prod.json
        environments/staging.json
        manifest.json
        schemas/environment.schema.json
        schemas/manifest.schema.json
        schemas/seed-environment.schema.json
        ");
        assert_eq!(sandbox.tip("dev"), sandbox.tip("prod"));
        assert_eq!(
            sandbox.git("deploy.git", &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/dev"
        );
        // What init writes validates: check a checkout of it with `ferry validate`.
        sandbox.git(
            "",
            &[
                "clone",
                "-q",
                "--branch",
                "staging",
                "deploy.git",
                "checkout",
            ],
        );
        sandbox
            .ferry(&["validate", "checkout"])
            .run()
            .assert_code(0);
    }

    #[test]
    fn refuses_existing_branches_and_changes_nothing() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let run = sandbox.ferry(&["init", "--remote", &remote]).run();
        assert_snapshot!(run.render());
        assert_eq!(sandbox.refs("deploy.git"), before);
        // --force starts over.
        sandbox
            .ferry(&["init", "--remote", &remote, "--force"])
            .run()
            .assert_code(0);
        let manifest = sandbox.show("dev", "manifest.json");
        assert!(!manifest.contains("web"), "{manifest}");
    }

    #[test]
    fn custom_environments_in_order() {
        let sandbox = Sandbox::new();
        let remote = sandbox.init("dev,qa,prod");
        let run = sandbox.ferry(&["validate"]).run();
        run.assert_code(1); // the sandbox itself is not a repository
        let qa = sandbox.git("deploy.git", &["show", "qa:environments/qa.json"]);
        let qa: serde_json::Value = serde_json::from_str(&qa).unwrap();
        assert_eq!(qa["promotes_from"], "dev");
        let bad = sandbox
            .ferry(&["init", "--remote", &remote, "--envs", "dev,dev"])
            .run();
        bad.assert_code(2);
        sandbox
            .ferry(&["init", "--remote", "x.git", "--envs", "dev,a b"])
            .run()
            .assert_code(2);
        assert!(!sandbox.path().join("x.git").exists());
    }

    #[test]
    fn a_path_that_is_not_a_repository() {
        let sandbox = Sandbox::new();
        std::fs::create_dir(sandbox.path().join("plain")).unwrap();
        let run = sandbox.ferry(&["init", "--remote", "plain"]).run();
        run.assert_code(1);
        assert!(
            run.stderr.contains("`plain` is not a git repository"),
            "{}",
            run.stderr
        );
    }
}

mod bump {
    use super::*;

    #[test]
    fn commits_one_pin_with_trailers() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let artifact = sandbox.path().join("web-1.1.0.tgz");
        std::fs::write(&artifact, "the new build").unwrap();
        let run = sandbox
            .ferry(&[
                "bump",
                "web",
                "1.1.0",
                "--env",
                "dev",
                "--remote",
                &remote,
                "--artifact",
            ])
            .arg(&artifact)
            .run();
        assert_snapshot!(run.render());
        let message = sandbox.git("deploy.git", &["log", "-1", "--format=%B", "dev"]);
        assert_snapshot!(message);
        let trailers = sandbox.git(
            "deploy.git",
            &["log", "-1", "--format=%(trailers:only,unfold)", "dev"],
        );
        assert_eq!(
            trailers.trim(),
            "Ferry-App: web\nFerry-Version: 1.1.0\nFerry-Previous: 1.0.0"
        );
        // Exactly the pin changed: the diff of the commit is three lines of manifest.json.
        let diff = sandbox.git("deploy.git", &["diff", "dev~1", "dev", "--stat"]);
        assert_eq!(
            diff.trim(),
            "manifest.json | 6 +++---\n 1 file changed, 3 insertions(+), 3 deletions(-)"
        );
        let manifest: serde_json::Value =
            serde_json::from_str(&sandbox.show("dev", "manifest.json")).unwrap();
        assert_eq!(
            manifest["artifacts"]["web"],
            json!({"version": "1.1.0", "url": "https://a.example/web/web-1.1.0.tgz", "sha256": sha256_of(b"the new build")})
        );
        sandbox.git("deploy.git", &["fsck", "--strict"]);
        // The other branches did not move.
        assert_ne!(sandbox.tip("dev"), sandbox.tip("staging"));
    }

    fn sha256_of(bytes: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn json_output() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let run = sandbox
            .ferry(&[
                "bump", "web", "1.2.0", "--env", "dev", "--sha256", B, "--format", "json",
                "--remote", &remote,
            ])
            .run();
        run.assert_code(0);
        let report = run.json();
        assert_eq!(report["env"], "dev");
        assert_eq!(report["app"], "web");
        assert_eq!(report["from"], "1.0.0");
        assert_eq!(report["to"], "1.2.0");
        assert_eq!(report["commit"], sandbox.tip("dev"));
    }

    #[test]
    fn the_same_version_again_changes_nothing() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let run = sandbox
            .ferry(&[
                "bump", "web", "1.0.0", "--env", "dev", "--sha256", DIGEST, "--remote", &remote,
            ])
            .run();
        assert_snapshot!(run.render());
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    /// 1.0.0 → 1.0.0+x → 1.0.0 with other bytes would re-pin 1.0.0: build metadata alone is
    /// refused, as a downgrade is, and nothing moves.
    #[test]
    fn build_metadata_alone_is_no_new_version() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let run = sandbox
            .ferry(&[
                "bump", "web", "1.0.0+x", "--env", "dev", "--sha256", B, "--remote", &remote,
            ])
            .run();
        run.assert_code(1);
        assert!(
            run.stderr.contains("differ only in build metadata"),
            "{}",
            run.render()
        );
        assert!(
            run.stderr
                .contains("hint: publish the new build under a new version")
        );
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    /// `--artifact` must be a regular file: a device would be hashed forever, a FIFO waited on.
    #[test]
    fn an_artifact_that_is_not_a_file_is_refused() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let run = sandbox
            .ferry(&[
                "bump",
                "web",
                "1.1.0",
                "--env",
                "dev",
                "--remote",
                &remote,
                "--artifact",
                "/dev/zero",
            ])
            .run_within(std::time::Duration::from_secs(20));
        run.assert_code(2);
        assert!(
            run.stderr.contains("is a device, not a regular file"),
            "{}",
            run.render()
        );
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    /// A mirror moved: the same version and digest at a new URL is a commit, and says so.
    #[test]
    fn a_repin_to_a_new_url_says_what_changed() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.tip("dev");
        let moved = "https://mirror.example/web/web-1.0.0.tgz";
        let run = sandbox
            .ferry(&[
                "bump", "web", "1.0.0", "--env", "dev", "--sha256", DIGEST, "--url", moved,
                "--remote", &remote,
            ])
            .run();
        run.assert_code(0);
        let after = sandbox.tip("dev");
        assert_ne!(before, after, "a commit was made");
        assert!(
            run.stdout.contains(&format!(
                "dev: web 1.0.0: url https://a.example/web/web-1.0.0.tgz → {moved} ({})",
                &after[..7]
            )),
            "{}",
            run.render()
        );
        // JSON: `changed` is true exactly when a commit was made, and names the fields.
        let other = "https://other.example/web/web-1.0.0.tgz";
        let repin = || {
            sandbox
                .ferry(&[
                    "bump", "web", "1.0.0", "--env", "dev", "--sha256", DIGEST, "--url", other,
                    "--remote", &remote, "--format", "json",
                ])
                .run()
                .json()
        };
        let json = repin();
        assert_eq!(json["changed"], true, "{json}");
        assert_eq!(json["fields"], json!(["url"]), "{json}");
        assert_eq!(json["commit"], sandbox.tip("dev").as_str(), "{json}");
        let again = repin();
        assert_eq!(again["changed"], false, "{again}");
        assert_eq!(again["fields"], json!([]), "{again}");
    }

    /// The author of a bump is who is acting (the login a repository on a path sees pushing),
    /// not git's committer name; the committer may be ferry.
    #[test]
    fn a_bump_is_authored_by_the_acting_identity() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let mut bump = sandbox.ferry(&[
            "bump", "web", "1.1.0", "--env", "dev", "--sha256", B, "--remote", &remote,
        ]);
        for var in [
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_EMAIL",
        ] {
            bump.command.env_remove(var);
        }
        bump.run().assert_code(0);
        let who = sandbox.git(
            "deploy.git",
            &["log", "-1", "--format=%an <%ae> / %cn", "dev"],
        );
        assert_eq!(who.trim(), "ci-bot <ci-bot@ferry.invalid> / ferry");
        let history = sandbox
            .ferry(&["history", "dev", "--remote", &remote])
            .run();
        assert!(history.stdout.contains("ci-bot"), "{}", history.stdout);
    }

    #[test]
    fn refusals_leave_the_remote_untouched() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (
                "downgrade",
                vec!["bump", "web", "0.9.0", "--env", "dev", "--sha256", B],
            ),
            (
                "same version, other digest",
                vec!["bump", "web", "1.0.0", "--env", "dev", "--sha256", B],
            ),
            (
                "unknown app",
                vec!["bump", "wbe", "1.1.0", "--env", "dev", "--sha256", B],
            ),
            (
                "unknown environment",
                vec!["bump", "web", "1.1.0", "--env", "qa", "--sha256", B],
            ),
            (
                "misspelt environment",
                vec!["bump", "web", "1.1.0", "--env", "dve", "--sha256", B],
            ),
            (
                "prerelease where the policy forbids it",
                vec![
                    "bump",
                    "web",
                    "2.0.0-rc.1",
                    "--env",
                    "staging",
                    "--add",
                    "--url",
                    "https://a.example/w",
                    "--sha256",
                    B,
                ],
            ),
            (
                "new app without a URL",
                vec![
                    "bump", "api", "1.0.0", "--env", "dev", "--add", "--sha256", B,
                ],
            ),
            (
                "a URL of another scheme",
                vec![
                    "bump",
                    "web",
                    "1.1.0",
                    "--env",
                    "dev",
                    "--sha256",
                    B,
                    "--url",
                    "ftp://x/y",
                ],
            ),
        ];
        let mut rendered = String::new();
        for (name, args) in cases {
            let run = sandbox.ferry(&args).arg("--remote").arg(&remote).run();
            rendered.push_str(&format!("### {name}\n{}\n", run.render()));
        }
        assert_snapshot!(rendered);
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    #[test]
    fn bad_command_lines_exit_2() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let cases: Vec<Vec<&str>> = vec![
            vec!["bump", "web", "1.1", "--env", "dev", "--sha256", B],
            vec!["bump", "web", "1.1.0", "--env", "dev", "--sha256", "abc"],
            vec!["bump", "web", "1.1.0", "--env", "dev", "--sha256", &B[1..]],
            vec!["bump", "web", "1.1.0", "--env", "dev"],
            vec![
                "bump",
                "web",
                "1.1.0",
                "--env",
                "dev",
                "--artifact",
                "missing.tgz",
            ],
            vec![
                "bump",
                "web",
                "1.1.0",
                "--env",
                "dev",
                "--sha256",
                B,
                "--artifact",
                "x",
            ],
        ];
        let mut rendered = String::new();
        for args in cases {
            let run = sandbox.ferry(&args).arg("--remote").arg(&remote).run();
            assert_eq!(run.code, Some(2), "{args:?}: {}", run.render());
            rendered.push_str(&format!("### {}\n{}\n", args.join(" "), run.stderr));
        }
        assert_snapshot!(rendered);
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    #[test]
    fn never_commits_an_invalid_state() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        // dev's environment file declares its apps: a new app needs an entry there first.
        let mut env: serde_json::Value =
            serde_json::from_str(&sandbox.show("dev", "environments/dev.json")).unwrap();
        env["apps"] = json!({"web": {"deployment_path": "/srv/web"}});
        let env = serde_json::to_string_pretty(&env).unwrap();
        sandbox.commit_files(
            "dev",
            &[("environments/dev.json", &env)],
            "dev: declare apps",
        );
        let before = sandbox.refs("deploy.git");
        let run = sandbox
            .ferry(&[
                "bump",
                "api",
                "1.0.0",
                "--env",
                "dev",
                "--add",
                "--url",
                "https://a.example/api-1.0.0.tgz",
                "--sha256",
                B,
                "--remote",
                &remote,
            ])
            .run();
        assert_snapshot!(run.render());
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    #[test]
    fn dry_run_prints_the_diff_and_pushes_nothing() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        let before = sandbox.refs("deploy.git");
        let run = sandbox
            .ferry(&[
                "bump",
                "web",
                "1.1.0",
                "--env",
                "dev",
                "--sha256",
                B,
                "--dry-run",
                "--remote",
                &remote,
            ])
            .run();
        assert_snapshot!(run.render());
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    #[test]
    fn downgrade_when_allowed() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        sandbox
            .ferry(&[
                "bump",
                "web",
                "0.9.0",
                "--env",
                "dev",
                "--sha256",
                B,
                "--allow-downgrade",
                "--remote",
                &remote,
            ])
            .run()
            .assert_code(0);
        let trailers = sandbox.git(
            "deploy.git",
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Ferry-Previous,valueonly)",
                "dev",
            ],
        );
        assert_eq!(trailers.trim(), "1.0.0");
    }

    #[test]
    fn a_repository_template_overrides_the_message() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        sandbox.commit_files(
            "dev",
            &[("templates/bump.hbs", "deploy({{env}}): {{app}}@{{to}}\n")],
            "dev: our own bump messages",
        );
        sandbox
            .ferry(&[
                "bump", "web", "1.1.0", "--env", "dev", "--sha256", B, "--remote", &remote,
            ])
            .run()
            .assert_code(0);
        let subject = sandbox.git("deploy.git", &["log", "-1", "--format=%s", "dev"]);
        assert_eq!(subject.trim(), "deploy(dev): web@1.1.0");
        // A broken template is a clear error, and nothing lands.
        sandbox.commit_files("dev", &[("templates/bump.hbs", "{{#if}}\n")], "broken");
        let before = sandbox.refs("deploy.git");
        let run = sandbox
            .ferry(&[
                "bump", "web", "1.2.0", "--env", "dev", "--sha256", C, "--remote", &remote,
            ])
            .run();
        run.assert_code(1);
        assert!(
            run.stderr.contains("template `dev:templates/bump.hbs`"),
            "{}",
            run.stderr
        );
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    #[test]
    fn the_remote_from_the_environment_or_origin() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        sandbox
            .ferry(&["bump", "web", "1.1.0", "--env", "dev", "--sha256", B])
            .env("FERRY_REMOTE", &remote)
            .run()
            .assert_code(0);
        sandbox.git("", &["clone", "-q", "deploy.git", "clone"]);
        let run = sandbox
            .ferry(&["show", "dev"])
            .current_dir(&sandbox.path().join("clone"))
            .run();
        run.assert_code(0);
        assert!(run.stdout.contains("web  1.1.0"), "{}", run.stdout);
        // Outside any clone, and without --remote, the error says what to do.
        let run = sandbox.ferry(&["show", "dev"]).run();
        assert_snapshot!(run.render());
    }

    #[test]
    fn an_unreachable_remote_is_a_clear_error() {
        let sandbox = Sandbox::new();
        let run = sandbox
            .ferry(&[
                "bump",
                "web",
                "1.1.0",
                "--env",
                "dev",
                "--sha256",
                B,
                "--remote",
                "http://127.0.0.1:9/deploy.git",
            ])
            .run();
        // Exit 3: nothing changed, and the same bump may land later.
        run.assert_code(3);
        assert!(
            run.stderr
                .starts_with("error: cannot reach `http://127.0.0.1:9/deploy.git`"),
            "{}",
            run.stderr
        );
    }
}

mod concurrency {
    use super::*;

    /// Ten CI bots bump ten apps at the same moment: all land, each exactly once.
    fn ten_bots(sandbox: &Sandbox, remote: &str) {
        bots(sandbox, remote, 10, false);
    }

    /// `n` CI bots bump `n` apps at the same moment, each with its own cache when
    /// `own_caches` (as separate CI runners have).
    fn bots(sandbox: &Sandbox, remote: &str, n: usize, own_caches: bool) {
        let apps: Vec<String> = (0..n).map(|i| format!("app{i}")).collect();
        for app in &apps {
            sandbox
                .ferry(&[
                    "bump", app, "1.0.0", "--env", "dev", "--add", "--sha256", DIGEST, "--remote",
                    remote,
                ])
                .arg("--url")
                .arg(format!("https://a.example/{app}/{app}-1.0.0.tgz"))
                .run()
                .assert_code(0);
        }
        let children: Vec<_> = apps
            .iter()
            .enumerate()
            .map(|(i, app)| {
                let mut f = sandbox.ferry(&[
                    "bump", app, "2.0.0", "--env", "dev", "--sha256", B, "--remote", remote,
                ]);
                if own_caches {
                    f = f
                        .arg("--cache-dir")
                        .arg(sandbox.path().join(format!("runner-{i}")));
                }
                f.command
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                f.command.spawn().expect("spawn ferry")
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().expect("wait");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Each of the `n` bots' bumps is on `dev` of `repo` exactly once.
    fn assert_landed_once(sandbox: &Sandbox, repo: &str, n: usize) {
        let manifest: serde_json::Value =
            serde_json::from_str(&sandbox.git(repo, &["show", "dev:manifest.json"])).unwrap();
        for i in 0..n {
            assert_eq!(
                manifest["artifacts"][format!("app{i}")]["version"],
                "2.0.0",
                "app{i}"
            );
        }
        let trailers = sandbox.git(repo, &["log", "--format=%(trailers:key=Ferry-App,valueonly)%(trailers:key=Ferry-Version,valueonly)", "dev"]);
        for i in 0..n {
            let landed = trailers.matches(&format!("app{i}\n2.0.0")).count();
            assert_eq!(landed, 1, "app{i} landed {landed} times:\n{trailers}");
        }
        sandbox.git(repo, &["fsck", "--strict"]);
    }

    #[test]
    fn over_a_path() {
        let sandbox = Sandbox::new();
        let remote = sandbox.init("dev,prod");
        ten_bots(&sandbox, &remote);
        assert_landed_once(&sandbox, "deploy.git", 10);
    }

    #[test]
    fn over_smart_http() {
        let sandbox = Sandbox::new();
        let (_server, url) = sandbox.serve_http(None);
        sandbox
            .ferry(&["init", "--remote", &url, "--envs", "dev,prod"])
            .run()
            .assert_code(0);
        ten_bots(&sandbox, &url);
        assert_landed_once(&sandbox, "srv/deploy.git", 10);
    }

    /// Thirty CI runners, each with its own cache, bump at once over smart HTTP: a branch
    /// that moves between the listing and the fetch is a lost race, retried, and every bump
    /// lands exactly once.
    #[test]
    fn thirty_runners_with_their_own_caches_over_smart_http() {
        let sandbox = Sandbox::new();
        let (_server, url) = sandbox.serve_http(None);
        sandbox
            .ferry(&["init", "--remote", &url, "--envs", "dev,prod"])
            .run()
            .assert_code(0);
        bots(&sandbox, &url, 30, true);
        assert_landed_once(&sandbox, "srv/deploy.git", 30);
    }
}

mod http {
    use super::*;

    #[test]
    fn a_token_authenticates_and_never_shows() {
        let sandbox = Sandbox::new();
        let token = "tok-7f3a9c2e";
        let (_server, url) = sandbox.serve_http(Some(token));
        // Without the token: refused, clearly.
        let run = sandbox.ferry(&["init", "--remote", &url]).run();
        run.assert_code(1);
        assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);
        // With it: works, and the token appears nowhere, even in trace logs.
        let run = sandbox
            .ferry(&["-vvv", "init", "--remote", &url])
            .env("FERRY_GIT_TOKEN", token)
            .run();
        run.assert_code(0);
        assert!(
            !run.stdout.contains(token) && !run.stderr.contains(token),
            "{}",
            run.render()
        );
        // From a file (`FERRY_GIT_TOKEN_FILE`, as systemd's LoadCredential= and Kubernetes'
        // Secret volumes hand it over), with its trailing newline; a file that cannot be read
        // is named, not guessed around.
        std::fs::write(sandbox.path().join("git-token"), format!("{token}\n")).unwrap();
        let run = sandbox
            .ferry(&["-vvv", "show", "dev", "--remote", &url])
            .env("FERRY_GIT_TOKEN_FILE", "git-token")
            .run();
        run.assert_code(0);
        assert!(!run.stderr.contains(token), "{}", run.render());
        let run = sandbox
            .ferry(&["show", "dev", "--remote", &url])
            .env("FERRY_GIT_TOKEN_FILE", "no-such-token")
            .run();
        run.assert_code(1);
        assert!(
            run.stderr.starts_with(
                "error: FERRY_GIT_TOKEN_FILE names `no-such-token`, which cannot be read"
            ),
            "{}",
            run.render()
        );
        // A device is refused too, not read forever.
        let run = sandbox
            .ferry(&["show", "dev", "--remote", &url])
            .env("FERRY_GIT_TOKEN_FILE", "/dev/zero")
            .run_within(std::time::Duration::from_secs(20));
        run.assert_code(1);
        assert!(
            run.stderr.contains("is a device, not a regular file"),
            "{}",
            run.render()
        );
        // A password in the URL is hidden in messages too.
        let with_password = url.replace("http://", &format!("http://bot:{token}@"));
        let run = sandbox
            .ferry(&["-vvv", "show", "nope", "--remote", &with_password])
            .run();
        run.assert_code(1);
        assert!(
            !run.stdout.contains(token) && !run.stderr.contains(token),
            "{}",
            run.render()
        );
        assert!(
            run.stderr.contains("http://bot:***@127.0.0.1"),
            "{}",
            run.stderr
        );
    }

    /// A cold bump fetches the tips of the environment branches (an environment is found only
    /// on the branch that declares it, so each is read), never their history.
    #[test]
    fn a_bump_fetches_only_the_tips_of_the_environment_branches() {
        let sandbox = Sandbox::new();
        let (server, url) = sandbox.serve_http(None);
        // The repository and its history are made through another cache than the one measured.
        sandbox
            .ferry(&["init", "--remote", &url])
            .env("XDG_CACHE_HOME", "other-cache")
            .run()
            .assert_code(0);
        for minor in 0..20 {
            let version = format!("1.{minor}.0");
            let mut f = sandbox.ferry(&[
                "bump", "web", &version, "--env", "dev", "--sha256", B, "--remote", &url, "--add",
            ]);
            f = f
                .arg("--url")
                .arg(format!("https://a.example/web-{version}.tgz"))
                .env("XDG_CACHE_HOME", "other-cache");
            f.run().assert_code(0);
        }
        let before = server.requests().len();
        sandbox
            .ferry(&[
                "bump", "web", "2.0.0", "--env", "dev", "--sha256", C, "--remote", &url,
            ])
            .run()
            .assert_code(0);
        // One advertisement to find the branch; libgit2's shallow fetch of its tip (its own
        // advertisement, then the shallow negotiation and the pack); the push.
        let requests: Vec<String> = server.requests()[before..]
            .iter()
            .map(|r| r.replace("/deploy.git", ""))
            .collect();
        assert_snapshot!(requests.join("\n"), @r"
        GET /info/refs?service=git-upload-pack
        GET /info/refs?service=git-upload-pack
        POST /git-upload-pack
        POST /git-upload-pack
        GET /info/refs?service=git-receive-pack
        POST /git-receive-pack
        ");
        let cache = std::fs::read_dir(sandbox.path().join("cache/ferry"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir() && !p.ends_with("verified"))
            .expect("a cache repository");
        assert!(cache.join("shallow").exists(), "the cache is shallow");
        let cache = cache.display().to_string();
        let count = sandbox.git(&cache, &["rev-list", "--count", "refs/remotes/origin/dev"]);
        assert_eq!(count.trim(), "2", "the tip fetched, and the bump on it");
        let branches = sandbox.git(
            &cache,
            &["for-each-ref", "--format=%(refname)", "refs/remotes"],
        );
        assert_eq!(
            branches.trim(),
            "refs/remotes/origin/dev\nrefs/remotes/origin/prod\nrefs/remotes/origin/staging",
            "the environment branches were fetched"
        );
        for other in ["prod", "staging"] {
            let count = sandbox.git(
                &cache,
                &[
                    "rev-list",
                    "--count",
                    &format!("refs/remotes/origin/{other}"),
                ],
            );
            assert_eq!(count.trim(), "1", "only {other}'s tip");
        }
        // And the result is ordinary git.
        sandbox.git("", &["clone", "-q", &url, "clone"]);
        sandbox.git("clone", &["fsck", "--strict"]);
        let log = sandbox.git("clone", &["log", "--format=%s", "-1", "origin/dev"]);
        assert_eq!(log.trim(), "dev: bump web 1.19.0 → 2.0.0");
    }
}

mod transports {
    use super::*;

    #[test]
    fn git_protocol() {
        let sandbox = Sandbox::new();
        let root = project_root(sandbox.path());
        sandbox.git("", &["init", "-q", "--bare", "srv/deploy.git"]);
        let daemon = GitDaemon::serve(&root);
        let url = daemon.url("deploy.git");
        sandbox
            .ferry(&["init", "--remote", &url, "--envs", "dev,prod"])
            .run()
            .assert_code(0);
        sandbox
            .ferry(&[
                "bump",
                "web",
                "1.0.0",
                "--env",
                "dev",
                "--add",
                "--url",
                "https://a.example/web-1.0.0.tgz",
                "--sha256",
                B,
                "--remote",
                &url,
            ])
            .run()
            .assert_code(0);
        let run = sandbox.ferry(&["show", "dev", "--remote", &url]).run();
        run.assert_code(0);
        assert!(run.stdout.contains("web  1.0.0"), "{}", run.stdout);
        sandbox.git("srv/deploy.git", &["fsck", "--strict"]);
    }

    #[test]
    fn a_push_the_remote_refuses_is_reported_and_changes_nothing() {
        let sandbox = Sandbox::new();
        let (_server, url) = sandbox.serve_http(None);
        sandbox
            .ferry(&["init", "--remote", &url])
            .run()
            .assert_code(0);
        let hook = sandbox.path().join("srv/deploy.git/hooks/pre-receive");
        std::fs::write(
            &hook,
            "#!/bin/sh\necho 'dev is frozen for the release' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = sandbox.refs("srv/deploy.git");
        let run = sandbox
            .ferry(&[
                "bump",
                "web",
                "1.0.0",
                "--env",
                "dev",
                "--add",
                "--url",
                "https://a.example/w.tgz",
                "--sha256",
                B,
                "--remote",
                &url,
            ])
            .run();
        run.assert_code(1);
        assert!(
            run.stderr
                .starts_with("error: the push to `http://127.0.0.1:"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("was refused"), "{}", run.stderr);
        // The remote's own words reach the user, as `git push` shows them.
        assert!(
            run.stderr.contains("remote: dev is frozen for the release"),
            "{}",
            run.stderr
        );
        assert_eq!(sandbox.refs("srv/deploy.git"), before);
    }

    #[test]
    fn a_checked_out_branch_of_a_work_tree_is_not_moved() {
        let sandbox = Sandbox::new();
        sandbox.init("dev,prod");
        sandbox.git(
            "",
            &["clone", "-q", "--branch", "dev", "deploy.git", "work"],
        );
        let run = sandbox
            .ferry(&[
                "bump",
                "web",
                "1.0.0",
                "--env",
                "dev",
                "--add",
                "--url",
                "https://a.example/w.tgz",
                "--sha256",
                B,
                "--remote",
                "work",
            ])
            .run();
        run.assert_code(1);
        assert!(
            run.stderr
                .contains("branch `dev` is checked out in its work tree"),
            "{}",
            run.stderr
        );
        assert_eq!(sandbox.git("work", &["status", "--porcelain"]), "");
    }
}

#[test]
fn a_bump_on_a_branch_invalid_already_says_so() {
    let sandbox = Sandbox::new();
    let remote = with_web(&sandbox);
    let mut env: serde_json::Value =
        serde_json::from_str(&sandbox.show("dev", "environments/dev.json")).unwrap();
    env["protection"] = json!({"required_approvals": 9});
    let env = serde_json::to_string_pretty(&env).unwrap();
    sandbox.past_the_hook(|| {
        sandbox.commit_files(
            "dev",
            &[("environments/dev.json", &env)],
            "dev: a bad edit by hand",
        )
    });
    let run = sandbox
        .ferry(&[
            "bump", "web", "1.1.0", "--env", "dev", "--sha256", B, "--remote", &remote,
        ])
        .run();
    run.assert_code(1);
    assert!(
        run.stderr
            .starts_with("error: branch `dev` is invalid already; bumping cannot fix that"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`required_approvals` must be at most 6"),
        "{}",
        run.stderr
    );
}

mod warm_cache {
    use super::*;

    /// Regression: a bump through a cache that already holds the branch's tip (no fetch in
    /// that process) failed to push: libgit2 walked past the cache's shallow boundary.
    #[test]
    fn bumps_again_through_a_warm_shallow_cache() {
        let sandbox = Sandbox::new();
        let (_server, url) = sandbox.serve_http(None);
        // History the cache will not have: made through another cache.
        sandbox
            .ferry(&["init", "--remote", &url])
            .env("XDG_CACHE_HOME", "other")
            .run()
            .assert_code(0);
        for minor in 0..3 {
            let version = format!("1.{minor}.0");
            sandbox
                .ferry(&[
                    "bump", "web", &version, "--env", "dev", "--add", "--sha256", B, "--remote",
                    &url,
                ])
                .arg("--url")
                .arg(format!("https://a.example/web-{version}.tgz"))
                .env("XDG_CACHE_HOME", "other")
                .run()
                .assert_code(0);
        }
        // A read fills this cache shallowly; then two bumps in a row through it.
        sandbox
            .ferry(&["show", "dev", "--remote", &url])
            .run()
            .assert_code(0);
        for version in ["2.0.0", "2.1.0"] {
            let run = sandbox
                .ferry(&[
                    "bump", "web", version, "--env", "dev", "--sha256", C, "--remote", &url,
                ])
                .run();
            assert_eq!(run.code, Some(0), "bump to {version}: {}", run.render());
        }
        sandbox.git("srv/deploy.git", &["fsck", "--strict"]);
        let subject = sandbox.git("srv/deploy.git", &["log", "-1", "--format=%s", "dev"]);
        assert_eq!(subject.trim(), "dev: bump web 2.0.0 → 2.1.0");
    }
}

mod read {
    use super::*;

    fn repo_with_history(sandbox: &Sandbox) -> String {
        let remote = with_web(sandbox);
        for (app, version, sha, add) in [("api", "0.3.0", B, true), ("web", "1.1.0", C, false)] {
            let mut f = sandbox.ferry(&[
                "bump", app, version, "--env", "dev", "--sha256", sha, "--remote", &remote,
            ]);
            if add {
                f = f
                    .arg("--add")
                    .arg("--url")
                    .arg(format!("https://a.example/{app}-{version}.tgz"));
            }
            f.run().assert_code(0);
        }
        remote
    }

    /// History may hold states no validation has seen: a digest of 3 characters, or of
    /// multi-byte ones, is shown (or refused), never a panic.
    #[test]
    fn a_short_digest_in_history_is_no_panic() {
        let sandbox = Sandbox::new();
        let remote = repo_with_history(&sandbox);
        for digest in ["abc", "ééééééééééééééé"] {
            let manifest = format!(
                r#"{{"artifacts": {{"web": {{"version": "9.0.0", "url": "https://a.example/w.tgz", "sha256": "{digest}"}}}}}}"#
            );
            sandbox.past_the_hook(|| {
                sandbox.commit_files(
                    "dev",
                    &[("manifest.json", &manifest)],
                    "a state nobody validated",
                )
            });
            for args in [
                &["show", "dev"][..],
                &["show", "dev", "--at", "HEAD"],
                &["history", "dev"],
            ] {
                let run = sandbox.ferry(args).args(["--remote", &remote]).run();
                assert!(
                    matches!(run.code, Some(0 | 1)),
                    "{args:?}: {}",
                    run.render()
                );
                assert!(!run.stderr.contains("panicked"), "{}", run.render());
            }
        }
    }

    #[test]
    fn show_now_and_then() {
        let sandbox = Sandbox::new();
        let remote = repo_with_history(&sandbox);
        assert_snapshot!(
            sandbox
                .ferry(&["show", "dev", "--remote", &remote])
                .run()
                .render()
        );
        assert_snapshot!(
            sandbox
                .ferry(&["show", "dev", "--at", "HEAD~2", "--remote", &remote])
                .run()
                .render()
        );
        let run = sandbox
            .ferry(&[
                "show",
                "dev",
                "--at",
                "2023-11-14",
                "--remote",
                &remote,
                "--format",
                "json",
            ])
            .run();
        run.assert_code(0);
        assert_eq!(run.json()["commit"], sandbox.tip("dev"));
        let run = sandbox
            .ferry(&["show", "dev", "--at", "2001-01-01", "--remote", &remote])
            .run();
        assert_snapshot!(run.render());
        let run = sandbox
            .ferry(&["show", "dev", "--at", "yesterday-ish", "--remote", &remote])
            .run();
        run.assert_code(2);
    }

    #[test]
    fn diff_between_environments() {
        let sandbox = Sandbox::new();
        let remote = repo_with_history(&sandbox);
        assert_snapshot!(
            sandbox
                .ferry(&["diff", "dev", "staging", "--remote", &remote])
                .run()
                .render()
        );
        let run = sandbox
            .ferry(&[
                "diff", "staging", "dev", "--remote", &remote, "--format", "json",
            ])
            .run();
        run.assert_code(0);
        let apps = run.json()["apps"].clone();
        assert_eq!(apps[0]["app"], "api");
        assert_eq!(apps[0]["change"], "only-in-target");
    }

    #[test]
    fn history_of_a_branch() {
        let sandbox = Sandbox::new();
        let remote = repo_with_history(&sandbox);
        assert_snapshot!(
            sandbox
                .ferry(&["history", "dev", "--remote", &remote])
                .run()
                .render()
        );
        let run = sandbox
            .ferry(&[
                "history", "dev", "--app", "api", "--remote", &remote, "--format", "json",
            ])
            .run();
        run.assert_code(0);
        let entries = run.json();
        assert_eq!(entries.as_array().unwrap().len(), 1);
        assert_eq!(
            entries[0]["changes"],
            json!([{"app": "api", "from": null, "to": "0.3.0"}])
        );
    }
}

/// Verdicts (`src/verdict.rs`): a bump on a tree this ferry validated before checks only the
/// pin it changes. It must commit exactly what a bump with the whole state validated commits,
/// and refuse exactly what that refuses.
mod verdicts {
    use super::*;

    const USED: &str = "bumping on a tree validated before";
    const FULL: &str = "no verdict for the tip: validating it in full";

    fn bump(sandbox: &Sandbox, repo: &str, cache: &str, args: &[&str]) -> crate::common::Run {
        sandbox
            .ferry(&["bump", "web"])
            .args(args)
            .args(["--env", "dev", "--remote", repo, "--cache-dir", cache])
            .env("FERRY_LOG", "ferry=debug")
            .run()
    }

    #[test]
    fn a_bump_on_a_tree_validated_before_commits_what_a_full_validation_commits() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        sandbox.git("", &["clone", "-q", "--bare", "deploy.git", "twin.git"]);
        let twin = sandbox.path().join("twin.git").display().to_string();

        // The first bump has no verdict: it validates the tip in full and records its
        // verdict, then changes the one pin as on any verdict (the parsed edit and the text
        // edit write the same bytes: `plan::edit`'s unit tests).
        let warm = bump(&sandbox, &remote, "warm", &["1.1.0", "--sha256", B]);
        warm.assert_code(0);
        assert!(warm.stderr.contains(FULL), "{}", warm.stderr);
        assert!(warm.stderr.contains(USED), "{}", warm.stderr);
        let second = bump(&sandbox, &remote, "warm", &["1.2.0", "--sha256", C]);
        second.assert_code(0);
        assert!(second.stderr.contains(USED), "{}", second.stderr);
        assert!(!second.stderr.contains(FULL), "{}", second.stderr);

        // The same two bumps on a twin, each with an empty cache: the same commits, to the id.
        for (version, digest, cache) in [("1.1.0", B, "cold-1"), ("1.2.0", C, "cold-2")] {
            let run = bump(&sandbox, &twin, cache, &[version, "--sha256", digest]);
            run.assert_code(0);
            assert!(run.stderr.contains(FULL), "{}", run.stderr);
        }
        assert_eq!(
            sandbox.tip("dev"),
            sandbox.git("twin.git", &["rev-parse", "dev"]).trim()
        );
        sandbox.git("deploy.git", &["fsck", "--strict", "--no-dangling"]);
    }

    #[test]
    fn what_the_full_validation_refuses_is_refused_with_its_diagnostics() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        bump(&sandbox, &remote, "c", &["1.1.0", "--sha256", B]).assert_code(0);
        let before = sandbox.refs("deploy.git");
        // A verdict exists for the tip, but the new pin is not valid: the full validation
        // explains, with the file and position.
        let run = bump(
            &sandbox,
            &remote,
            "c",
            &[
                "1.2.0",
                "--sha256",
                C,
                "--url",
                "https://bot:hunter2@a.example/web-1.2.0.tgz",
            ],
        );
        run.assert_code(1);
        assert!(!run.stderr.contains(USED), "{}", run.stderr);
        assert!(
            run.stderr.contains("dev:manifest.json:")
                && run.stderr.contains("contains credentials"),
            "{}",
            run.stderr
        );
        // And the plan's own refusals come out the same on either path.
        let run = bump(&sandbox, &remote, "c", &["1.0.5", "--sha256", C]);
        run.assert_code(1);
        assert!(
            run.stderr.contains("would go down from 1.1.0 to 1.0.5"),
            "{}",
            run.stderr
        );
        assert_eq!(sandbox.refs("deploy.git"), before);
    }

    #[test]
    fn a_tree_changed_by_hand_has_no_verdict() {
        let sandbox = Sandbox::new();
        let remote = with_web(&sandbox);
        bump(&sandbox, &remote, "c", &["1.1.0", "--sha256", B]).assert_code(0);
        // A hand-made commit makes a new tree: validated in full, and found invalid.
        sandbox.past_the_hook(|| {
            sandbox.edit_env("dev", "dev", |env| {
                env["protection"] = json!({"required_approvals": 9});
            })
        });
        let run = bump(&sandbox, &remote, "c", &["1.2.0", "--sha256", C]);
        run.assert_code(1);
        assert!(!run.stderr.contains(USED), "{}", run.stderr);
        assert!(run.stderr.contains("is invalid already"), "{}", run.stderr);
    }
}

/// libgit2 starts without TLS roots (`src/store/tls.rs`) and gets them when an https remote
/// is opened: an https remote must still be verified, against `SSL_CERT_FILE` when set.
mod tls {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    use super::*;

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn openssl(sandbox: &Sandbox, args: &[&str]) {
        crate::common::prereq::require("openssl", "Debian package openssl");
        let output = Command::new("openssl")
            .args(args)
            .current_dir(sandbox.path())
            .output()
            .expect("openssl (installed by .ci/run)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn an_https_remote_is_verified_against_the_system_roots() {
        let sandbox = Sandbox::new();
        sandbox.init("dev,prod");
        std::fs::create_dir_all(sandbox.path().join("srv")).unwrap();
        sandbox.git(
            "",
            &["clone", "-q", "--bare", "deploy.git", "srv/deploy.git"],
        );
        std::fs::write(
            sandbox.path().join("san.ext"),
            "subjectAltName=IP:127.0.0.1\n",
        )
        .unwrap();
        for args in [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ferry test CA",
            ][..],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ] {
            openssl(&sandbox, args);
        }
        let mut child = Command::new("python3")
            .arg(crate::common::crate_path("tests/fixtures/git_http.py"))
            .args(["srv", "--tls", "server.pem", "server.key"])
            .current_dir(sandbox.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (installed by .ci/run)");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let _server = Server(child);
        let url = format!("https://127.0.0.1:{}/deploy.git", port.trim());

        // Not signed by a root the system trusts: refused, nothing cached as fetched.
        let run = sandbox.ferry(&["show", "dev", "--remote", &url]).run();
        run.assert_code(1);
        assert!(run.stderr.contains("certificate"), "{}", run.stderr);

        // With the test CA as the roots, as OpenSSL reads them: verified, and read.
        let ca = sandbox.path().join("ca.pem").display().to_string();
        let run = sandbox
            .ferry(&["show", "dev", "--remote", &url])
            .env("SSL_CERT_FILE", &ca)
            .run();
        run.assert_code(0);
        assert!(run.stdout.starts_with("dev at "), "{}", run.stdout);
    }
}
