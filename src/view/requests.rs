//! The documents of `ferry requests`: promotion requests, each with the statuses on its head
//! while it is open.

use serde::Serialize;

use crate::error::Result;
use crate::forge::{Forge, Request, RequestState, Statuses};

/// Which requests to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFilter {
    Open,
    Merged,
    Closed,
    All,
}

impl StateFilter {
    /// The filter a word names (`open`, `merged`, `closed`, `all`).
    pub fn parse(word: &str) -> Option<StateFilter> {
        Some(match word {
            "open" => StateFilter::Open,
            "merged" => StateFilter::Merged,
            "closed" => StateFilter::Closed,
            "all" => StateFilter::All,
            _ => return None,
        })
    }

    fn keeps(self, state: RequestState) -> bool {
        match self {
            StateFilter::All => true,
            StateFilter::Open => state == RequestState::Open,
            StateFilter::Merged => state == RequestState::Merged,
            StateFilter::Closed => state == RequestState::Closed,
        }
    }
}

/// A request, and the statuses on its head while it is open.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub request: Request,
    /// The statuses on its head, for an open request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Statuses>,
}

/// The statuses on an open request's head (what its page shows); none for the others.
fn checks_of(forge: &dyn Forge, request: &Request) -> Result<Option<Statuses>> {
    if request.state != RequestState::Open {
        return Ok(None);
    }
    match crate::store::Oid::from_str(&request.head) {
        Ok(head) => Ok(Some(forge.statuses(head)?)),
        Err(_) => Ok(None),
    }
}

/// Request `id`, with its checks.
pub fn one(forge: &dyn Forge, id: u64) -> Result<Listed> {
    let request = forge.request(id)?.value;
    let checks = checks_of(forge, &request)?;
    Ok(Listed { request, checks })
}

/// The requests in `state`, into or out of `env` when given, each with its checks.
pub fn list(forge: &dyn Forge, env: Option<&str>, state: StateFilter) -> Result<Vec<Listed>> {
    let listed = match state {
        StateFilter::Open => forge.open_requests()?,
        _ => forge.requests()?,
    };
    listed
        .into_iter()
        .map(|r| r.value)
        .filter(|r| env.is_none_or(|e| r.to == e || r.from == e))
        .filter(|r| state.keeps(r.state))
        .map(|request| {
            let checks = checks_of(forge, &request)?;
            Ok(Listed { request, checks })
        })
        .collect()
}

/// `body` without the HTML comments ferry leaves for bots (`<!-- ferry:… -->`), as a forge's
/// page renders it.
pub fn for_people(body: &str) -> String {
    let mut shown = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("<!-- ferry:") {
        shown.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => {
                rest = "";
            }
        }
    }
    shown.push_str(rest);
    // What the body escaped for Markdown (see `render::markdown_escape`), as written.
    shown
        .trim_end()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Who approved, an approval of an older head marked `(stale)`.
pub fn approvals(request: &Request) -> String {
    let current: Vec<&str> = request.approvers(true);
    let mut shown: Vec<String> = request
        .approvers(false)
        .into_iter()
        .map(|who| {
            if current.contains(&who) {
                who.to_owned()
            } else {
                format!("{who} (stale)")
            }
        })
        .collect();
    shown.dedup();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_block_for_bots_is_hidden_from_people() {
        let body = "## Gates\n- ok\n\n<!-- ferry:promotion\n{\"apps\": []}\n-->\n";
        assert_eq!(super::for_people(body), "## Gates\n- ok");
        assert_eq!(super::for_people("no block"), "no block");
        assert_eq!(super::for_people("a <!-- ferry:x unterminated"), "a");
    }
}
