//! The documents the commands print with `--format json` and `ferry serve` answers on its
//! JSON API, each built by one function from the store and the forge: `status`, `requests`,
//! `history`, `audit` and `diff`. The commands render them as text; the server as pages.

pub mod audit;
pub mod diff;
pub mod history;
pub mod requests;
pub mod status;
