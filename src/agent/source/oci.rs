//! The desired state as the artifact `ferry publish` pushes to a registry, at a tag
//! (`oci://HOST/REPO:ENV`): one manifest `HEAD` per reconcile, a pull only when its digest
//! changed. The state's layer is kept in the artifact cache, so a restarted agent fetches only
//! the manifest.

use std::rc::Rc;
use std::sync::Arc;

use super::{Desired, DesiredSource, Invalid, SourceError};
use crate::deploy::fetch::Cache;
use crate::oci::{OciUrl, Registry, state as oci_state};
use crate::state::validate_files;
use crate::store::TreeSource;
use crate::validate::State;

/// A registry's tag, and the state last pulled from it.
pub struct OciTag {
    url: OciUrl,
    registry: Arc<Registry>,
    pulled: Option<Pulled>,
}

/// A state pulled from a registry (or why it cannot be deployed): kept while the tag's digest
/// stays the same.
struct Pulled {
    digest: String,
    revision: String,
    state: Result<Rc<State>, Invalid>,
    /// The state layer's SHA-256, kept in the artifact cache.
    layer: String,
}

impl OciTag {
    pub fn new(url: OciUrl, registry: Arc<Registry>) -> OciTag {
        OciTag {
            url,
            registry,
            pulled: None,
        }
    }

    /// Pulls the state artifact `digest`: its revision, the state, validated, and its layer's
    /// SHA-256.
    fn pull(&self, digest: &str, env: &str, cache: &Cache) -> Result<Pulled, SourceError> {
        let at = self.url.at_digest(digest);
        let (manifest, _) = self.registry.manifest(&at)?;
        let parsed = oci_state::parse(&manifest)
            .map_err(|e| SourceError::Refused(format!("{}: {e}", self.url)))?;
        let revision = parsed.revision.clone().unwrap_or_else(|| digest.to_owned());
        let hex = parsed.layer.digest.trim_start_matches("sha256:").to_owned();
        let path = cache.path(&hex);
        let layer = match std::fs::read(&path) {
            Ok(bytes) if crate::digest::sha256_hex(&bytes) == hex => bytes,
            _ => {
                let mut bytes = Vec::new();
                // At most its declared size (which `parse` bounds), held in memory.
                self.registry
                    .blob(&at, &parsed.layer, &mut cache.pace(), &mut |data| {
                        bytes.extend_from_slice(data);
                        Ok(())
                    })?;
                cache.store(&hex, &bytes);
                bytes
            }
        };
        let label = self.url.to_string();
        let state = oci_state::unpack(&layer)
            .map_err(|e| Invalid(format!("{label}: {e}")))
            .and_then(|files| {
                validate_files(&TreeSource::from_files(&label, files), env, &label)
                    .map_err(|e| Invalid(e.message_with_details()))
            })
            .map(Rc::new);
        Ok(Pulled {
            digest: digest.to_owned(),
            revision,
            state,
            layer: hex,
        })
    }
}

impl DesiredSource for OciTag {
    fn desired(&mut self, env: &str, cache: &Cache) -> Result<Desired, SourceError> {
        let url = &self.url;
        let digest = self.registry.head(url)?.ok_or_else(|| {
            SourceError::Refused(format!(
                "{url}: no such tag in the registry (has `ferry publish {env} --to oci://{}/{}` run?)",
                url.registry, url.repository
            ))
        })?;
        if self.pulled.as_ref().is_none_or(|p| p.digest != digest) {
            let pulled = self.pull(&digest, env, cache)?;
            tracing::info!(
                digest,
                revision = pulled.revision,
                "pulled the desired state"
            );
            // An invalid state is kept too: it is not pulled again until the tag moves.
            self.pulled = Some(pulled);
        }
        let pulled = self.pulled.as_ref().expect("pulled above");
        Ok(Desired {
            revision: pulled.revision.clone(),
            state: pulled.state.clone(),
        })
    }

    fn cached(&self) -> Option<&str> {
        self.pulled.as_ref().map(|p| p.layer.as_str())
    }
}
