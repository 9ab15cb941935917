//! TLS roots for libgit2, loaded only when a remote needs them.
//!
//! libgit2 built against OpenSSL reads the system's whole CA bundle when it initializes: about
//! 20 ms of PEM parsing on every command, though only `http(s)://` remotes use it. ferry
//! initializes libgit2 with the default locations hidden ([`init`], first thing in `main`), and
//! hands the real ones over ([`load_roots`]) when it opens an HTTP remote. `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are honoured as before: they are restored at once and read by the probe.

use std::ffi::OsString;
use std::sync::Once;

/// A location that exists (so git2's own probe keeps it) and holds no certificate.
const NOWHERE: &str = "/dev/null";

/// Initializes libgit2 without loading TLS roots.
///
/// # Safety
///
/// Changes the process environment for the duration of the call: call it while the process
/// has a single thread (first thing in `main`).
pub unsafe fn init() {
    let saved: Vec<(&str, Option<OsString>)> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .map(|name| (name, std::env::var_os(name)))
        .collect();
    for (name, _) in &saved {
        // SAFETY: single-threaded, per this function's contract.
        unsafe { std::env::set_var(name, NOWHERE) };
    }
    // Any git2 entry point runs libgit2's one-time initialization; this one is the cheapest.
    drop(git2::Config::new());
    // libgit2 re-hashes every object it reads (git itself does not): 8.5 MB of state cost a
    // tenth of a first bump in SHA-1. Objects reach the store through the indexer of a fetch,
    // which checks every hash, or are written here; a repository on a path is trusted as git
    // trusts it.
    git2::opts::strict_hash_verification(false);
    for (name, value) in saved {
        // SAFETY: as above.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
}

/// Gives libgit2 the system's TLS roots (once per process), as OpenSSL would have found them:
/// `SSL_CERT_FILE` / `SSL_CERT_DIR`, else the usual locations of the platform.
pub fn load_roots() {
    static LOADED: Once = Once::new();
    LOADED.call_once(|| {
        let probe = openssl_probe::probe();
        // SAFETY: libgit2 options are process-global; setting them races with nothing here,
        // as no transfer has started yet (this runs before the first network operation).
        if let Some(file) = probe.cert_file
            && let Err(e) = unsafe { git2::opts::set_ssl_cert_file(&file) }
        {
            tracing::debug!("TLS roots from {}: {}", file.display(), e.message());
        }
        if let Some(dir) = probe.cert_dir
            && let Err(e) = unsafe { git2::opts::set_ssl_cert_dir(&dir) }
        {
            tracing::debug!("TLS roots from {}: {}", dir.display(), e.message());
        }
    });
}
