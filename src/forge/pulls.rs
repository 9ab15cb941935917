//! What the forges modelled on GitHub's REST API (GitHub, Gitea, Forgejo) say of pull requests,
//! reviews and commit statuses, as ferry's requests, approvals and statuses: the JSON shapes
//! they share, read once for all of them.

use git2::Oid;
use serde_json::{Value, json};

use super::{CheckState, Record, Request, Status, Statuses};

/// Reviewers whose approval GitHub's own protection would not count either: no write access
/// to the repository (`author_association`).
const OUTSIDERS: [&str; 5] = [
    "NONE",
    "FIRST_TIMER",
    "FIRST_TIME_CONTRIBUTOR",
    "CONTRIBUTOR",
    "MANNEQUIN",
];

/// The statuses of one page of a combined status, each check's first (its latest) only.
pub fn add_statuses(page: &Value, checks: &mut Statuses) {
    for status in page
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some((context, status)) = status_of(status) {
            checks.entry(context).or_insert(status);
        }
    }
}

/// Whether a pull request is a promotion's: its head is a `ferry/promote/` branch.
pub fn is_promotion(pr: &Value) -> bool {
    pr["head"]["ref"]
        .as_str()
        .is_some_and(|head| head.starts_with("ferry/promote/"))
}

/// A GitHub time (`2026-11-30T09:00:00Z`) in Unix seconds.
pub fn seconds(value: &Value) -> Option<i64> {
    value
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// One status of a commit's list of statuses: its context and ferry's status.
pub fn status_of(status: &Value) -> Option<(String, Status)> {
    let context = status["context"].as_str()?;
    let state = serde_json::from_value::<CheckState>(status["state"].clone()).ok()?;
    Some((
        context.to_owned(),
        Status {
            apps: Default::default(),
            state,
            description: status["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            url: status["target_url"].as_str().map(str::to_owned),
            by: status["creator"]["login"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            at: seconds(&status["updated_at"])
                .or_else(|| seconds(&status["created_at"]))
                .unwrap_or(0),
        },
    ))
}

/// The approvals standing in a pull request's reviews (oldest first, as GitHub lists them):
/// each `APPROVED` review, until the same person requests changes or has it dismissed.
pub fn approvals(reviews: &[Value]) -> Vec<super::Approval> {
    let mut standing: Vec<super::Approval> = Vec::new();
    for review in reviews {
        let Some(by) = review["user"]["login"].as_str() else {
            continue;
        };
        match review["state"].as_str() {
            Some("APPROVED")
                if review["author_association"]
                    .as_str()
                    .is_some_and(|a| OUTSIDERS.contains(&a)) =>
            {
                tracing::warn!(
                    by,
                    association = review["author_association"].as_str(),
                    "an approval by someone without access to the repository is not counted"
                );
            }
            Some("APPROVED") if review["dismissed"] == json!(true) => {
                standing.retain(|a| a.by != by)
            }
            // Gitea's and Forgejo's word for the same: a review by someone who is not an
            // official reviewer (no write access, not in the approvals whitelist).
            Some("APPROVED") if review["official"] == json!(false) => {
                tracing::warn!(
                    by,
                    "an approval by someone who is not an official reviewer is not counted"
                );
            }
            Some("APPROVED") => standing.push(super::Approval {
                by: by.to_owned(),
                at: seconds(&review["submitted_at"]).unwrap_or(0),
                head: review["commit_id"].as_str().unwrap_or_default().to_owned(),
            }),
            // GitHub's words, then Gitea's (which also flags a dismissed approval).
            Some("CHANGES_REQUESTED" | "DISMISSED" | "REQUEST_CHANGES") => {
                standing.retain(|a| a.by != by)
            }
            _ => {}
        }
    }
    standing
}

/// What the block for bots in a request's body says (see `promotion::text`).
#[derive(Debug, serde::Deserialize)]
struct Block {
    from: String,
    to: String,
    source: String,
    base: String,
    #[serde(default)]
    rollback: bool,
    /// The moves, with their pins or without; a string when they are only in the head
    /// commit's trailers.
    moves: Value,
}

#[derive(Debug, serde::Deserialize)]
struct BlockMove {
    app: String,
    from: Option<String>,
    to: String,
    kind: crate::plan::promote::Kind,
    pin: Option<crate::model::Artifact>,
}

/// The block for bots in `body`: the last `<!-- ferry:promotion … -->`.
fn block_of(body: &str) -> Option<Block> {
    let start = body.rfind("<!-- ferry:promotion")?;
    let rest = &body[start + "<!-- ferry:promotion".len()..];
    let end = rest.find("-->")?;
    serde_json::from_str(&rest[..end]).ok()
}

/// What a promotion's request says of itself, from the block for bots in its body (ignored
/// when it names other environments than its branch does), else from its branch's name.
pub struct Described {
    pub from: String,
    pub to: String,
    /// Empty when the body does not say.
    pub source: String,
    pub base: Option<String>,
    pub rollback: bool,
    pub moves: Vec<super::RequestedMove>,
}

/// [`Described`] of the request on `branch` whose body is `body`.
pub fn described(branch: &str, body: &str) -> Described {
    let block = block_of(body).filter(|b| super::request_branch(&b.from, &b.to) == branch);
    let (from, to) = match &block {
        Some(b) => (b.from.clone(), b.to.clone()),
        None => {
            let route = branch.trim_start_matches("ferry/promote/");
            let (from, to) = route.split_once("-to-").unwrap_or((route, ""));
            (from.to_owned(), to.to_owned())
        }
    };
    let moves = block
        .as_ref()
        .and_then(|b| serde_json::from_value::<Vec<BlockMove>>(b.moves.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|m| super::RequestedMove {
            pin: m
                .pin
                .unwrap_or_else(|| crate::model::Artifact::Bare(m.to.clone())),
            app: m.app,
            from: m.from,
            to: m.to,
            kind: m.kind,
        })
        .collect();
    Described {
        from,
        to,
        source: block.as_ref().map(|b| b.source.clone()).unwrap_or_default(),
        base: block.as_ref().map(|b| b.base.clone()),
        rollback: block.as_ref().is_some_and(|b| b.rollback),
        moves,
    }
}

/// ferry's request for a promotion's pull request and its reviews; `None` when it is not a
/// promotion's. Its environments, source and moves come from the block for bots in its body;
/// a move whose pin the body does not carry (a body cut to GitHub's size limit) has its
/// version as a bare pin.
pub fn request_of(pr: &Value, reviews: &[Value]) -> Option<Request> {
    if !is_promotion(pr) {
        return None;
    }
    let branch = pr["head"]["ref"].as_str()?.to_owned();
    let body = pr["body"].as_str().unwrap_or_default().to_owned();
    let Described {
        from,
        to,
        source,
        base,
        rollback,
        moves,
    } = described(&branch, &body);
    let merged = pr["merged_at"].is_string() || pr["merged"] == json!(true);
    let state = match (pr["state"].as_str(), merged) {
        (Some("open"), _) => super::RequestState::Open,
        (_, true) => super::RequestState::Merged,
        _ => super::RequestState::Closed,
    };
    let login = |v: &Value| v["login"].as_str().map(str::to_owned);
    Some(Request {
        id: pr["number"].as_u64()?,
        from,
        to,
        branch,
        state,
        title: pr["title"].as_str().unwrap_or_default().to_owned(),
        body,
        labels: pr["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["name"].as_str().map(str::to_owned))
            .collect(),
        author: login(&pr["user"]).unwrap_or_default(),
        created_at: seconds(&pr["created_at"]).unwrap_or(0),
        updated_at: seconds(&pr["updated_at"]).unwrap_or(0),
        base: base
            .or_else(|| pr["base"]["sha"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        head: pr["head"]["sha"].as_str().unwrap_or_default().to_owned(),
        source,
        rollback,
        moves,
        approvals: approvals(reviews),
        merged_by: merged.then(|| login(&pr["merged_by"])).flatten(),
        merged_at: merged.then(|| seconds(&pr["merged_at"])).flatten(),
        merge_commit: merged
            .then(|| pr["merge_commit_sha"].as_str().map(str::to_owned))
            .flatten(),
        closed_by: None,
        closed_at: (state == super::RequestState::Closed)
            .then(|| seconds(&pr["closed_at"]))
            .flatten(),
        url: pr["html_url"].as_str().map(str::to_owned),
        mergeable: pr["mergeable"].as_bool(),
        into: pr["base"]["ref"].as_str().map(str::to_owned),
        proposed_by: None,
    })
}

/// [`request_of`] as a record read at its head.
pub fn record_of(pr: &Value, reviews: &[Value]) -> Option<Record<Request>> {
    let value = request_of(pr, reviews)?;
    Some(Record {
        tip: Oid::from_str(&value.head).unwrap_or(Oid::ZERO_SHA1),
        value,
    })
}
