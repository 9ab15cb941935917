//! Secrets from the environment: `NAME`, or the file `NAME_FILE` names (the convention of
//! Docker secrets, systemd's `LoadCredential=` and Kubernetes' Secret volumes, which hand a
//! service a read-only file rather than a variable every child process inherits).

/// A `NAME_FILE` that cannot be read. It names the variable and the path, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} names `{path}`, which cannot be read: {why}")]
pub struct SecretError {
    pub variable: String,
    pub path: String,
    pub why: String,
}

/// The secret in `name`, else in the file `name_FILE` names (one trailing newline dropped).
/// An empty value is no secret.
pub fn from_env(name: &str) -> Result<Option<String>, SecretError> {
    lookup(name, |key| std::env::var_os(key))
}

/// [`from_env`] where a secret that cannot be read is as good as none, logged once.
pub fn from_env_or_warn(name: &str) -> Option<String> {
    from_env(name).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        None
    })
}

fn lookup(
    name: &str,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<String>, SecretError> {
    if let Some(value) = var(name).and_then(|v| v.into_string().ok())
        && !value.is_empty()
    {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    let Some(path) = var(&file_var).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    // A secret is short: 1 MiB is plenty, and a link to a device must not be read forever.
    let text = crate::files::read_regular(std::path::Path::new(&path), 1 << 20)
        .and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "is not UTF-8"))
        })
        .map_err(|e| SecretError {
            variable: file_var.clone(),
            path: std::path::Path::new(&path).display().to_string(),
            why: e.to_string(),
        })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::lookup;

    #[test]
    fn a_file_holds_the_secret_when_the_variable_does_not() {
        let dir = std::env::temp_dir().join(format!("ferry-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let env = |pairs: &[(&str, OsString)]| {
            let map: HashMap<String, OsString> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            move |key: &str| map.get(key).cloned()
        };
        let with_file = env(&[("T_FILE", file.clone().into())]);
        assert_eq!(lookup("T", &with_file).unwrap().as_deref(), Some("s3cret"));
        let both = env(&[("T", "direct".into()), ("T_FILE", file.clone().into())]);
        assert_eq!(lookup("T", &both).unwrap().as_deref(), Some("direct"));
        let missing = env(&[("T_FILE", dir.join("missing").into())]);
        let error = lookup("T", &missing).unwrap_err();
        assert!(error.to_string().starts_with("T_FILE names"), "{error}");
        assert_eq!(lookup("T", env(&[])).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
