//! The forge: where promotion requests, their approvals and commit statuses live, behind one
//! trait, [`Forge`].
//!
//! The embedded default ([`local`]) keeps them in the deployment repository itself, so every
//! clone carries the review record; [`github`], [`gitlab`] and [`gitea`] (Forgejo too) keep
//! them as pull or merge requests, reviews or approvals, and commit statuses, the last two over
//! [`rest`]; [`memory`] keeps them in memory, for unit tests of what drives a forge. The types here are
//! what any forge records: enough to enforce branch protection and to audit who approved and
//! merged what, and when. A new forge is a file here implementing [`Forge`] (an operation it
//! cannot do returns [`ForgeError::NotSupported`]), and a variant of [`ForgeKind`].

pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod local;
pub mod memory;
pub mod pulls;
pub mod rest;

pub use crate::model::{CHECK_NAME_LIMIT, CheckNameError, check_name};
use std::collections::BTreeMap;

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::model::Artifact;
use crate::plan::promote::Kind;
use crate::plan::protection::Rules;
use crate::store::StoreError;
use crate::verdict::Summary;

/// Where promotion requests live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForgeKind {
    /// The embedded forge: requests, approvals and statuses stored in the deployment
    /// repository under `refs/ferry/` (no server, no account).
    #[default]
    Local,
    /// GitHub: a pull request per promotion, commit statuses as checks. Needs GITHUB_TOKEN;
    /// GITHUB_API_URL points at GitHub Enterprise.
    Github,
    /// GitLab: a merge request per promotion, the approvals API, commit statuses, protected
    /// branches. Needs GITLAB_TOKEN (or CI_JOB_TOKEN); GITLAB_API_URL is the `/api/v4` base.
    Gitlab,
    /// Gitea or Forgejo (Codeberg): a pull request per promotion, reviews, commit statuses,
    /// branch protections. Needs GITEA_TOKEN; GITEA_API_URL is the server's `/api/v1`.
    Gitea,
}

impl ForgeKind {
    /// What the forge calls a promotion's request.
    pub fn request_noun(self) -> &'static str {
        match self {
            ForgeKind::Local => "request",
            ForgeKind::Github | ForgeKind::Gitea => "pull request",
            ForgeKind::Gitlab => "merge request",
        }
    }

    /// The forge's name, for people.
    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::Local => "the embedded forge",
            ForgeKind::Github => "GitHub",
            ForgeKind::Gitlab => "GitLab",
            ForgeKind::Gitea => "Gitea",
        }
    }
}

/// What went wrong on a forge.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    GitHub(#[from] github::GitHubError),
    #[error(transparent)]
    Rest(#[from] rest::RestError),
    #[error("no request #{0}")]
    NoRequest(u64),
    /// The request is merged or closed.
    #[error("request #{id} is {}", state.as_str())]
    NotOpen { id: u64, state: RequestState },
    #[error("`{who}` opened request #{id}: authors cannot approve their own requests")]
    OwnRequest { id: u64, who: String },
    #[error(
        "`{who}` proposed request #{id}'s current head (promoting again): people cannot approve what they proposed"
    )]
    OwnProposal { id: u64, who: String },
    #[error("record `{refname}` is damaged: {message}")]
    Damaged { refname: String, message: String },
    #[error("`{refname}` kept changing under ferry: gave up")]
    Contended { refname: String },
    /// The request's record changed since it was read (an update or a merge swaps it).
    #[error("request #{id} changed meanwhile")]
    RequestMoved { id: u64 },
    /// An open request from the promotion's branch goes to another branch than its target
    /// (retargeted on the forge's page): pushing a new proposal there would change it too.
    #[error(
        "request #{id} from `{branch}` merges into `{into}`, not into `{target}`: ferry does not push a proposal onto it"
    )]
    Retargeted {
        id: u64,
        branch: String,
        into: String,
        target: String,
    },
    /// The target branch moved since it was read.
    #[error("`{branch}` moved meanwhile")]
    BranchMoved { branch: String },
    #[error("{what} is not supported on {forge} through ferry yet")]
    NotSupported {
        forge: &'static str,
        what: &'static str,
    },
    /// A user or group named in a branch rule that the forge does not know.
    #[error("{forge} has no {kind} `{name}` (named in `{field}`)")]
    NoSuchPrincipal {
        forge: &'static str,
        kind: &'static str,
        name: String,
        field: &'static str,
    },
}

