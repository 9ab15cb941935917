//! `ferry migrate`: a repository of the seed example's layout (bare file-name pins,
//! `*-env.json` on `dev`, `staging` and `production`, a `bttp://` typo) converted in place,
//! over a path and over smart HTTP, its artifacts hashed from real files and from a loopback
//! server; then validated, shown and deployed by ferry's own commands.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use insta::assert_snapshot;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::Sandbox;

/// The branches of the seed example, and the versions each pins (`my-app`, `my-api`).
const BRANCHES: [(&str, &str, &str); 3] = [
    ("dev", "1.1.0", "1.0.5"),
    ("staging", "1.0.0", "1.0.4"),
    ("production", "1.0.0", "1.0.4"),
];

/// `ferry` with each artifact's digest shown as `[sha256 of FILE]` (the zip format's bytes
/// are Python's to choose; the digests themselves are checked against the files elsewhere).
fn digests_redacted(mut ferry: crate::common::Ferry, dir: &Path) -> crate::common::Ferry {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        ferry
            .replace
            .push((sha256(&entry.path()), format!("[sha256 of {name}]")));
    }
    ferry
}

/// A zip holding `index.html` that says which app and version it is, made with Python's
/// `zipfile` at a fixed time (so its digest, and the snapshots, are stable).
fn zip(dir: &Path, app: &str, version: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{app}-{version}.zip"));
    let script = "import sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
        \x20   z.writestr(zipfile.ZipInfo('index.html', (2024, 1, 1, 0, 0, 0)), sys.argv[2])\n";
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .arg(format!("{app} {version}\n"))
        .status()
        .expect("python3");
    assert!(status.success());
    file
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every artifact the seed branches pin, in `artifacts/`.
fn artifacts(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.path().join("artifacts");
    for (_, app, api) in BRANCHES {
        zip(&dir, "my-app", app);
        zip(&dir, "my-api", api);
    }
    dir
}

/// The seed example's files for one branch; dev's apps health-checked at `health` (or not
/// at all), prod's `my-api` with the seed's `bttp://` typo.
fn seed_files(app: &str, api: &str, health: Option<&str>) -> Vec<(String, String)> {
    let mut files = vec![(
        "manifest.json".to_owned(),
        format!(
            r#"{{
  "version": "1.0.0",
  "description": "The seed example",
  "artifacts": {{ "my-app": "my-app-{app}.zip", "my-api": "my-api-{api}.zip" }}
}}
"#
        ),
    )];
    for (env, octet) in [("dev", 0), ("staging", 1), ("prod", 2)] {
        let check = |port: u16| match (env, health) {
            ("dev", Some(url)) => format!(r#", "healthcheck_url": "{url}""#),
            ("dev", None) => String::new(),
            // The seed example's typo.
            ("prod", _) if port == 6 => {
                r#", "healthcheck_url": "bttp://10.0.2.6:8080/health""#.to_owned()
            }
            _ => format!(r#", "healthcheck_url": "http://10.0.{octet}.{port}:8080/health""#),
        };
        files.push((
            format!("{env}-env.json"),
            format!(
                "{{\n  \"my-app\": {{ \"host\": \"10.0.{octet}.5\", \"deployment_path\": \"/opt/my-app\"{} }},\n  \"my-api\": {{ \"host\": \"10.0.{octet}.6\", \"deployment_path\": \"/opt/my-api\"{} }}\n}}\n",
                check(5),
                check(6)
            ),
        ));
    }
    files
}

/// A bare repository `repo` (relative to the sandbox) with ferry's hooks, holding the seed
/// example on `dev`, `staging` and `production`, pushed with plain git.
fn seed_repo(sandbox: &Sandbox, repo: &str, health: Option<&str>) -> String {
    let path = sandbox.path().join(repo);
    if !path.exists() {
        sandbox.git("", &["init", "-q", "--bare", repo]);
    }
    let remote = path.display().to_string();
    // The hooks go in first (the repository has no environment yet: that part fails).
    sandbox
        .ferry(&["protect", "apply", "--forge", "local", "--remote", &remote])
        .run();
    assert!(path.join("hooks/pre-receive").exists());
    let work = format!("seed-work-{}", repo.replace('/', "-"));
    sandbox.git("", &["init", "-q", &work]);
    for (branch, app, api) in BRANCHES {
        sandbox.git(&work, &["checkout", "-q", "-B", branch]);
        for (file, text) in seed_files(app, api, health) {
            std::fs::write(sandbox.path().join(&work).join(file), text).unwrap();
        }
        sandbox.git(&work, &["add", "--all"]);
        sandbox.git(
            &work,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("{branch}: the seed example"),
            ],
        );
        sandbox.git(&work, &["push", "-q", &remote, &format!("HEAD:{branch}")]);
    }
    remote
}

