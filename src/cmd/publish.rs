//! `ferry publish`: an environment's desired state, pushed to an OCI registry as an artifact
//! that agents pull (`ferry agent --source oci://…`). See [`crate::oci::state`].

use serde::Serialize;

use crate::cmd::shared::{format_time, load_env, open_store, short};
use crate::error::{Error, Outcome, Result};
use crate::oci::state::{self, Meta};
use crate::oci::{OciUrl, Registry, RegistryArgs};
use crate::output::{Format, Output};
use crate::store::{History, RemoteArgs};

/// Publish an environment's desired state to an OCI registry, for agents that pull from it.
///
/// Packs the state at the tip of the environment's branch (`manifest.json` and the environment
/// files, validated first) into one OCI artifact with ferry's media types, annotated with the
/// commit (`org.opencontainers.image.revision`) and the remote (`…image.source`). It is pushed
/// under an immutable tag, the commit id, and the tag ENV is moved to it. Publishing the same
/// commit again changes nothing; a commit tag that holds other content is an error, never
/// overwritten; ENV is not moved back from a newer commit. Meant to run in CI after each merge.
/// A signed commit is published with its signature and trees, so that agents with
/// `--trusted-keys` check the state against it.
/// Credentials: FERRY_REGISTRY_USER and FERRY_REGISTRY_PASSWORD, or Docker's config.json.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry publish prod --to oci://ghcr.io/acme/deploy
  ferry publish dev --to oci://127.0.0.1:5000/deploy --remote /srv/git/deploy.git
  ferry publish staging --to oci://registry.internal:5000/deploy --insecure-registry registry.internal:5000 --format json")]
pub struct PublishArgs {
    /// The environment.
    pub env: String,

    /// The registry repository, `oci://HOST/REPO`: ferry names the tags (the commit id, and
    /// ENV).
    #[arg(long, value_name = "oci://HOST/REPO")]
    pub to: String,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Serialize)]
struct Published {
    env: String,
    revision: String,
    digest: String,
    repository: String,
    /// The tags that hold it: the commit id, and the environment's.
    tags: Vec<String>,
    /// Whether anything was pushed or moved.
    changed: bool,
}

pub fn run(args: PublishArgs, out: Output) -> Result<Outcome> {
    let to = OciUrl::parse(&args.to).map_err(|e| {
        Error::usage(format!("`--to`: {e}")).hint("such as `oci://ghcr.io/acme/deploy`")
    })?;
    if to.tag.is_some() || to.digest.is_some() {
        return Err(Error::usage(format!(
            "`--to {}` names a tag or digest: ferry names the tags itself (the commit id, and `{}`)",
            args.to, args.env
        ))
        .hint(format!(
            "`--to oci://{}/{}`",
            to.registry, to.repository
        )));
    }
    let store = open_store(&args.remote)?;
    let loaded = load_env(&store, &args.env, History::Tip)?;
    let commit = store.commit(loaded.tip)?;
    let revision = loaded.tip.to_string();
    // A signed commit travels with its state, for agents that check it (`--trusted-keys`).
    let read = |id: &str| {
        let id = crate::store::Oid::from_str(id).map_err(|e| state::ProofError(e.to_string()))?;
        store
            .raw_object(id)
            .map_err(|e| state::ProofError(e.to_string()))
    };
    let signed = state::signed_proof(&store.raw_object(loaded.tip)?, &read)
        .map_err(|e| Error::failure(format!("{}: {e}", short(loaded.tip))))?;
    let meta = Meta {
        environment: args.env.clone(),
        branch: loaded.branch.clone(),
        revision: revision.clone(),
        source: store.remote().shown.clone(),
        created: format_time(commit.committer.time),
        signed,
    };
    let mtime = commit.committer.time.max(0) as u64;
    let packed = state::pack(&loaded.files.files(), &meta, mtime);

    let registry = Registry::open(&to.registry, &args.registry.access()).map_err(Error::from)?;
    let pinned = to.at_tag(&revision);
    let mut changed = false;
    match registry.head(&pinned).map_err(Error::from)? {
        Some(digest) if digest == packed.digest => {}
        Some(digest) => {
            return Err(Error::failure(format!(
                "{pinned} holds {digest}, not this commit's state ({}): a commit's tag is immutable, and ferry does not overwrite it",
                packed.digest
            ))
            .hint("it was pushed by another tool or another version of ferry; if it is wrong, delete the tag in the registry and publish again"));
        }
        None => {
            registry
                .push_blob(&to, &packed.config, &packed.config_digest)
                .and_then(|()| registry.push_blob(&to, &packed.layer, &packed.layer_digest))
                .and_then(|()| registry.push_manifest(&pinned, &packed.manifest))
                .map_err(Error::from)?;
            changed = true;
            tracing::info!("pushed {pinned} ({})", packed.digest);
        }
    }
    let moving = to.at_tag(&args.env);
    let current = registry.head(&moving).map_err(Error::from)?;
    if current.as_deref() != Some(packed.digest.as_str()) {
        if let Some(newer) = current
            .as_ref()
            .and_then(|_| newer_revision(&registry, &moving, &store, loaded.tip))
        {
            return Err(Error::failure(format!(
                "{moving} holds {}, a later commit than {}: not moved back",
                short(newer),
                short(loaded.tip)
            ))
            .hint("publish runs after each merge; a later run has published already"));
        }
        registry
            .push_manifest(&moving, &packed.manifest)
            .map_err(Error::from)?;
        changed = true;
        tracing::info!("moved {moving} to {}", packed.digest);
    }
    let published = Published {
        env: args.env.clone(),
        revision: revision.clone(),
        digest: packed.digest.clone(),
        repository: format!("oci://{}/{}", to.registry, to.repository),
        tags: vec![revision.clone(), args.env.clone()],
        changed,
    };
    if out.format == Format::Json {
        out.json(&published);
    } else if changed {
        out.data(format!(
            "published {} at {} to {moving} ({})",
            args.env,
            short(loaded.tip),
            packed.digest
        ));
    } else {
        out.data(format!(
            "{moving} already holds {} ({}): nothing to publish",
            short(loaded.tip),
            packed.digest
        ));
    }
    Ok(Outcome::Success)
}

/// The revision `url` holds, when it is a descendant of `ours` in the store (a later commit).
fn newer_revision(
    registry: &Registry,
    url: &OciUrl,
    store: &crate::store::Store,
    ours: crate::store::Oid,
) -> Option<crate::store::Oid> {
    let (manifest, _) = registry.manifest(url).ok()?;
    let theirs = state::parse(&manifest).ok()?.revision?;
    let theirs = crate::store::Oid::from_str(&theirs).ok()?;
    store.descends_from(theirs, ours).then_some(theirs)
}
