//! Planning a bump: one artifact pin changes in one environment's manifest.
//!
//! The manifest's text is edited in place: only the artifact's value changes, so the rest
//! of the file (formatting, key order, other pins) stays byte for byte, and the commit's diff
//! is exactly the bump.

use std::cmp::Ordering;

use serde::Serialize;

use crate::json::Document;
use crate::model::{Artifact, Manifest, Pin};
use crate::plan::edit;

/// What the CI bot asked for.
#[derive(Debug, Clone)]
pub struct BumpRequest {
    pub app: String,
    pub version: semver::Version,
    pub url: Option<String>,
    pub sha256: String,
    /// The app may be new to the manifest.
    pub add: bool,
    pub allow_downgrade: bool,
}

/// The planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BumpPlan {
    /// The app is already pinned to exactly this.
    Unchanged { version: String },
    Change {
        /// The previous version (or bare file name); `None` for a new app.
        from: Option<String>,
        pin: Pin,
        /// The whole new manifest text.
        manifest: String,
    },
}

/// Why a bump is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum BumpRefusal {
    #[error("`{app}` is not pinned in this manifest")]
    NoSuchApp { app: String, known: Vec<String> },
    #[error("`{app}` would go down from {from} to {to}")]
    Downgrade {
        app: String,
        from: String,
        to: String,
    },
    #[error(
        "`{app}` {version} is already pinned with another digest: a version's artifact is immutable"
    )]
    Repin { app: String, version: String },
    #[error(
        "`{app}` {to} is no newer than {from}: they differ only in build metadata, which semantic versions do not order"
    )]
    SamePrecedence {
        app: String,
        from: String,
        to: String,
    },
    #[error(
        "cannot derive the URL of `{app}` {version}: the current URL `{current}` does not contain the current version"
    )]
    NeedUrl {
        app: String,
        version: String,
        current: String,
    },
    #[error("`{app}` is new: its URL is needed")]
    NeedUrlForNewApp { app: String },
    #[error("the manifest has no `artifacts` object")]
    NoArtifacts,
}

impl BumpRefusal {
    pub fn hint(&self) -> Option<String> {
        match self {
            BumpRefusal::NoSuchApp { app, known } => Some(format!(
                "pass `--add` to add `{app}`; pinned apps: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )),
            BumpRefusal::Downgrade { .. } => {
                Some("pass `--allow-downgrade` if going back is intended".to_owned())
            }
            BumpRefusal::Repin { .. } | BumpRefusal::SamePrecedence { .. } => {
                Some("publish the new build under a new version".to_owned())
            }
            BumpRefusal::NeedUrl { .. } | BumpRefusal::NeedUrlForNewApp { .. } => {
                Some("pass `--url URL`".to_owned())
            }
            BumpRefusal::NoArtifacts => {
                Some("run `ferry validate` on the branch's files".to_owned())
            }
        }
    }
}

/// What a bump does to one pin, before any text is edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The app is already pinned to exactly this.
    Unchanged { version: String },
    /// The pin becomes `pin`; `from` is the previous version (or bare file name), `None` for a
    /// new app.
    Change { from: Option<String>, pin: Pin },
}

/// Which fields of an app's pin a bump to `pin` changes, from its `previous` pin: `version`,
/// `url`, `sha256` (all three for a new app or a bare file name).
pub fn changed_fields(previous: Option<&Artifact>, pin: &Pin) -> Vec<&'static str> {
    let Some(Artifact::Pinned(old)) = previous else {
        return vec!["version", "url", "sha256"];
    };
    [
        ("version", old.version != pin.version),
        ("url", old.url != pin.url),
        ("sha256", old.sha256 != pin.sha256),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(field, _)| field)
    .collect()
}

