//! The desired state as the artifact `ferry publish` pushes to a registry, at a tag
//! (`oci://HOST/REPO:ENV`): one manifest `HEAD` per reconcile, a pull only when its digest
//! changed. The state's layer is kept in the artifact cache, so a restarted agent fetches only
//! the manifest. With trusted keys, the config is pulled too: the state is desired only when
//! the signed commit it carries is trusted and its files make that commit's tree.

use std::rc::Rc;
use std::sync::Arc;

use super::{Desired, DesiredSource, Invalid, SourceError};
use crate::deploy::fetch::Cache;
use crate::oci::{OciUrl, Registry, state as oci_state};
use crate::sign::AllowedSigners;
use crate::state::validate_files;
use crate::store::TreeSource;
use crate::validate::State;

/// A registry's tag, and the state last pulled from it.
pub struct OciTag {
    url: OciUrl,
    registry: Arc<Registry>,
    pulled: Option<Pulled>,
    /// When set, only a state whose signed commit one of these keys signed is desired.
    trusted: Option<AllowedSigners>,
}

/// At most this many bytes of config (a commit and two trees, in base64).
const MAX_CONFIG: i64 = 4 << 20;

/// A state pulled from a registry (or why it cannot be deployed): kept while the tag's digest
/// stays the same.
struct Pulled {
    digest: String,
    revision: String,
    state: Result<Rc<State>, Invalid>,
    /// The state layer's SHA-256, kept in the artifact cache.
    layer: String,
    /// What its signed commit says, when checked (`--trusted-keys`).
    signature: Option<crate::sign::Verdict>,
}

impl OciTag {
    pub fn new(url: OciUrl, registry: Arc<Registry>) -> OciTag {
        OciTag {
            url,
            registry,
            pulled: None,
            trusted: None,
        }
    }

    /// Only a state carrying a commit signed by one of `keys`, whose tree its files make, is
    /// desired state: any other is invalid (the agent keeps its release and says why).
    pub fn trusting(self, keys: AllowedSigners) -> OciTag {
        OciTag {
            trusted: Some(keys),
            ..self
        }
    }

    /// The artifact's config, pulled (bounded by its descriptor, checked against its digest).
    fn meta(
        &self,
        at: &OciUrl,
        parsed: &oci_state::Parsed,
        cache: &Cache,
    ) -> Result<Option<oci_state::Meta>, SourceError> {
        if parsed.config.size > MAX_CONFIG {
            return Ok(None);
        }
        let bytes = self.blob(at, &parsed.config, cache)?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The blob `descriptor` names, held in memory: at most its declared size (which
    /// `oci_state::parse` and [`MAX_CONFIG`] bound), checked against its digest.
    fn blob(
        &self,
        at: &OciUrl,
        descriptor: &oci_client::manifest::OciDescriptor,
        cache: &Cache,
    ) -> Result<Vec<u8>, SourceError> {
        let mut bytes = Vec::new();
        self.registry
            .blob(at, descriptor, &mut cache.pace(), &mut |data| {
                bytes.extend_from_slice(data);
                Ok(())
            })?;
        Ok(bytes)
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
                let bytes = self.blob(&at, &parsed.layer, cache)?;
                cache.store(&hex, &bytes);
                bytes
            }
        };
        let label = self.url.to_string();
        let meta = match &self.trusted {
            Some(_) => self.meta(&at, &parsed, cache)?,
            None => None,
        };
        let mut signature = None;
        let state = oci_state::unpack(&layer)
            .map_err(|e| Invalid(format!("{label}: {e}")))
            .and_then(|files| {
                let Some(trusted) = &self.trusted else {
                    return Ok(files);
                };
                let signed = meta.as_ref().and_then(|m| m.signed.as_ref());
                match oci_state::check_signed(signed, &revision, &files, trusted) {
                    Ok(verdict) => {
                        tracing::debug!("{}: {verdict}", short(&revision));
                        signature = Some(verdict);
                        Ok(files)
                    }
                    Err(verdict) => {
                        let invalid = Invalid(format!(
                        "{verdict}: {label} at {} is not signed by a trusted key (--trusted-keys){}",
                        short(&revision),
                        if signed.is_none() {
                            "; `ferry publish` carries a signed commit with its state"
                        } else {
                            ""
                        }
                        ));
                        signature = Some(verdict);
                        Err(invalid)
                    }
                }
            })
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
            signature,
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
            signature: pulled.signature.clone(),
        })
    }

    fn cached(&self) -> Option<&str> {
        self.pulled.as_ref().map(|p| p.layer.as_str())
    }
}

/// The first 12 characters of a revision.
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}
