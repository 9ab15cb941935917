//! A promotion as a value: **gather** what it reads once ([`gather`]: the source's history in
//! one walk, the checks on the source commit, the target's templates; the command loads and
//! validates each state once), **plan** without I/O ([`plan`]: the moves, the gates' verdicts,
//! and everything to write: the target's new manifest, the commit message, the request's
//! title and body), then **apply** through a [`crate::forge::Forge`] ([`proposal_of`]).
//!
//! `ferry promote` runs all three; `ferry merge` re-plans the same moves against the state as
//! it is now. The moves and gates themselves are [`crate::plan::promote`].

pub mod gather;
pub mod history;
pub mod text;

use std::collections::BTreeMap;

use crate::store::Oid;

use crate::diag::Report;
use crate::forge::{NewCommit, Proposal, RequestedMove};
use crate::json::Document;
use crate::model::{Artifact, Manifest, Pin};
use crate::plan::edit;
use crate::plan::promote::{self, GateInputs, GateResult, Move, PlanError};
use crate::store::TreeSource;
use crate::validate::{self, MANIFEST, State};
use crate::verdict::Summary;
pub use history::{AppLog, LogEntry};
pub use text::{BODY_LIMIT, Override, TITLE_LIMIT, Templates, TextError};

/// What was asked: promote `from` into `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub from: String,
    pub to: String,
    /// Only these apps.
    pub apps: Option<Vec<String>>,
    pub rollback: bool,
    /// Whether the request is to be written (not a dry run): only then are its texts made.
    pub write: bool,
}

/// The target environment's branch as loaded: its tip, its files and their valid state.
#[derive(Debug, Clone)]
pub struct Target {
    pub branch: String,
    pub tip: Oid,
    pub files: TreeSource,
    pub state: State,
}

/// Everything a promotion's plan looks at.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub ask: Ask,
    /// The source commit and the manifest it holds, from a state found valid (so each of its
    /// pins is valid on its own: a promotion that only repins checks no pin again).
    pub source: Oid,
    pub from: Manifest,
    pub target: Target,
    /// Now, Unix seconds.
    pub now: i64,
    /// Since when each moving pin has been in the source (for the soak gate).
    pub since: BTreeMap<String, i64>,
    /// The state of each check on the source commit, as the gates trust them.
    pub checks: BTreeMap<String, String>,
    pub changelog: Vec<AppLog>,
    pub templates: Templates,
}

/// What a promotion writes, when it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub title: String,
    pub body: String,
    /// The target's `manifest.json` with the moves applied.
    pub manifest: String,
    /// The proposal commit's message (the title, then `Ferry-Promotion` and `Ferry-Moves`).
    pub message: String,
    /// The moves as the request records them.
    pub requested: Vec<RequestedMove>,
}

/// A promotion's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub moves: Vec<Move>,
    /// Every gate's verdict (with nothing to move: the `promotes_from` gate alone).
    pub gates: Vec<GateResult>,
    /// Made when something moves, every gate passed, and the request is to be written.
    pub texts: Option<Texts>,
}

impl Plan {
    /// The gates that refused.
    pub fn refused(&self) -> Vec<&GateResult> {
        self.gates.iter().filter(|g| !g.passed).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    /// An app asked for is not in the source.
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("branch `{branch}` has no `{MANIFEST}`")]
    NoManifest { branch: String },
    #[error("`{branch}:{MANIFEST}` is not valid JSON: {message}")]
    NotJson { branch: String, message: String },
    #[error("`{branch}:{MANIFEST}` has no `artifacts` object")]
    NoArtifacts { branch: String },
    #[error("a bare file-name pin cannot be promoted")]
    BarePin,
    /// The promoted state would not validate.
    #[error("the promotion would leave `{branch}` invalid")]
    Invalid { branch: String, report: Report },
}

/// The moves of `ask` from `from` into `target` (what gathering needs to know what to read).
pub fn moves(ask: &Ask, from: &Manifest, target: &Manifest) -> Result<Vec<Move>, PlanError> {
    promote::plan(from, target, ask.apps.as_deref())
}

/// Plans the promotion: no I/O.
pub fn plan(inputs: &Inputs) -> Result<Plan, PromotionError> {
    let ask = &inputs.ask;
    let moves = moves(ask, &inputs.from, &inputs.target.state.manifest)?;
    let target = inputs
        .target
        .state
        .environments
        .get(&ask.to)
        .expect("the target's state declares it");
    let gate_inputs = GateInputs {
        from: &ask.from,
        target,
        rollback: ask.rollback,
        now: inputs.now,
        since: &inputs.since,
        checks: &inputs.checks,
    };
    if moves.is_empty() {
        // Promotions follow the graph even when nothing would move.
        let mut gates = promote::gates(&[], &gate_inputs);
        gates.truncate(1);
        return Ok(Plan {
            moves,
            gates,
            texts: None,
        });
    }
    let gates = promote::gates(&moves, &gate_inputs);
    if !ask.write || gates.iter().any(|g| !g.passed) {
        return Ok(Plan {
            moves,
            gates,
            texts: None,
        });
    }
    let (source, base) = (inputs.source.to_string(), inputs.target.tip.to_string());
    let (title, body) = text::render(
        &text::Facts {
            from: &ask.from,
            to: &ask.to,
            source: &source,
            base: &base,
            rollback: ask.rollback,
            moves: &moves,
            gates: &gates,
        },
        inputs.changelog.clone(),
        &inputs.templates,
    )?;
    let (manifest, message) = proposal(&inputs.target, (&ask.from, &ask.to), &moves, &title)?;
    Ok(Plan {
        texts: Some(Texts {
            title,
            body,
            manifest,
            message,
            requested: requested(&moves),
        }),
        moves,
        gates,
    })
}

