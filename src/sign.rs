//! Signed commits, as git signs them: a `gpgsig` header holding an armored signature over the
//! commit without that header, an SSHSIG (namespace `git`, `gpg.format ssh`) or an OpenPGP
//! detached signature (`gpg.format openpgp`). ferry makes them with the key
//! `FERRY_SIGNING_KEY` names, or as git's own `commit.gpgsign` configuration says, and checks
//! them in Rust against trusted keys (ssh `allowed_signers` lines and armored OpenPGP public
//! keys), so that one verified signature on a commit covers everything it pins (commit → tree
//! → `manifest.json` → sha256 → artifact bytes).

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The namespace git signs commits in (`ssh-keygen -Y sign -n git`).
pub const NAMESPACE: &str = "git";

/// The program that signs with a key ssh-agent holds, as git runs it (`gpg.ssh.program`).
const SSH_KEYGEN: &str = "ssh-keygen";

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
    /// Where the configuration that failed came from: `FERRY_SIGNING_KEY`, or git's.
    #[error("{from}: {source}")]
    Configured {
        from: String,
        source: Box<SignError>,
    },
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
    /// A signature ferry cannot check (an X.509 one, made by `gpgsm`).
    Unchecked { what: String },
}

impl Verdict {
    pub fn is_trusted(&self) -> bool {
        matches!(self, Verdict::Trusted { .. })
    }

    /// Its state's name, as JSON and metrics have it.
    pub fn state(&self) -> &'static str {
        match self {
            Verdict::Trusted { .. } => "trusted",
            Verdict::Unsigned => "unsigned",
            Verdict::Bad { .. } => "bad",
            Verdict::Untrusted { .. } => "untrusted",
            Verdict::Unchecked { .. } => "unchecked",
        }
    }

    /// Every state's name, in the order metrics list them.
    pub const STATES: [&'static str; 5] = ["trusted", "unsigned", "bad", "untrusted", "unchecked"];

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
/// `valid-before` are refused rather than ignored. Armored OpenPGP public keys (`gpg --armor
/// --export`) may stand among the lines: each key's first user id is its principal, and a
/// signature by its primary key or any of its subkeys counts.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<(String, PublicKey)>,
    openpgp: Vec<(String, SignedPublicKey)>,
}

const PGP_KEY_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PGP_KEY_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
const PGP_SIGNATURE_BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";

/// An OpenPGP key's fingerprint as gpg shows it (upper-case hex).
fn pgp_fingerprint(key: &impl KeyDetails) -> String {
    hex::encode_upper(key.fingerprint().as_bytes())
}

