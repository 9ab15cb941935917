//! OCI registries for real: `ferry publish` and `ferry agent --source oci://…` against Debian's
//! `docker-registry` on 127.0.0.1, `oci://` artifacts in manifests, credentials, and the
//! independent client `oras` pushing what ferry deploys and pulling what ferry published.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent::{agent, artifact, bump, live, once, repo, status};
use crate::common::Sandbox;
use crate::common::registry::{Registry, oras};

fn publish(sandbox: &Sandbox, remote: &str, to: &str) -> crate::common::Run {
    sandbox
        .ferry(&[
            "publish", "dev", "--to", to, "--remote", remote, "--format", "json",
        ])
        .run()
}

/// `ferry agent --env dev --source SOURCE --once`, deploying into the sandbox.
fn agent_from(sandbox: &Sandbox, source: &str) -> crate::common::Run {
    once(sandbox, &["--source", source]).run()
}

fn deployed_version(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(live(sandbox).join("index.html")).unwrap_or_default()
}

fn count(registry: &Registry, prefix: &str) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.starts_with(prefix))
        .count()
}

#[test]
fn publish_pushes_an_immutable_commit_tag_and_moves_the_environment_tag() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    let to = format!("oci://{}/deploy", registry.host());
    let run = publish(&sandbox, &remote, &to);
    run.assert_code(0);
    let first = run.json();
    let tip = sandbox.tip("dev");
    assert_eq!(first["revision"], tip.as_str());
    assert_eq!(first["changed"], true);
    let digest = first["digest"].as_str().unwrap().to_owned();
    let mut expected = vec![tip.clone(), "dev".to_owned()];
    expected.sort();
    assert_eq!(registry.tags("deploy"), expected);
    assert_eq!(
        registry.digest("deploy", "dev").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        registry.digest("deploy", &tip).as_deref(),
        Some(digest.as_str())
    );

    // The same commit again: nothing is pushed.
    let puts = count(&registry, "PUT ");
    let again = publish(&sandbox, &remote, &to);
    again.assert_code(0);
    assert_eq!(again.json()["changed"], false);
    assert_eq!(again.json()["digest"], digest.as_str());
    assert_eq!(count(&registry, "PUT "), puts);
    let text = sandbox
        .ferry(&["publish", "dev", "--to", &to, "--remote", &remote])
        .run();
    text.assert_code(0);
    assert!(
        text.stdout.contains("nothing to publish"),
        "{}",
        text.stdout
    );

    // A new commit: dev moves, the first commit's tag stays.
    bump(
        &sandbox,
        &remote,
        "1.1.0",
        &artifact(&sandbox, "1.1.0"),
        false,
    );
    let second = publish(&sandbox, &remote, &to);
    second.assert_code(0);
    let second_digest = second.json()["digest"].as_str().unwrap().to_owned();
    assert_ne!(second_digest, digest);
    assert_eq!(
        registry.digest("deploy", "dev"),
        Some(second_digest.clone())
    );
    assert_eq!(registry.digest("deploy", &tip), Some(digest.clone()));

    // A commit's tag that holds something else is never overwritten, and dev does not move.
    bump(
        &sandbox,
        &remote,
        "1.2.0",
        &artifact(&sandbox, "1.2.0"),
        false,
    );
    let third = sandbox.tip("dev");
    let other = sandbox.path().join("other.txt");
    std::fs::write(&other, "not a state\n").unwrap();
    let target = format!("{}/deploy:{third}", registry.host());
    let squatter = oras(&["push", &target, other.to_str().unwrap()], &[]);
    let refused = publish(&sandbox, &remote, &to);
    refused.assert_code(1);
    assert!(refused.stderr.contains("immutable"), "{}", refused.stderr);
    assert_eq!(
        registry.digest("deploy", &third),
        Some(squatter.trim().to_owned())
    );
    assert_eq!(registry.digest("deploy", "dev"), Some(second_digest));

    // The repository must be named without a tag: ferry names the tags.
    let usage = sandbox
        .ferry(&[
            "publish",
            "dev",
            "--to",
            &format!("{to}:v1"),
            "--remote",
            &remote,
        ])
        .run();
    usage.assert_code(2);
    assert!(usage.stderr.contains("names a tag"), "{}", usage.stderr);
}