impl ForgeError {
    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ForgeError::GitHub(e) => e.hint(),
            ForgeError::NoRequest(_) => Some("`ferry requests` lists them"),
            _ => None,
        }
    }

    /// Whether trying again later may help (a service unreachable or timed out).
    pub fn is_unavailable(&self) -> bool {
        match self {
            ForgeError::GitHub(github::GitHubError::Unreachable { .. }) => true,
            ForgeError::Rest(
                rest::RestError::Unreachable { .. }
                | rest::RestError::RateLimited { .. }
                | rest::RestError::Refused { status: 500.., .. },
            ) => true,
            ForgeError::Store(StoreError::Unreachable { transient, .. }) => *transient,
            _ => false,
        }
    }
}

/// A forge's errors as user errors.
impl From<ForgeError> for crate::error::Error {
    fn from(err: ForgeError) -> Self {
        use crate::error::Error;
        match err {
            ForgeError::Store(e) => e.into(),
            ForgeError::GitHub(e) => e.into(),
            ForgeError::Rest(e @ rest::RestError::Unreachable { .. }) => {
                Error::unavailable(e.to_string()).hint("check the forge's API URL and the network")
            }
            // A server error or a rate limit held: trying again later may help (exit 3).
            ForgeError::Rest(e @ rest::RestError::RateLimited { .. }) => {
                Error::unavailable(e.to_string()).hint("try again once the rate limit resets")
            }
            ForgeError::Rest(e @ rest::RestError::Refused { status: 500.., .. }) => {
                Error::unavailable(e.to_string())
            }
            ForgeError::Rest(e @ rest::RestError::Refused { status: 401, .. }) => {
                Error::failure(e.to_string()).hint("the token is missing, expired or invalid")
            }
            ForgeError::Rest(e @ rest::RestError::Refused { status: 403 | 404, .. }) => {
                Error::failure(e.to_string()).hint(
                    "check that the token can read and write this repository (code, pull requests, statuses)",
                )
            }
            e @ ForgeError::Retargeted { id, .. } => Error::failure(e.to_string())
                .hint(format!("close it (`ferry close {id}`), then promote again")),
            ForgeError::NoRequest(id) => Error::failure(format!("there is no request #{id}"))
                .hint("`ferry requests` lists them"),
            e @ ForgeError::NoSuchPrincipal { .. } => Error::failure(e.to_string())
                .hint("fix the name in the environment's `protection` (nothing was changed on the forge)"),
            other => Error::failure(other.to_string()),
        }
    }
}

