//! Credentials for network remotes: ssh agent and keys, and for https a token from
//! `FERRY_GIT_TOKEN` or git's credential helpers. Nothing here is ever logged.

use std::path::PathBuf;

use git2::{Cred, CredentialType, RemoteCallbacks};

/// Callbacks that answer libgit2's credential requests, trying each method once.
pub fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut tried_agent = false;
    let mut keys_tried = 0usize;
    let mut tried_token = false;
    let mut tried_helper = false;
    callbacks.credentials(move |url, username, allowed| {
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let user = username.unwrap_or("git");
            if !tried_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
                tried_agent = true;
                tracing::debug!("ssh: trying the agent");
                return Cred::ssh_key_from_agent(user);
            }
            let keys = ssh_keys();
            if let Some(key) = keys.get(keys_tried) {
                keys_tried += 1;
                tracing::debug!(key = %key.display(), "ssh: trying a key");
                return Cred::ssh_key(user, None, key, None);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if !tried_token {
                tried_token = true;
                if let Some(token) = crate::secret::from_env_or_warn("FERRY_GIT_TOKEN") {
                        tracing::debug!("https: using FERRY_GIT_TOKEN");
                        return Cred::userpass_plaintext(username.unwrap_or("x-access-token"), &token);
                    }
            }
            if !tried_helper {
                tried_helper = true;
                if let Ok(config) = git2::Config::open_default()
                    && let Ok(cred) = Cred::credential_helper(&config, url, username) {
                        tracing::debug!("https: using git's credential helper");
                        return Ok(cred);
                    }
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && !tried_helper {
            tried_helper = true;
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "authentication failed: no credentials left to try (ssh: agent or ~/.ssh keys, FERRY_SSH_KEY; https: FERRY_GIT_TOKEN or a git credential helper)",
        ))
    });
    callbacks
}

/// `FERRY_SSH_KEY`, then the usual key files.
fn ssh_keys() -> Vec<PathBuf> {
    let mut keys = Vec::new();
    if let Some(key) = std::env::var_os("FERRY_SSH_KEY") {
        keys.push(PathBuf::from(key));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let dir = PathBuf::from(home).join(".ssh");
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let path = dir.join(name);
            if path.is_file() {
                keys.push(path);
            }
        }
    }
    keys
}