/// Plans `request` against the manifest `doc` (whose typed form is `manifest`).
pub fn plan(
    doc: &Document,
    manifest: &Manifest,
    request: &BumpRequest,
) -> Result<BumpPlan, BumpRefusal> {
    let current = manifest.artifacts.get(&request.app);
    if current.is_none() && !request.add {
        return Err(BumpRefusal::NoSuchApp {
            app: request.app.clone(),
            known: manifest.artifacts.keys().cloned().collect(),
        });
    }
    match decide(current, request)? {
        Decision::Unchanged { version } => Ok(BumpPlan::Unchanged { version }),
        Decision::Change { from, pin } => {
            let manifest = edit::set_pins(doc, &[(request.app.as_str(), &pin)])
                .ok_or(BumpRefusal::NoArtifacts)?;
            Ok(BumpPlan::Change {
                from,
                pin,
                manifest,
            })
        }
    }
}

/// Decides the new pin of `request.app`, whose current pin is `current` (`None`: not pinned,
/// and `request.add` was checked by the caller).
pub fn decide(current: Option<&Artifact>, request: &BumpRequest) -> Result<Decision, BumpRefusal> {
    let app = &request.app;
    let to = request.version.to_string();
    let from = match current {
        None => None,
        Some(Artifact::Bare(name)) => Some(name.clone()),
        Some(Artifact::Pinned(pin)) => Some(pin.version.clone()),
    };
    let url = match (&request.url, current) {
        (Some(url), _) => url.clone(),
        (None, Some(Artifact::Pinned(pin))) if pin.version == to => pin.url.clone(),
        (None, Some(Artifact::Pinned(pin))) => {
            if pin.url.contains(&pin.version) {
                pin.url.replace(&pin.version, &to)
            } else {
                return Err(BumpRefusal::NeedUrl {
                    app: app.clone(),
                    version: to,
                    current: pin.url.clone(),
                });
            }
        }
        (None, _) => return Err(BumpRefusal::NeedUrlForNewApp { app: app.clone() }),
    };
    let pin = Pin {
        version: to.clone(),
        url,
        sha256: request.sha256.clone(),
    };

    if let Some(Artifact::Pinned(old)) = current {
        if old.version == to {
            if old.sha256 != pin.sha256 {
                return Err(BumpRefusal::Repin {
                    app: app.clone(),
                    version: to,
                });
            }
            if old.url == pin.url {
                return Ok(Decision::Unchanged { version: to });
            }
            // Same artifact, new location (a mirror moved): allowed.
        } else if let Ok(old_version) = semver::Version::parse(&old.version)
            && !request.allow_downgrade
        {
            // Versions that differ only in build metadata have the same precedence: moving
            // between them would re-pin a version in all but name (1.0.0 → 1.0.0+x → 1.0.0).
            match request.version.cmp_precedence(&old_version) {
                Ordering::Less => {
                    return Err(BumpRefusal::Downgrade {
                        app: app.clone(),
                        from: old.version.clone(),
                        to,
                    });
                }
                Ordering::Equal => {
                    return Err(BumpRefusal::SamePrecedence {
                        app: app.clone(),
                        from: old.version.clone(),
                        to,
                    });
                }
                Ordering::Greater => {}
            }
        }
    }
    Ok(Decision::Change { from, pin })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// 1.0.0 → 1.0.0+x → 1.0.0 would re-pin 1.0.0 to other bytes: build metadata orders
    /// nothing, so such a move is refused like a downgrade.
    #[test]
    fn build_metadata_alone_is_no_new_version() {
        let pinned = |version: &str| {
            Artifact::Pinned(Pin {
                version: version.into(),
                url: format!("https://a/web-{version}.tgz"),
                sha256: A.into(),
            })
        };
        let request = |version: &str, allow_downgrade: bool| BumpRequest {
            app: "web".into(),
            version: semver::Version::parse(version).unwrap(),
            url: None,
            sha256: B.into(),
            add: false,
            allow_downgrade,
        };
        for (from, to) in [("1.0.0", "1.0.0+x"), ("1.0.0+x", "1.0.0")] {
            assert!(matches!(
                decide(Some(&pinned(from)), &request(to, false)),
                Err(BumpRefusal::SamePrecedence { .. })
            ));
            assert!(decide(Some(&pinned(from)), &request(to, true)).is_ok());
        }
        assert!(decide(Some(&pinned("1.0.0+x")), &request("1.0.1", false)).is_ok());
    }

    #[test]
    fn changed_fields_name_what_a_bump_changes() {
        let pin = |version: &str, url: &str, sha256: &str| Pin {
            version: version.into(),
            url: url.into(),
            sha256: sha256.into(),
        };
        let old = Artifact::Pinned(pin("1.0.0", "https://a/web-1.0.0.tgz", A));
        assert_eq!(
            changed_fields(Some(&old), &pin("1.0.0", "https://b/web-1.0.0.tgz", A)),
            ["url"]
        );
        assert_eq!(
            changed_fields(Some(&old), &pin("1.1.0", "https://a/web-1.1.0.tgz", B)),
            ["version", "url", "sha256"]
        );
        assert_eq!(
            changed_fields(None, &pin("1.0.0", "https://a/web-1.0.0.tgz", A)),
            ["version", "url", "sha256"]
        );
        let bare = Artifact::Bare("web-1.0.0.tgz".into());
        assert_eq!(changed_fields(Some(&bare), &pin("1.0.0", "u", A)).len(), 3);
    }

    fn manifest(text: &str) -> (Document, Manifest) {
        let doc = Document::parse(text.as_bytes().to_vec()).unwrap();
        let manifest = Manifest::deserialize(&doc.value).unwrap();
        (doc, manifest)
    }

    fn request(app: &str, version: &str, sha: &str) -> BumpRequest {
        BumpRequest {
            app: app.into(),
            version: semver::Version::parse(version).unwrap(),
            url: None,
            sha256: sha.into(),
            add: false,
            allow_downgrade: false,
        }
    }

    fn pretty() -> String {
        format!(
            "{{\n  \"version\": \"1.0.0\",\n  \"artifacts\": {{\n    \"web\": {{\n      \"version\": \"2.0.0\",\n      \"url\": \"https://a/web-2.0.0.tgz\",\n      \"sha256\": \"{A}\"\n    }},\n    \"api\": \"api-1.0.zip\"\n  }}\n}}\n"
        )
    }

    #[test]
    fn changes_only_the_pin_and_keeps_the_format() {
        let text = pretty();
        let (doc, m) = manifest(&text);
        let BumpPlan::Change {
            from,
            pin,
            manifest: out,
        } = plan(&doc, &m, &request("web", "2.1.0", B)).unwrap()
        else {
            panic!("a change")
        };
        assert_eq!(from.as_deref(), Some("2.0.0"));
        assert_eq!(pin.url, "https://a/web-2.1.0.tgz");
        assert_eq!(
            out,
            text.replace("2.0.0\"", "2.1.0\"")
                .replace("web-2.0.0", "web-2.1.0")
                .replace(A, B)
        );
    }

    #[test]
    fn single_line_pins_stay_single_line() {
        let text = format!(
            "{{\"artifacts\": {{\n  \"web\": {{ \"version\": \"2.0.0\", \"url\": \"https://a/2.0.0/w\", \"sha256\": \"{A}\" }},\n  \"x\": \"x.zip\"\n}}}}\n"
        );
        let (doc, m) = manifest(&text);
        let BumpPlan::Change { manifest: out, .. } =
            plan(&doc, &m, &request("web", "3.0.0", B)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            out,
            format!(
                "{{\"artifacts\": {{\n  \"web\": {{ \"version\": \"3.0.0\", \"url\": \"https://a/3.0.0/w\", \"sha256\": \"{B}\" }},\n  \"x\": \"x.zip\"\n}}}}\n"
            )
        );
    }

    #[test]
    fn same_version_and_digest_is_unchanged() {
        let (doc, m) = manifest(&pretty());
        assert_eq!(
            plan(&doc, &m, &request("web", "2.0.0", A)),
            Ok(BumpPlan::Unchanged {
                version: "2.0.0".into()
            })
        );
    }

    #[test]
    fn refusals() {
        let (doc, m) = manifest(&pretty());
        assert!(matches!(
            plan(&doc, &m, &request("db", "1.0.0", A)),
            Err(BumpRefusal::NoSuchApp { .. })
        ));
        assert!(matches!(
            plan(&doc, &m, &request("web", "1.9.9", A)),
            Err(BumpRefusal::Downgrade { .. })
        ));
        assert!(matches!(
            plan(&doc, &m, &request("web", "2.0.0", B)),
            Err(BumpRefusal::Repin { .. })
        ));
        assert!(matches!(
            plan(&doc, &m, &request("web", "2.0.0-rc.1", B)),
            Err(BumpRefusal::Downgrade { .. })
        ));
        assert!(matches!(
            plan(&doc, &m, &request("api", "1.1.0", B)),
            Err(BumpRefusal::NeedUrlForNewApp { .. })
        ));
        let latest = format!(
            "{{\"artifacts\": {{\"web\": {{\"version\": \"2.0.0\", \"url\": \"https://a/web/latest.tgz\", \"sha256\": \"{A}\"}}}}}}"
        );
        let (latest_doc, latest_m) = manifest(&latest);
        assert!(matches!(
            plan(&latest_doc, &latest_m, &request("web", "2.1.0", B)),
            Err(BumpRefusal::NeedUrl { .. })
        ));
        let mut down = request("web", "1.9.9", B);
        down.allow_downgrade = true;
        assert!(matches!(plan(&doc, &m, &down), Ok(BumpPlan::Change { .. })));
    }

    #[test]
    fn adds_new_apps_after_the_last_one() {
        let text = pretty();
        let (doc, m) = manifest(&text);
        let mut req = request("db", "0.1.0", B);
        req.add = true;
        req.url = Some("https://a/db.tgz".into());
        let BumpPlan::Change {
            from,
            manifest: out,
            ..
        } = plan(&doc, &m, &req).unwrap()
        else {
            panic!()
        };
        assert_eq!(from, None);
        let expected = text.replace(
            "\"api\": \"api-1.0.zip\"\n",
            &format!("\"api\": \"api-1.0.zip\",\n    \"db\": {{\n      \"version\": \"0.1.0\",\n      \"url\": \"https://a/db.tgz\",\n      \"sha256\": \"{B}\"\n    }}\n"),
        );
        assert_eq!(out, expected);
        Document::parse(out.into_bytes()).unwrap();
    }

    #[test]
    fn adds_to_an_empty_artifacts_object() {
        let text = "{\n  \"artifacts\": {}\n}\n";
        let (doc, m) = manifest(text);
        let mut req = request("db", "0.1.0", B);
        req.add = true;
        req.url = Some("file:///a/db.tgz".into());
        let BumpPlan::Change { manifest: out, .. } = plan(&doc, &m, &req).unwrap() else {
            panic!()
        };
        assert_eq!(
            out,
            format!(
                "{{\n  \"artifacts\": {{\n    \"db\": {{\n      \"version\": \"0.1.0\",\n      \"url\": \"file:///a/db.tgz\",\n      \"sha256\": \"{B}\"\n    }}\n  }}\n}}\n"
            )
        );
    }

    #[test]
    fn a_bare_file_name_becomes_a_pin() {
        let (doc, m) = manifest(&pretty());
        let mut req = request("api", "1.1.0", B);
        req.url = Some("https://a/api-1.1.0.zip".into());
        let BumpPlan::Change {
            from,
            manifest: out,
            ..
        } = plan(&doc, &m, &req).unwrap()
        else {
            panic!()
        };
        assert_eq!(from.as_deref(), Some("api-1.0.zip"));
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["artifacts"]["api"]["version"], "1.1.0");
    }
}