/// The host and path of a remote URL: `https://[user@]HOST[:port]/PATH`, `ssh://[user@]HOST/PATH`,
/// or scp-like `[user@]HOST:PATH`. `None` for a path on this machine.
pub fn host_and_path(url: &str) -> Option<(String, String)> {
    if let Some((scheme, rest)) = url.split_once("://") {
        if scheme == "file" {
            return None;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next()?;
        let host = host.split(':').next()?;
        return (!host.is_empty()).then(|| (host.to_ascii_lowercase(), path.to_owned()));
    }
    // scp-like: no slash before the colon.
    let (before, path) = url.split_once(':')?;
    if before.contains('/') || before.is_empty() {
        return None;
    }
    let host = before.rsplit('@').next()?;
    Some((host.to_ascii_lowercase(), path.to_owned()))
}

/// The host of a URL (`https://api.github.com/…`).
pub fn host_of(url: &str) -> Option<String> {
    url.contains("://")
        .then(|| host_and_path(url))
        .flatten()
        .map(|(host, _)| host)
}

/// The forge a remote URL tells: GitHub for github.com (or GITHUB_API_URL's host), Gitea for
/// codeberg.org (or GITEA_API_URL's host), else the embedded forge.
pub fn detect(url: &str) -> ForgeKind {
    if github::repo_of_remote(url).is_some() {
        return ForgeKind::Github;
    }
    let host = host_and_path(url).map(|(host, _)| host);
    let gitea_api = std::env::var("GITEA_API_URL")
        .ok()
        .and_then(|u| host_of(&u));
    match host {
        Some(host) if host == "codeberg.org" || Some(&host) == gitea_api.as_ref() => {
            ForgeKind::Gitea
        }
        _ => ForgeKind::Local,
    }
}

/// Builds a proposal's commit in `store` on the target's tip, as the embedded forge does, and
/// pushes it to the request branch with git (for a hosted forge whose API cannot set a branch
/// to a given commit). Returns the commit.
pub fn push_request_branch(
    store: &crate::store::Store,
    p: &Proposal<'_>,
) -> Result<Oid, ForgeError> {
    use crate::store::{RefUpdate, UpdateOutcome};
    let git = |e: git2::Error| ForgeError::Store(StoreError::Git(e.message().to_owned()));
    let author = store.signature_as(p.commit.author).map_err(git)?;
    let committer = store.signature_as(p.commit.committer).map_err(git)?;
    let files: Vec<(String, Vec<u8>)> = p
        .commit
        .files
        .iter()
        .map(|(path, text)| (path.clone(), text.clone().into_bytes()))
        .collect();
    let head = store.write_commit(
        Some(p.commit.parent),
        &files,
        p.commit.message,
        &author,
        &committer,
    )?;
    let current = store
        .refs()?
        .get(&format!("refs/heads/{}", p.branch))
        .copied();
    let update = RefUpdate::branch(p.branch, current, head).rewriting();
    match store.update(
        &[update],
        false,
        &format!("ferry promote {} {}", p.from, p.to),
    )? {
        UpdateOutcome::Updated => Ok(head),
        UpdateOutcome::Moved { .. } => Err(ForgeError::BranchMoved {
            branch: p.branch.to_owned(),
        }),
    }
}

/// The forge `kind` names, on `store` (GitHub: `repo`, else the remote's URL).
pub fn open<'s>(
    store: &'s crate::store::Store,
    kind: ForgeKind,
    repo: Option<&str>,
) -> Result<Box<dyn Forge + 's>, crate::error::Error> {
    Ok(match kind {
        ForgeKind::Local => Box::new(local::LocalForge::new(store)),
        ForgeKind::Github => Box::new(github::GitHub::new(&github::repo_of(store, repo)?)?),
        ForgeKind::Gitea => {
            let (repo, api) = gitea::locate(store, repo)?;
            Box::new(gitea::Gitea::new(store, &repo, &api)?)
        }
        ForgeKind::Gitlab => {
            let (project, api) = gitlab::locate(store, repo)?;
            Box::new(gitlab::GitLab::new(store, &project, &api)?)
        }
    })
}

/// A record read from a forge: the value and the version it was read at (the record's commit
/// on the embedded forge), which an update of it swaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<T> {
    pub tip: Oid,
    pub value: T,
}

/// The open request of a promotion, as a forge finds it.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub id: u64,
    /// Where people see it.
    pub url: String,
    /// The record, where the forge keeps ferry's own (not on GitHub).
    pub record: Option<Record<Request>>,
}

/// A commit to write on a forge: files changed on `parent`'s tree.
#[derive(Debug, Clone)]
pub struct NewCommit<'a> {
    pub parent: Oid,
    pub files: &'a [(String, String)],
    pub message: &'a str,
    pub author: &'a str,
    pub committer: &'a str,
    /// What the resulting tree validates as (its parent's environments, new pins): a forge
    /// that writes into the state store remembers it, so later checks of it look at pins only.
    pub valid_as: Option<&'a Summary>,
}

