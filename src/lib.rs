//! ferry: branch-per-environment GitOps promotion.
//!
//! Data flows one way: **load** (a [`source::Source`] reads a repository's files) →
//! **validate** ([`json`] parses with positions, [`schema`] checks the embedded JSON Schemas,
//! [`validate`] the rules no schema can express, all into [`diag`] diagnostics) → typed
//! [`model`] state → the commands in [`cmd`], which print through [`output`] and fail with
//! [`error::Error`], whose kind decides the exit code.

pub mod agent;
pub mod cmd;
pub mod deploy;
pub mod diag;
pub mod digest;
pub mod dora;
pub mod enforce;
pub mod error;
pub mod files;
pub mod forge;
pub mod identity;
pub mod json;
pub mod model;
pub mod net;
pub mod oci;
pub mod output;
pub mod plan;
pub mod progress;
pub mod promotion;
pub mod render;
pub mod schema;
pub mod secret;
pub mod serve;
pub mod sign;
pub mod source;
pub mod state;
pub mod store;
pub mod validate;
pub mod verdict;
pub mod view;
