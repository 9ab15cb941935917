//! OCI registries: ferry's second state store, and a place artifacts are pulled from.
//!
//! `oci://HOST/REPO:TAG` and `oci://HOST/REPO@sha256:DIGEST` name an artifact ([`OciUrl`]).
//! [`Registry`] is a blocking face over `oci-client` for one registry host, with the
//! credentials ferry finds for it ([`auth`]), on the process's one runtime ([`crate::net`]):
//! blobs are pulled and everything is pushed through `oci-client` (whose reqwest client stays
//! its own: its token exchange and chunked uploads are built on it); manifests are read
//! directly with [`crate::net`]'s client (the token `oci-client` got is reused, and renewed on
//! a 401), so that the agent's change detection, one `HEAD`, costs exactly one request, and a
//! manifest, which no descriptor bounds, is read to at most 4 MiB.
//! Plain `http` is spoken only to loopback registries and to hosts named with
//! `--insecure-registry`.
//!
//! What a `sha256` pin means for an `oci://` artifact: the digest of its OCI manifest, which
//! covers the config and every layer by their own digests. Each blob is verified against its
//! descriptor as it streams.

pub mod auth;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

use crate::net::words::{Peer, explain};
use crate::net::{self, Pace};
use auth::Credentials;

/// The OCI image manifest media type, which ferry writes and reads.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's schema 2 manifest, which registries still serve for older artifacts.
const DOCKER_MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Longest wait for a registry to answer one request.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest manifest read, as oras and containerd bound them (4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

/// `oci://HOST/REPO:TAG` or `oci://HOST/REPO@sha256:DIGEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciUrl {
    /// `host` or `host:port`.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:…`, when the URL names a digest.
    pub digest: Option<String>,
}

/// Why a text is not an `oci://` URL ferry takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` is not an `oci://` URL: expected `oci://HOST/REPO:TAG`")]
    NotOci(String),
    #[error("`{0}` names no repository: expected `oci://HOST/REPO:TAG`")]
    NoRepository(String),
    /// The host, without the credentials.
    #[error(
        "`oci://{0}/…` holds credentials: ferry reads them from FERRY_REGISTRY_USER and FERRY_REGISTRY_PASSWORD or Docker's config.json"
    )]
    Credentials(String),
    #[error("`{url}`: `@{digest}` is not a digest: expected `@sha256:` and 64 hex digits")]
    Digest { url: String, digest: String },
    #[error(
        "`{url}`: repository `{repository}` is not valid: lowercase letters, digits, and `.`, `_`, `-` between `/`"
    )]
    Repository { url: String, repository: String },
    #[error(
        "`{url}`: tag `{tag}` is not valid: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
    )]
    Tag { url: String, tag: String },
}

impl OciUrl {
    pub fn parse(url: &str) -> Result<OciUrl, UrlError> {
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| UrlError::NotOci(url.to_owned()))?;
        let (registry, path) = rest
            .split_once('/')
            .filter(|(r, p)| !r.is_empty() && !p.is_empty())
            .ok_or_else(|| UrlError::NoRepository(url.to_owned()))?;
        if registry.contains('@') {
            return Err(UrlError::Credentials(
                registry.rsplit('@').next().unwrap_or_default().to_owned(),
            ));
        }
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => {
                let hex = digest.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(UrlError::Digest {
                        url: url.to_owned(),
                        digest: digest.to_owned(),
                    });
                }
                (path, Some(digest.to_ascii_lowercase()))
            }
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
            _ => (path, None),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        };
        if !repository.split('/').all(component_ok) {
            return Err(UrlError::Repository {
                url: url.to_owned(),
                repository: repository.to_owned(),
            });
        }
        if let Some(tag) = &tag
            && !tag_ok(tag)
        {
            return Err(UrlError::Tag {
                url: url.to_owned(),
                tag: tag.clone(),
            });
        }
        Ok(OciUrl {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> OciUrl {
        OciUrl {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> OciUrl {
        OciUrl {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// What a manifest request names: the digest if there is one, else the tag (`latest`).
    fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    fn reference(&self) -> Reference {
        match &self.digest {
            Some(digest) => Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            None => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.target().to_owned(),
            ),
        }
    }
}

impl std::fmt::Display for OciUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn tag_ok(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.starts_with('_'))
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Why a registry operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OciError {
    /// Could not connect, timed out, or the registry answered 5xx or 429: worth retrying.
    #[error("{registry}: the registry cannot be reached: {message}")]
    Unreachable { registry: String, message: String },
    #[error("{what}: the registry refused access ({how})")]
    Refused { what: String, how: String },
    #[error("{what}: not found in the registry")]
    Missing { what: String },
    #[error("{what}: the SHA-256 is {actual}, not {expected}: discarded")]
    Mismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{registry}: {message}")]
    Insecure { registry: String, message: String },
}

impl OciError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, OciError::Unreachable { .. })
    }
}

/// Which registries may be spoken to over plain `http`.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Hosts (`host` or `host:port`) named with `--insecure-registry`.
    pub insecure: Vec<String>,
}