/// What a promotion writes: the proposal commit on the target's tip, and the request that
/// asks for it (opened, or the open one updated in place).
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    pub from: &'a str,
    pub to: &'a str,
    /// The request branch.
    pub branch: &'a str,
    /// The target's branch and the commit the proposal is built on.
    pub base_branch: &'a str,
    pub commit: NewCommit<'a>,
    /// The tree of `commit.parent` (what the files change, for a forge that writes through
    /// an API).
    pub parent_tree: Oid,
    /// Whether the request branch exists already (from the ref advertisement).
    pub branch_exists: bool,
    /// The source commit promoted.
    pub source: Oid,
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
    pub moves: &'a [RequestedMove],
    pub rollback: bool,
    /// Who asks, and when (Unix seconds).
    pub author: &'a str,
    pub at: i64,
}

/// A request as opened or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: u64,
    pub url: String,
    /// Whether an open request was updated (rather than a new one opened).
    pub updated: bool,
    pub title: String,
    /// The proposal commit, where the forge's commits are the store's (not on GitHub).
    pub head: Option<Oid>,
}

/// Why a request is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Someone closed it (`ferry close`).
    ByHand,
    /// Promoting again found nothing left to promote.
    NothingToPromote,
}

/// An approval as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub request: Request,
    /// The person had approved this head already: nothing changed.
    pub already: bool,
    /// Whether `request.approvals` holds every approval (the embedded forge), or only this one
    /// (a hosted forge, where listing the others would cost another call).
    pub complete: bool,
}

/// How a hosted forge lands a request: as GitHub's `merge_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MergeMethod {
    /// A merge commit whose second parent is the request's head.
    #[default]
    Merge,
    /// One new commit on the target with the head's tree.
    Squash,
    /// The head's commits replayed on the target.
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// Who pushed, as a forge logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `None`: the transport named nobody.
    pub pusher: Option<String>,
    /// For a push to a path, the operating system's login.
    pub login: Option<String>,
}

/// One logged move of a branch: from `before` (zero: created) to `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPush {
    pub before: Oid,
    pub after: Oid,
    pub by: Pushed,
}

/// A forge's log of who moved a branch.
#[derive(Debug, Clone, Default)]
pub struct Pushes {
    /// Whether the forge keeps a log at all (the embedded forge: its hook was installed).
    pub kept: bool,
    /// Oldest first.
    pub pushes: Vec<LoggedPush>,
}

/// A merge: the target branch moves from `target_tip` to the request's head (or to `rebuild`,
/// the same change rebuilt on a target that moved without changing it), and the request is
/// recorded merged, together.
#[derive(Debug, Clone)]
pub struct Merge<'a> {
    pub request: &'a Record<Request>,
    pub target_branch: &'a str,
    pub target_tip: Oid,
    pub rebuild: Option<NewCommit<'a>>,
    pub by: &'a str,
    pub at: i64,
    /// How a hosted forge lands it (the embedded forge lands the head, one commit on the
    /// target's tip, whatever the method).
    pub method: MergeMethod,
}

/// A forge: requests, approvals, merges, statuses and branch protection.
///
/// Commits are named by [`Oid`]; who acts is a name (the caller decides who that is) and when
/// is Unix seconds, so a forge reads no clock and no environment of its own.
pub trait Forge {
    fn kind(&self) -> ForgeKind;

    /// The open request promoting `from` into `to` (whose branch is `to_branch`), if any.
    fn open_request(
        &self,
        from: &str,
        to: &str,
        to_branch: &str,
    ) -> Result<Option<OpenRequest>, ForgeError>;

    /// Writes the proposal and opens its request, or updates `open` in place.
    fn publish(
        &self,
        proposal: &Proposal<'_>,
        open: Option<&OpenRequest>,
    ) -> Result<Published, ForgeError>;

