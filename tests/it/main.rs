//! ferry's integration tests: one binary, real processes of the `ferry` binary, real files.

mod common;
mod github;
mod promote;
mod store;
mod validate;
