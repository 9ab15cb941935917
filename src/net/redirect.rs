//! Redirects: a `Location` joined to the URL that answered with `url`'s `Url::join`, as
//! RFC 3986 says (`//host/x`, `../x`, `?q`, an absolute URL), and followed only to `http://`
//! and `https://` (never to `file:`), at most [`MAX_REDIRECTS`] times.

/// Redirects followed at most, as curl's default is 50 and browsers' 20.
pub const MAX_REDIRECTS: usize = 10;

/// Why a redirect is not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("HTTP {0} without a Location")]
    NoLocation(u16),
    #[error("a redirect to `{location}`: {why}")]
    Unparsable { location: String, why: String },
    #[error("refused a redirect to `{0}`: only http:// and https:// redirects are followed")]
    Scheme(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

/// Where a redirect from `base` with `location` leads: the joined URL, if it is http(s).
pub fn follow(base: &str, location: &str) -> Result<String, RedirectError> {
    let joined = join(base, location).map_err(|why| RedirectError::Unparsable {
        location: location.to_owned(),
        why: why.to_string(),
    })?;
    if !matches!(scheme(&joined).as_deref(), Some("http" | "https")) {
        return Err(RedirectError::Scheme(joined));
    }
    Ok(joined)
}

/// `location` joined to `base` as RFC 3986 says.
pub fn join(base: &str, location: &str) -> Result<String, url::ParseError> {
    url::Url::parse(base)?.join(location).map(String::from)
}

fn scheme(url: &str) -> Option<String> {
    url.split_once(':').map(|(s, _)| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_joined_as_rfc_3986_says() {
        let base = "http://a.example/dir/sub/web.tgz?x=1";
        for (location, joined) in [
            ("/top.tgz", "http://a.example/top.tgz"),
            ("other.tgz", "http://a.example/dir/sub/other.tgz"),
            ("../up.tgz", "http://a.example/dir/up.tgz"),
            ("../../../../up.tgz", "http://a.example/up.tgz"),
            ("//b.example/x.tgz", "http://b.example/x.tgz"),
            ("https://c.example/y.tgz", "https://c.example/y.tgz"),
            ("HTTPS://C.example/y.tgz", "https://c.example/y.tgz"),
            ("?v=2", "http://a.example/dir/sub/web.tgz?v=2"),
            ("#part", "http://a.example/dir/sub/web.tgz?x=1#part"),
        ] {
            assert_eq!(join(base, location).as_deref(), Ok(joined), "{location}");
            assert_eq!(follow(base, location).as_deref(), Ok(joined), "{location}");
        }
    }

    #[test]
    fn only_web_redirects_are_followed() {
        let base = "https://a.example/web.tgz";
        assert_eq!(
            follow(base, "file:///etc/passwd"),
            Err(RedirectError::Scheme("file:///etc/passwd".into()))
        );
        assert_eq!(
            follow(base, "ftp://a.example/x").unwrap_err().to_string(),
            "refused a redirect to `ftp://a.example/x`: only http:// and https:// redirects are followed"
        );
        let err = follow(base, "http://[::1").unwrap_err();
        assert!(
            err.to_string().starts_with("a redirect to `http://[::1`: "),
            "{err}"
        );
        assert_eq!(RedirectError::TooMany.to_string(), "more than 10 redirects");
    }
}