    /// Every request, by id.
    fn requests(&self) -> Result<Vec<Record<Request>>, ForgeError>;

    /// The open requests, by id (a hosted forge lists only those).
    fn open_requests(&self) -> Result<Vec<Record<Request>>, ForgeError> {
        let mut requests = self.requests()?;
        requests.retain(|r| r.value.state == RequestState::Open);
        Ok(requests)
    }

    /// Who the forge knows the caller as: a hosted forge's token's user. `None`: the forge
    /// takes the caller's word (the embedded forge, whose hook checks the pusher).
    fn user(&self) -> Result<Option<String>, ForgeError> {
        Ok(None)
    }

    /// The request merged into `env` as `commit` (the commit its merge put on the branch), if
    /// any, with its approvals.
    fn landed(&self, env: &str, commit: Oid) -> Result<Option<Request>, ForgeError>;

    /// `commit`'s statuses as they stood at `when` (Unix seconds): each check's latest report
    /// then.
    fn statuses_at(&self, commit: Oid, when: i64) -> Result<Statuses, ForgeError>;

    /// Who moved `branch`, and from what to what, as the forge logged it; from `since` (Unix
    /// seconds) on when given (a forge whose log is long may stop reading there).
    fn pushes(&self, branch: &str, since: Option<i64>) -> Result<Pushes, ForgeError>;

    fn request(&self, id: u64) -> Result<Record<Request>, ForgeError>;

    /// Records `by`'s approval of request `id`'s current head. Authors cannot approve their own.
    fn approve(&self, id: u64, by: &str, at: i64) -> Result<Approved, ForgeError>;

