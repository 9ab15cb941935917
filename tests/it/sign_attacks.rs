//! Attacks on signed desired state, by someone who can write the git server (or publish to
//! the registry) but holds no trusted key: crafted commit objects, ssh signatures made for
//! something else, OpenPGP keys with revoked or foreign parts, pushes that dodge the hook's
//! `require_signed_commits`, OCI artifacts whose layer is not the signed commit's, and keys
//! that must never reach a log. Each test asserts the safe outcome: nothing deployed, nothing
//! moved, a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::agent::{agent, artifact, bump_from, live, once, repo, status};
use crate::common::Sandbox;
use crate::common::gpg::Gpg;
use crate::common::registry::{Registry, oras};

/// A new ed25519 key at `sandbox/name` (no passphrase) and its `PRINCIPAL TYPE BASE64` line.
fn keygen(sandbox: &Sandbox, name: &str) -> (PathBuf, String) {
    let (key, public) = crate::signing::keygen(sandbox, name);
    (
        key,
        crate::signing::signer(&format!("{name}@example.com"), &public),
    )
}

fn write(sandbox: &Sandbox, name: &str, text: &str) -> PathBuf {
    let path = sandbox.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `ferry bump web VERSION` in dev, signed with `key` when given: its tip.
fn bump(sandbox: &Sandbox, remote: &str, version: &str, key: Option<&Path>) -> String {
    let file = artifact(sandbox, version);
    let url = format!("file://{}", file.display());
    let mut command = bump_from(sandbox, remote, version, &url, &file);
    if let Some(key) = key {
        command = command.env("FERRY_SIGNING_KEY", key.to_str().unwrap());
    }
    command.run().assert_code(0);
    sandbox.tip("dev")
}

fn serves(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(live(sandbox).join("index.html")).unwrap_or_default()
}

fn git_dir(sandbox: &Sandbox, args: &[&str]) -> String {
    sandbox.git("deploy.git", args).trim().to_owned()
}

/// A commit's bytes without signature: `tree`, `parent`, a fixed author and `message`.
fn payload(tree: &str, parent: &str, message: &str) -> String {
    format!(
        "tree {tree}\nparent {parent}\nauthor Mallory <m@example.com> 1700000100 +0000\n\
         committer Mallory <m@example.com> 1700000100 +0000\n\n{message}\n"
    )
}

/// An SSHSIG over `data` by `key` in `namespace`, armored.
fn ssh_sign(sandbox: &Sandbox, key: &Path, namespace: &str, data: &[u8]) -> String {
    let file = sandbox.path().join("to-sign");
    std::fs::write(&file, data).unwrap();
    let _ = std::fs::remove_file(file.with_extension("sig"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(sandbox.path().join("to-sign.sig")).unwrap()
}

/// `payload` with each `(header, signature)` as a header (continuation lines indented by one
/// space, as git writes `gpgsig`) at the end of its headers.
fn with_headers(payload: &str, headers: &[(&str, &str)]) -> String {
    let (head, message) = payload.split_once("\n\n").unwrap();
    let mut out = format!("{head}\n");
    for (name, value) in headers {
        let mut lines = value.trim_end().lines();
        out.push_str(&format!("{name} {}\n", lines.next().unwrap()));
        for line in lines {
            out.push_str(&format!(" {line}\n"));
        }
    }
    out.push('\n');
    out.push_str(message);
    out
}

/// Writes a commit object into the server's repository and points dev at it, as someone
/// with the server's disk can: its id.
fn force_dev(sandbox: &Sandbox, commit: &[u8]) -> String {
    let path = sandbox.path().join("crafted-commit");
    std::fs::write(&path, commit).unwrap();
    let id = git_dir(
        sandbox,
        &[
            "hash-object",
            "--literally",
            "-t",
            "commit",
            "-w",
            path.to_str().unwrap(),
        ],
    );
    git_dir(sandbox, &["update-ref", "refs/heads/dev", &id]);
    id
}

/// The agent trusting `signers` refuses dev's tip: exit 1, `stalled: …` said, and 1.1.0 still
/// served.
#[track_caller]
fn refused(sandbox: &Sandbox, remote: &str, signers: &Path, what: &str) -> String {
    let run = agent(
        sandbox,
        remote,
        &["--trusted-keys", signers.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(1), "{what}: {}", run.render());
    assert!(run.stdout.contains("stalled: "), "{what}: {}", run.render());
    assert_eq!(serves(sandbox), "web 1.1.0\n", "{what}");
    assert_eq!(status(sandbox)["state"], "stalled", "{what}");
    run.stdout
}

/// dev signed by ci at 1.1.0 and deployed; then an unsigned 2.0.0 bump, whose tree is the one
/// the attacker wants deployed. (sandbox, remote, ci's key, signers, signed tip, evil tree)
fn signed_and_deployed() -> (Sandbox, String, PathBuf, PathBuf, String, String) {
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_line) = keygen(&sandbox, "ci");
    let signers = write(&sandbox, "allowed_signers", &format!("{ci_line}\n"));
    let signed = bump(&sandbox, &remote, "1.1.0", Some(&ci));
    agent(
        &sandbox,
        &remote,
        &["--trusted-keys", signers.to_str().unwrap()],
    )
    .assert_code(0);
    assert_eq!(serves(&sandbox), "web 1.1.0\n");
    bump(&sandbox, &remote, "2.0.0", None);
    let evil_tree = git_dir(&sandbox, &["rev-parse", "refs/heads/dev^{tree}"]);
    (sandbox, remote, ci, signers, signed, evil_tree)
}

/// Commit objects crafted around a trusted signature: a signature by the trusted key in the
/// `file` namespace over the very payload, the trusted key's signature over another payload,
/// a trusted signature beside a stranger's good one (two `gpgsig` headers, either order), in a
/// `gpgsig-sha256` header, moved into the message, or a trusted signature copied onto a commit
/// with another parent. None deploys.
#[test]
fn crafted_commit_objects_around_a_trusted_signature_are_not_deployed() {
    let (sandbox, remote, ci, signers, signed, evil_tree) = signed_and_deployed();
    let (mallory, _) = keygen(&sandbox, "mallory");
    let evil = payload(&evil_tree, &signed, "web 2.0.0");

    // ci signed these bytes, but as a file, not as a commit.
    let file_sig = ssh_sign(&sandbox, &ci, "file", evil.as_bytes());
    force_dev(
        &sandbox,
        with_headers(&evil, &[("gpgsig", &file_sig)]).as_bytes(),
    );
    let said = refused(&sandbox, &remote, &signers, "namespace file");
    assert!(said.contains("bad signature"), "{said}");

    // ci's real signature over another commit's payload.
    let signed_raw = git_dir(&sandbox, &["cat-file", "commit", &signed]);
    let (head, _) = signed_raw.split_once("\n\n").unwrap();
    let ci_sig: String = {
        let mut sig = String::new();
        let mut inside = false;
        for line in head.lines() {
            if let Some(first) = line.strip_prefix("gpgsig ") {
                sig.push_str(first);
                sig.push('\n');
                inside = true;
            } else if inside && line.starts_with(' ') {
                sig.push_str(&line[1..]);
                sig.push('\n');
            } else {
                inside = false;
            }
        }
        sig
    };
    assert!(ci_sig.contains("BEGIN SSH SIGNATURE"), "{signed_raw}");
    force_dev(
        &sandbox,
        with_headers(&evil, &[("gpgsig", &ci_sig)]).as_bytes(),
    );
    let said = refused(&sandbox, &remote, &signers, "another payload");
    assert!(said.contains("bad signature"), "{said}");

    // A stranger's good signature beside ci's (for other bytes), in both orders.
    let mallory_sig = ssh_sign(&sandbox, &mallory, "git", evil.as_bytes());
    for headers in [
        [
            ("gpgsig", ci_sig.as_str()),
            ("gpgsig", mallory_sig.as_str()),
        ],
        [
            ("gpgsig", mallory_sig.as_str()),
            ("gpgsig", ci_sig.as_str()),
        ],
        [
            ("gpgsig-sha256", ci_sig.as_str()),
            ("gpgsig", mallory_sig.as_str()),
        ],
        [
            ("gpgsig", mallory_sig.as_str()),
            ("gpgsig-sha256", ci_sig.as_str()),
        ],
    ] {
        force_dev(&sandbox, with_headers(&evil, &headers).as_bytes());
        refused(&sandbox, &remote, &signers, &format!("{headers:?}"));
    }

    // ci's signature only in a `gpgsig-sha256` header (a SHA-1 repository's git ignores it).
    force_dev(
        &sandbox,
        with_headers(&evil, &[("gpgsig-sha256", &ci_sig)]).as_bytes(),
    );
    refused(&sandbox, &remote, &signers, "gpgsig-sha256 only");

    // The signature moved into the message (libgit2 finds it there, where git does not: it
    // then covers the commit without those lines, which is not what ci signed).
    let moved = format!(
        "{evil}\ngpgsig {}\n",
        ci_sig.trim_end().replace('\n', "\n ")
    );
    force_dev(&sandbox, moved.as_bytes());
    refused(&sandbox, &remote, &signers, "in the message");

    // ci's commit, whole, with another parent: the signature no longer covers it.
    let parent = git_dir(&sandbox, &["rev-parse", &format!("{signed}~1")]);
    let reparented = signed_raw.replacen(
        &format!("parent {parent}"),
        &format!(
            "parent {}",
            git_dir(&sandbox, &["rev-parse", "refs/heads/dev"])
        ),
        1,
    );
    assert_ne!(reparented, signed_raw);
    force_dev(&sandbox, reparented.as_bytes());
    refused(&sandbox, &remote, &signers, "another parent");

    // Not UTF-8 in the payload, a folded header with a tab: still a bad signature.
    let mut bytes = with_headers(&evil, &[("gpgsig", &ci_sig)]).into_bytes();
    bytes.extend_from_slice(b"caf\xe9\n");
    force_dev(&sandbox, &bytes);
    refused(&sandbox, &remote, &signers, "latin-1");
    let folded = with_headers(&evil, &[("gpgsig", &ci_sig)]).replace("\n -----END", "\n\t-----END");
    force_dev(&sandbox, folded.as_bytes());
    refused(&sandbox, &remote, &signers, "tab folding");

    // The real signed commit back at the tip deploys again: the checks above refused the
    // forgeries, not everything.
    git_dir(&sandbox, &["update-ref", "refs/heads/dev", &signed]);
    agent(
        &sandbox,
        &remote,
        &["--trusted-keys", signers.to_str().unwrap()],
    )
    .assert_code(0);
}

/// allowed_signers lines that do not trust a key for git commits: `namespaces="file"` (alone,
/// or beside another key), `cert-authority`. None makes ci's commits deployable.
#[test]
fn allowed_signers_lines_for_other_namespaces_or_a_ca_trust_no_commit() {
    let (sandbox, remote, ci, _signers, _signed, _) = signed_and_deployed();
    let (_, other_line) = keygen(&sandbox, "other");
    let (_, ca_line) = keygen(&sandbox, "ca");
    bump(&sandbox, &remote, "2.1.0", Some(&ci));
    let ci_line = std::fs::read_to_string(sandbox.path().join("allowed_signers")).unwrap();
    let (who, key) = ci_line.trim().split_once(' ').unwrap();

    let only_file = write(
        &sandbox,
        "only_file",
        &format!("{who} namespaces=\"file\" {key}\n"),
    );
    let run = agent(
        &sandbox,
        &remote,
        &["--trusted-keys", only_file.to_str().unwrap()],
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("lists no key for git commits"),
        "{}",
        run.render()
    );

    let mixed = write(
        &sandbox,
        "mixed",
        &format!("{who} namespaces=\"file,ssh\" {key}\n{other_line}\n"),
    );
    // ci's key is listed for files and ssh only: its commits are signed by a key untrusted
    // for them.
    let run = agent(
        &sandbox,
        &remote,
        &["--trusted-keys", mixed.to_str().unwrap()],
    );
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("stalled: signed by an untrusted key SHA256:"),
        "{}",
        run.render()
    );
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    let (ca_who, ca_key) = ca_line.split_once(' ').unwrap();
    let ca = write(
        &sandbox,
        "ca_signers",
        &format!("{ca_who} cert-authority {ca_key}\n"),
    );
    let run = agent(&sandbox, &remote, &["--trusted-keys", ca.to_str().unwrap()]);
    run.assert_code(2);
    assert!(run.stderr.contains("cert-authority"), "{}", run.render());
    assert_eq!(serves(&sandbox), "web 1.1.0\n");
}

/// OpenPGP: a signing subkey its owner revoked (compromised) signs no more; a key whose
/// primary is revoked is refused up front; a stranger's subkey spliced into the trusted key
/// block (as a keyserver would append it) makes nothing trusted; and an inline-signed message
/// carrying an old signed payload, put in the gpgsig of a new commit, is no signature of it.
#[test]
fn openpgp_revoked_subkeys_spliced_subkeys_and_inline_messages_sign_nothing() {
    let (sandbox, remote, _ci, _signers, signed, evil_tree) = signed_and_deployed();
    let gpg = Gpg::new(&sandbox, "gnupg");
    let (ci, ci_sub) = gpg.key("CI <ci@example.com>");
    let (_mallory, mallory_sub) = gpg.key("Mallory <mallory@example.com>");
    let evil = payload(&evil_tree, &signed, "web 2.0.0, signed by a revoked subkey");

    // Signed while the subkey was good; then its owner revokes it and re-exports the key.
    let sig = gpg.sign(&ci_sub, evil.as_bytes(), &sandbox);
    let before = write(
        &sandbox,
        "ci_before.asc",
        &gpg.run(&["--armor", "--export", &ci]),
    );
    gpg.run_with(
        &["--command-fd", "0", "--edit-key", &ci],
        "key 1\nrevkey\ny\n0\n\ny\nsave\n",
    );
    let packets = gpg.run(&["--list-packets", before.to_str().unwrap()]);
    assert!(!packets.contains("sigclass 0x28"), "{packets}");
    let revoked = write(
        &sandbox,
        "ci_revoked_sub.asc",
        &gpg.run(&["--armor", "--export", &ci]),
    );
    let packets = gpg.run(&["--list-packets", revoked.to_str().unwrap()]);
    assert!(
        packets.contains("sigclass 0x28"),
        "the subkey is revoked: {packets}"
    );
    let commit = force_dev(
        &sandbox,
        with_headers(&evil, &[("gpgsig", &sig)]).as_bytes(),
    );
    // Before the revocation was known, the signature was good (elsewhere): the attack needs
    // that.
    let probe = sandbox.path().join("root-probe");
    std::fs::create_dir_all(&probe).unwrap();
    sandbox
        .ferry(&["agent", "--env", "dev", "--once", "--no-report"])
        .args(["--remote", &remote])
        .args(["--trusted-keys", before.to_str().unwrap()])
        .arg("--root")
        .arg(&probe)
        .arg("--state-dir")
        .arg(sandbox.path().join("state-probe"))
        .run()
        .assert_code(0);
    let said = refused(&sandbox, &remote, &revoked, "revoked subkey");
    assert!(said.contains(&commit[..12]), "{said}");
    assert!(said.contains("revoked"), "{said}");
    let history = sandbox
        .ferry(&["history", "dev", "--remote", &remote, "-n", "1"])
        .args(["--trusted-keys", revoked.to_str().unwrap()])
        .run();
    history.assert_code(0);
    assert!(
        !history.stdout.contains("CI <ci@example.com>"),
        "{}",
        history.stdout
    );

    // The primary key revoked (its revocation certificate imported): refused as a whole.
    let rev = std::fs::read_to_string(gpg.home.join(format!("openpgp-revocs.d/{ci}.rev")))
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    let rev_file = write(&sandbox, "ci.rev", &rev);
    gpg.run(&["--import", rev_file.to_str().unwrap()]);
    let dead = write(
        &sandbox,
        "ci_revoked.asc",
        &gpg.run(&["--armor", "--export", &ci]),
    );
    let run = agent(
        &sandbox,
        &remote,
        &["--trusted-keys", dead.to_str().unwrap()],
    );
    run.assert_code(2);
    assert!(run.stderr.contains("revoked"), "{}", run.render());
    assert_eq!(serves(&sandbox), "web 1.1.0\n");

    // Mallory's subkey (and its binding, made by Mallory) appended to CI's key block.
    let evil = payload(&evil_tree, &signed, "web 2.0.0, signed by a spliced subkey");
    let sig = gpg.sign(&mallory_sub, evil.as_bytes(), &sandbox);
    force_dev(
        &sandbox,
        with_headers(&evil, &[("gpgsig", &sig)]).as_bytes(),
    );
    let spliced = splice_subkey(&sandbox, &gpg, &before, &mallory_sub);
    let run = agent(
        &sandbox,
        &remote,
        &["--trusted-keys", spliced.to_str().unwrap()],
    );
    assert_ne!(run.code, Some(0), "{}", run.render());
    assert_eq!(serves(&sandbox), "web 1.1.0\n");
}

/// CI's key block (`before`, armored) with `subkey`'s packet and binding signature from
/// another key appended, armored again by gpg.
fn splice_subkey(sandbox: &Sandbox, gpg: &Gpg, before: &Path, subkey: &str) -> PathBuf {
    let script = r#"
import base64, subprocess, sys
def packets(d):
    i, out = 0, []
    while i < len(d):
        h = d[i]
        if h & 0x40:
            tag, l = h & 0x3f, d[i + 1]
            if l < 192: n, s = l, 2
            elif l < 224: n, s = ((l - 192) << 8) + d[i + 2] + 192, 3
            else: n, s = int.from_bytes(d[i + 2:i + 6], 'big'), 6
        else:
            tag, s = (h >> 2) & 0xf, {0: 2, 1: 3, 2: 5}[h & 3]
            n = int.from_bytes(d[i + 1:i + s], 'big')
        out.append((tag, d[i:i + s + n])); i += s + n
    return out
home, before, owner, out = sys.argv[1:5]
def export(k):
    return subprocess.run(['gpg', '--homedir', home, '--export', k], capture_output=True, check=True).stdout
ci = subprocess.run(['gpg', '--homedir', home, '--dearmor'], input=open(before, 'rb').read(), capture_output=True, check=True).stdout
other = packets(export(owner))
at = [i for i, p in enumerate(other) if p[0] == 14][0]
open(out, 'wb').write(ci + other[at][1] + other[at + 1][1])
"#;
    let bin = sandbox.path().join("spliced.gpg");
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&gpg.home)
        .arg(before)
        .arg(format!("{subkey}!"))
        .arg(&bin)
        .status()
        .unwrap();
    assert!(status.success());
    let armored = gpg.run_with(&["--enarmor", "-o", "-", bin.to_str().unwrap()], "");
    let text = String::from_utf8(armored)
        .unwrap()
        .replace("PGP ARMORED FILE", "PGP PUBLIC KEY BLOCK")
        .lines()
        .filter(|l| !l.starts_with("Comment:"))
        .collect::<Vec<_>>()
        .join("\n");
    write(sandbox, "spliced.asc", &(text + "\n"))
}

/// dev requiring commits signed by ci; the clone `work` at dev. (sandbox, remote, ci, mallory,
/// mallory's line)
fn signed_branch(force: bool) -> (Sandbox, String, PathBuf, PathBuf, String) {
    let (sandbox, remote) = repo(json!({}));
    let (ci, ci_line) = keygen(&sandbox, "ci");
    let (mallory, mallory_line) = keygen(&sandbox, "mallory");
    sandbox.edit_env("dev", "dev", |env| {
        env["signers"] = json!([ci_line]);
        env["protection"] = json!({
            "allowed_pushers": ["ci-bot"],
            "require_signed_commits": true,
            "allow_force_push": force,
        });
    });
    sandbox.git("", &["clone", "-q", "-b", "dev", "deploy.git", "work"]);
    (sandbox, remote, ci, mallory, mallory_line)
}

/// A commit in `work` changing `file` (and dev's signers, when given), signed by `key`.
fn commit(sandbox: &Sandbox, key: Option<&Path>, file: &str, signers: Option<Vec<String>>) {
    std::fs::write(sandbox.path().join("work").join(file), file).unwrap();
    if let Some(signers) = signers {
        let path = sandbox.path().join("work/environments/dev.json");
        let mut env: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        env["signers"] = json!(signers);
        std::fs::write(&path, serde_json::to_string_pretty(&env).unwrap() + "\n").unwrap();
    }
    sandbox.git("work", &["add", "--all"]);
    let mut args = vec!["-c".to_owned(), "gpg.format=ssh".to_owned()];
    if let Some(key) = key {
        args.extend([
            "-c".to_owned(),
            format!("user.signingkey={}", key.display()),
        ]);
    }
    args.extend(["commit", "-q", "-m", file].map(str::to_owned));
    if key.is_some() {
        args.push("-S".to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.git("work", &args);
}

fn push(sandbox: &Sandbox, refspec: &str) -> (bool, String) {
    sandbox.git_as("ci-bot", "work", &["push", "-f", "origin", refspec], &[])
}

/// The hook's `require_signed_commits`: the attacker's key added in the same push as a commit
/// signed by it, unsigned commits under a signed tip, unsigned commits first parked on another
/// branch then fast-forwarded onto dev, a deletion, and (where force pushes are allowed) dev
/// rewound to an unsigned commit from before the rule: dev never moves.
#[test]
fn the_hook_takes_no_unsigned_commit_however_it_is_pushed() {
    let (sandbox, _remote, ci, mallory, mallory_line) = signed_branch(false);
    let ci_line = sandbox.show("dev", "environments/dev.json");
    let ci_line = serde_json::from_str::<serde_json::Value>(&ci_line).unwrap()["signers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let tip = sandbox.tip("dev");

    // Mallory trusts herself, then signs a change: both in one push.
    commit(
        &sandbox,
        Some(&mallory),
        "TRUST",
        Some(vec![ci_line.clone(), mallory_line]),
    );
    commit(&sandbox, Some(&mallory), "EVIL", None);
    let (ok, said) = push(&sandbox, "HEAD:dev");
    assert!(!ok && said.contains("untrusted key"), "{said}");
    assert_eq!(sandbox.tip("dev"), tip);

    // Unsigned commits under a tip ci signed.
    sandbox.git("work", &["reset", "-q", "--hard", &tip]);
    commit(&sandbox, None, "UNSIGNED", None);
    commit(&sandbox, Some(&ci), "SIGNED", None);
    let (ok, said) = push(&sandbox, "HEAD:dev");
    assert!(!ok && said.contains("is unsigned"), "{said}");
    assert_eq!(sandbox.tip("dev"), tip);

    // Parked on another branch first: already in the repository, still not signed.
    sandbox.git("work", &["reset", "-q", "--hard", &tip]);
    commit(&sandbox, None, "PARKED", None);
    let (ok, said) = push(&sandbox, "HEAD:refs/heads/parking");
    assert!(ok, "{said}");
    let (ok, said) = push(&sandbox, "HEAD:dev");
    assert!(!ok && said.contains("is unsigned"), "{said}");
    assert_eq!(sandbox.tip("dev"), tip);

    // Deleted, to come back without the rule.
    let (ok, said) = push(&sandbox, ":dev");
    assert!(!ok, "{said}");
    assert_eq!(sandbox.tip("dev"), tip);

    // Where force pushes are allowed: dev rewound to the unsigned commit before the rule
    // (whose files do not even require signatures) is a commit the branch takes unsigned.
    let (sandbox, _remote, ci, _mallory, _) = signed_branch(true);
    commit(&sandbox, Some(&ci), "SIGNED", None);
    commit(&sandbox, Some(&ci), "SIGNED-AGAIN", None);
    let (ok, said) = push(&sandbox, "HEAD:dev");
    assert!(ok, "{said}");
    let tip = sandbox.tip("dev");
    let before_rule = git_dir(&sandbox, &["rev-parse", "refs/heads/dev~3"]);
    let (ok, said) = push(&sandbox, &format!("{before_rule}:dev"));
    assert!(!ok, "a rewind to an unsigned commit: {said}");
    assert!(said.contains("is unsigned"), "{said}");
    assert_eq!(sandbox.tip("dev"), tip);
    // A rewind to a commit ci signed is a replay of an older signed state, which signatures
    // cannot tell from a rollback: the branch takes it, as it allows force pushes.
    let (ok, said) = push(&sandbox, &format!("{tip}~1:dev"));
    assert!(ok, "{said}");
}

/// The agent facing a bad signature leaves no trace of the state it refused: nothing
/// downloaded, unpacked or linked, with a fresh state dir or killed (`kill -9`) in the middle
/// of its checks, and `stalled: …` is said in its status.
#[test]
fn a_refused_state_leaves_nothing_behind_even_when_killed() {
    let (sandbox, remote, _ci, signers, _signed, _) = signed_and_deployed();
    // dev's tip is the unsigned 2.0.0.
    let fresh_root = sandbox.path().join("fresh-root");
    std::fs::create_dir_all(&fresh_root).unwrap();
    let fresh = |state: &str| {
        sandbox
            .ferry(&["agent", "--env", "dev", "--once", "--remote", &remote])
            .args(["--trusted-keys", signers.to_str().unwrap()])
            .arg("--root")
            .arg(&fresh_root)
            .arg("--state-dir")
            .arg(sandbox.path().join(state))
    };
    let run = fresh("fresh-state").run();
    run.assert_code(1);
    assert!(run.stdout.contains("stalled: unsigned"), "{}", run.render());
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sandbox.path().join("fresh-state/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["state"], "stalled");
    assert!(
        status["message"].as_str().unwrap().starts_with("unsigned"),
        "{status}"
    );
    assert_eq!(
        std::fs::read_dir(&fresh_root).unwrap().count(),
        0,
        "nothing under the root"
    );
    let cached = walk(&sandbox.path().join("fresh-state/artifacts"));
    assert!(
        cached.iter().all(|p| p.ends_with("lock")),
        "nothing downloaded: {cached:?}"
    );

    for delay in [0u64, 5, 20, 50, 100, 200] {
        let mut child = once(&sandbox, &["--remote", &remote])
            .args(["--trusted-keys", signers.to_str().unwrap()])
            .command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(serves(&sandbox), "web 1.1.0\n", "killed at {delay} ms");
        let releases: Vec<String> =
            std::fs::read_dir(sandbox.path().join("root/srv/.web.releases"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
        assert!(
            releases.iter().all(|r| !r.starts_with("2.0.0")),
            "killed at {delay} ms: {releases:?}"
        );
    }
    refused(&sandbox, &remote, &signers, "after the kills");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path().display().to_string());
        }
    }
    out
}

/// A signing key never reaches stdout or stderr: not when `FERRY_SIGNING_KEY` holds the key's
/// contents instead of its path (as a CI secret often does), nor when git's `user.signingkey`
/// does; and nothing is written.
#[test]
fn a_signing_key_given_by_its_contents_is_never_shown() {
    let (sandbox, remote) = repo(json!({}));
    let (ci, _) = keygen(&sandbox, "ci");
    let secret = std::fs::read_to_string(&ci).unwrap();
    let body: Vec<&str> = secret.lines().filter(|l| !l.starts_with("-----")).collect();
    let before = sandbox.tip("dev");
    let file = artifact(&sandbox, "1.1.0");
    let url = format!("file://{}", file.display());
    let leaks = |run: &crate::common::Run, what: &str| {
        let all = run.render();
        for line in &body {
            assert!(!all.contains(line), "{what} shows the key: {all}");
        }
    };
    let run = bump_from(&sandbox, &remote, "1.1.0", &url, &file)
        .env("FERRY_SIGNING_KEY", &secret)
        .run();
    assert_ne!(run.code, Some(0), "{}", run.render());
    leaks(&run, "FERRY_SIGNING_KEY");
    assert!(run.stderr.contains("FERRY_SIGNING_KEY"), "{}", run.render());
    assert_eq!(sandbox.tip("dev"), before);

    let gitconfig = sandbox.path().join("home/.gitconfig");
    let saved = std::fs::read_to_string(&gitconfig).unwrap_or_default();
    let quoted = secret.trim_end().replace('\n', "\\n");
    std::fs::write(
        &gitconfig,
        format!(
            "{saved}\n[commit]\n\tgpgsign = true\n[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = \"{quoted}\"\n"
        ),
    )
    .unwrap();
    let run = bump_from(&sandbox, &remote, "1.1.0", &url, &file).run();
    std::fs::write(&gitconfig, saved).unwrap();
    assert_ne!(run.code, Some(0), "{}", run.render());
    leaks(&run, "user.signingkey");
    assert_eq!(sandbox.tip("dev"), before);
}

/// A registry publisher's artifacts around a good signed commit: a layer with the trusted
/// manifest and an evil one under the same name (either order), `./manifest.json`, an extra
/// environment file, a missing one, `manifest.json` as a symlink or a hard link, a config that
/// is not JSON, and a revision annotation (and config) naming another commit. None deploys
/// anything but the signed state, and none is reported on another commit.
#[test]
fn crafted_artifacts_around_a_signed_commit_deploy_only_the_signed_state() {
    let (sandbox, remote) = repo(json!({}));
    let registry = Registry::start(sandbox.path());
    let to = format!("oci://{}/deploy", registry.host());
    let source = format!("{to}:dev");
    let (ci, ci_line) = keygen(&sandbox, "ci");
    let signers = write(&sandbox, "allowed_signers", &format!("{ci_line}\n"));
    let trusting = || {
        once(&sandbox, &["--source", &source])
            .args(["--trusted-keys", signers.to_str().unwrap()])
            .args(["--remote", &remote])
            .run()
    };
    bump(&sandbox, &remote, "1.1.0", Some(&ci));
    sandbox
        .ferry(&["publish", "dev", "--to", &to, "--remote", &remote])
        .run()
        .assert_code(0);
    trusting().assert_code(0);
    assert_eq!(serves(&sandbox), "web 1.1.0\n");
    let signed = sandbox.tip("dev");
    let evil = bump(&sandbox, &remote, "2.0.0", None);
    let evil_manifest = write(
        &sandbox,
        "evil-manifest.json",
        &sandbox.show("dev", "manifest.json"),
    );
    // The published 1.1.0 artifact, as it is in the registry.
    let dir = sandbox.path().join("oci");
    std::fs::create_dir_all(&dir).unwrap();
    let craft = |variant: &str| {
        let out = Command::new("python3")
            .arg("-c")
            .arg(CRAFT)
            .arg(variant)
            .arg(registry.host())
            .arg(&dir)
            .arg(&evil_manifest)
            .arg(&evil)
            .output()
            .unwrap();
        assert!(out.status.success(), "{variant}: {out:?}");
        let path = |name: &str| dir.join(variant).join(name).to_str().unwrap().to_owned();
        oras(
            &[
                "put",
                &format!("{}/deploy:dev", registry.host()),
                &path("m"),
                &path("c"),
                &path("l"),
            ],
            &[],
        );
    };
    craft("fetch");
    for (variant, expected) in [
        ("dup_good_first", "stalled: "),
        ("dup_evil_first", ""),
        ("dotslash", "stalled: "),
        ("extra_env", "stalled: bad signature"),
        ("missing", "stalled: bad signature"),
        ("symlink", "a link or a special file, not a regular file"),
        ("hardlink", "a link or a special file, not a regular file"),
        ("cfg_notjson", "stalled: "),
        ("rev_mismatch", "stalled: bad signature"),
        ("cfg_rev_mismatch", "stalled: bad signature"),
    ] {
        craft(variant);
        let run = trusting();
        assert_eq!(
            serves(&sandbox),
            "web 1.1.0\n",
            "{variant}: {}",
            run.render()
        );
        assert!(run.stdout.contains(expected), "{variant}: {}", run.render());
        let revision = status(&sandbox)["revision"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if run.code == Some(0) {
            assert_eq!(revision, signed, "{variant}");
        }
        // Nothing reports a deploy of the unsigned commit.
        let statuses = crate::common::statuses_of(&sandbox.path().join("deploy.git"), &evil);
        assert!(
            !statuses.to_string().contains("success"),
            "{variant}: {statuses}"
        );
    }
}

/// Crafts a variant of the artifact ferry published at `HOST/deploy:dev` into `DIR/VARIANT`
/// (`m`, `c`, `l`: manifest, config, layer). `fetch` downloads the original into `DIR`.
const CRAFT: &str = r#"
import gzip, hashlib, io, json, os, sys, tarfile, urllib.request
variant, host, d, evil_path, evil_commit = sys.argv[1:6]
base = f"http://{host}/v2/deploy"
if variant == "fetch":
    req = urllib.request.Request(base + "/manifests/dev", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    manifest = urllib.request.urlopen(req).read()
    open(os.path.join(d, "manifest"), "wb").write(manifest)
    m = json.loads(manifest)
    for name, desc in (("config", m["config"]), ("layer", m["layers"][0])):
        open(os.path.join(d, name), "wb").write(urllib.request.urlopen(base + "/blobs/" + desc["digest"]).read())
    os.makedirs(os.path.join(d, variant), exist_ok=True)
    for a, b in (("manifest", "m"), ("config", "c"), ("layer", "l")):
        open(os.path.join(d, variant, b), "wb").write(open(os.path.join(d, a), "rb").read())
    sys.exit(0)
man = json.load(open(os.path.join(d, "manifest")))
cfg = open(os.path.join(d, "config"), "rb").read()
good = {}
with tarfile.open(os.path.join(d, "layer")) as t:
    for m in t.getmembers():
        good[m.name] = t.extractfile(m).read()
evil = open(evil_path, "rb").read()
env, mf = good["environments/dev.json"], good["manifest.json"]
R, S, L = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
entries = {
    "dup_good_first": [("environments/dev.json", env, R, ""), ("manifest.json", mf, R, ""), ("manifest.json", evil, R, "")],
    "dup_evil_first": [("environments/dev.json", env, R, ""), ("manifest.json", evil, R, ""), ("manifest.json", mf, R, "")],
    "dotslash": [("environments/dev.json", env, R, ""), ("manifest.json", mf, R, ""), ("./manifest.json", evil, R, "")],
    "extra_env": [("environments/dev.json", env, R, ""), ("environments/x.json", b'{"name": "x", "branch": "x"}\n', R, ""), ("manifest.json", mf, R, "")],
    "missing": [("manifest.json", mf, R, "")],
    "symlink": [("environments/dev.json", env, R, ""), ("manifest.json", b"", S, evil_path)],
    "hardlink": [("environments/dev.json", env, R, ""), ("manifest.json", mf, R, ""), ("manifest.json", b"", L, "environments/dev.json")],
}.get(variant, [("environments/dev.json", env, R, ""), ("manifest.json", mf, R, "")])
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    for name, data, kind, link in entries:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode, info.mtime = kind, link, 0o644, 0
        info.size = len(data) if kind == R else 0
        t.addfile(info, io.BytesIO(data) if kind == R else None)
layer = gzip.compress(buf.getvalue(), mtime=0)
if variant == "cfg_notjson":
    cfg = b"not json {"
if variant == "rev_mismatch":
    man["annotations"]["org.opencontainers.image.revision"] = evil_commit
if variant == "cfg_rev_mismatch":
    c = json.loads(cfg)
    c["revision"] = evil_commit
    cfg = json.dumps(c).encode()
    man["annotations"]["org.opencontainers.image.revision"] = evil_commit
man["layers"][0]["digest"] = "sha256:" + hashlib.sha256(layer).hexdigest()
man["layers"][0]["size"] = len(layer)
man["config"]["digest"] = "sha256:" + hashlib.sha256(cfg).hexdigest()
man["config"]["size"] = len(cfg)
out = os.path.join(d, variant)
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "m"), "wb").write(json.dumps(man).encode())
open(os.path.join(out, "c"), "wb").write(cfg)
open(os.path.join(out, "l"), "wb").write(layer)
"#;
