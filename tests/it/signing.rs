//! Signed desired state: ferry signs the commits it makes with `FERRY_SIGNING_KEY` as git
//! signs with ssh, and an agent with `--trusted-keys` deploys only commits signed by a key of
//! its `allowed_signers` list. Keys are made by `ssh-keygen` in each test; real `git
//! verify-commit` and `ssh-keygen -Y verify` cross-check what ferry writes and reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::agent::{agent, artifact, bump_from, live, repo};
use crate::common::gpg::Gpg;
use crate::common::{Run, Sandbox};

/// A new ed25519 key at `dir/name` (no passphrase); its public line.
pub(crate) fn keygen(sandbox: &Sandbox, name: &str) -> (PathBuf, String) {
    let key = sandbox.path().join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// An allowed_signers file trusting each `(principal, public line)`.
fn allowed(sandbox: &Sandbox, keys: &[(&str, &str)]) -> PathBuf {
    let path = sandbox.path().join("allowed_signers");
    let text: String = keys
        .iter()
        .map(|(who, public)| {
            let mut fields = public.split_whitespace();
            let (kind, base64) = (fields.next().unwrap(), fields.next().unwrap());
            format!("{who} {kind} {base64}\n")
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `ferry bump web VERSION` in dev, signed with `key` when given.
fn bump(sandbox: &Sandbox, remote: &str, version: &str, key: Option<&Path>) {
    let file = artifact(sandbox, version);
    let url = format!("file://{}", file.display());
    let mut command = bump_from(sandbox, remote, version, &url, &file);
    if let Some(key) = key {
        command = command.env("FERRY_SIGNING_KEY", key.to_str().unwrap());
    }
    command.run().assert_code(0);
}

/// `git verify-commit` of dev's tip with `signers` as its allowed signers: its success and
/// what it printed.
fn git_verifies(sandbox: &Sandbox, signers: &Path) -> (bool, String) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(sandbox.path().join("deploy.git"))
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", signers.display()))
        .args(["verify-commit", "-v", "refs/heads/dev"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Moves dev to a forgery: the commit `signed`, signature and all, with the tree of `tree_of`.
fn forge(sandbox: &Sandbox, signed: &str, tree_of: &str) {
    let git = |args: &[&str]| sandbox.git("deploy.git", args);
    let commit = git(&["cat-file", "commit", signed]);
    let tree = git(&["rev-parse", &format!("{signed}^{{tree}}")]);
    let other = git(&["rev-parse", &format!("{tree_of}^{{tree}}")]);
    let forged = commit.replacen(tree.trim(), other.trim(), 1);
    assert_ne!(forged, commit);
    let path = sandbox.path().join("forged-commit");
    std::fs::write(&path, forged).unwrap();
    let id = git(&["hash-object", "-t", "commit", "-w", path.to_str().unwrap()]);
    git(&["update-ref", "refs/heads/dev", id.trim()]);
}

fn serves(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(live(sandbox).join("index.html")).unwrap_or_default()
}

/// The agent's run kept the running release and said why: `said`.
#[track_caller]
fn stalled(run: &Run, said: &str) {
    run.assert_code(1);
    assert!(run.stdout.contains(said), "{}", run.render());
}

fn trusting(sandbox: &Sandbox, remote: &str, signers: &Path) -> Run {
    agent(
        sandbox,
        remote,
        &["--trusted-keys", signers.to_str().unwrap()],
    )
}

/// The whole loop: a signed bump deploys, and git itself accepts the signature; an unsigned
/// bump, one by an unknown key and a forged one (the signed commit's bytes with another tree)
/// are not deployed: the agent keeps 1.1.0 running and says why.
#[test]
fn an_agent_deploys_only_commits_signed_by_a_trusted_key() {
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_public) = keygen(&sandbox, "ci");
    let (stranger, _) = keygen(&sandbox, "stranger");
    let signers = allowed(&sandbox, &[("ci@example.com", &ci_public)]);

    bump(&sandbox, &remote, "1.1.0", Some(&ci));
    let (ok, said) = git_verifies(&sandbox, &signers);
    assert!(ok, "{said}");
    assert!(
        said.contains("Good \"git\" signature for ci@example.com"),
        "{said}"
    );
    let run = trusting(&sandbox, &remote, &signers);
    run.assert_code(0);
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    bump(&sandbox, &remote, "1.2.0", None);
    let run = trusting(&sandbox, &remote, &signers);
    stalled(&run, "stalled: unsigned");
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    bump(&sandbox, &remote, "1.3.0", Some(&stranger));
    let (ok, _) = git_verifies(&sandbox, &signers);
    assert!(!ok, "git trusts no stranger either");
    let run = trusting(&sandbox, &remote, &signers);
    stalled(&run, "stalled: signed by an untrusted key SHA256:");
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    // ci signs 1.4.0; a forger swaps the commit's tree for 1.3.0's, keeping the signature.
    bump(&sandbox, &remote, "1.4.0", Some(&ci));
    forge(&sandbox, "refs/heads/dev", "refs/heads/dev~1");
    let (ok, _) = git_verifies(&sandbox, &signers);
    assert!(!ok, "git refuses the forgery too");
    let run = trusting(&sandbox, &remote, &signers);
    stalled(&run, "stalled: bad signature");
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    // The history says who signed each change, and what is wrong with the others.
    let history = sandbox
        .ferry(&["history", "dev", "--remote", &remote])
        .args(["--trusted-keys", signers.to_str().unwrap(), "-n", "4"])
        .run();
    history.assert_code(0);
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(lines[0].contains("SIGNED"), "{}", history.stdout);
    for (line, signed) in
        lines[1..]
            .iter()
            .zip(["BAD", "untrusted SHA256:", " - ", "ci@example.com"])
    {
        assert!(line.contains(signed), "{signed}: {}", history.stdout);
    }
    let json = sandbox
        .ferry(&["history", "dev", "--remote", &remote, "--format", "json"])
        .run();
    json.assert_code(0);
    let entries: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let states: Vec<&str> = entries.as_array().unwrap()[..4]
        .iter()
        .map(|e| e["signature"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["bad", "untrusted", "unsigned", "untrusted"]);
}

/// A commit a person signs with `git commit -S` (ssh) is as good as one ferry signs; the
/// agent's list and ssh-keygen agree on who signed it.
#[test]
fn a_commit_signed_by_git_itself_is_trusted() {
    let (sandbox, remote) = repo(json!({}));
    let (alice, alice_public) = keygen(&sandbox, "alice");
    let signers = allowed(&sandbox, &[("alice@example.com", &alice_public)]);
    sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", "work"]);
    let work = |args: &[&str]| sandbox.git("work", args);
    std::fs::write(sandbox.path().join("work/NOTES"), "signed by hand\n").unwrap();
    work(&["add", "NOTES"]);
    work(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &format!("user.signingkey={}", alice.display()),
        "commit",
        "-q",
        "-S",
        "-m",
        "A note, signed",
    ]);
    work(&["push", "-q", "origin", "dev"]);
    let (ok, said) = git_verifies(&sandbox, &signers);
    assert!(ok, "{said}");
    let run = trusting(&sandbox, &remote, &signers);
    run.assert_code(0);
    assert_eq!(serves(&sandbox), "web 1.0.0\n");
}

/// What ferry signs, `ssh-keygen -Y verify` accepts: the signature is a standard SSHSIG over
/// the commit without its `gpgsig` header, in git's namespace.
#[test]
fn ssh_keygen_verifies_what_ferry_signs() {
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_public) = keygen(&sandbox, "ci");
    let signers = allowed(&sandbox, &[("ci@example.com", &ci_public)]);
    bump(&sandbox, &remote, "1.1.0", Some(&ci));
    let raw = sandbox.git("deploy.git", &["cat-file", "commit", "refs/heads/dev"]);
    let (mut payload, mut signature, mut in_signature) = (String::new(), String::new(), false);
    for line in raw.split_inclusive('\n') {
        if let Some(first) = line.strip_prefix("gpgsig ") {
            signature.push_str(first);
            in_signature = true;
        } else if in_signature && line.starts_with(' ') {
            signature.push_str(&line[1..]);
        } else {
            in_signature = false;
            payload.push_str(line);
        }
    }
    let signature_file = sandbox.path().join("commit.sig");
    std::fs::write(&signature_file, signature).unwrap();
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "git", "-I", "ci@example.com", "-f"])
        .arg(&signers)
        .arg("-s")
        .arg(&signature_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), payload.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bad keys are refused before anything is written or deployed: an encrypted signing key, a
/// trusted-keys file that lists nothing, or an option ferry would have to ignore.
#[test]
fn unusable_keys_are_refused_up_front() {
    let (sandbox, remote) = repo(json!({}));
    let key = sandbox.path().join("locked");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret-passphrase", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let before = sandbox.tip("dev");
    let file = artifact(&sandbox, "1.1.0");
    let url = format!("file://{}", file.display());
    let run = bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .env("FERRY_SIGNING_KEY", key.to_str().unwrap())
        .run();
    run.assert_code(1);
    assert!(run.stderr.contains("FERRY_SIGNING_KEY"), "{}", run.render());
    assert!(run.stderr.contains("encrypted"), "{}", run.render());
    assert!(!run.render().contains("s3cret-passphrase"));
    assert_eq!(sandbox.tip("dev"), before);

    let empty = sandbox.path().join("empty_signers");
    std::fs::write(&empty, "# nobody yet\n").unwrap();
    let run = trusting(&sandbox, &remote, &empty);
    run.assert_code(2);
    assert!(run.stderr.contains("lists no key"), "{}", run.render());
    let (_, public) = keygen(&sandbox, "ci");
    let dated = sandbox.path().join("dated_signers");
    std::fs::write(
        &dated,
        format!("ci@example.com valid-before=20300101 {public}\n"),
    )
    .unwrap();
    let run = trusting(&sandbox, &remote, &dated);
    run.assert_code(2);
    assert!(run.stderr.contains("dated_signers:1:"), "{}", run.render());
    assert!(!live(&sandbox).exists());
}

/// Edits dev's environment file in a clone and pushes it as ci-bot, the commit signed with
/// `key` when given (as `git commit -S` with `gpg.format ssh`): whether the push landed, and
/// git's stderr. A refused commit is dropped from the clone.
fn push_edit(
    sandbox: &Sandbox,
    key: Option<&Path>,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (bool, String) {
    let work = "signed-work";
    if !sandbox.path().join(work).exists() {
        sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", work]);
    }
    sandbox.git(work, &["fetch", "-q", "origin"]);
    sandbox.git(work, &["reset", "-q", "--hard", "origin/dev"]);
    let file = sandbox.path().join(work).join("environments/dev.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&file, serde_json::to_string_pretty(&value).unwrap() + "\n").unwrap();
    let mut commit = vec!["-c".to_owned(), "gpg.format=ssh".to_owned()];
    if let Some(key) = key {
        commit.extend([
            "-c".to_owned(),
            format!("user.signingkey={}", key.display()),
        ]);
    }
    commit.extend(["commit", "-q", "-am", "dev: edit"].map(str::to_owned));
    if key.is_some() {
        commit.push("-S".to_owned());
    }
    let commit: Vec<&str> = commit.iter().map(String::as_str).collect();
    sandbox.git(work, &commit);
    sandbox.git_as("ci-bot", work, &["push", "origin", "dev"], &[])
}

/// `signers`' allowed_signers line for a public key line.
pub(crate) fn signer(who: &str, public: &str) -> String {
    let mut fields = public.split_whitespace();
    format!(
        "{who} {} {}",
        fields.next().unwrap(),
        fields.next().unwrap()
    )
}

/// `protection.require_signed_commits`: the repository's hook takes on dev only commits signed
/// by a key dev declared before the push. Unsigned bumps, strangers' signatures and a
/// stranger adding their own key are refused; a rotation signed by the old key is accepted,
/// after which only the new key signs.
#[test]
fn the_hook_takes_only_commits_signed_by_the_keys_the_branch_declared() {
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_public) = keygen(&sandbox, "ci");
    let (next, next_public) = keygen(&sandbox, "next");
    let (stranger, stranger_public) = keygen(&sandbox, "stranger");
    // Turning the rule on is judged by the rules before it: no signature needed yet.
    let (ok, said) = push_edit(&sandbox, None, |env| {
        env["signers"] = json!([signer("ci@example.com", &ci_public)]);
        env["protection"] = json!({"allowed_pushers": ["ci-bot"], "require_signed_commits": true});
    });
    assert!(ok, "{said}");

    let before = sandbox.tip("dev");
    let file = artifact(&sandbox, "1.1.0");
    let url = format!("file://{}", file.display());
    let run = bump_from(&sandbox, &remote, "1.1.0", &url, &file).run();
    run.assert_code(1);
    assert!(run.stderr.contains("is unsigned"), "{}", run.render());
    assert!(
        run.stderr.contains("require_signed_commits"),
        "{}",
        run.render()
    );
    let run = bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .env("FERRY_SIGNING_KEY", stranger.to_str().unwrap())
        .run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("signed by an untrusted key SHA256:"),
        "{}",
        run.render()
    );
    assert_eq!(sandbox.tip("dev"), before);
    bump(&sandbox, &remote, "1.1.0", Some(&ci));
    assert_ne!(sandbox.tip("dev"), before);

    // The stranger trusting themselves, signed by themselves.
    let (ok, said) = push_edit(&sandbox, Some(&stranger), |env| {
        env["signers"] = json!([signer("mallory@example.com", &stranger_public)]);
    });
    assert!(!ok, "{said}");
    assert!(said.contains("untrusted key"), "{said}");

    // A rotation to the next key, signed by the current one.
    let (ok, said) = push_edit(&sandbox, Some(&ci), |env| {
        env["signers"] = json!([signer("next@example.com", &next_public)]);
    });
    assert!(ok, "{said}");
    let run = bump_from(&sandbox, &remote, "1.2.0", &url, &file)
        .env("FERRY_SIGNING_KEY", ci.to_str().unwrap())
        .run();
    run.assert_code(1);
    assert!(run.stderr.contains("untrusted key"), "{}", run.render());
    bump(&sandbox, &remote, "1.2.0", Some(&next));
    let history = sandbox
        .ferry(&["history", "dev", "--remote", &remote, "-n", "1"])
        .run();
    assert!(
        history.stdout.contains("web 1.1.0 → 1.2.0"),
        "{}",
        history.stdout
    );

    // A key that is no key is an invalid state, said with where it is.
    let (ok, said) = push_edit(&sandbox, Some(&next), |env| {
        env["signers"] = json!(["next@example.com ssh-ed25519 not-a-key"]);
    });
    assert!(!ok, "{said}");
    assert!(
        said.contains("environments/dev.json:17:5: `signers` entry not a public key"),
        "{said}"
    );

    // Someone with the server's disk writes an unsigned commit past the hook: the audit says
    // who signed each change, and flags that one.
    sandbox.git("signed-work", &["reset", "-q", "--hard", "origin/dev"]);
    std::fs::write(sandbox.path().join("signed-work/NOTES"), "past the hook\n").unwrap();
    sandbox.git("signed-work", &["add", "NOTES"]);
    sandbox.git("signed-work", &["commit", "-qm", "unsigned, on the disk"]);
    let work = sandbox.path().join("signed-work");
    sandbox.git(
        "deploy.git",
        &["fetch", "-q", work.to_str().unwrap(), "HEAD:refs/heads/dev"],
    );
    let audit = sandbox.ferry(&["audit", "dev", "--remote", &remote]).run();
    audit.assert_code(1);
    assert!(
        audit.stdout.contains(
            "FLAGGED: unsigned on a branch that required commits signed by its `signers`"
        ),
        "{}",
        audit.render()
    );
    assert!(
        audit.stdout.contains("signed by next@example.com (SHA256:"),
        "{}",
        audit.render()
    );
}

/// OpenPGP end to end: ferry signs its bump through gpg as git's `commit.gpgsign` says (the
/// key signing with a subkey), git verifies it with gpg, and the agent, trusting the armored
/// public key among ssh lines, deploys it. A person's `git commit -S` by another gpg key, and
/// the signed bytes over another tree, are not deployed.
#[test]
fn openpgp_signatures_are_made_as_git_makes_them_and_checked_in_rust() {
    let (sandbox, remote) = repo(json!({}));
    let gpg = Gpg::new(&sandbox, "gnupg");
    let (ci, _) = gpg.key("CI <ci@example.com>");
    let (stranger, _) = gpg.key("Mallory <mallory@example.com>");
    let (_, ssh_public) = keygen(&sandbox, "alice");
    let signers = sandbox.path().join("trusted");
    std::fs::write(
        &signers,
        format!(
            "# people sign with ssh, CI with gpg\n{}\n{}",
            signer("alice@example.com", &ssh_public),
            gpg.export(&ci)
        ),
    )
    .unwrap();

    // git's own configuration, as `git commit -S` reads it.
    let gitconfig = sandbox.path().join("home/.gitconfig");
    let saved = std::fs::read_to_string(&gitconfig).unwrap_or_default();
    std::fs::write(
        &gitconfig,
        format!("{saved}\n[commit]\n\tgpgsign = true\n[user]\n\tsigningkey = {ci}\n"),
    )
    .unwrap();
    let file = artifact(&sandbox, "1.1.0");
    let url = format!("file://{}", file.display());
    bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .env("GNUPGHOME", gpg.home.to_str().unwrap())
        .run()
        .assert_code(0);
    std::fs::write(&gitconfig, &saved).unwrap();
    let verify = Command::new("git")
        .env("GNUPGHOME", &gpg.home)
        .arg("--git-dir")
        .arg(sandbox.path().join("deploy.git"))
        .args(["verify-commit", "-v", "refs/heads/dev"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    assert!(
        said.contains("Good signature from \"CI <ci@example.com>\""),
        "{said}"
    );
    let run = trusting(&sandbox, &remote, &signers);
    run.assert_code(0);
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    // A person's commit, signed by a key nobody trusts.
    sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", "work"]);
    std::fs::write(sandbox.path().join("work/NOTES"), "signed by hand\n").unwrap();
    let work = |args: &[&str]| {
        let out = Command::new("git")
            .env("GNUPGHOME", &gpg.home)
            .env("HOME", sandbox.path().join("home"))
            .current_dir(sandbox.path().join("work"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    work(&["add", "NOTES"]);
    work(&[
        "-c",
        "user.name=Mallory",
        "-c",
        "user.email=mallory@example.com",
        "-c",
        &format!("user.signingkey={stranger}"),
        "commit",
        "-q",
        "-S",
        "-m",
        "A note",
    ]);
    work(&["push", "-q", "origin", "dev"]);
    let run = trusting(&sandbox, &remote, &signers);
    stalled(&run, "stalled: signed by an untrusted key OpenPGP ");

    let history = sandbox
        .ferry(&["history", "dev", "--remote", &remote, "-n", "2"])
        .args(["--trusted-keys", signers.to_str().unwrap()])
        .run();
    history.assert_code(0);
    let lines: Vec<&str> = history.stdout.lines().collect();
    for (line, signed) in lines[1..]
        .iter()
        .zip(["untrusted OpenPGP", "CI <ci@example.com>"])
    {
        assert!(line.contains(signed), "{signed}: {}", history.stdout);
    }

    // CI's signature over the 1.1.0 bump, moved onto the note's tree.
    forge(&sandbox, "refs/heads/dev~1", "refs/heads/dev");
    let run = trusting(&sandbox, &remote, &signers);
    stalled(&run, "stalled: bad signature");
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    let history = sandbox
        .ferry(&["history", "dev", "--remote", &remote, "-n", "1"])
        .args(["--trusted-keys", signers.to_str().unwrap()])
        .run();
    history.assert_code(0);
    assert!(history.stdout.contains(" BAD "), "{}", history.stdout);
}

/// A key ssh-agent holds signs as well as a key file: `FERRY_SIGNING_KEY` names its public
/// half (or gives it as `key::…`), and ferry has `ssh-keygen` sign through the agent, as git
/// does.
#[test]
fn a_key_held_by_ssh_agent_signs() {
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_public) = keygen(&sandbox, "ci");
    let signers = allowed(&sandbox, &[("ci@example.com", &ci_public)]);
    let socket = sandbox.path().join("agent.sock");
    let mut agent_process = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", &socket)
        .arg(&ci)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    std::fs::remove_file(&ci).unwrap();

    let public = ci.with_extension("pub");
    for (version, key) in [
        ("1.1.0", public.to_str().unwrap().to_owned()),
        ("1.2.0", format!("key::{ci_public}")),
    ] {
        let file = artifact(&sandbox, version);
        let url = format!("file://{}", file.display());
        bump_from(&sandbox, &remote, version, &url, &file)
            .env("SSH_AUTH_SOCK", socket.to_str().unwrap())
            .env("FERRY_SIGNING_KEY", &key)
            .run()
            .assert_code(0);
        let (ok, said) = git_verifies(&sandbox, &signers);
        assert!(ok, "{version}: {said}");
        let run = trusting(&sandbox, &remote, &signers);
        run.assert_code(0);
        assert_eq!(serves(&sandbox), format!("web {version}\n"));
    }

    // Without the agent, nothing is written.
    let before = sandbox.tip("dev");
    let file = artifact(&sandbox, "1.3.0");
    let url = format!("file://{}", file.display());
    let run = bump_from(&sandbox, &remote, "1.3.0", &url, &file)
        .env("FERRY_SIGNING_KEY", public.to_str().unwrap())
        .run();
    run.assert_code(1);
    assert!(run.stderr.contains("SSH_AUTH_SOCK"), "{}", run.render());
    assert_eq!(sandbox.tip("dev"), before);
    agent_process.kill().unwrap();
    agent_process.wait().unwrap();
}

/// The signature of the desired revision is in the agent's metrics, for alerts: a running
/// agent trusting ci reports `state="trusted"` for ci's bump, then `state="unsigned"` for an
/// unsigned one, which it does not deploy.
#[test]
fn the_agents_metrics_say_what_the_signature_of_its_desired_revision_is() {
    use crate::agent::{Running, http};
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_public) = keygen(&sandbox, "ci");
    let signers = allowed(&sandbox, &[("ci@example.com", &ci_public)]);
    bump(&sandbox, &remote, "1.1.0", Some(&ci));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = sandbox
        .ferry(&["agent", "--env", "dev", "--remote", &remote])
        .args(["--interval", "1s", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--trusted-keys", signers.to_str().unwrap()])
        .arg("--root")
        .arg(sandbox.path().join("root"))
        .arg("--state-dir")
        .arg(sandbox.path().join("state"))
        .command;
    let _running = Running(command.stderr(std::process::Stdio::null()).spawn().unwrap());
    let started = std::time::Instant::now();
    let wait_for = |line: &str| loop {
        let metrics = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| http(port, "GET", "/metrics", "", "").1)
            .unwrap_or_default();
        if metrics.contains(line) {
            return metrics;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "no {line:?} in:\n{metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let metrics = wait_for("ferry_agent_desired_signature{env=\"dev\",state=\"trusted\"} 1");
    assert!(
        metrics.contains("ferry_agent_desired_signature{env=\"dev\",state=\"unsigned\"} 0"),
        "{metrics}"
    );
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    bump(&sandbox, &remote, "1.2.0", None);
    let metrics = wait_for("ferry_agent_desired_signature{env=\"dev\",state=\"unsigned\"} 1");
    assert!(
        metrics.contains("ferry_agent_desired_signature{env=\"dev\",state=\"trusted\"} 0"),
        "{metrics}"
    );
    assert_eq!(serves(&sandbox), "web 1.1.0\n");
}

/// An OpenPGP key signs only while it is valid: a commit it signed before its expiry stays
/// trusted, one signed after is a bad signature (gpg itself only notes "This key has
/// expired"). Times are gpg's `--faked-system-time`, through git's `gpg.program`.
#[test]
fn an_expired_openpgp_key_signs_nothing_after_its_expiry() {
    let (sandbox, remote) = repo(json!({}));
    let gpg = Gpg::new(&sandbox, "gnupg");
    gpg.run(&[
        "--faked-system-time",
        "20200101T000000!",
        "--quick-gen-key",
        "Old <old@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    let fingerprint = gpg.fingerprints("old@example.com")[0].clone();
    let program = sandbox.path().join("gpg-at");
    std::fs::write(
        &program,
        "#!/bin/sh\nexec gpg --faked-system-time \"$FAKED\" \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", "work"]);
    std::fs::write(sandbox.path().join("work/NOTES"), "\n").unwrap();
    sandbox.git("work", &["add", "NOTES"]);
    for (note, at) in [
        ("before", "20200101T120000!"),
        ("after", "20200103T000000!"),
    ] {
        std::fs::write(sandbox.path().join("work/NOTES"), format!("{note}\n")).unwrap();
        let out = Command::new("git")
            .env("GNUPGHOME", &gpg.home)
            .env("FAKED", at)
            .env("HOME", sandbox.path().join("home"))
            .current_dir(sandbox.path().join("work"))
            .args(["-c", "user.name=Old", "-c", "user.email=old@example.com"])
            .arg("-c")
            .arg(format!("gpg.program={}", program.display()))
            .arg("-c")
            .arg(format!("user.signingkey={fingerprint}"))
            .args(["commit", "-qS", "-m", note])
            .arg("-a")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sandbox.git("work", &["push", "-q", "origin", "dev"]);
    // A day after it was made, the key is given an expiry: the next day.
    gpg.run(&[
        "--faked-system-time",
        "20200101T000100!",
        "--quick-set-expire",
        &fingerprint,
        "1d",
    ]);
    let trusted = sandbox.path().join("trusted");
    std::fs::write(&trusted, gpg.export(&fingerprint)).unwrap();
    let history = sandbox
        .ferry(&["history", "dev", "--remote", &remote, "-n", "2"])
        .args([
            "--trusted-keys",
            trusted.to_str().unwrap(),
            "--format",
            "json",
        ])
        .run();
    history.assert_code(0);
    let entries = history.json();
    assert_eq!(entries[0]["signature"]["state"], "bad", "{entries}");
    assert!(
        entries[0]["signature"]["why"]
            .as_str()
            .unwrap()
            .contains("after the key expired"),
        "{entries}"
    );
    assert_eq!(entries[1]["signature"]["state"], "trusted", "{entries}");
    assert_eq!(entries[1]["signature"]["by"], "Old <old@example.com>");
}