/// The moves as a request records them.
pub fn requested(moves: &[Move]) -> Vec<RequestedMove> {
    moves
        .iter()
        .map(|m| RequestedMove {
            app: m.app.clone(),
            from: m.current.as_ref().map(Artifact::shown_version),
            to: m.version(),
            kind: m.kind,
            pin: m.promoted.clone(),
        })
        .collect()
}

/// The target's new `manifest.json` with the moves applied, and the promotion's commit
/// message, after validating the resulting state. `route` is (from, to); the moves' pins
/// come from a source state found valid.
pub fn proposal(
    target: &Target,
    route: (&str, &str),
    moves: &[Move],
    subject: &str,
) -> Result<(String, String), PromotionError> {
    let (from, to) = route;
    let branch = || target.branch.clone();
    let text = target
        .files
        .get(MANIFEST)
        .ok_or_else(|| PromotionError::NoManifest { branch: branch() })?;
    let doc = Document::parse(text.to_vec()).map_err(|e| PromotionError::NotJson {
        branch: branch(),
        message: e.message,
    })?;
    let pins: Vec<(&str, &Pin)> = moves
        .iter()
        .filter_map(|m| m.promoted.pin().map(|p| (m.app.as_str(), p)))
        .collect();
    if pins.len() != moves.len() {
        return Err(PromotionError::BarePin);
    }
    let new_text = edit::set_pins(&doc, &pins)
        .ok_or_else(|| PromotionError::NoArtifacts { branch: branch() })?;
    // The target's state is valid (it was loaded so). When every moved app is pinned there
    // already, the result differs from it by pins only: valid when the new pins are, and they
    // are, each on its own (see `validate::artifacts_are_valid`): they come from the source's
    // manifest, found valid. Otherwise, and to explain a refusal, the whole state.
    let repins_only = moves.iter().all(|m| m.current.is_some());
    if !repins_only {
        let after = target
            .files
            .clone()
            .with_file(MANIFEST, new_text.clone().into_bytes());
        let checked = validate::check(&after);
        if checked.state.is_none() {
            return Err(PromotionError::Invalid {
                branch: branch(),
                report: checked.report,
            });
        }
    }
    let mut message = format!("{subject}\n\nFerry-Promotion: {from} -> {to}\n");
    for m in moves {
        let current = m
            .current
            .as_ref()
            .map_or("none".to_owned(), Artifact::shown_version);
        message.push_str(&format!(
            "Ferry-Moves: {} {current} -> {}\n",
            m.app,
            m.version()
        ));
    }
    Ok((new_text, message))
}

/// What applying a plan writes through the forge: the proposal commit on the target's tip
/// (valid as the target's state is, with the new pins) and its request.
pub struct Application<'a> {
    pub inputs: &'a Inputs,
    pub texts: &'a Texts,
    pub files: Vec<(String, String)>,
    pub labels: Vec<String>,
    pub branch: String,
    pub valid_as: Summary,
}

impl<'a> Application<'a> {
    pub fn new(inputs: &'a Inputs, texts: &'a Texts) -> Self {
        Application {
            inputs,
            texts,
            files: vec![(MANIFEST.to_owned(), texts.manifest.clone())],
            labels: vec!["promotion".to_owned(), format!("env:{}", inputs.ask.to)],
            branch: crate::forge::request_branch(&inputs.ask.from, &inputs.ask.to),
            valid_as: Summary::of(&inputs.target.state),
        }
    }
}

/// The proposal to publish on a forge: authored by `author` at `at`; `parent_tree` and
/// `branch_exists` come from the store.
pub fn proposal_of<'a>(
    application: &'a Application<'a>,
    author: &'a str,
    at: i64,
    parent_tree: Oid,
    branch_exists: bool,
) -> Proposal<'a> {
    let inputs = application.inputs;
    let texts = application.texts;
    Proposal {
        from: &inputs.ask.from,
        to: &inputs.ask.to,
        branch: &application.branch,
        base_branch: &inputs.target.branch,
        commit: NewCommit {
            parent: inputs.target.tip,
            files: &application.files,
            message: &texts.message,
            author,
            committer: author,
            valid_as: Some(&application.valid_as),
        },
        parent_tree,
        branch_exists,
        source: inputs.source,
        title: &texts.title,
        body: &texts.body,
        labels: &application.labels,
        moves: &texts.requested,
        rollback: inputs.ask.rollback,
        author,
        at,
    }
}

/// A promotion's planning errors as user errors.
impl From<PromotionError> for crate::error::Error {
    fn from(err: PromotionError) -> Self {
        use crate::error::Error;
        use crate::state::invalid_state;
        match err {
            PromotionError::Text(TextError::Render(e)) => Error::failure(e.to_string())
                .hint("fix the template on the target branch, or remove it to use ferry's"),
            PromotionError::Text(e @ TextError::TooLarge { .. }) => {
                Error::failure(e.to_string()).hint("promote fewer apps at once with `--apps`")
            }
            PromotionError::BarePin => Error::failure(err.to_string()).hint(
                "pin the app with `ferry bump` (version, URL and digest) in the source first",
            ),
            PromotionError::Invalid { branch, report } => invalid_state(
                &report,
                &format!("the promotion would leave `{branch}` invalid"),
            ),
            other => Error::failure(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
