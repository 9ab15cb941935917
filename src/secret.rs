//! Secrets from the environment: `NAME`, or the file `NAME_FILE` names (the convention of
//! Docker secrets, systemd's `LoadCredential=` and Kubernetes' Secret volumes, which hand a
//! service a read-only file rather than a variable every child process inherits).

/// The secret in `name`, else in the file `name_FILE` names (one trailing newline dropped).
/// An empty value is no secret. A `_FILE` that cannot be read is an error that names the
/// variable and the path, never the content.
pub fn from_env(name: &str) -> Result<Option<String>, String> {
    if let Ok(value) = std::env::var(name)
        && !value.is_empty()
    {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    let Some(path) = std::env::var_os(&file_var).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{file_var} names `{}`, which cannot be read: {e}",
            std::path::Path::new(&path).display()
        )
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// [`from_env`] where a secret that cannot be read is as good as none, logged once.
pub fn from_env_or_warn(name: &str) -> Option<String> {
    from_env(name).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        None
    })
}

#[cfg(test)]
mod tests {
    use super::from_env;

    #[test]
    fn a_file_holds_the_secret_when_the_variable_does_not() {
        // Variable names of this test only: no other test reads them.
        let dir = std::env::temp_dir().join(format!("ferry-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        // SAFETY: these variables are read by this test alone.
        unsafe {
            std::env::set_var("FERRY_TEST_SECRET_FILE", &file);
        }
        assert_eq!(
            from_env("FERRY_TEST_SECRET").unwrap().as_deref(),
            Some("s3cret")
        );
        unsafe {
            std::env::set_var("FERRY_TEST_SECRET", "direct");
        }
        assert_eq!(
            from_env("FERRY_TEST_SECRET").unwrap().as_deref(),
            Some("direct")
        );
        unsafe {
            std::env::remove_var("FERRY_TEST_SECRET");
            std::env::set_var("FERRY_TEST_SECRET_FILE", dir.join("missing"));
        }
        let error = from_env("FERRY_TEST_SECRET").unwrap_err();
        assert!(error.starts_with("FERRY_TEST_SECRET_FILE names"), "{error}");
        unsafe {
            std::env::remove_var("FERRY_TEST_SECRET_FILE");
        }
        assert_eq!(from_env("FERRY_TEST_SECRET").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