/// `ferry migrate --remote REMOTE --artifact-base BASE` with `flags` before them.
fn migrate(
    sandbox: &Sandbox,
    flags: &[&str],
    remote: &str,
    base: impl AsRef<std::ffi::OsStr>,
) -> crate::common::Ferry {
    sandbox
        .ferry(&["migrate"])
        .args(flags)
        .args(["--remote", remote, "--artifact-base"])
        .arg(base)
}

/// Serves the files of `dir` at `/NAME` (404 for anything else); the paths asked for.
fn file_server(dir: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let line = crate::common::http::read_request_head(&stream);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            log.lock().unwrap().push(path.clone());
            let mut stream = stream;
            let file = dir.join(path.trim_start_matches('/'));
            let (status, body) = match std::fs::read(&file) {
                Ok(bytes) if !path.contains("..") => ("200 OK", bytes),
                _ => ("404 Not Found", b"not found".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (format!("http://127.0.0.1:{port}/releases"), asked)
}

/// Each branch valid, shown, with exactly one migration commit on top of the seed.
#[track_caller]
fn assert_migrated(sandbox: &Sandbox, repo: &str, remote: &str, before: &str) {
    for (branch, ..) in BRANCHES {
        let tip = sandbox.git(repo, &["rev-parse", branch]);
        let parent = sandbox.git(repo, &["rev-parse", &format!("{branch}^")]);
        assert!(
            before.contains(&format!("refs/heads/{branch} {}", parent.trim())),
            "{branch}: {before}"
        );
        let log = sandbox.git(repo, &["log", "--format=%s", branch]);
        assert_eq!(
            log.lines()
                .filter(|l| l.starts_with("ferry migrate"))
                .count(),
            1,
            "{log}"
        );
        let files = sandbox.git(repo, &["ls-tree", "-r", "--name-only", tip.trim()]);
        assert_eq!(
            files,
            "environments/dev.json\nenvironments/prod.json\nenvironments/staging.json\nmanifest.json\n"
        );
        let checkout = format!("check-{branch}");
        sandbox.git("", &["clone", "-q", "--branch", branch, repo, &checkout]);
        sandbox.ferry(&["validate", &checkout]).run().assert_code(0);
        std::fs::remove_dir_all(sandbox.path().join(&checkout)).unwrap();
    }
    let prod: Value =
        serde_json::from_str(&sandbox.git(repo, &["show", "production:environments/prod.json"]))
            .unwrap();
    assert_eq!(prod["branch"], "production");
    assert_eq!(prod["promotes_from"], "staging");
    let run = sandbox
        .ferry(&["show", "prod", "--remote", remote, "--format", "json"])
        .run();
    run.assert_code(0);
    assert!(run.stdout.contains("1.0.4"), "{}", run.stdout);
}

#[test]
fn invalid_values_are_reported_with_their_positions_and_nothing_is_written() {
    let sandbox = Sandbox::new();
    let base = artifacts(&sandbox);
    let remote = seed_repo(&sandbox, "deploy.git", None);
    // Relative paths, and a version no file name carries, on staging alone.
    sandbox.git("seed-work-deploy.git", &["checkout", "-q", "staging"]);
    let work = sandbox.path().join("seed-work-deploy.git");
    let env = std::fs::read_to_string(work.join("dev-env.json")).unwrap();
    std::fs::write(
        work.join("dev-env.json"),
        env.replace("\"/opt/my-app\"", "\"opt/my-app\""),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(work.join("manifest.json")).unwrap();
    std::fs::write(
        work.join("manifest.json"),
        manifest.replace("my-api-1.0.4", "my-api-1.0"),
    )
    .unwrap();
    sandbox.git(
        "seed-work-deploy.git",
        &["commit", "-qam", "staging: broken"],
    );
    sandbox.git(
        "seed-work-deploy.git",
        &["push", "-q", &remote, "HEAD:staging"],
    );
    let before = sandbox.refs("deploy.git");

    let run = migrate(&sandbox, &[], &remote, &base).run();
    assert_snapshot!(run.render());
    assert_eq!(sandbox.refs("deploy.git"), before);

    // `--drop-invalid` drops the typo, but a relative path and an unreadable version stay
    // errors.
    let run = migrate(&sandbox, &["--drop-invalid"], &remote, &base).run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("staging:dev-env.json:2:")
            && run.stderr.contains("staging:manifest.json:4:")
            && run.stderr.contains("pointer: /artifacts/my-api")
            && !run.stderr.contains("bttp"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
}

#[test]
fn a_dry_run_prints_each_branch_s_diff_and_changes_nothing() {
    let sandbox = Sandbox::new();
    let base = artifacts(&sandbox);
    let remote = seed_repo(&sandbox, "deploy.git", None);
    let before = sandbox.refs("deploy.git");
    let run = digests_redacted(
        migrate(&sandbox, &["--dry-run", "--drop-invalid"], &remote, &base),
        &base,
    )
    .run();
    assert_snapshot!(run.render());
    assert_eq!(sandbox.refs("deploy.git"), before);

    let run = migrate(
        &sandbox,
        &["--dry-run", "--drop-invalid", "--format", "json"],
        &remote,
        &base,
    )
    .run();
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["dry_run"], true);
    let branches = report["branches"].as_array().unwrap();
    assert_eq!(branches.len(), 3);
    assert!(
        branches
            .iter()
            .all(|b| b["status"] == "planned" && b["commit"].is_null())
    );
    assert_eq!(sandbox.refs("deploy.git"), before);
}

#[test]
fn migrates_over_a_path_then_validates_shows_deploys_and_has_nothing_more_to_do() {
    let sandbox = Sandbox::new();
    let base = artifacts(&sandbox);
    let (health, _) = crate::agent::health_server();
    let remote = seed_repo(&sandbox, "deploy.git", Some(&health));
    let before = sandbox.refs("deploy.git");
    let run = migrate(
        &sandbox,
        &["--drop-invalid", "--format", "json"],
        &remote,
        &base,
    )
    .run();
    run.assert_code(0);
    assert!(
        run.stderr.contains("dev:prod-env.json:3:")
            && run
                .stderr
                .contains("warning: dropped `healthcheck_url` of `my-api`"),
        "{}",
        run.stderr
    );
    let report = run.json();
    let dev = &report["branches"][0];
    assert_eq!(
        (&dev["env"], &dev["branch"], &dev["status"]),
        (&"dev".into(), &"dev".into(), &"migrated".into())
    );
    assert_eq!(dev["pins_converted"], 2);
    assert_eq!(dev["dropped"][0]["pointer"], "/my-api/healthcheck_url");
    assert_eq!(dev["commit"], sandbox.tip("dev"));
    let prod = &report["branches"][2];
    assert_eq!(
        (&prod["env"], &prod["branch"]),
        (&"prod".into(), &"production".into())
    );

    // Each branch's own versions, digests of the real files.
    let manifest: Value = serde_json::from_str(&sandbox.show("dev", "manifest.json")).unwrap();
    let file = base.join("my-app-1.1.0.zip");
    assert_eq!(
        manifest["artifacts"]["my-app"],
        serde_json::json!({
            "version": "1.1.0",
            "url": format!("file://{}", base.canonicalize().unwrap().join("my-app-1.1.0.zip").display()),
            "sha256": sha256(&file),
        })
    );
    assert_eq!(manifest["version"], "1.0.0");
    assert_eq!(manifest["description"], "The seed example");
    let staging: Value = serde_json::from_str(&sandbox.show("staging", "manifest.json")).unwrap();
    assert_eq!(staging["artifacts"]["my-api"]["version"], "1.0.4");
    // Authored by the acting identity (the login, on a path), as other commands do.
    assert_eq!(
        sandbox
            .git("deploy.git", &["log", "-1", "--format=%an <%ae>", "dev"])
            .trim(),
        "ci-bot <ci-bot@ferry.invalid>"
    );
    assert_migrated(&sandbox, "deploy.git", &remote, &before);

    // The agent deploys what was migrated, health-checked at a server that answers.
    let root = sandbox.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // One agent per host, as the seed's files place the apps (here on one machine).
    for host in ["10.0.0.5", "10.0.0.6"] {
        let run = sandbox
            .ferry(&["agent", "--env", "dev", "--once", "--remote", &remote])
            .args(["--host", host])
            .arg("--root")
            .arg(&root)
            .arg("--state-dir")
            .arg(sandbox.path().join("state").join(host))
            .run();
        run.assert_code(0);
    }
    assert_eq!(
        std::fs::read_to_string(root.join("opt/my-app/index.html")).unwrap(),
        "my-app 1.1.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/my-api/index.html")).unwrap(),
        "my-api 1.0.5\n"
    );

    // Again: nothing to do.
    let after = sandbox.refs("deploy.git");
    let run = migrate(&sandbox, &[], &remote, &base).run();
    run.assert_code(0);
    assert!(run.stderr.contains("nothing to migrate"), "{}", run.stderr);
    assert_eq!(sandbox.refs("deploy.git"), after);
}

#[test]
fn migrates_over_smart_http_hashing_what_an_artifact_server_serves() {
    let sandbox = Sandbox::new();
    let dir = artifacts(&sandbox);
    // A listing's or a `.sha256` file's word is never taken: only the bytes.
    std::fs::write(
        dir.join("my-app-1.0.0.zip.sha256"),
        format!("{}  my-app-1.0.0.zip\n", "0".repeat(64)),
    )
    .unwrap();
    let served = sandbox.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::rename(&dir, served.join("releases")).unwrap();
    let (artifact_base, asked) = file_server(served.clone());
    let (_server, url) = sandbox.serve_http(None);
    seed_repo(&sandbox, "srv/deploy.git", None);
    let before = sandbox.refs("srv/deploy.git");

    // A missing artifact: a clear error, and nothing written.
    std::fs::rename(
        served.join("releases/my-api-1.0.5.zip"),
        sandbox.path().join("aside.zip"),
    )
    .unwrap();
    let run = migrate(&sandbox, &["--drop-invalid"], &url, &artifact_base).run();
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("cannot hash `my-api-1.0.5.zip`, which `my-api` pins on `dev`")
            && run.stderr.contains("HTTP 404"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.refs("srv/deploy.git"), before);
    std::fs::rename(
        sandbox.path().join("aside.zip"),
        served.join("releases/my-api-1.0.5.zip"),
    )
    .unwrap();

    let run = migrate(&sandbox, &["--drop-invalid"], &url, &artifact_base).run();
    run.assert_code(0);
    assert!(
        run.stdout.contains("production: migrated ("),
        "{}",
        run.stdout
    );
    let manifest: Value =
        serde_json::from_str(&sandbox.git("srv/deploy.git", &["show", "staging:manifest.json"]))
            .unwrap();
    assert_eq!(
        manifest["artifacts"]["my-app"]["sha256"],
        sha256(&served.join("releases/my-app-1.0.0.zip"))
    );
    assert_eq!(
        manifest["artifacts"]["my-app"]["url"],
        format!("{artifact_base}/my-app-1.0.0.zip")
    );
    // The output names each digest as pinned, to compare with a dry run's.
    assert!(
        run.stdout.contains(&format!(
            "  my-app 1.0.0  sha256:{}  {artifact_base}/my-app-1.0.0.zip",
            sha256(&served.join("releases/my-app-1.0.0.zip"))
        )),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("only agents on this machine"),
        "{}",
        run.stderr
    );
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().all(|p| !p.ends_with(".sha256")), "{asked:?}");
    // Each file fetched once, whatever the number of branches pinning it.
    assert_eq!(
        asked
            .iter()
            .filter(|p| p.ends_with("my-app-1.0.0.zip"))
            .count(),
        1,
        "{asked:?}"
    );
    assert_migrated(&sandbox, "srv/deploy.git", &url, &before);

    let run = migrate(&sandbox, &["--format", "json"], &url, &artifact_base).run();
    run.assert_code(0);
    assert_eq!(run.json()["changed"], false);
}