impl Access {
    pub fn new(insecure: &[String]) -> Access {
        Access {
            insecure: insecure.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Plain `http` for loopback registries and the hosts named insecure, `https` for the rest.
    pub fn plain_http(&self, registry: &str) -> bool {
        let host = host_of(registry);
        is_loopback(host)
            || self
                .insecure
                .iter()
                .any(|h| h == registry || h.as_str() == host)
    }
}

/// `registry` without its port.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The registries one process talks to, each opened once (its connections and tokens kept).
#[derive(Debug, Default)]
pub struct Registries {
    access: Access,
    open: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Registries {
    pub fn new(access: Access) -> Registries {
        Registries {
            access,
            open: Mutex::default(),
        }
    }

    pub fn get(&self, registry: &str) -> Result<Arc<Registry>, OciError> {
        let mut open = self.open.lock().expect("registries lock");
        if let Some(found) = open.get(registry) {
            return Ok(found.clone());
        }
        let opened = Arc::new(Registry::open(registry, &self.access)?);
        open.insert(registry.to_owned(), opened.clone());
        Ok(opened)
    }
}

/// One registry host, with its credentials: blocking calls.
pub struct Registry {
    registry: String,
    scheme: &'static str,
    client: oci_client::Client,
    credentials: Credentials,
    /// The `Authorization` the last successful request used, for direct `HEAD`s.
    authorization: Mutex<Option<String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry", &self.registry)
            .field("scheme", &self.scheme)
            .field("credentials", &self.credentials.source())
            .finish()
    }
}

impl Registry {
    pub fn open(registry: &str, access: &Access) -> Result<Registry, OciError> {
        // reqwest's rustls takes the process's provider: the same ring the rest of ferry uses.
        net::tls::install_crypto();
        let plain = access.plain_http(registry);
        let config = oci_client::client::ClientConfig {
            protocol: if plain {
                oci_client::client::ClientProtocol::HttpsExcept(vec![registry.to_owned()])
            } else {
                oci_client::client::ClientProtocol::Https
            },
            platform_resolver: None,
            ..Default::default()
        };
        let invalid = |message: String| OciError::Invalid {
            what: registry.to_owned(),
            message,
        };
        let credentials = auth::credentials(registry).map_err(|e| invalid(e.to_string()))?;
        tracing::debug!(registry, source = credentials.source(), plain, "registry");
        Ok(Registry {
            registry: registry.to_owned(),
            scheme: if plain { "http" } else { "https" },
            client: oci_client::Client::new(config),
            credentials,
            authorization: Mutex::default(),
        })
    }

    fn auth(&self) -> RegistryAuth {
        self.credentials.registry_auth()
    }

    /// The digest of the manifest `url` names, from one `HEAD` request (`None`: no such tag).
    pub fn head(&self, url: &OciUrl) -> Result<Option<String>, OciError> {
        let (parts, _) = self.manifest_request(hyper::Method::HEAD, url)?;
        match parts.status.as_u16() {
            200 => match parts
                .headers
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            {
                Some(digest) => Ok(Some(digest.to_owned())),
                // Not every registry sends it on HEAD: the digest of what a GET gives.
                None => self.manifest(url).map(|(_, digest)| Some(digest)),
            },
            404 => Ok(None),
            status => Err(self.manifest_status(url, status, "a manifest HEAD")),
        }
    }

    /// One `HEAD` or `GET` of the manifest `url` names, sent directly with the authorization
    /// last used (renewed once on a 401): its status and headers, and its body, of at most
    /// [`MAX_MANIFEST`] bytes (a manifest has no descriptor to bound it: past that, reading
    /// stops), all within [`TIMEOUT`].
    fn manifest_request(
        &self,
        method: hyper::Method,
        url: &OciUrl,
    ) -> Result<(http::response::Parts, Vec<u8>), OciError> {
        let target = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme,
            self.registry,
            url.repository,
            url.target()
        );
        let mut renewed = false;
        loop {
            let mut request = net::request(method.clone(), &target)
                .map_err(|e| self.invalid(url, e.to_string()))?
                .header(
                    hyper::header::ACCEPT,
                    format!("{MANIFEST_TYPE}, {DOCKER_MANIFEST_TYPE}"),
                );
            if let Some(authorization) = self.authorization.lock().expect("lock").clone() {
                request = request.header(hyper::header::AUTHORIZATION, authorization);
            }
            let request = request
                .body(net::Body::default())
                .map_err(|e| self.invalid(url, e.to_string()))?;
            let exchange = async {
                let response = net::http::send(request)
                    .await
                    .map_err(|e| self.unreachable(e.to_string()))?;
                let (parts, mut body) = response.into_parts();
                let mut bytes = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| self.unreachable(explain(&e, &self.peer())))?;
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if bytes.len() + data.len() > MAX_MANIFEST {
                        return Err(self.invalid(
                            url,
                            format!("its manifest is larger than {MAX_MANIFEST} bytes: refused"),
                        ));
                    }
                    bytes.extend_from_slice(&data);
                }
                Ok((parts, bytes))
            };
            let (parts, bytes) =
                net::block_on(async { tokio::time::timeout(TIMEOUT, exchange).await }).map_err(
                    |_| self.unreachable(format!("no answer within {}s", TIMEOUT.as_secs())),
                )??;
            if parts.status == hyper::StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                self.authorize(url)?;
                continue;
            }
            return Ok((parts, bytes));
        }
    }

    /// A manifest request's status other than 200 and 404, in the terms above.
    fn manifest_status(&self, url: &OciUrl, status: u16, what: &str) -> OciError {
        match status {
            401 | 403 => self.refused(&url.to_string()),
            429 | 500.. => self.unreachable(format!("HTTP {status}")),
            status => self.invalid(url, format!("HTTP {status} to {what}")),
        }
    }

    /// Gets a token (or settles on basic credentials) for pulling from `url`'s repository.
    fn authorize(&self, url: &OciUrl) -> Result<(), OciError> {
        let token = self
            .block(
                self.client
                    .auth(&url.reference(), &self.auth(), RegistryOperation::Pull),
            )
            .map_err(|e| self.classify(e, &url.to_string()))?;
        let authorization = match (token, &self.credentials) {
            (Some(token), _) => format!("Bearer {token}"),
            (None, Credentials::Basic { user, password, .. }) => {
                use base64::Engine;
                let pair = format!("{user}:{password}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            (None, Credentials::Anonymous) => return Err(self.refused(&url.to_string())),
        };
        *self.authorization.lock().expect("lock") = Some(authorization);
        Ok(())
    }

    /// The manifest `url` names, as the registry holds it (bytes, at most [`MAX_MANIFEST`]),
    /// and its digest, verified: the bytes hash to the digest, and to the one `url` names if it
    /// names one.
    pub fn manifest(&self, url: &OciUrl) -> Result<(Vec<u8>, String), OciError> {
        let (parts, bytes) = self.manifest_request(hyper::Method::GET, url)?;
        match parts.status.as_u16() {
            200 => {}
            404 => {
                return Err(OciError::Missing {
                    what: url.to_string(),
                });
            }
            status => return Err(self.manifest_status(url, status, "a manifest GET")),
        }
        let digest = format!("sha256:{}", crate::digest::sha256_hex(&bytes));
        if let Some(expected) = &url.digest
            && *expected != digest
        {
            return Err(OciError::Mismatch {
                what: format!("{url} (its manifest)"),
                expected: expected.clone(),
                actual: digest,
            });
        }
        Ok((bytes, digest))
    }

    /// Streams blob `descriptor` of `url`'s repository into `sink`, checking its size and
    /// SHA-256 against the descriptor: a byte past its declared size stops the stream at once
    /// (a registry cannot make ferry take more than the descriptor says), and `pace` bounds it
    /// in time. Until this returns Ok, what `sink` got is not to be used.
    pub fn blob(
        &self,
        url: &OciUrl,
        descriptor: &OciDescriptor,
        pace: &mut Pace,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, OciError> {
        use futures_util::StreamExt;
        let what = format!("{url} (blob {})", descriptor.digest);
        let declared = u64::try_from(descriptor.size).map_err(|_| OciError::Invalid {
            what: what.clone(),
            message: format!("its descriptor says {} bytes", descriptor.size),
        })?;
        let reference = url.reference();
        self.block(
            self.client
                .store_auth_if_needed(&self.registry, &self.auth()),
        );
        let mut hash = crate::digest::Hasher::new();
        let mut bytes = 0u64;
        let streamed: Result<(), OciError> = net::block_on(async {
            let mut stream = pace
                .bounded(self.client.pull_blob_stream(&reference, descriptor))
                .await
                .map_err(|abandoned| self.unreachable(abandoned.to_string()))?
                .map_err(|e| self.classify(e, &what))?;
            loop {
                let next = pace
                    .bounded(stream.next())
                    .await
                    .map_err(|abandoned| self.unreachable(abandoned.to_string()))?;
                let Some(chunk) = next else { return Ok(()) };
                let chunk = chunk.map_err(|e| {
                    let digest = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>());
                    match digest {
                        Some(digest) => OciError::Invalid {
                            what: what.clone(),
                            message: format!("digest verification failed: {digest}"),
                        },
                        None => self.unreachable(explain(&e, &self.peer())),
                    }
                })?;
                bytes += chunk.len() as u64;
                if bytes > declared {
                    return Err(OciError::Invalid {
                        what: what.clone(),
                        message: format!(
                            "the registry sent more than the {declared} bytes its descriptor says: refused"
                        ),
                    });
                }
                hash.update(&chunk);
                sink(&chunk).map_err(|e| OciError::Invalid {
                    what: what.clone(),
                    message: format!("writing it: {e}"),
                })?;
                pace.check(chunk.len() as u64, std::time::Instant::now())
                    .map_err(|abandoned| self.unreachable(abandoned.to_string()))?;
            }
        });
        streamed?;
        let actual = format!("sha256:{}", hash.finish_hex());
        if actual != descriptor.digest {
            return Err(OciError::Mismatch {
                what,
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        if bytes != declared {
            return Err(OciError::Invalid {
                what,
                message: format!("{bytes} bytes, not the {declared} its descriptor says"),
            });
        }
        Ok(bytes)
    }

    /// Uploads `data` as a blob of `url`'s repository, unless the registry has it already.
    pub fn push_blob(&self, url: &OciUrl, data: &[u8], digest: &str) -> Result<(), OciError> {
        let reference = url.reference();
        let what = format!("{url} (blob {digest})");
        self.block(
            self.client
                .store_auth_if_needed(&self.registry, &self.auth()),
        );
        let exists = self
            .block(self.client.blob_exists(&reference, digest))
            .map_err(|e| self.classify(e, &what))?;
        if exists {
            return Ok(());
        }
        self.block(
            self.client
                .auth(&reference, &self.auth(), RegistryOperation::Push),
        )
        .map_err(|e| self.classify(e, &what))?;
        self.block(self.client.push_blob(&reference, data.to_vec(), digest))
            .map(|_| ())
            .map_err(|e| self.classify(e, &what))
    }

    /// Stores `manifest` (an OCI image manifest) under `url`'s tag.
    pub fn push_manifest(&self, url: &OciUrl, manifest: &[u8]) -> Result<(), OciError> {
        let reference = url.reference();
        self.block(
            self.client
                .auth(&reference, &self.auth(), RegistryOperation::Push),
        )
        .map_err(|e| self.classify(e, &url.to_string()))?;
        self.block(self.client.push_manifest_raw(
            &reference,
            manifest.to_vec(),
            http::HeaderValue::from_static(MANIFEST_TYPE),
        ))
        .map(|_| ())
        .map_err(|e| self.classify(e, &url.to_string()))
    }

    fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        net::block_on(future)
    }

    /// The registry as a peer, for [`explain`].
    fn peer(&self) -> Peer {
        Peer::of_url(&format!("{}://{}/", self.scheme, self.registry))
    }

    fn unreachable(&self, message: String) -> OciError {
        OciError::Unreachable {
            registry: self.registry.clone(),
            message,
        }
    }

    fn invalid(&self, url: &OciUrl, message: String) -> OciError {
        OciError::Invalid {
            what: url.to_string(),
            message,
        }
    }

    fn refused(&self, what: &str) -> OciError {
        OciError::Refused {
            what: what.to_owned(),
            how: match &self.credentials {
                Credentials::Anonymous => format!(
                    "anonymously: no credentials for {} in FERRY_REGISTRY_USER/FERRY_REGISTRY_PASSWORD or Docker's config.json",
                    self.registry
                ),
                Credentials::Basic { source, .. } => format!("with the credentials from {source}"),
            },
        }
    }

    /// An `oci-client` error, in the terms above.
    fn classify(&self, error: OciDistributionError, what: &str) -> OciError {
        let missing = || OciError::Missing {
            what: what.to_owned(),
        };
        match error {
            OciDistributionError::RequestError(e) => {
                if let Some(status) = e.status() {
                    return self.status_error(status.as_u16(), what, e.to_string());
                }
                self.unreachable(explain(&e, &self.peer()))
            }
            OciDistributionError::ServerError { code, message, .. } => {
                self.status_error(code, what, message)
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.refused(what),
            OciDistributionError::ImageManifestNotFoundError(_) => missing(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.refused(what)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    missing()
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
                {
                    self.unreachable("too many requests (HTTP 429)".to_owned())
                } else {
                    let messages: Vec<String> =
                        envelope.errors.iter().map(|e| e.message.clone()).collect();
                    OciError::Invalid {
                        what: what.to_owned(),
                        message: format!("the registry said: {}", messages.join("; ")),
                    }
                }
            }
            OciDistributionError::DigestError(e) => OciError::Invalid {
                what: what.to_owned(),
                message: format!("digest verification failed: {e}"),
            },
            other => OciError::Invalid {
                what: what.to_owned(),
                message: other.to_string(),
            },
        }
    }

    fn status_error(&self, status: u16, what: &str, message: String) -> OciError {
        match status {
            401 | 403 => self.refused(what),
            404 => OciError::Missing {
                what: what.to_owned(),
            },
            429 | 500.. => self.unreachable(format!("HTTP {status}")),
            _ => OciError::Invalid {
                what: what.to_owned(),
                message: format!("HTTP {status}: {message}"),
            },
        }
    }
}

/// How registries are reached.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// A registry (`host` or `host:port`) spoken to over plain http; loopback registries
    /// always are. Repeat it, or separate hosts with commas.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "FERRY_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
}

impl RegistryArgs {
    pub fn access(&self) -> Access {
        Access::new(&self.insecure)
    }
}

/// An error from a registry, with what to do about it.
impl From<OciError> for crate::error::Error {
    fn from(error: OciError) -> Self {
        use crate::error::Error;
        let hint = match &error {
            OciError::Unreachable { .. } => {
                "is the registry up and the address right? loopback registries are spoken to over http, others over https"
            }
            OciError::Refused { .. } => {
                "set FERRY_REGISTRY_USER and FERRY_REGISTRY_PASSWORD, or log in with `docker login` (Docker's config.json)"
            }
            OciError::Insecure { .. } => "pass `--insecure-registry HOST` to allow plain http",
            _ => "",
        };
        let error = if matches!(error, OciError::Unreachable { .. }) {
            Error::unavailable(error.to_string())
        } else {
            Error::failure(error.to_string())
        };
        if hint.is_empty() {
            error
        } else {
            error.hint(hint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_registry_repository_tag_and_digest() {
        let url = OciUrl::parse("oci://127.0.0.1:5000/team/web:1.2.0").unwrap();
        assert_eq!(url.registry, "127.0.0.1:5000");
        assert_eq!(url.repository, "team/web");
        assert_eq!(url.tag.as_deref(), Some("1.2.0"));
        assert_eq!(url.to_string(), "oci://127.0.0.1:5000/team/web:1.2.0");
        let digest = format!("sha256:{}", "a".repeat(64));
        let url = OciUrl::parse(&format!("oci://r.example/web@{digest}")).unwrap();
        assert_eq!(url.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(url.tag, None);
        let url = OciUrl::parse("oci://r.example/deploy").unwrap();
        assert_eq!(url.target(), "latest");
        for bad in [
            "https://r.example/x",
            "oci://r.example",
            "oci:///x",
            "oci://r.example/Web:1",
            "oci://r.example/web:-x",
            "oci://u:p@r.example/web:1",
            "oci://r.example/web@sha256:abc",
        ] {
            assert!(OciUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_and_named_hosts() {
        let access = Access::new(&["build.internal:5000".to_owned()]);
        assert!(access.plain_http("127.0.0.1:5000"));
        assert!(access.plain_http("localhost"));
        assert!(access.plain_http("[::1]:5000"));
        assert!(access.plain_http("build.internal:5000"));
        assert!(!access.plain_http("build.internal:5001"));
        assert!(!access.plain_http("ghcr.io"));
    }
}
