//! The documents the commands print with `--format json` and `ferry serve` answers on its
//! JSON API, each built by one function from the store and the forge: `status`, `requests`,
//! `history`, `audit`, `diff` and `dora`. The commands render them as text; the server as pages.

pub mod audit;
pub mod diff;
pub mod dora;
pub mod history;
pub mod requests;
pub mod status;

use crate::error::{Error, Result};

/// `--since` (and `?since=`): a date (`2026-10-14`, from its start, UTC) or a time
/// (`2026-10-14T09:00:00Z`), as Unix seconds; anything else is a usage error.
pub fn parse_since(text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && let Ok(start) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(start.timestamp().as_second());
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_second());
    }
    Err(
        Error::usage(format!("`--since {text}` is not a date or a time"))
            .hint("such as `2026-10-14` or `2026-10-14T09:00:00Z`"),
    )
}