    /// Lands a request (see [`Merge`]); returns the target's new commit.
    fn merge(&self, merge: &Merge<'_>) -> Result<Oid, ForgeError>;

    /// Closes an open request without merging it.
    fn close(&self, id: u64, by: &str, at: i64, reason: CloseReason) -> Result<(), ForgeError>;

    /// The latest status of each check on `commit`.
    fn statuses(&self, commit: Oid) -> Result<Statuses, ForgeError>;

    /// Reports `check` on `commit` (the latest report of a check wins).
    fn set_status(&self, commit: Oid, check: &str, status: &Status) -> Result<(), ForgeError>;

    /// Sets the statuses `change` makes of `commit`'s current ones (nothing when it returns
    /// none), as one compare-and-swap where the forge has one (the embedded forge: `change`
    /// runs again on the statuses of whoever wrote first), so that a status computed from
    /// others, such as an environment's aggregate, is never written over statuses it did not
    /// see. A hosted forge reads, then writes each. Returns the statuses as written.
    fn update_statuses(
        &self,
        commit: Oid,
        change: &dyn Fn(&Statuses) -> Vec<(String, Status)>,
    ) -> Result<Statuses, ForgeError> {
        let mut statuses = self.statuses(commit)?;
        for (check, status) in change(&statuses) {
            self.set_status(commit, &check, &status)?;
            statuses.insert(check, status);
        }
        Ok(statuses)
    }

    /// The organization or user whose teams branch rules may name, if the forge has teams.
    fn owner(&self) -> Option<&str> {
        None
    }

    /// `branch`'s protection on the forge; `None` when it is not protected.
    fn protection(&self, branch: &str) -> Result<Option<Rules>, ForgeError>;

    /// Sets `branch`'s protection to `rules` (all of it).
    fn apply_protection(&self, branch: &str, rules: &Rules) -> Result<(), ForgeError>;

    /// `declared` (for `branch`) as the forge can hold it (a rule it has no field for, or
    /// whose field its plan lacks, dropped), and a note on each rule dropped. A forge whose
    /// plan decides it asks (GitLab), and checks that the people named exist: called for every
    /// environment before any is applied.
    fn holdable(&self, branch: &str, declared: &Rules) -> Result<(Rules, Vec<String>), ForgeError> {
        let _ = branch;
        Ok((declared.clone(), Vec::new()))
    }
}

/// The rules every forge that keeps ferry's own records applies to an approval: the request
/// must be open, and not its approver's own; approving a head twice changes nothing. Returns
/// whether it was approved already.
pub fn approve_record(request: &mut Request, by: &str, at: i64) -> Result<bool, ForgeError> {
    approvable(request, by)?;
    if request
        .approvals
        .iter()
        .any(|a| a.by == by && a.head == request.head)
    {
        return Ok(true);
    }
    request.approvals.push(Approval {
        by: by.to_owned(),
        at,
        head: request.head.clone(),
    });
    Ok(false)
}

/// Whether `by` may approve `request`, as every forge checks before it writes an approval:
/// it must be open, and neither opened by `by` nor its current head proposed by `by`.
pub fn approvable(request: &Request, by: &str) -> Result<(), ForgeError> {
    if request.state != RequestState::Open {
        return Err(ForgeError::NotOpen {
            id: request.id,
            state: request.state,
        });
    }
    if request.author == by {
        return Err(ForgeError::OwnRequest {
            id: request.id,
            who: by.to_owned(),
        });
    }
    if request.proposed_by.as_deref() == Some(by) {
        return Err(ForgeError::OwnProposal {
            id: request.id,
            who: by.to_owned(),
        });
    }
    Ok(())
}

/// A hosted forge's approval: `request` with the approvals its answer shows (else `by`'s of
/// its head, as asked), the only ones known (listing the others would cost another call).
pub fn approved_on_forge(
    mut request: Request,
    answered: Vec<Approval>,
    by: &str,
    at: i64,
) -> Approved {
    request.approvals = answered;
    if request.approvals.is_empty() {
        request.approvals.push(Approval {
            by: by.to_owned(),
            at,
            head: request.head.clone(),
        });
    }
    Approved {
        request,
        already: false,
        complete: false,
    }
}

/// Closes an open request's record; the event to record.
pub fn close_record(
    request: &mut Request,
    by: &str,
    at: i64,
    reason: CloseReason,
) -> Result<String, ForgeError> {
    if request.state != RequestState::Open {
        return Err(ForgeError::NotOpen {
            id: request.id,
            state: request.state,
        });
    }
    request.state = RequestState::Closed;
    request.closed_by = Some(by.to_owned());
    request.closed_at = Some(at);
    Ok(match reason {
        CloseReason::ByHand => format!("request #{} closed by {by}", request.id),
        CloseReason::NothingToPromote => {
            format!("request #{} closed: nothing left to promote", request.id)
        }
    })
}

/// A proposal's request as first recorded (id 0: the forge gives it one), or `open`'s updated.
pub fn proposed_record(proposal: &Proposal<'_>, head: Oid, open: Option<&Request>) -> Request {
    match open {
        Some(open) => {
            let mut request = open.clone();
            request.title = proposal.title.to_owned();
            request.body = proposal.body.to_owned();
            request.base = proposal.commit.parent.to_string();
            request.head = head.to_string();
            request.source = proposal.source.to_string();
            request.rollback = proposal.rollback;
            request.moves = proposal.moves.to_vec();
            request.updated_at = proposal.at;
            // Someone other than its author promoting again proposes the new head: they may
            // not approve it.
            request.proposed_by =
                (proposal.author != request.author).then(|| proposal.author.to_owned());
            request
        }
        None => Request {
            id: 0,
            from: proposal.from.to_owned(),
            to: proposal.to.to_owned(),
            branch: proposal.branch.to_owned(),
            state: RequestState::Open,
            title: proposal.title.to_owned(),
            body: proposal.body.to_owned(),
            labels: proposal.labels.to_vec(),
            author: proposal.author.to_owned(),
            created_at: proposal.at,
            updated_at: proposal.at,
            base: proposal.commit.parent.to_string(),
            head: head.to_string(),
            source: proposal.source.to_string(),
            rollback: proposal.rollback,
            moves: proposal.moves.to_vec(),
            approvals: Vec::new(),
            merged_by: None,
            merged_at: None,
            merge_commit: None,
            closed_by: None,
            closed_at: None,
            url: None,
            mergeable: None,
            into: None,
            proposed_by: None,
        },
    }
}

/// The request merged as `merge` says, into `commit`.
pub fn merged_record(merge: &Merge<'_>, commit: Oid) -> Request {
    let mut merged = merge.request.value.clone();
    merged.state = RequestState::Merged;
    merged.merged_by = Some(merge.by.to_owned());
    merged.merged_at = Some(merge.at);
    merged.merge_commit = Some(commit.to_string());
    merged
}

/// A promotion request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Open,
    Merged,
    Closed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::Merged => "merged",
            RequestState::Closed => "closed",
        }
    }
}

