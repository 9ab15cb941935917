//! What the commands share that only a command needs: opening the store `--remote` names,
//! `--as`, request ids as typed, and how ids, times and tables are shown. Loading state lives
//! in [`crate::state`], who acts and when in [`crate::identity`]; both are re-exported here.

use crate::store::Oid;

pub use crate::identity::{identity, now, signature, signature_as};
pub use crate::state::{
    Loaded, Manifests, branch_of, invalid_state, load_at, load_env, manifest_at, validate_files,
};

use crate::diag::Problem;
use crate::error::Error;
use crate::forge::{Forge, ForgeKind};
use crate::store::{Remote, RemoteArgs, Store};

/// Opens the remote the arguments name.
pub fn open_store(args: &RemoteArgs) -> Result<Store, Error> {
    let remote = Remote::resolve(args)?;
    Ok(Store::open(&remote, &Remote::cache_root(args))?)
}

/// The first 7 hex digits of a commit id, as git shows them.
pub fn short(id: Oid) -> String {
    id.to_string()[..7].to_owned()
}

pub use crate::output::format_time;

pub use crate::view::parse_since;

/// Left-aligned columns for text tables.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c + 1 == row.len() {
                        cell.clone()
                    } else {
                        format!("{cell:<width$}", width = widths[c])
                    }
                })
                .collect();
            cells.join("  ")
        })
        .collect()
}

/// `--forge` and the hosted forge's repository, for the commands that talk to a forge.
#[derive(Debug, Clone, clap::Args)]
pub struct ForgeArgs {
    /// Where promotion requests, approvals and statuses live: the embedded forge (records in
    /// the deployment repository) or a hosted forge (pull or merge requests, reviews, commit
    /// statuses), each with its token (GITHUB_TOKEN, GITLAB_TOKEN, GITEA_TOKEN, or the file
    /// `…_FILE` names) and API (GITHUB_API_URL, GITLAB_API_URL, GITEA_API_URL). Default: what
    /// the remote's URL tells (github.com, gitlab.com, codeberg.org, or the host of an API URL
    /// that is set), else the embedded forge.
    #[arg(long, global = true, value_enum, env = "FERRY_FORGE")]
    pub forge: Option<ForgeKind>,

    /// The repository on a hosted forge: `owner/name` (GitLab: `group/project`, or the
    /// project's id). Default: parsed from the remote's URL.
    #[arg(
        long = "repo",
        visible_alias = "github-repo",
        global = true,
        env = "FERRY_REPO",
        value_name = "OWNER/NAME"
    )]
    pub repo: Option<String>,
}

impl ForgeArgs {
    /// The forge named, else the one `remote` (a URL) tells.
    pub fn kind(&self, remote: Option<&str>) -> ForgeKind {
        self.forge
            .unwrap_or_else(|| remote.map_or(ForgeKind::Local, crate::forge::detect))
    }

    /// The forge these arguments name, on `store`.
    pub fn open<'s>(&self, store: &'s Store) -> Result<Box<dyn Forge + 's>, Error> {
        let kind = self.kind(Some(&store.remote().url));
        crate::forge::open(store, kind, self.repo.as_deref())
    }
}

/// Who acts on `forge`: the forge's own word for it (a hosted forge's token's user), else
/// `--as` or the identity git and the environment give. On a hosted forge `--as` may only
/// name the token's user.
pub fn acting(store: &Store, forge: &dyn Forge, actor: &Actor) -> Result<String, Error> {
    match forge.user()? {
        Some(user) => match &actor.as_name {
            Some(named) if named != &user => Err(Error::usage(format!(
                "on {} ferry acts as its token's user, `{user}`, not `--as {named}`",
                forge.kind().name()
            ))
            .hint("drop `--as`, or use the token of the person who acts")),
            _ => Ok(user),
        },
        None => Ok(identity(store, actor.as_name.as_deref())),
    }
}

/// `--as NAME`, for the commands that write the local forge's records.
#[derive(Debug, Clone, clap::Args)]
pub struct Actor {
    /// Who is acting. Default: `FERRY_USER`; on a path remote, the login (`USER`); else
    /// `GIT_AUTHOR_NAME` or git's `user.name`. A remote with ferry's hook checks it is the pusher.
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
}

/// A request id as people write it: `3` or `#3`.
pub fn parse_id(text: &str) -> Result<u64, Problem> {
    text.trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| Problem(format!("`{text}` is not a request id, such as `3` or `#3`")))
}

/// The trusted keys at `path` (`--trusted-keys FILE`); a file that cannot be read as such is a
/// usage error.
pub fn trusted_keys(path: &std::path::Path) -> Result<crate::sign::AllowedSigners, Error> {
    crate::sign::AllowedSigners::load(path).map_err(|e| {
        Error::usage(e.to_string()).hint(
            "an ssh allowed_signers file, one `PRINCIPALS KEYTYPE BASE64` line per key (`ssh-keygen -Y verify` reads the same), and/or armored OpenPGP public keys (`gpg --armor --export KEY`)",
        )
    })
}
