//! Registry credentials, found as Docker, Flux and oras find them.
//!
//! In order: `FERRY_REGISTRY_USER` and `FERRY_REGISTRY_PASSWORD`; then Docker's `config.json`
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): a `credHelpers` entry for the
//! registry, an `auths` entry (`auth`, or `username` and `password`), or the `credsStore`
//! helper. Helpers are the `docker-credential-NAME get` programs Docker uses. Nothing found
//! means anonymous. The registry's `WWW-Authenticate` challenge decides how the credentials
//! are used (basic, or exchanged for a bearer token). A secret is never logged or shown.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use oci_client::secrets::RegistryAuth;

/// Why the credentials for a registry could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `FERRY_REGISTRY_PASSWORD(_FILE)` could not be read.
    #[error("{0}")]
    Secret(#[from] crate::secret::SecretError),
    #[error("{set} is set but {unset} is not")]
    Half {
        set: &'static str,
        unset: &'static str,
    },
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: not JSON ({error}): Docker's config.json is a JSON object")]
    NotJson {
        path: String,
        error: serde_json::Error,
    },
    #[error("{path}: `auths.{registry}.auth` is not base64 of `user:password`")]
    NotBase64 { path: String, registry: String },
    #[error("the credential helper `{program}`: {error}")]
    HelperRun {
        program: String,
        error: std::io::Error,
    },
    #[error("the credential helper `{program}` failed ({status}) for {registry}")]
    HelperFailed {
        program: String,
        status: std::process::ExitStatus,
        registry: String,
    },
    #[error("the credential helper `{program}` did not answer JSON")]
    HelperNotJson { program: String },
    #[error(
        "the credential helper `{program}` gave an identity token for {registry}: ferry takes a user and password (or a token as the password)"
    )]
    HelperToken { program: String, registry: String },
}

/// What ferry authenticates to one registry with.
#[derive(Clone)]
pub enum Credentials {
    Anonymous,
    Basic {
        user: String,
        password: String,
        /// Where they came from, for messages: `FERRY_REGISTRY_USER`, `~/.docker/config.json`.
        source: String,
    },
}

/// Says where the credentials came from, never what they are.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({})", self.source())
    }
}

impl Credentials {
    pub fn source(&self) -> &str {
        match self {
            Credentials::Anonymous => "anonymous",
            Credentials::Basic { source, .. } => source,
        }
    }

    pub(crate) fn registry_auth(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { user, password, .. } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
        }
    }
}

/// The credentials for `registry` (`host` or `host:port`).
pub fn credentials(registry: &str) -> Result<Credentials, AuthError> {
    let user = std::env::var("FERRY_REGISTRY_USER").unwrap_or_default();
    let password = crate::secret::from_env("FERRY_REGISTRY_PASSWORD")
        .map_err(AuthError::Secret)?
        .unwrap_or_default();
    match (user.is_empty(), password.is_empty()) {
        (false, false) => {
            return Ok(Credentials::Basic {
                user,
                password,
                source: "FERRY_REGISTRY_USER".to_owned(),
            });
        }
        (false, true) => {
            return Err(AuthError::Half {
                set: "FERRY_REGISTRY_USER",
                unset: "FERRY_REGISTRY_PASSWORD",
            });
        }
        (true, false) => {
            return Err(AuthError::Half {
                set: "FERRY_REGISTRY_PASSWORD",
                unset: "FERRY_REGISTRY_USER",
            });
        }
        (true, true) => {}
    }
    let Some(path) = docker_config() else {
        return Ok(Credentials::Anonymous);
    };
    let text = match crate::files::read_regular(&path, crate::json::MAX_FILE_SIZE) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(error) => {
            return Err(AuthError::Read {
                path: path.display().to_string(),
                error,
            });
        }
    };
    let shown = path.display().to_string();
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|error| AuthError::NotJson {
            path: shown.clone(),
            error,
        })?;
    from_config(&config, registry, &shown)
}

fn docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// `registry`'s credentials in a parsed `config.json` (shown as `shown` in messages).
fn from_config(
    config: &serde_json::Value,
    registry: &str,
    shown: &str,
) -> Result<Credentials, AuthError> {
    let not_base64 = || AuthError::NotBase64 {
        path: shown.to_owned(),
        registry: registry.to_owned(),
    };
    if let Some(helper) = config
        .pointer("/credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.get(registry))
        .and_then(|h| h.as_str())
    {
        return helper_get(helper, registry);
    }
    if let Some(auths) = config.get("auths").and_then(|a| a.as_object()) {
        let entry = auths
            .iter()
            .find(|(key, _)| server_of(key) == registry)
            .map(|(_, entry)| entry);
        if let Some(entry) = entry {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(|v| v.as_str())
                    .filter(|v| !v.is_empty())
            };
            if let Some(encoded) = field("auth") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or_else(not_base64)?;
                let (user, password) = decoded.split_once(':').ok_or_else(not_base64)?;
                return Ok(Credentials::Basic {
                    user: user.to_owned(),
                    password: password.to_owned(),
                    source: shown.to_owned(),
                });
            }
            if let (Some(user), Some(password)) = (field("username"), field("password")) {
                return Ok(Credentials::Basic {
                    user: user.to_owned(),
                    password: password.to_owned(),
                    source: shown.to_owned(),
                });
            }
        }
    }
    if let Some(store) = config.get("credsStore").and_then(|s| s.as_str()) {
        return helper_get(store, registry);
    }
    Ok(Credentials::Anonymous)
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `ghcr.io` → `ghcr.io`.
fn server_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Asks `docker-credential-NAME get` for `registry`'s credentials.
fn helper_get(name: &str, registry: &str) -> Result<Credentials, AuthError> {
    let program = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| AuthError::HelperRun {
            program: program.clone(),
            error,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|error| AuthError::HelperRun {
            program: program.clone(),
            error,
        })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(AuthError::HelperFailed {
            program,
            status: output.status,
            registry: registry.to_owned(),
        });
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|_| AuthError::HelperNotJson {
            program: program.clone(),
        })?;
    let field = |name: &str| answer.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (user, secret) = (field("Username"), field("Secret"));
    if secret.is_empty() {
        return Ok(Credentials::Anonymous);
    }
    if user == "<token>" {
        return Err(AuthError::HelperToken {
            program,
            registry: registry.to_owned(),
        });
    }
    Ok(Credentials::Basic {
        user: user.to_owned(),
        password: secret.to_owned(),
        source: format!("the credential helper `{program}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_auths_are_matched_by_host() {
        let config = serde_json::json!({
            "auths": {
                "https://r.example:5000/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("ci:s3cret")},
                "other.example": {"username": "u", "password": "p"}
            }
        });
        let Credentials::Basic { user, password, .. } =
            from_config(&config, "r.example:5000", "config.json").unwrap()
        else {
            panic!("basic expected")
        };
        assert_eq!((user.as_str(), password.as_str()), ("ci", "s3cret"));
        assert!(matches!(
            from_config(&config, "other.example", "c").unwrap(),
            Credentials::Basic { .. }
        ));
        assert!(matches!(
            from_config(&config, "ghcr.io", "c").unwrap(),
            Credentials::Anonymous
        ));
        let broken = serde_json::json!({"auths": {"r.example": {"auth": "%%%"}}});
        let err = from_config(&broken, "r.example", "c").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }
}
