//! Who acts and when: the name ferry records for an action, the commit signatures it writes,
//! and the clock (`FERRY_NOW` makes runs reproducible). Below the commands, so the agent and
//! the forges use the same rules.

use crate::error::Error;
use crate::store::Store;

/// This machine's host name (what an agent serves when `--host` names none).
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; gethostname NUL-terminates within it
    // (or fails), and the name is read up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// Who is acting: `--as NAME`, else `FERRY_USER`; for a repository on a path, the login
/// (`USER`), which is who its pre-receive hook sees pushing; else who git would say is
/// committing (`GIT_AUTHOR_NAME`, `user.name`), else the login. A repository with ferry's
/// hook refuses a record whose name is not the pusher's.
pub fn identity(store: &Store, as_name: Option<&str>) -> String {
    if let Some(name) = as_name.filter(|n| !n.trim().is_empty()) {
        return name.trim().to_owned();
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(name) = var("FERRY_USER") {
        return name;
    }
    // A repository on a path sees the local login as the pusher (see `enforce::pusher`).
    if store.remote().path.is_some()
        && let Some(login) = var("USER").or_else(|| var("LOGNAME")).or_else(login_of_uid)
    {
        return login;
    }
    var("GIT_AUTHOR_NAME")
        .or_else(|| store.config_string("user.name"))
        .or_else(|| var("USER"))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Now, in Unix seconds (`FERRY_NOW` overrides it, for reproducible runs).
pub fn now() -> i64 {
    if let Some(now) = std::env::var("FERRY_NOW").ok().and_then(|v| v.parse().ok()) {
        return now;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The signature for commits ferry makes (see [`crate::store::signature`]).
pub fn signature(store: &Store) -> Result<git2::Signature<'static>, Error> {
    store
        .signature()
        .map_err(|e| Error::failure(format!("git: {}", e.message())))
}

/// The signature of `name` (see [`Store::signature_as`]).
pub fn signature_as(store: &Store, name: &str) -> Result<git2::Signature<'static>, Error> {
    store
        .signature_as(name)
        .map_err(|e| Error::failure(format!("git: {}", e.message())))
}

/// The login name of this process's effective user, from the user database.
pub fn login_of_uid() -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed `passwd` is a valid out-parameter; getpwuid_r writes only into it and
    // into `buffer`, whose length it is given, and `result` points at `pwd` or is null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name).to_str().ok()?;
        (!name.is_empty()).then(|| name.to_owned())
    }
}