/// The keys of an armored block: each must hold together (its self-signatures verify) and not
/// be revoked; its principal is its first user id.
fn openpgp_keys(block: &str) -> Result<Vec<(String, SignedPublicKey)>, Why> {
    let (keys, _) = SignedPublicKey::from_armor_many(block.as_bytes())
        .map_err(|e| Why(format!("not an OpenPGP public key: {e}")))?;
    let mut out = Vec::new();
    for key in keys {
        let key = key.map_err(|e| Why(format!("not an OpenPGP public key: {e}")))?;
        let fingerprint = pgp_fingerprint(&key);
        key.verify_bindings().map_err(|e| {
            Why(format!("the OpenPGP key {fingerprint} does not hold: its self-signatures do not verify ({e})"))
        })?;
        if !key.details.revocation_signatures.is_empty() {
            return Err(Why(format!("the OpenPGP key {fingerprint} is revoked")));
        }
        let principal = key
            .details
            .users
            .iter()
            .find_map(|user| user.id.as_str())
            .map(|id| crate::output::printable(id).into_owned())
            .unwrap_or_else(|| fingerprint.clone());
        out.push((principal, key));
    }
    if out.is_empty() {
        return Err(Why("the OpenPGP block holds no public key".to_owned()));
    }
    Ok(out)
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
        let mut openpgp = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        let mut next = 0;
        while next < lines.len() {
            let i = next;
            next += 1;
            let line = lines[i].trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |why: String| SignError::Signers {
                path: path.to_owned(),
                line: i + 1,
                why,
            };
            if line == PGP_KEY_BEGIN {
                let end = lines[i..]
                    .iter()
                    .position(|l| l.trim() == PGP_KEY_END)
                    .map(|n| i + n)
                    .ok_or_else(|| {
                        error(format!(
                            "an OpenPGP key block without its `{PGP_KEY_END}` line"
                        ))
                    })?;
                let block: Vec<&str> = lines[i..=end].iter().map(|l| l.trim()).collect();
                openpgp.extend(openpgp_keys(&block.join("\n")).map_err(|why| error(why.0))?);
                next = end + 1;
                continue;
            }
            let fields = split_fields(line);
            let Some((principals, rest)) = fields.split_first() else {
                continue;
            };
            let key_at = rest
                .iter()
                .position(|f| is_key_type(f))
                .ok_or_else(|| error("no key (`ssh-ed25519 AAAA…`) on the line".to_owned()))?;
            let mut for_git = true;
            for option in rest[..key_at].iter().flat_map(|o| split_options(o)) {
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
        Ok(AllowedSigners { entries, openpgp })
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
        self.entries.is_empty() && self.openpgp.is_empty()
    }

    /// What the signature `armored` over `payload` says (`None`: the commit is unsigned).
    pub fn verify(&self, armored: Option<&str>, payload: &[u8]) -> Verdict {
        let Some(armored) = armored else {
            return Verdict::Unsigned;
        };
        if armored.trim_start().starts_with(PGP_SIGNATURE_BEGIN) {
            return self.verify_openpgp(armored, payload);
        }
        if armored
            .trim_start()
            .starts_with("-----BEGIN SIGNED MESSAGE-----")
        {
            return Verdict::Unchecked {
                what: "an X.509 signature (sign with `gpg.format ssh` or `openpgp`)".to_owned(),
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

    /// What an OpenPGP signature says: the trusted key it names as its issuer (primary or
    /// subkey) must verify it.
    fn verify_openpgp(&self, armored: &str, payload: &[u8]) -> Verdict {
        let signature = match DetachedSignature::from_string(armored.trim()) {
            Ok((signature, _)) => signature.signature,
            Err(e) => {
                return Verdict::Bad {
                    why: format!("not an OpenPGP signature: {e}"),
                };
            }
        };
        let fingerprints: Vec<String> = signature
            .issuer_fingerprint()
            .iter()
            .map(|f| hex::encode_upper(f.as_bytes()))
            .collect();
        let key_ids: Vec<String> = signature
            .issuer_key_id()
            .iter()
            .map(|id| hex::encode_upper(id.as_ref()))
            .collect();
        let names = |fingerprint: &str| {
            fingerprints.iter().any(|f| f == fingerprint)
                || key_ids.iter().any(|id| fingerprint.ends_with(id.as_str()))
        };
        let anonymous = fingerprints.is_empty() && key_ids.is_empty();
        // A key that had expired when the signature was made signs nothing (as gpg's
        // EXPKEYSIG); a signature without a time is taken as made now.
        let made = signature
            .created()
            .map(|t| u64::from(t.as_secs()))
            .unwrap_or_else(|| jiff::Timestamp::now().as_second().max(0) as u64);
        let judge = |by: &str,
                     fingerprint: String,
                     expires: Option<u64>,
                     holds: pgp::errors::Result<()>| match holds {
            Ok(()) if expires.is_some_and(|at| made >= at) => Verdict::Bad {
                why: format!("made by OpenPGP {fingerprint} of {by} after the key expired"),
            },
            Ok(()) => Verdict::Trusted {
                by: by.to_owned(),
                key: format!("OpenPGP {fingerprint}"),
            },
            Err(e) => Verdict::Bad {
                why: format!("it does not match the commit ({e}), by OpenPGP {fingerprint}"),
            },
        };
        for (by, key) in &self.openpgp {
            let primary = pgp_fingerprint(&key.primary_key);
            if names(&primary) || anonymous {
                let self_signatures = key
                    .details
                    .users
                    .iter()
                    .flat_map(|user| &user.signatures)
                    .chain(&key.details.direct_signatures);
                let expires = expiry(key.primary_key.created_at(), self_signatures);
                let verdict = judge(
                    by,
                    primary,
                    expires,
                    signature.verify(&key.primary_key, payload),
                );
                if !anonymous || verdict.is_trusted() {
                    return verdict;
                }
            }
            for sub in key.public_subkeys.iter().filter(|sub| signs(sub)) {
                let fingerprint = pgp_fingerprint(&sub.key);
                if names(&fingerprint) || anonymous {
                    let bindings = sub
                        .signatures
                        .iter()
                        .filter(|sig| sig.typ() == Some(pgp::packet::SignatureType::SubkeyBinding));
                    let expires = expiry(sub.key.created_at(), bindings);
                    let verdict = judge(
                        by,
                        fingerprint,
                        expires,
                        signature.verify(&sub.key, payload),
                    );
                    if !anonymous || verdict.is_trusted() {
                        return verdict;
                    }
                }
            }
        }
        // A subkey left out above because its owner revoked it (or never bound it to sign).
        for (by, key) in &self.openpgp {
            for sub in &key.public_subkeys {
                let fingerprint = pgp_fingerprint(&sub.key);
                if !anonymous && names(&fingerprint) {
                    return Verdict::Bad {
                        why: format!(
                            "made by the subkey OpenPGP {fingerprint} of {by}, which is revoked or not bound to sign"
                        ),
                    };
                }
            }
        }
        let issuer = fingerprints
            .first()
            .or(key_ids.first())
            .cloned()
            .unwrap_or_else(|| "that names no issuer".to_owned());
        Verdict::Untrusted {
            key: format!("OpenPGP {issuer}"),
        }
    }
}

/// Whether a setting that names a key holds key material instead (a private key pasted
/// where its path belongs, as CI secrets often hold one): never to be shown in a message.
fn holds_key(value: &str) -> bool {
    value.contains('\n') || value.contains("-----BEGIN") || value.contains("PRIVATE KEY")
}

/// The refusal of a setting that holds a key's contents, which it does not repeat.
fn key_given_as_text(setting: &str) -> SignError {
    SignError::Key {
        path: PathBuf::from(setting),
        why: "holds a key's contents (not shown), not the path of a key file: write the key to a file only you can read and name that file".to_owned(),
    }
}

/// When a key created at `created` expires (seconds since the epoch), as its newest
/// self-signature (or binding) says; `None`: never.
fn expiry<'a>(
    created: pgp::types::Timestamp,
    signatures: impl Iterator<Item = &'a pgp::packet::Signature>,
) -> Option<u64> {
    let newest = signatures.max_by_key(|sig| sig.created().map(|t| t.as_secs()))?;
    let after = newest.key_expiration_time()?.as_secs();
    (after > 0).then(|| u64::from(created.as_secs()) + u64::from(after))
}

/// Whether a subkey signs for its primary key: bound to it for signing (the binding's key
/// flags say so; `verify_bindings` checked the binding and its back signature), and not revoked
/// by its owner (a revoked subkey is one that may be in someone else's hands).
fn signs(sub: &pgp::composed::SignedPublicSubKey) -> bool {
    use pgp::packet::SignatureType;
    let revoked = sub
        .signatures
        .iter()
        .any(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation));
    let bound = sub
        .signatures
        .iter()
        .any(|sig| sig.typ() == Some(SignatureType::SubkeyBinding) && sig.key_flags().sign());
    bound && !revoked
}

/// `text` split at each character `at` accepts outside double quotes, every piece kept.
fn split_outside_quotes(text: &str, at: impl Fn(char) -> bool) -> Vec<&str> {
    let (mut pieces, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && at(c) {
            pieces.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// The line's fields, split at whitespace outside double quotes.
fn split_fields(line: &str) -> Vec<&str> {
    let mut fields = split_outside_quotes(line, char::is_whitespace);
    fields.retain(|field| !field.is_empty());
    fields
}

/// An options field split at commas outside double quotes (`namespaces="git,file",x`).
fn split_options(field: &str) -> Vec<&str> {
    split_outside_quotes(field, |c| c == ',')
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-sha2-") || field.starts_with("sk-")
}

/// A commit object as git splits it to check its signature (`parse_signed_commit`): its
/// `gpgsig` header (continuation lines unfolded; two such headers are joined, and then do not
/// verify), and the bytes it signs: the object without that header, nor another hash's
/// (`gpgsig-sha256`). Only headers count: a `gpgsig` line in the message is the message's.
#[derive(Debug)]
pub struct SignedCommit {
    pub tree: Option<String>,
    pub signature: Option<String>,
    pub payload: Vec<u8>,
}

/// Splits the commit object `bytes` (without its `commit SIZE` header).
pub fn split_commit(bytes: &[u8]) -> SignedCommit {
    #[derive(PartialEq)]
    enum Header {
        Signature,
        OtherSignature,
        Signed,
    }
    let mut payload = Vec::with_capacity(bytes.len());
    let (mut signature, mut tree) = (None::<Vec<u8>>, None);
    let mut current = Header::Signed;
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |n| n + 1);
        let line = &rest[..end];
        if line == b"\n" {
            // The message, whole.
            payload.extend_from_slice(rest);
            break;
        }
        rest = &rest[end..];
        if let Some(more) = line.strip_prefix(b" ") {
            match current {
                Header::Signature => signature
                    .as_mut()
                    .expect("within a signature")
                    .extend_from_slice(more),
                Header::OtherSignature => {}
                Header::Signed => payload.extend_from_slice(line),
            }
        } else if let Some(first) = line.strip_prefix(b"gpgsig ") {
            signature
                .get_or_insert_with(Vec::new)
                .extend_from_slice(first);
            current = Header::Signature;
        } else if line.starts_with(b"gpgsig-") {
            current = Header::OtherSignature;
        } else {
            current = Header::Signed;
            if let Some(id) = line.strip_prefix(b"tree ")
                && tree.is_none()
            {
                tree = Some(String::from_utf8_lossy(id).trim_end().to_owned());
            }
            payload.extend_from_slice(line);
        }
    }
    SignedCommit {
        tree,
        signature: signature.map(|s| String::from_utf8_lossy(&s).into_owned()),
        payload,
    }
}

/// What commits are signed with, and where that was configured (named in errors).
pub struct Signer {
    how: How,
    from: String,
}

enum How {
    /// An OpenSSH private key, signed with in Rust.
    Key(Box<PrivateKey>),
    /// An ssh key whose private half ssh-agent holds: `PROGRAM -Y sign -n git -f KEY FILE`, as
    /// git runs it (`gpg.ssh.program`, `ssh-keygen` by default).
    Ssh { program: String, key: SshKey },
    /// OpenPGP: `PROGRAM --status-fd=2 -bsa [-u KEY]`, as git runs it (`gpg.program`, `gpg` by
    /// default).
    OpenPgp {
        program: String,
        key: Option<String>,
    },
}

enum SshKey {
    /// A key file: the public half (the private one in ssh-agent) or an encrypted private key.
    File(PathBuf),
    /// The public key itself (`key::ssh-ed25519 AAAA…`), its private half in ssh-agent.
    Literal(String),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.how {
            How::Key(key) => key.public_key().fingerprint(HashAlg::Sha256).to_string(),
            How::Ssh { program, .. } => format!("{program} -Y sign"),
            How::OpenPgp { program, key } => {
                format!("{program} -u {}", key.as_deref().unwrap_or("(default)"))
            }
        };
        f.debug_struct("Signer")
            .field("how", &how)
            .field("from", &self.from)
            .finish()
    }
}

impl Signer {
    /// The key in the file at `path`: an OpenSSH private key (unencrypted: ferry runs
    /// unattended), or the public half of a key ssh-agent holds.
    pub fn load(path: &Path) -> Result<Signer, SignError> {
        let text = std::fs::read(path).map_err(|source| SignError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |why: String| SignError::Key {
            path: path.to_owned(),
            why,
        };
        let from = SIGNING_KEY.to_owned();
        match PrivateKey::from_openssh(&text) {
            Ok(key) if key.is_encrypted() => Err(bad(
                "the key is encrypted with a passphrase: give ferry a key of its own without one, or load it into ssh-agent and name its public half"
                    .to_owned(),
            )),
            Ok(key) => Ok(Signer {
                how: How::Key(Box::new(key)),
                from,
            }),
            Err(e) => {
                let public = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| PublicKey::from_openssh(t.trim()).ok());
                if public.is_none() {
                    return Err(bad(format!(
                        "not an OpenSSH private key ({e}), nor the public half of a key ssh-agent holds"
                    )));
                }
                agent_reachable().map_err(|why| bad(why.0))?;
                Ok(Signer {
                    how: How::Ssh {
                        program: SSH_KEYGEN.to_owned(),
                        key: SshKey::File(path.to_owned()),
                    },
                    from,
                })
            }
        }
    }

    /// The signer configured for this process, read once (`None`: commits are not signed):
    /// `FERRY_SIGNING_KEY` (a key file, or `key::ssh-ed25519 AAAA…` held by ssh-agent), else
    /// git's own configuration when `commit.gpgsign` is true (`gpg.format`,
    /// `user.signingkey`, `gpg.program`, `gpg.ssh.program`), as `git commit` reads it.
    pub fn configured() -> Result<Option<&'static Signer>, &'static SignError> {
        static SIGNER: std::sync::OnceLock<Result<Option<Signer>, SignError>> =
            std::sync::OnceLock::new();
        SIGNER
            .get_or_init(|| {
                let (from, signer) = match std::env::var_os(SIGNING_KEY) {
                    Some(value) if !value.is_empty() => (
                        SIGNING_KEY,
                        match value.to_str().and_then(|v| v.strip_prefix("key::")) {
                            Some(literal) => Signer::literal(
                                literal,
                                SSH_KEYGEN.to_owned(),
                                SIGNING_KEY.to_owned(),
                            )
                            .map(Some),
                            None if value.to_str().is_some_and(holds_key) => {
                                Err(key_given_as_text("its value"))
                            }
                            None => Signer::load(Path::new(&value)).map(Some),
                        },
                    ),
                    _ => (
                        "git's configuration (commit.gpgsign)",
                        Signer::from_git_config(),
                    ),
                };
                signer.map_err(|source| SignError::Configured {
                    from: from.to_owned(),
                    source: Box::new(source),
                })
            })
            .as_ref()
            .map(Option::as_ref)
    }

    /// A public key given as text, its private half held by ssh-agent.
    fn literal(key: &str, program: String, from: String) -> Result<Signer, SignError> {
        let bad = |why: String| SignError::Key {
            path: PathBuf::from("key::…"),
            why,
        };
        PublicKey::from_openssh(key.trim())
            .map_err(|e| bad(format!("`key::…` is not an ssh public key: {e}")))?;
        agent_reachable().map_err(|why| bad(why.0))?;
        Ok(Signer {
            how: How::Ssh {
                program,
                key: SshKey::Literal(key.trim().to_owned()),
            },
            from,
        })
    }

    /// git's signing configuration, where `commit.gpgsign` asks for signed commits, as
    /// [`config_here`] reads it.
    fn from_git_config() -> Result<Option<Signer>, SignError> {
        let Ok(config) = config_here() else {
            return Ok(None);
        };
        if !config.get_bool("commit.gpgsign").unwrap_or(false) {
            return Ok(None);
        }
        let text = |name: &str| config.get_string(name).ok().filter(|v| !v.is_empty());
        let from = "git's configuration (commit.gpgsign)".to_owned();
        let key = text("user.signingkey");
        if key.as_deref().is_some_and(holds_key) {
            return Err(key_given_as_text("user.signingkey"));
        }
        let bad = |why: String| SignError::Key {
            path: PathBuf::from("user.signingkey"),
            why,
        };
        match text("gpg.format").as_deref().unwrap_or("openpgp") {
            "openpgp" => Ok(Some(Signer {
                how: How::OpenPgp {
                    program: text("gpg.openpgp.program")
                        .or_else(|| text("gpg.program"))
                        .unwrap_or_else(|| "gpg".to_owned()),
                    key,
                },
                from,
            })),
            "ssh" => {
                let key = key.ok_or_else(|| {
                    bad("is not set: ssh signing (`gpg.format ssh`) needs the key".to_owned())
                })?;
                let program = text("gpg.ssh.program").unwrap_or_else(|| SSH_KEYGEN.to_owned());
                if let Some(literal) = key
                    .strip_prefix("key::")
                    .or_else(|| key.starts_with("ssh-").then_some(key.as_str()))
                {
                    return Signer::literal(literal, program, from).map(Some);
                }
                let path = match key.strip_prefix("~/") {
                    Some(rest) => std::env::var_os("HOME")
                        .map(|home| Path::new(&home).join(rest))
                        .unwrap_or_else(|| PathBuf::from(&key)),
                    None => PathBuf::from(&key),
                };
                // An unencrypted private key is signed with here; any other key as git would.
                let text = std::fs::read(&path).map_err(|source| SignError::Read {
                    path: path.clone(),
                    source,
                })?;
                let how = match PrivateKey::from_openssh(&text) {
                    Ok(private) if !private.is_encrypted() => How::Key(Box::new(private)),
                    _ => How::Ssh {
                        program,
                        key: SshKey::File(path),
                    },
                };
                Ok(Some(Signer { how, from }))
            }
            other => Err(SignError::Key {
                path: PathBuf::from("gpg.format"),
                why: format!(
                    "`{}` signatures are not supported: use `ssh` or `openpgp`",
                    crate::output::printable(other)
                ),
            }),
        }
    }

    /// The armored signature of `payload` (a commit without its `gpgsig` header).
    pub fn sign(&self, payload: &[u8]) -> Result<String, SignError> {
        let failed = |why: String| SignError::Sign(format!("{}: {why}", self.from));
        match &self.how {
            How::Key(key) => {
                let signature = key
                    .sign(NAMESPACE, HashAlg::Sha512, payload)
                    .map_err(|e| failed(e.to_string()))?;
                signature
                    .to_pem(LineEnding::LF)
                    .map_err(|e| failed(e.to_string()))
            }
            How::Ssh { program, key } => {
                let dir = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
                let file = dir.path().join("commit");
                std::fs::write(&file, payload).map_err(|e| failed(e.to_string()))?;
                let mut command = std::process::Command::new(program);
                command.args(["-Y", "sign", "-n", NAMESPACE, "-f"]);
                match key {
                    SshKey::File(path) => {
                        command.arg(path);
                    }
                    SshKey::Literal(text) => {
                        let path = dir.path().join("key.pub");
                        std::fs::write(&path, format!("{text}\n"))
                            .map_err(|e| failed(e.to_string()))?;
                        command.arg(path).arg("-U");
                    }
                }
                command.arg(&file);
                let output = run(&mut command, None)
                    .map_err(|why| failed(format!("`{program} -Y sign`: {why}")))?;
                drop(output);
                std::fs::read_to_string(dir.path().join("commit.sig"))
                    .map_err(|e| failed(format!("`{program} -Y sign` wrote no signature: {e}")))
            }
            How::OpenPgp { program, key } => {
                let mut command = std::process::Command::new(program);
                command.args(["--status-fd=2", "-bsa"]);
                if let Some(key) = key {
                    command.args(["-u", key]);
                }
                let output = run(&mut command, Some(payload))
                    .map_err(|why| failed(format!("`{program} -bsa`: {why}")))?;
                let status = String::from_utf8_lossy(&output.stderr);
                let signature = String::from_utf8_lossy(&output.stdout).into_owned();
                if !status
                    .lines()
                    .any(|l| l.starts_with("[GNUPG:] SIG_CREATED "))
                    || !signature.contains(PGP_SIGNATURE_BEGIN)
                {
                    return Err(failed(format!("`{program} -bsa` made no signature")));
                }
                Ok(signature)
            }
        }
    }
}

/// git's configuration as `git` run in the current directory reads it: the user's and the
/// system's, and the repository's around it (its `.git/config`) over them.
fn config_here() -> Result<git2::Config, git2::Error> {
    let mut config = git2::Config::open_default()?;
    let here = std::env::current_dir().map_err(|e| git2::Error::from_str(&e.to_string()))?;
    if let Some(local) = here
        .ancestors()
        .map(|dir| dir.join(".git/config"))
        .find(|path| path.is_file())
    {
        config.add_file(&local, git2::ConfigLevel::Local, false)?;
    }
    Ok(config)
}

/// ssh-agent must be there to sign with a key it holds.
fn agent_reachable() -> Result<(), Why> {
    match std::env::var_os("SSH_AUTH_SOCK") {
        Some(sock) if !sock.is_empty() => Ok(()),
        _ => Err(Why(
            "the key's private half is to be in ssh-agent, and SSH_AUTH_SOCK is not set".to_owned(),
        )),
    }
}

/// Why a key or a program did not serve, in a few words (made part of a [`SignError`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Why(String);

/// Runs a signing program, `input` on its stdin; what it said on stderr (its diagnostics, not
/// its status lines) when it fails.
fn run(
    command: &mut std::process::Command,
    input: Option<&[u8]>,
) -> Result<std::process::Output, Why> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Why(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A program that exits early closes its stdin: its exit status tells why.
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(|e| Why(e.to_string()))?;
    if output.status.success() {
        return Ok(output);
    }
    let said: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.starts_with("[GNUPG:]") && !l.trim().is_empty())
        .take(5)
        .map(|l| crate::output::printable(l).into_owned())
        .collect();
    Err(Why(if said.is_empty() {
        format!("it failed ({})", output.status)
    } else {
        format!("it failed ({}): {}", output.status, said.join("; "))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is cut from the headers only: a `gpgsig` line in the message is the
    /// message's; another hash's signature is signed by neither.
    #[test]
    fn a_commit_splits_as_git_splits_it() {
        let commit = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\ngpgsig -----BEGIN SSH SIGNATURE-----\n AAAA\n -----END SSH SIGNATURE-----\ngpgsig-sha256 other\n more\n\nsubject\n\ngpgsig in the body\n";
        let split = split_commit(commit.as_bytes());
        assert_eq!(
            split.tree.as_deref(),
            Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
        );
        assert_eq!(
            split.signature.as_deref(),
            Some("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")
        );
        assert_eq!(
            String::from_utf8(split.payload).unwrap(),
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nsubject\n\ngpgsig in the body\n"
        );
        let unsigned = split_commit(b"tree 4b82\n\ngpgsig x\n");
        assert_eq!(unsigned.signature, None);
        assert_eq!(unsigned.payload, b"tree 4b82\n\ngpgsig x\n");
    }

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
        assert_eq!(
            split_options(r#"namespaces="file,git",x"#),
            [r#"namespaces="file,git""#, "x"]
        );
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
    fn an_unsigned_malformed_or_x509_signed_commit_is_not_trusted() {
        let trusted = AllowedSigners::default();
        assert_eq!(trusted.verify(None, b"tree"), Verdict::Unsigned);
        assert!(matches!(
            trusted.verify(Some("-----BEGIN PGP SIGNATURE-----\n..."), b"tree"),
            Verdict::Bad { .. }
        ));
        assert!(matches!(
            trusted.verify(Some("-----BEGIN SIGNED MESSAGE-----\n..."), b"tree"),
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
