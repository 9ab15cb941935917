//! The desired-state model: typed views of `manifest.json` and the environment files.
//!
//! These types are built only from documents that passed their schema, so deserializing them
//! cannot fail on shape; the rules the schema cannot express live in [`crate::validate`].

mod duration;
mod environment;
mod manifest;

pub use duration::Duration;
pub use environment::{
    AgentSettings, App, Environment, Layout, Policy, Protection, SEED_ORDER, Unresolved,
    declared_branch, resolve_branch,
};
pub use manifest::{Artifact, Manifest, Pin};
