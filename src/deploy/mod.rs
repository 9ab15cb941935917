//! Deploying pinned artifacts: the agent's side of ferry. An artifact is fetched into a
//! content-addressed cache while it is hashed, refused (and discarded) when its digest is not
//! the pinned one, and unpacked into a release directory that no entry may escape.
//!
//! `fetch.rs` is the cache and the download (over [`crate::net`], or from `oci://` through
//! [`crate::oci`]); `spool.rs` writes a download on its own thread; `unpack.rs` unpacks.

pub mod fetch;
pub mod spool;
pub mod unpack;
