//! Pure planning: from the desired state as it is and what the user asked for, to the change
//! to make (or the reason to refuse). No I/O here, so every rule is unit-tested directly.

pub mod bump;
pub mod compare;
pub mod edit;
pub mod history;
pub mod migrate;
pub mod promote;
pub mod protection;
pub mod textdiff;
