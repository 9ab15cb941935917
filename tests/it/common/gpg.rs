//! A throwaway gpg home for the signing tests: keys made there, gpg run in it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::Sandbox;

/// A throwaway gpg home, and gpg run in it.
pub struct Gpg {
    pub home: PathBuf,
}

impl Gpg {
    pub fn new(sandbox: &Sandbox, name: &str) -> Gpg {
        let home = sandbox.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Gpg { home }
    }

    pub fn run_with(&self, args: &[&str], stdin: &str) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(["--batch", "--no-tty", "--yes", "--passphrase", ""])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn run(&self, args: &[&str]) -> String {
        String::from_utf8(self.run_with(args, "")).unwrap()
    }

    /// A key for `uid` that certifies only, with a signing subkey: (primary, subkey)
    /// fingerprints.
    pub fn key(&self, uid: &str) -> (String, String) {
        self.run(&["--quick-gen-key", uid, "ed25519", "cert", "never"]);
        let primary = self.fingerprints(uid)[0].clone();
        self.run(&["--quick-add-key", &primary, "ed25519", "sign", "never"]);
        let subkey = self.fingerprints(uid)[1].clone();
        (primary, subkey)
    }

    /// The armored public key `fingerprint` (`gpg --armor --export`).
    pub fn export(&self, fingerprint: &str) -> String {
        self.run(&["--armor", "--export", fingerprint])
    }

    pub fn fingerprints(&self, uid: &str) -> Vec<String> {
        self.run(&[
            "--with-colons",
            "--with-subkey-fingerprints",
            "--list-keys",
            uid,
        ])
        .lines()
        .filter_map(|l| l.strip_prefix("fpr:"))
        .map(|l| l.trim_matches(':').to_owned())
        .collect()
    }

    pub fn sign(&self, key: &str, data: &[u8], sandbox: &Sandbox) -> String {
        let file = sandbox.path().join("to-sign-pgp");
        std::fs::write(&file, data).unwrap();
        let key = format!("{key}!");
        let args = [
            "-bsa",
            "-u",
            key.as_str(),
            "-o",
            "-",
            file.to_str().unwrap(),
        ];
        String::from_utf8(self.run_with(&args, "")).unwrap()
    }
}
