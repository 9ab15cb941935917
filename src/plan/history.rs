//! What a commit changed in the manifest, app by app: the moves `ferry history` and
//! `ferry audit` list for every change of a branch.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::Manifest;

/// One app's pin before and after a change (`None`: not pinned).
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    pub app: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Moves as people read them: `web 1.0.0 → 1.1.0, api (new) → 0.3.0`.
pub fn shown(moves: &[Move]) -> String {
    moves
        .iter()
        .map(|m| {
            format!(
                "{} {} → {}",
                m.app,
                m.from.as_deref().unwrap_or("(new)"),
                m.to.as_deref().unwrap_or("(removed)")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The apps whose pin differs between two manifests.
pub fn moves(before: Option<&Manifest>, after: Option<&Manifest>) -> Vec<Move> {
    let empty = Manifest {
        version: None,
        description: None,
        artifacts: Default::default(),
    };
    let before = before.unwrap_or(&empty);
    let after = after.unwrap_or(&empty);
    let apps: BTreeSet<&String> = before
        .artifacts
        .keys()
        .chain(after.artifacts.keys())
        .collect();
    apps.into_iter()
        .filter(|app| before.artifacts.get(*app) != after.artifacts.get(*app))
        .map(|app| Move {
            app: app.clone(),
            from: before
                .artifacts
                .get(app)
                .map(crate::model::Artifact::shown_version),
            to: after
                .artifacts
                .get(app)
                .map(crate::model::Artifact::shown_version),
        })
        .collect()
}