/// One pin a request moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedMove {
    pub app: String,
    /// The target's version before (`None`: new to the target).
    pub from: Option<String>,
    pub to: String,
    pub kind: Kind,
    /// The exact pin the target takes.
    pub pin: Artifact,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    /// Unix seconds.
    pub at: i64,
    /// The request's head commit when approved.
    pub head: String,
}

/// The branch of the promotion request `from` → `to`.
pub fn request_branch(from: &str, to: &str) -> String {
    format!("ferry/promote/{from}-to-{to}")
}

/// A promotion request: `from` → `to`, on its own branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub from: String,
    pub to: String,
    /// The branch holding the proposed state of `to`.
    pub branch: String,
    pub state: RequestState,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The commit of `to` the proposal is built on.
    pub base: String,
    /// The proposed commit of `to`.
    pub head: String,
    /// The commit of `from` being promoted.
    pub source: String,
    pub rollback: bool,
    pub moves: Vec<RequestedMove>,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
    /// Where people see it, on a hosted forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether a hosted forge says it can merge it (`None`: not said, or not computed yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mergeable: Option<bool>,
    /// The branch a hosted forge's pull request merges into (its base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// Who proposed the current head, when not its author (someone else promoted again): they
    /// may not approve it either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_by: Option<String>,
}

impl Request {
    /// The distinct people, other than the author and whoever proposed the current head, who
    /// approved the current head (or any head, unless stale approvals are dismissed).
    pub fn approvers(&self, dismiss_stale: bool) -> Vec<&str> {
        let mut people: Vec<&str> = self
            .approvals
            .iter()
            .filter(|a| a.by != self.author && Some(&a.by) != self.proposed_by.as_ref())
            .filter(|a| !dismiss_stale || a.head == self.head)
            .map(|a| a.by.as_str())
            .collect();
        people.sort_unstable();
        people.dedup();
        people
    }
}

/// A commit status state, as GitHub has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Error => "error",
        }
    }
}

/// The latest report of one check on one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: CheckState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub by: String,
    /// Unix seconds.
    pub at: i64,
    /// A host's deploy status (`ferry/deploy/ENV/HOST`): where each app of the host is in the
    /// rollout. The embedded forge keeps it; a hosted forge keeps the description only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apps: BTreeMap<String, AppStatus>,
}

impl Status {
    /// A status with nothing but its state and description.
    pub fn new(
        state: CheckState,
        description: impl Into<String>,
        by: impl Into<String>,
        at: i64,
    ) -> Status {
        Status {
            state,
            description: description.into(),
            url: None,
            by: by.into(),
            at,
            apps: BTreeMap::new(),
        }
    }
}

/// Where one app of a host is in the rollout of the commit its host's status is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStatus {
    pub state: RolloutState,
    /// The version it runs (the pinned one once deployed; the one it keeps while waiting).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Its host's wave and the number of waves, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<(usize, usize)>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Unix seconds: since when it is in this state.
    pub since: i64,
}

