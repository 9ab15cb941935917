//! Signed commits, as git signs them with ssh (`gpg.format ssh`): a `gpgsig` header holding an
//! armored SSHSIG (namespace `git`, SHA-512) over the commit without that header. ferry makes
//! them with the key `FERRY_SIGNING_KEY` names, and checks them against an ssh
//! `allowed_signers` list, so that one verified signature on a commit covers everything it
//! pins (commit → tree → `manifest.json` → sha256 → artifact bytes).

use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
pub const NAMESPACE: &str = "git";

/// The variable naming the private key ferry signs its commits with.
pub const SIGNING_KEY: &str = "FERRY_SIGNING_KEY";

/// Why a key or a list of keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    Key { path: PathBuf, why: String },
    #[error("{}:{line}: {why}", path.display())]
    Signers {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// What a commit's signature says, against the trusted keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Verdict {
    /// Signed by a trusted key: its principals (`alice@example.com`) and fingerprint.
    Trusted { by: String, key: String },
    /// No `gpgsig` header.
    Unsigned,
    /// A signature that does not hold (tampered commit, wrong namespace, malformed).
    Bad { why: String },
    /// A good signature by a key not in the list (its fingerprint).
    Untrusted { key: String },
    /// A signature ferry cannot check (an OpenPGP one, an unsupported key type).
    Unchecked { what: String },
}

impl Verdict {
    pub fn is_trusted(&self) -> bool {
        matches!(self, Verdict::Trusted { .. })
    }

    /// A few words for a table: who signed, `-` unsigned, or what is wrong.
    pub fn short(&self) -> String {
        let key = |key: &str| key.chars().take(19).collect::<String>();
        match self {
            Verdict::Trusted { by, .. } => by.clone(),
            Verdict::Unsigned => "-".to_owned(),
            Verdict::Bad { .. } => "BAD".to_owned(),
            Verdict::Untrusted { key: k } => format!("untrusted {}…", key(k)),
            Verdict::Unchecked { .. } => "unchecked".to_owned(),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Trusted { by, key } => write!(f, "signed by {by} ({key})"),
            Verdict::Unsigned => write!(f, "unsigned"),
            Verdict::Bad { why } => write!(f, "bad signature: {why}"),
            Verdict::Untrusted { key } => write!(f, "signed by an untrusted key {key}"),
            Verdict::Unchecked { what } => write!(f, "signed, but not checkable: {what}"),
        }
    }
}

/// Keys trusted to sign, as ssh's `allowed_signers` lists them: `PRINCIPALS [OPTIONS] KEYTYPE
/// BASE64 [COMMENT]` per line (`#` comments). Of the options, `namespaces="…"` is honoured
/// (an entry without `git` in it does not sign commits); `cert-authority`, `valid-after` and
/// `valid-before` are refused rather than ignored.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<(String, PublicKey)>,
}

impl AllowedSigners {
    /// Reads the list at `path`.
    pub fn load(path: &Path) -> Result<AllowedSigners, SignError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignError::Read {
            path: path.to_owned(),
            source,
        })?;
        AllowedSigners::parse(&text, path)
    }

    /// Parses `text`, read from `path` (which errors name).
    pub fn parse(text: &str, path: &Path) -> Result<AllowedSigners, SignError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |why: String| SignError::Signers {
                path: path.to_owned(),
                line: i + 1,
                why,
            };
            let fields = split_fields(line);
            let Some((principals, rest)) = fields.split_first() else {
                continue;
            };
            let key_at = rest
                .iter()
                .position(|f| is_key_type(f))
                .ok_or_else(|| error("no key (`ssh-ed25519 AAAA…`) on the line".to_owned()))?;
            let mut for_git = true;
            for option in rest[..key_at].iter().flat_map(|o| o.split(',')) {
                let (name, value) = option.split_once('=').unwrap_or((option, ""));
                match name.to_ascii_lowercase().as_str() {
                    "namespaces" => {
                        for_git = value.trim_matches('"').split(',').any(|n| n == NAMESPACE)
                    }
                    other => {
                        return Err(error(format!(
                            "the option `{other}` is not supported: list the key itself, without it"
                        )));
                    }
                }
            }
            let encoded = rest
                .get(key_at + 1)
                .ok_or_else(|| error("the key has no base64 part".to_owned()))?;
            let key = PublicKey::from_openssh(&format!("{} {encoded}", rest[key_at]))
                .map_err(|e| error(format!("not a public key: {e}")))?;
            if for_git {
                entries.push((principals.trim_matches('"').to_owned(), key));
            }
        }
        Ok(AllowedSigners { entries })
    }

    /// The keys an environment declares in its `signers` (its file named in errors).
    pub fn declared(env: &crate::model::Environment) -> Result<AllowedSigners, SignError> {
        AllowedSigners::parse(
            &env.signers.join("\n"),
            Path::new(&format!(
                "{}/{}.json: signers",
                crate::model::ENVIRONMENTS_DIR,
                env.name
            )),
        )
    }

    /// Whether no key is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the signature `armored` over `payload` says (`None`: the commit is unsigned).
    pub fn verify(&self, armored: Option<&str>, payload: &[u8]) -> Verdict {
        let Some(armored) = armored else {
            return Verdict::Unsigned;
        };
        if armored
            .trim_start()
            .starts_with("-----BEGIN PGP SIGNATURE-----")
        {
            return Verdict::Unchecked {
                what: "an OpenPGP signature (list ssh keys, and sign with `gpg.format ssh`)"
                    .to_owned(),
            };
        }
        let signature = match SshSig::from_pem(armored.trim()) {
            Ok(signature) => signature,
            Err(e) => {
                return Verdict::Bad {
                    why: format!("not an SSH signature: {e}"),
                };
            }
        };
        if signature.namespace() != NAMESPACE {
            return Verdict::Bad {
                why: format!(
                    "made for `{}`, not for git commits",
                    crate::output::printable(signature.namespace())
                ),
            };
        }
        let signer = PublicKey::from(signature.public_key().clone());
        let key = signer.fingerprint(HashAlg::Sha256).to_string();
        if let Err(e) = signer.verify(NAMESPACE, payload, &signature) {
            return Verdict::Bad {
                why: format!("it does not match the commit ({e}), by {key}"),
            };
        }
        match self
            .entries
            .iter()
            .find(|(_, trusted)| trusted.key_data() == signer.key_data())
        {
            Some((by, _)) => Verdict::Trusted {
                by: by.clone(),
                key,
            },
            None => Verdict::Untrusted { key },
        }
    }
}

