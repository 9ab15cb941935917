//! Comparing two environments' manifests, app by app: what a promotion from one to the other
//! would move, and in which direction.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::{Artifact, Manifest};

/// How an app's pin in the source compares with the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Same version, URL and digest.
    Same,
    /// The source's version is higher: promoting moves it up.
    Up,
    /// The source's version is lower: promoting would be a rollback.
    Down,
    /// Same version, but another URL or digest.
    Repinned,
    /// Only the source has it: promoting adds it.
    Added,
    /// Only the target has it.
    OnlyInTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppComparison {
    pub app: String,
    pub from: Option<Artifact>,
    pub to: Option<Artifact>,
    pub change: Change,
}

/// The version an artifact carries: the pin's version, or nothing for a bare file name.
pub fn version_of(artifact: &Artifact) -> Option<semver::Version> {
    artifact
        .pin()
        .and_then(|p| semver::Version::parse(&p.version).ok())
}

pub fn compare(from: &Manifest, to: &Manifest) -> Vec<AppComparison> {
    let apps: BTreeSet<&String> = from.artifacts.keys().chain(to.artifacts.keys()).collect();
    apps.into_iter()
        .map(|app| {
            let a = from.artifacts.get(app);
            let b = to.artifacts.get(app);
            let change = match (a, b) {
                (Some(_), None) => Change::Added,
                (None, Some(_)) => Change::OnlyInTarget,
                (Some(a), Some(b)) if a == b => Change::Same,
                (Some(a), Some(b)) => match (version_of(a), version_of(b)) {
                    (Some(va), Some(vb)) => match va.cmp_precedence(&vb) {
                        Ordering::Greater => Change::Up,
                        Ordering::Less => Change::Down,
                        Ordering::Equal => Change::Repinned,
                    },
                    // A bare file name has no comparable version: any difference moves it.
                    _ => Change::Repinned,
                },
                (None, None) => unreachable!("the app comes from one of the manifests"),
            };
            AppComparison {
                app: app.clone(),
                from: a.cloned(),
                to: b.cloned(),
                change,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pin;

    fn pin(v: &str, sha: char) -> Artifact {
        Artifact::Pinned(Pin {
            version: v.into(),
            url: format!("https://x/{v}"),
            sha256: sha.to_string().repeat(64),
        })
    }

    #[test]
    fn classifies_every_kind_of_difference() {
        let from = Manifest {
            version: None,
            description: None,
            artifacts: [
                ("a".into(), pin("1.0.0", 'a')),
                ("b".into(), pin("2.0.0", 'b')),
                ("c".into(), pin("1.0.0", 'c')),
                ("d".into(), pin("1.0.0", 'd')),
                ("e".into(), pin("1.0.0", 'e')),
            ]
            .into(),
        };
        let to = Manifest {
            version: None,
            description: None,
            artifacts: [
                ("a".into(), pin("1.0.0", 'a')),
                ("b".into(), pin("1.9.0", 'b')),
                ("c".into(), pin("1.0.1", 'c')),
                ("d".into(), pin("1.0.0", 'x')),
                ("f".into(), pin("1.0.0", 'f')),
            ]
            .into(),
        };
        let changes: Vec<(String, Change)> = compare(&from, &to)
            .into_iter()
            .map(|c| (c.app, c.change))
            .collect();
        assert_eq!(
            changes,
            [
                ("a".into(), Change::Same),
                ("b".into(), Change::Up),
                ("c".into(), Change::Down),
                ("d".into(), Change::Repinned),
                ("e".into(), Change::Added),
                ("f".into(), Change::OnlyInTarget),
            ]
        );
    }

    #[test]
    fn prereleases_sort_below_releases() {
        let from = Manifest {
            version: None,
            description: None,
            artifacts: [("a".into(), pin("2.0.0", 'a'))].into(),
        };
        let to = Manifest {
            version: None,
            description: None,
            artifacts: [("a".into(), pin("2.0.0-rc.1", 'b'))].into(),
        };
        assert_eq!(compare(&from, &to)[0].change, Change::Up);
    }
}