/// An app's place in a rollout on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Its wave is open; not deployed yet (unreachable artifact server, a retry).
    Pending,
    /// Its wave is not open: it keeps its release.
    Waiting,
    Deployed,
    /// Nothing of the new version runs (a refused digest, a first deploy that failed).
    Failed,
    /// The new version failed its activation or health check: the previous one runs again.
    RolledBack,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Pending => "pending",
            RolloutState::Waiting => "waiting",
            RolloutState::Deployed => "deployed",
            RolloutState::Failed => "failed",
            RolloutState::RolledBack => "rolled back",
        }
    }

    /// Failed or rolled back: counts toward the rollout's `max_failures`.
    pub fn is_failure(self) -> bool {
        matches!(self, RolloutState::Failed | RolloutState::RolledBack)
    }
}

/// The longest description a status record keeps (the repository's hook refuses longer ones;
/// GitHub keeps 140 characters).
pub const MAX_DESCRIPTION: usize = 1024;

/// `description` within [`MAX_DESCRIPTION`] characters, cut with a marker.
pub fn fit_description(description: &str) -> String {
    if description.chars().count() <= MAX_DESCRIPTION {
        return description.to_owned();
    }
    let mut cut: String = description.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

/// The statuses of one commit, by check name.
pub type Statuses = BTreeMap<String, Status>;

/// The checks of `required` that are not green in `statuses`.
pub fn missing_checks<'a>(required: &'a [String], statuses: &Statuses) -> Vec<&'a str> {
    required
        .iter()
        .filter(|c| statuses.get(*c).map(|s| s.state) != Some(CheckState::Success))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_fit_the_record_with_a_marker() {
        assert_eq!(super::fit_description("ok"), "ok");
        let long = "é".repeat(super::MAX_DESCRIPTION + 10);
        let fit = super::fit_description(&long);
        assert_eq!(fit.chars().count(), super::MAX_DESCRIPTION);
        assert!(fit.ends_with('…'));
    }

    use super::*;

    #[test]
    fn hosts_and_paths_of_remote_urls() {
        let hp = |url: &str| host_and_path(url).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(
            hp("https://github.com/acme/deploy.git").as_deref(),
            Some("github.com acme/deploy.git")
        );
        assert_eq!(
            hp("https://x:tok@GitHub.com:443/acme/deploy").as_deref(),
            Some("github.com acme/deploy")
        );
        assert_eq!(
            hp("ssh://git@github.com/acme/deploy").as_deref(),
            Some("github.com acme/deploy")
        );
        assert_eq!(
            hp("git@github.com:acme/deploy.git").as_deref(),
            Some("github.com acme/deploy.git")
        );
        assert_eq!(hp("/srv/git/deploy.git"), None);
        assert_eq!(hp("./deploy:x"), None);
        assert_eq!(hp("file:///srv/deploy.git"), None);
        assert_eq!(
            host_of("https://ghe.example.com/api/v3").as_deref(),
            Some("ghe.example.com")
        );
        assert_eq!(detect("/srv/git/deploy.git"), ForgeKind::Local);
        assert_eq!(detect("https://github.com/acme/deploy"), ForgeKind::Github);
        assert_eq!(detect("http://127.0.0.1:8080/deploy.git"), ForgeKind::Local);
    }

    #[test]
    fn check_names_are_one_line_of_a_sane_charset() {
        for ok in [
            "ci/test",
            "ferry/deploy/staging",
            "a",
            "build:lint",
            "x.y_z-1",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_name(&"a".repeat(128)), Ok(()));
        let refused = |name: &str| check_name(name).expect_err(name).to_string();
        assert!(refused("ci/test\nferry/deploy/prod: success").contains("contains '\\n'"));
        assert!(refused("").contains("empty"));
        assert!(refused(&"a".repeat(129)).contains("longer than 128"));
        assert!(refused("/ci").contains("starts with '/'"));
        assert!(refused("ci test").contains("contains ' '"));
        assert!(refused("ci\u{202e}test").contains("contains"));
    }
}
