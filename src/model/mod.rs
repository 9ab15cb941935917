//! The desired-state model: typed views of `manifest.json` and the environment files.
//!
//! These types are built only from documents that passed their schema, so deserializing them
//! cannot fail on shape; the rules the schema cannot express live in `crate::validate`, above this module.

mod check;
mod duration;
mod environment;
mod manifest;
mod rollout;
mod size;

pub use check::{CHECK_NAME_LIMIT, CheckNameError, check_name, is_host_name};
pub use duration::Duration;
pub use environment::{
    AgentSettings, App, Environment, Layout, Policy, Protection, SEED_ORDER, Unresolved,
    declared_branch, resolve_branch,
};
pub use manifest::{Artifact, Manifest, Pin};
pub use rollout::{Rollout, Wave};
pub use size::Size;

/// A desired state that passed validation: the manifest and every environment file.
#[derive(Debug, Clone)]
pub struct State {
    pub manifest: Manifest,
    pub environments: std::collections::BTreeMap<String, Environment>,
    pub layout: Layout,
}

/// The file that pins each app's artifact, at the root of every environment's branch.
pub const MANIFEST: &str = "manifest.json";
/// The directory of the environment files (`environments/<name>.json`).
pub const ENVIRONMENTS_DIR: &str = "environments";

/// Whether a file at the top of a branch is part of its desired state: `manifest.json`, or an
/// environment file of the older layout (`dev-env.json`).
pub fn is_top_state_file(name: &str) -> bool {
    name == MANIFEST || name.ends_with("-env.json")
}

/// Whether a file in [`ENVIRONMENTS_DIR`] is an environment file.
pub fn is_environment_file(name: &str) -> bool {
    name.ends_with(".json")
}

/// Whether `path` (from the top of a branch) names a file of the desired state.
pub fn is_state_path(path: &str) -> bool {
    match path.split_once('/') {
        None => is_top_state_file(path),
        Some((dir, name)) => {
            dir == ENVIRONMENTS_DIR && !name.contains('/') && is_environment_file(name)
        }
    }
}

/// The shortest time between an agent's reconciles (`agent.interval`, `--interval`): under it,
/// an agent would poll its remote without a pause.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
