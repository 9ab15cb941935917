//! Which remote a command talks to, and how it is shown without its secrets.

use std::path::{Path, PathBuf};

use super::StoreError;

/// Where the deployment repository lives (shared by every command that touches the store).
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// The deployment repository: a path or `file://` URL (the embedded default), or an
    /// `https://`, `ssh://`, `git@host:path` or `git://` URL. Default: the `origin` remote of
    /// the git repository in the current directory.
    #[arg(long, env = "FERRY_REMOTE", value_name = "URL|PATH", global = true)]
    pub remote: Option<String>,

    /// Where ferry keeps its bare cache of network remotes. Default: `$XDG_CACHE_HOME/ferry`
    /// (or `~/.cache/ferry`).
    #[arg(long, env = "FERRY_CACHE_DIR", value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
}

/// A resolved remote.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The URL or path as given, credentials included: only for git itself.
    pub(crate) url: String,
    /// The URL with any password replaced by `***`: for messages and logs.
    pub shown: String,
    /// For a local remote, its directory.
    pub path: Option<PathBuf>,
}

impl Remote {
    /// Resolves `--remote`, `FERRY_REMOTE`, or the `origin` of the repository around the
    /// current directory.
    pub fn resolve(args: &RemoteArgs) -> Result<Remote, StoreError> {
        let url = match &args.remote {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => origin_of_cwd()?,
        };
        Ok(Remote::parse(&url))
    }

    pub fn parse(url: &str) -> Remote {
        let path = local_path(url);
        Remote {
            url: url.to_owned(),
            shown: redact(url),
            path,
        }
    }

    /// Removes every credential this remote carries from `text` (error messages from git).
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(&self.url, &self.shown);
        if let Some(password) = password_of(&self.url) {
            text = text.replace(password, "***");
        }
        if let Ok(Some(token)) = crate::secret::from_env("FERRY_GIT_TOKEN") {
            text = text.replace(&token, "***");
        }
        text
    }

    /// The default cache directory for network remotes.
    pub fn cache_root(args: &RemoteArgs) -> PathBuf {
        if let Some(dir) = &args.cache_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("ferry")
    }
}

/// A local remote's directory: a path, or a `file://` URL.
fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        return Some(PathBuf::from(rest));
    }
    if url.contains("://") {
        return None;
    }
    // scp-like `host:path` (but not `C:\…` and not a path containing `/` before the colon).
    if let Some((host, _)) = url.split_once(':')
        && !host.is_empty()
        && !host.contains('/')
        && host.len() > 1
    {
        return None;
    }
    Some(PathBuf::from(url))
}

fn password_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `https://user:secret@host/x` → `https://user:***@host/x`; a bare token as user
/// (`https://TOKEN@host`) is hidden too.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None if scheme.starts_with("http") => "***".to_owned(),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{shown}@{host}{path}")
}

fn origin_of_cwd() -> Result<String, StoreError> {
    let no_remote = || StoreError::NoRemote;
    let repo = git2::Repository::discover(".").map_err(|_| no_remote())?;
    let remote = repo.find_remote("origin").map_err(|_| no_remote())?;
    let url = remote.url().map_err(|_| no_remote())?.to_owned();
    // A relative path is relative to the clone, not to the current directory.
    if let Some(path) = local_path(&url)
        && path.is_relative()
    {
        let base = repo.workdir().unwrap_or_else(|| repo.path());
        return Ok(base.join(path).display().to_string());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_tokens() {
        assert_eq!(
            redact("https://bot:s3cret@git.example.com/d.git"),
            "https://bot:***@git.example.com/d.git"
        );
        assert_eq!(
            redact("https://ghp_abc@github.com/o/r"),
            "https://***@github.com/o/r"
        );
        assert_eq!(redact("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(redact("git@github.com:o/r.git"), "git@github.com:o/r.git");
        assert_eq!(redact("/srv/deploy.git"), "/srv/deploy.git");
        let remote = Remote::parse("https://bot:s3cret@h/r");
        assert_eq!(
            remote.scrub("failed for https://bot:s3cret@h/r (s3cret)"),
            "failed for https://bot:***@h/r (***)"
        );
    }

    #[test]
    fn local_paths() {
        assert_eq!(local_path("/srv/d.git"), Some(PathBuf::from("/srv/d.git")));
        assert_eq!(local_path("d.git"), Some(PathBuf::from("d.git")));
        assert_eq!(
            local_path("file:///srv/d.git"),
            Some(PathBuf::from("/srv/d.git"))
        );
        assert_eq!(local_path("git@github.com:o/r.git"), None);
        assert_eq!(local_path("https://h/r"), None);
        assert_eq!(local_path("ssh://h/r"), None);
        assert_eq!(local_path("./a:b"), Some(PathBuf::from("./a:b")));
    }
}