#[test]
fn oras_pulls_the_state_ferry_published() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    publish(
        &sandbox,
        &remote,
        &format!("oci://{}/deploy", registry.host()),
    )
    .assert_code(0);
    let out = sandbox.path().join("pulled");
    let files = oras(
        &[
            "pull",
            &format!("{}/deploy:dev", registry.host()),
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(files.trim().ends_with("ferry-state.tar.gz"), "{files}");
    let listing = std::process::Command::new("tar")
        .arg("xzvf")
        .arg(files.trim())
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(listing.status.success());
    for (path, branch_path) in [
        ("manifest.json", "manifest.json"),
        ("environments/dev.json", "environments/dev.json"),
        ("environments/prod.json", "environments/prod.json"),
    ] {
        assert_eq!(
            std::fs::read_to_string(out.join(path)).unwrap(),
            sandbox.show("dev", branch_path),
            "{path}"
        );
    }
}

#[test]
fn the_agent_deploys_from_the_registry_with_one_head_per_interval() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    let to = format!("oci://{}/deploy", registry.host());
    publish(&sandbox, &remote, &to).assert_code(0);
    let source = format!("{to}:dev");

    let run = agent_from(&sandbox, &source);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "dev: deployed");
    assert_eq!(deployed_version(&sandbox), "web 1.0.0\n");
    assert_eq!(status(&sandbox)["revision"], sandbox.tip("dev").as_str());

    // A running agent: a HEAD per interval, a pull only when the tag moved.
    let mut command = sandbox
        .ferry(&[
            "agent",
            "--env",
            "dev",
            "--source",
            &source,
            "--interval",
            "1s",
        ])
        .args(["--remote", &remote])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .command;
    let mut child = command.stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let gets_before = count(&registry, "GET /v2/deploy/manifests/");
    let heads_before = count(&registry, "HEAD /v2/deploy/manifests/dev");
    while count(&registry, "HEAD /v2/deploy/manifests/dev") < heads_before + 4 {
        assert!(started.elapsed() < Duration::from_secs(30), "no polls");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first reconcile of the new process pulls the manifest once (the layer is cached).
    assert!(count(&registry, "GET /v2/deploy/manifests/") <= gets_before + 1);
    assert_eq!(
        count(&registry, "GET /v2/deploy/blobs/"),
        1,
        "{:#?}",
        registry.requests()
    );

    bump(
        &sandbox,
        &remote,
        "1.1.0",
        &artifact(&sandbox, "1.1.0"),
        false,
    );
    publish(&sandbox, &remote, &to).assert_code(0);
    while deployed_version(&sandbox) != "web 1.1.0\n" {
        assert!(started.elapsed() < Duration::from_secs(60), "not deployed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The deploy is reported after the switch: wait for the report, in status.json and in
    // the (local) forge, which `--remote` names.
    let tip = sandbox.tip("dev");
    let reported = || {
        let statuses = sandbox
            .ferry(&["status", "--remote", &remote, "--format", "json"])
            .run()
            .json();
        statuses[0]["commit"] == tip.as_str() && statuses[0]["deploy"]["state"] == "success"
    };
    while status(&sandbox)["revision"] != tip.as_str() || !reported() {
        assert!(started.elapsed() < Duration::from_secs(60), "not reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn oci_artifacts_in_a_manifest_are_pinned_by_manifest_digest() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    agent(&sandbox, &remote, &[]).assert_code(0);
    // oras (an independent client) pushes the artifact; the manifest pins its digest.
    let file = artifact(&sandbox, "2.0.0");
    let renamed = sandbox.path().join("web-2.0.0.tar.gz");
    std::fs::rename(&file, &renamed).unwrap();
    let tag = format!("{}/web:2.0.0", registry.host());
    let digest = oras(&["push", &tag, renamed.to_str().unwrap()], &[]);
    let digest = digest.trim().strip_prefix("sha256:").unwrap().to_owned();
    let url = format!("oci://{tag}");
    sandbox
        .ferry(&["bump", "web", "2.0.0", "--env", "dev", "--remote", &remote])
        .args(["--url", &url, "--sha256", &digest])
        .run()
        .assert_code(0);
    agent(&sandbox, &remote, &[]).assert_code(0);
    assert_eq!(deployed_version(&sandbox), "web 2.0.0\n");

    // A pin whose digest is not what the tag holds (the tag was moved, or the pin is wrong):
    // refused before anything is unpacked.
    let file = artifact(&sandbox, "2.0.1");
    let renamed = sandbox.path().join("web-2.0.1.tar.gz");
    std::fs::rename(&file, &renamed).unwrap();
    oras(
        &[
            "push",
            &format!("{}/web:2.0.1", registry.host()),
            renamed.to_str().unwrap(),
        ],
        &[],
    );
    sandbox
        .ferry(&["bump", "web", "2.0.1", "--env", "dev", "--remote", &remote])
        .args([
            "--url",
            &format!("oci://{}/web:2.0.1", registry.host()),
            "--sha256",
            &"ab".repeat(32),
        ])
        .run()
        .assert_code(0);
    let run = agent(&sandbox, &remote, &[]);
    run.assert_code(1);
    assert!(run.stdout.contains("manifest digest"), "{}", run.stdout);
    assert_eq!(
        deployed_version(&sandbox),
        "web 2.0.0\n",
        "the running release stays"
    );
}

#[test]
fn registry_failures_are_clear_and_the_running_release_stays() {
    let (sandbox, remote) = repo(json!({}));
    let mut registry = Registry::start(sandbox.path());
    let to = format!("oci://{}/deploy", registry.host());
    publish(&sandbox, &remote, &to).assert_code(0);
    agent_from(&sandbox, &format!("{to}:dev")).assert_code(0);
    let running = std::fs::read_link(live(&sandbox)).unwrap();

    // A tag nobody published.
    let run = agent_from(&sandbox, &format!("{to}:nope"));
    run.assert_code(1);
    assert!(run.stdout.contains("no such tag"), "{}", run.stdout);
    assert!(run.stdout.contains("ferry publish dev"), "{}", run.stdout);

    // Something that is not a ferry state.
    let other = sandbox.path().join("notes.txt");
    std::fs::write(&other, "hello\n").unwrap();
    oras(
        &[
            "push",
            &format!("{}/deploy:notes", registry.host()),
            other.to_str().unwrap(),
        ],
        &[],
    );
    let run = agent_from(&sandbox, &format!("{to}:notes"));
    run.assert_code(1);
    assert!(run.stdout.contains("not a ferry state"), "{}", run.stdout);

    // The registry is down: retried, nothing changed.
    registry.stop();
    let run = agent_from(&sandbox, &format!("{to}:dev"));
    run.assert_code(1);
    assert!(run.stdout.contains("dev: retrying"), "{}", run.stdout);
    assert!(run.stdout.contains("cannot be reached"), "{}", run.stdout);
    assert_eq!(status(&sandbox)["state"], "retrying");
    assert_eq!(std::fs::read_link(live(&sandbox)).unwrap(), running);
    assert_eq!(deployed_version(&sandbox), "web 1.0.0\n");
    let registry = registry.restart();
    agent_from(&sandbox, &format!("{to}:dev")).assert_code(0);
    drop(registry);
}

#[test]
fn credentials_come_from_the_environment_or_docker_config_and_a_refusal_is_clear() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start_with_users(sandbox.path(), &[("ci", "s3cret-pw")]);
    let to = format!("oci://{}/deploy", registry.host());

    // Anonymous: refused, with what to do; nothing pushed.
    let run = publish(&sandbox, &remote, &to);
    run.assert_code(1);
    assert!(
        run.stderr.contains("refused access (anonymously"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("FERRY_REGISTRY_USER"), "{}", run.stderr);

    // A wrong password: refused, and never shown.
    let run = sandbox
        .ferry(&["publish", "dev", "--to", &to, "--remote", &remote, "-vvv"])
        .env("FERRY_REGISTRY_USER", "ci")
        .env("FERRY_REGISTRY_PASSWORD", "wrong-pw")
        .run();
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("refused access (with the credentials from FERRY_REGISTRY_USER)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-pw") && !run.stdout.contains("wrong-pw"));

    // The right ones, from the environment: published.
    sandbox
        .ferry(&["publish", "dev", "--to", &to, "--remote", &remote])
        .env("FERRY_REGISTRY_USER", "ci")
        .env("FERRY_REGISTRY_PASSWORD", "s3cret-pw")
        .run()
        .assert_code(0);

    // From Docker's config.json (as `docker login` writes it): the agent pulls.
    use base64::Engine;
    let docker = sandbox.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret-pw");
    let config = json!({"auths": {registry.host(): {"auth": auth}}});
    std::fs::write(docker.join("config.json"), config.to_string()).unwrap();
    let run = once(&sandbox, &["--source", &format!("{to}:dev")])
        .arg("-vvv")
        .env("DOCKER_CONFIG", docker.to_str().unwrap())
        .run();
    run.assert_code(0);
    assert_eq!(deployed_version(&sandbox), "web 1.0.0\n");
    assert!(!run.stderr.contains("s3cret-pw") && !run.stderr.contains(&auth));

    // Without them, the agent is refused and says so; the running release stays.
    let run = agent_from(&sandbox, &format!("{to}:dev"));
    run.assert_code(1);
    assert!(run.stdout.contains("refused access"), "{}", run.stdout);
    assert_eq!(deployed_version(&sandbox), "web 1.0.0\n");
}

/// A registry behind the token flow (`WWW-Authenticate: Bearer realm=…`), as Docker Hub and
/// GHCR are: `tests/fixtures/token_registry.py` in front of the real registry.
struct TokenRegistry(std::process::Child, u16);

impl TokenRegistry {
    fn start(upstream: &Registry, user: &str, password: &str) -> TokenRegistry {
        use std::io::BufRead;
        let script = crate::common::crate_path("tests/fixtures/token_registry.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args([&upstream.port.to_string(), user, password])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TokenRegistry(child, line.trim().parse().expect("the port"))
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bearer_token_registries_are_published_to_and_pulled_from() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    let tokens = TokenRegistry::start(&registry, "ci", "t0ken-pw");
    let to = format!("oci://127.0.0.1:{}/deploy", tokens.1);
    let with_credentials = |f: crate::common::Ferry, password: &str| {
        f.env("FERRY_REGISTRY_USER", "ci")
            .env("FERRY_REGISTRY_PASSWORD", password)
            .run()
    };
    let refused = with_credentials(
        sandbox.ferry(&["publish", "dev", "--to", &to, "--remote", &remote]),
        "wrong",
    );
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("refused access"),
        "{}",
        refused.stderr
    );
    assert!(registry.tags("deploy").is_empty());

    with_credentials(
        sandbox.ferry(&["publish", "dev", "--to", &to, "--remote", &remote]),
        "t0ken-pw",
    )
    .assert_code(0);
    assert_eq!(registry.tags("deploy").len(), 2);
    let run = with_credentials(
        once(&sandbox, &["--source", &format!("{to}:dev")]),
        "t0ken-pw",
    );
    run.assert_code(0);
    assert_eq!(deployed_version(&sandbox), "web 1.0.0\n");
}

/// A signed commit travels with its published state: an agent with `--trusted-keys` deploys
/// it from the registry, refuses an unsigned one, and refuses a layer whose files are not the
/// signed commit's tree, though the artifact carries that commit, its signature and its trees.
#[test]
fn the_agent_deploys_from_the_registry_only_a_state_its_signed_commit_covers() {
    use std::process::Command;
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    let to = format!("oci://{}/deploy", registry.host());
    let source = format!("{to}:dev");
    let key = sandbox.path().join("ci");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let signers = sandbox.path().join("allowed_signers");
    std::fs::write(&signers, format!("ci@example.com {public}")).unwrap();
    let trusting = |sandbox: &Sandbox| {
        once(sandbox, &["--source", &source])
            .args(["--trusted-keys", signers.to_str().unwrap()])
            .run()
    };
    let bump_signed = |version: &str, signed: bool| {
        let file = artifact(&sandbox, version);
        let url = format!("file://{}", file.display());
        let mut command = crate::agent::bump_from(&sandbox, &remote, version, &url, &file);
        if signed {
            command = command.env("FERRY_SIGNING_KEY", key.to_str().unwrap());
        }
        command.run().assert_code(0);
        sandbox.tip("dev")
    };

    let signed = bump_signed("1.1.0", true);
    publish(&sandbox, &remote, &to).assert_code(0);
    let run = trusting(&sandbox);
    run.assert_code(0);
    assert_eq!(deployed_version(&sandbox), "web 1.1.0\n");

    let unsigned = bump_signed("1.2.0", false);
    publish(&sandbox, &remote, &to).assert_code(0);
    let run = trusting(&sandbox);
    run.assert_code(1);
    assert!(run.stdout.contains("stalled: unsigned"), "{}", run.render());
    assert_eq!(deployed_version(&sandbox), "web 1.1.0\n");

    // 1.2.0's files, dressed in 1.1.0's signed commit and trees.
    let raw = |id: &str| -> Result<Vec<u8>, ferry::oci::state::ProofError> {
        let kind = if id == signed { "commit" } else { "tree" };
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(sandbox.path().join("deploy.git"))
            .args(["cat-file", kind, id])
            .output()
            .unwrap();
        Ok(out.stdout)
    };
    let proof = ferry::oci::state::signed_proof(&raw(&signed).unwrap(), &raw)
        .unwrap()
        .expect("1.1.0 is signed");
    let git = |args: &[&str]| sandbox.git("deploy.git", args);
    let files: std::collections::BTreeMap<String, Vec<u8>> =
        git(&["ls-tree", "-r", "--name-only", &unsigned])
            .lines()
            .filter(|path| *path == "manifest.json" || path.starts_with("environments/"))
            .map(|path| {
                let bytes = git(&["show", &format!("{unsigned}:{path}")]).into_bytes();
                (path.to_owned(), bytes)
            })
            .collect();
    let meta = ferry::oci::state::Meta {
        environment: "dev".into(),
        branch: "dev".into(),
        revision: signed.clone(),
        source: remote.clone(),
        created: "2026-11-30T00:00:00Z".into(),
        signed: Some(proof),
    };
    let packed = ferry::oci::state::pack(&files, &meta, 0);
    let dir = sandbox.path().join("forged");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in [
        ("manifest", &packed.manifest),
        ("config", &packed.config),
        ("layer", &packed.layer),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let target = format!("{}/deploy:dev", registry.host());
    oras(
        &[
            "put",
            &target,
            &path("manifest"),
            &path("config"),
            &path("layer"),
        ],
        &[],
    );
    let run = trusting(&sandbox);
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "stalled: bad signature: the layer's `manifest.json` is not the signed commit's"
        ),
        "{}",
        run.render()
    );
    assert_eq!(deployed_version(&sandbox), "web 1.1.0\n");
}
