//! `manifest.json`: which version of each application runs in an environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub artifacts: BTreeMap<String, Artifact>,
}

/// One application's pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Artifact {
    /// Version, URL and digest: immutable.
    Pinned(Pin),
    /// The seed's bare file name (`my-api-1.0.4.zip`): accepted, but not immutable.
    Bare(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub version: String,
    pub url: String,
    pub sha256: String,
}

impl Artifact {
    /// How its version is shown: the pin's version, or the bare file name.
    pub fn shown_version(&self) -> String {
        match self {
            Artifact::Pinned(pin) => pin.version.clone(),
            Artifact::Bare(name) => name.clone(),
        }
    }

    pub fn pin(&self) -> Option<&Pin> {
        match self {
            Artifact::Pinned(pin) => Some(pin),
            Artifact::Bare(_) => None,
        }
    }
}
