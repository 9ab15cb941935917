//! ferry's integration tests: one binary, real processes of the `ferry` binary, real files.

mod agent;
mod agent_limits;
mod cli;
mod common;
mod deploy;
mod enforce;
mod fleet;
mod fleet_attacks;
mod fleet_records_attacks;
mod fuzz;
mod github;
mod github_attacks;
mod github_loop;
mod gitlab_protect;
mod hosted_attacks;
mod hosted_loop;
mod layout;
mod migrate;
mod oci;
mod promote;
mod protect;
mod quickstart;
mod readme;
mod signing;
mod store;
mod validate;