/// The line's fields, split at whitespace outside double quotes.
fn split_fields(line: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    fields.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        fields.push(&line[s..]);
    }
    fields
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-sha2-") || field.starts_with("sk-")
}

/// A private key commits are signed with.
pub struct Signer {
    key: PrivateKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field(
                "key",
                &self
                    .key
                    .public_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            )
            .finish()
    }
}

impl Signer {
    /// The key in the OpenSSH private key file at `path` (unencrypted: ferry runs unattended).
    pub fn load(path: &Path) -> Result<Signer, SignError> {
        let text = std::fs::read(path).map_err(|source| SignError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |why: String| SignError::Key {
            path: path.to_owned(),
            why,
        };
        let key = PrivateKey::from_openssh(&text)
            .map_err(|e| bad(format!("not an OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(bad(
                "the key is encrypted with a passphrase: give ferry a key of its own without one"
                    .to_owned(),
            ));
        }
        Ok(Signer { key })
    }

    /// The signer `FERRY_SIGNING_KEY` names, read once (`None` when unset or empty).
    pub fn configured() -> Result<Option<&'static Signer>, &'static SignError> {
        static SIGNER: std::sync::OnceLock<Result<Option<Signer>, SignError>> =
            std::sync::OnceLock::new();
        SIGNER
            .get_or_init(|| match std::env::var_os(SIGNING_KEY) {
                Some(path) if !path.is_empty() => Signer::load(Path::new(&path)).map(Some),
                _ => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
    }

    /// The public half, as `allowed_signers` lists it.
    pub fn public_key(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// The armored signature of `payload` (a commit without its `gpgsig` header).
    pub fn sign(&self, payload: &[u8]) -> Result<String, SignError> {
        let signature = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, payload)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        signature
            .to_pem(LineEnding::LF)
            .map_err(|e| SignError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_outside_quotes() {
        assert_eq!(
            split_fields(r#"a@x namespaces="git,file" ssh-ed25519 AAAA c"#),
            [
                "a@x",
                r#"namespaces="git,file""#,
                "ssh-ed25519",
                "AAAA",
                "c"
            ]
        );
        assert_eq!(split_fields("  a   b "), ["a", "b"]);
    }

    #[test]
    fn signers_lists_refuse_options_they_would_ignore() {
        let path = Path::new("allowed_signers");
        let e =
            AllowedSigners::parse("a@x valid-after=20260101 ssh-ed25519 AAAA\n", path).unwrap_err();
        assert!(e.to_string().contains("allowed_signers:1:"), "{e}");
        assert!(e.to_string().contains("valid-after"), "{e}");
        let e = AllowedSigners::parse("# keys\n\na@x\n", path).unwrap_err();
        assert!(e.to_string().starts_with("allowed_signers:3:"), "{e}");
        assert!(AllowedSigners::parse("# none\n", path).unwrap().is_empty());
    }

    #[test]
    fn an_unsigned_or_pgp_signed_commit_is_not_trusted() {
        let trusted = AllowedSigners::default();
        assert_eq!(trusted.verify(None, b"tree"), Verdict::Unsigned);
        assert!(matches!(
            trusted.verify(Some("-----BEGIN PGP SIGNATURE-----\n..."), b"tree"),
            Verdict::Unchecked { .. }
        ));
        assert!(matches!(
            trusted.verify(
                Some("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----"),
                b"tree"
            ),
            Verdict::Bad { .. }
        ));
    }
}
