//! What `promote` and `merge` share: the history the gates read (how long each pin has been
//! in the source), the changelog, the promotion commit, and the request's title and body.

use std::collections::{BTreeMap, BTreeSet};

use git2::Oid;
use serde::Serialize;

use crate::cmd::shared::{Loaded, Manifests, branch_of, invalid_state, short, signature_as};
use crate::error::{Error, Result};
use crate::forge::{RequestedMove, Statuses};
use crate::json::Document;
use crate::model::{Artifact, Pin};
use crate::plan::promote::{GateResult, Move};
use crate::plan::{edit, promote};
use crate::render;
use crate::store::Store;
use crate::validate::{self, MANIFEST};
use crate::verdict::Summary;

/// GitHub's limits, which the embedded forge keeps too.
pub const TITLE_LIMIT: usize = 255;
pub const BODY_LIMIT: usize = 65_536;

/// The request branch of a promotion.
pub fn request_branch(from: &str, to: &str) -> String {
    crate::forge::request_branch(from, to)
}

fn git(e: git2::Error) -> Error {
    Error::failure(format!("git: {}", e.message()))
}

/// Since when (Unix seconds, committer time) each moving pin has been on the source branch
/// without interruption, walking its first-parent history back from `tip`.
pub fn soak_since(store: &Store, tip: Oid, moves: &[Move]) -> Result<BTreeMap<String, i64>> {
    let mut open: BTreeMap<&str, &Artifact> = moves
        .iter()
        .map(|m| (m.app.as_str(), &m.promoted))
        .collect();
    let mut since = BTreeMap::new();
    let mut manifests = Manifests::new(store);
    for id in store.first_parents(tip)? {
        if open.is_empty() {
            break;
        }
        let commit = store.repo().find_commit(id).map_err(git)?;
        let manifest = manifests.at_blob(Manifests::blob_of(&commit)?);
        let time = commit.committer().when().seconds();
        open.retain(|app, pin| {
            let here = manifest.as_ref().and_then(|m| m.artifacts.get(*app)) == Some(*pin);
            if here {
                since.insert((*app).to_owned(), time);
            }
            here
        });
    }
    Ok(since)
}

/// The state of each check in `statuses`, as the gates read them: a deploy of ENV
/// (`ferry/deploy/ENV`) counts only when reported by one of ENV's `agent.reporters` as ENV's
/// own branch declares them (when it lists any), never as the commit reported on says; when no
/// one branch holds ENV, none counts.
pub fn trusted_checks(store: &Store, statuses: Statuses) -> Result<BTreeMap<String, String>> {
    let mut checks = BTreeMap::new();
    for (check, status) in statuses {
        if let Some(env) = check.strip_prefix("ferry/deploy/") {
            let reporters = match branch_of(store, env) {
                Ok(branch) => {
                    let tip = store.tip(&branch, crate::store::History::Tip)?;
                    store
                        .read_file(tip, &format!("{}/{env}.json", validate::ENVIRONMENTS_DIR))?
                        .and_then(|bytes| {
                            serde_json::from_slice::<crate::model::Environment>(&bytes).ok()
                        })
                        .map(|e| e.agent.reporters)
                        .unwrap_or_default()
                }
                // No single branch holds ENV (none, or two claim it): nobody is known to
                // report its deploys, so no report of them counts.
                Err(_) => continue,
            };
            if !reporters.is_empty() && !reporters.contains(&status.by) {
                continue;
            }
        }
        checks.insert(check, status.state.as_str().to_owned());
    }
    Ok(checks)
}

#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub version: String,
    pub subject: String,
    pub author: String,
    pub date: String,
    pub commit: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppLog {
    pub app: String,
    pub entries: Vec<LogEntry>,
}

/// Per moving app, the source's commits that brought it from the target's version to the
/// promoted one: bumps (`Ferry-App`/`Ferry-Version` trailers) and promotions into the source
/// (`Ferry-Moves`), newest first.
pub fn changelog(store: &Store, source: Oid, moves: &[Move]) -> Result<Vec<AppLog>> {
    let mut logs: BTreeMap<&str, Vec<LogEntry>> =
        moves.iter().map(|m| (m.app.as_str(), Vec::new())).collect();
    let stop_at: BTreeMap<&str, Option<String>> = moves
        .iter()
        .map(|m| {
            (
                m.app.as_str(),
                m.current.as_ref().map(Artifact::shown_version),
            )
        })
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for id in store.first_parents(source)?.into_iter().take(5_000) {
        if done.len() == logs.len() {
            break;
        }
        let commit = store.repo().find_commit(id).map_err(git)?;
        let message = commit.message().unwrap_or_default();
        let Ok(trailers) = git2::message_trailers_strs(message) else {
            continue;
        };
        let mut touched: Vec<(String, String)> = Vec::new();
        let mut app = None;
        for (key, value) in trailers.iter() {
            match key {
                "Ferry-App" => app = Some(value.to_owned()),
                "Ferry-Version" => {
                    if let Some(a) = app.take() {
                        touched.push((a, value.to_owned()));
                    }
                }
                "Ferry-Moves" => {
                    // `web 2.0.0 -> 2.1.0`
                    let mut parts = value.split_whitespace();
                    if let (Some(a), Some(to)) = (parts.next(), parts.last()) {
                        touched.push((a.to_owned(), to.to_owned()));
                    }
                }
                _ => {}
            }
        }
        for (app, version) in touched {
            let Some((key, entries)) = logs.iter_mut().find(|(k, _)| **k == app) else {
                continue;
            };
            if done.contains(key) {
                continue;
            }
            if stop_at.get(key).cloned().flatten().as_deref() == Some(version.as_str()) {
                done.insert(key);
                continue;
            }
            entries.push(LogEntry {
                version,
                subject: commit
                    .summary()
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .to_owned(),
                author: commit.author().name().unwrap_or("?").to_owned(),
                date: crate::output::abbrev(
                    &promote::timestamp(commit.committer().when().seconds()),
                    10,
                )
                .to_owned(),
                commit: short(id),
            });
        }
    }
    Ok(logs
        .into_iter()
        .map(|(app, entries)| AppLog {
            app: app.to_owned(),
            entries,
        })
        .collect())
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
/// message, after validating the whole resulting state. `route` is (from, to).
pub fn proposal(
    target: &Loaded,
    route: (&str, &str),
    moves: &[Move],
    subject: &str,
) -> Result<(String, String)> {
    let (from, to) = route;
    let to_branch = &target.branch;
    let text = target
        .files
        .get(MANIFEST)
        .ok_or_else(|| Error::failure(format!("branch `{to_branch}` has no `{MANIFEST}`")))?;
    let doc = Document::parse(text.to_vec()).map_err(|e| {
        Error::failure(format!(
            "`{to_branch}:{MANIFEST}` is not valid JSON: {}",
            e.message
        ))
    })?;
    let pins: Vec<(String, Pin)> = moves
        .iter()
        .filter_map(|m| m.promoted.pin().map(|p| (m.app.clone(), p.clone())))
        .collect();
    if pins.len() != moves.len() {
        return Err(Error::failure("a bare file-name pin cannot be promoted")
            .hint("pin the app with `ferry bump` (version, URL and digest) in the source first"));
    }
    let refs: Vec<(&str, &Pin)> = pins.iter().map(|(a, p)| (a.as_str(), p)).collect();
    let new_text = edit::set_pins(&doc, &refs).ok_or_else(|| {
        Error::failure(format!(
            "`{to_branch}:{MANIFEST}` has no `artifacts` object"
        ))
    })?;
    // The target's state is valid (it was loaded so). When every moved app is pinned there
    // already, the result differs from it by pins only: valid when the new pins are (see
    // `validate::artifacts_are_valid`). Otherwise, and to explain a refusal, the whole state.
    let promoted: Vec<(String, Artifact)> = pins
        .iter()
        .map(|(app, pin)| (app.clone(), Artifact::Pinned(pin.clone())))
        .collect();
    let repins_only = moves.iter().all(|m| m.current.is_some())
        && validate::artifacts_are_valid(promoted.iter().map(|(a, p)| (a.as_str(), p)));
    if !repins_only {
        let after = target
            .files
            .clone()
            .with_file(MANIFEST, new_text.clone().into_bytes());
        let checked = validate::check(&after);
        if checked.state.is_none() {
            return Err(invalid_state(
                &checked.report,
                &format!("the promotion would leave `{to_branch}` invalid"),
            ));
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

/// The [`proposal`] as a commit on the target's tip, in the store: authored by whoever
/// requested the promotion, committed by whoever lands it (the same person when it is built
/// for review).
pub fn build_commit(
    store: &Store,
    target: &Loaded,
    route: (&str, &str),
    moves: &[Move],
    subject: &str,
    people: (&str, &str),
) -> Result<Oid> {
    let (text, message) = proposal(target, route, moves, subject)?;
    let (author, committer) = (
        signature_as(store, people.0)?,
        signature_as(store, people.1)?,
    );
    let commit = store.write_commit(
        Some(target.tip),
        &[(MANIFEST.to_owned(), text.into_bytes())],
        &message,
        &author,
        &committer,
    )?;
    // Valid, with the target's environments: the merge, and bumps on it, check only pins.
    store
        .verdicts()
        .record(store.tree_of(commit)?, &Summary::of(&target.state));
    Ok(commit)
}

#[derive(Serialize)]
struct MoveRow {
    app: String,
    current: Option<String>,
    version: String,
    kind: &'static str,
    digest: String,
}

#[derive(Serialize)]
struct GateRow<'a> {
    passed: bool,
    gate: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct BodyData<'a> {
    from: &'a str,
    to: &'a str,
    source: String,
    base: String,
    rollback: bool,
    count: usize,
    plural: bool,
    moves: &'a [MoveRow],
    changelog: &'a [AppLog],
    truncated: bool,
    gates: &'a [GateRow<'a>],
    machine: &'a str,
}

/// Renders the request's title and body, with the target branch's own templates when it has
/// them. The body keeps within [`BODY_LIMIT`] by cutting the changelog (never the table),
/// and says so; the title within [`TITLE_LIMIT`].
#[allow(clippy::too_many_arguments)]
pub fn render_request(
    store: &Store,
    to_branch: &str,
    to_tip: Oid,
    from: &str,
    to: &str,
    source: Oid,
    moves: &[Move],
    rollback: bool,
    gates: &[GateResult],
    changelog: Vec<AppLog>,
) -> Result<(String, String)> {
    let template = |t: render::Template| -> Result<Option<(String, String)>> {
        let path = format!("templates/{}", t.file);
        Ok(store.read_file(to_tip, &path)?.map(|bytes| {
            (
                String::from_utf8_lossy(&bytes).into_owned(),
                format!("{to_branch}:{path}"),
            )
        }))
    };
    let title_template = template(render::PROMOTION_TITLE)?;
    let body_template = template(render::PROMOTION_BODY)?;
    let rows: Vec<MoveRow> = moves
        .iter()
        .map(|m| MoveRow {
            app: m.app.clone(),
            current: m.current.as_ref().map(Artifact::shown_version),
            version: m.version(),
            kind: m.kind.as_str(),
            digest: m
                .promoted
                .pin()
                .map(|p| crate::output::abbrev(&p.sha256, 12).to_owned())
                .unwrap_or_default(),
        })
        .collect();
    // The block for bots, from most to least detailed: the full pins; the moves without
    // pins; a summary whose moves are in the head commit's `Ferry-Moves` trailers.
    let summary = serde_json::json!({
        "from": from,
        "to": to,
        "source": source.to_string(),
        "base": to_tip.to_string(),
        "rollback": rollback,
    });
    let machines: Vec<String> = {
        let mut full = summary.clone();
        full["moves"] = serde_json::to_value(requested(moves)).expect("JSON");
        let mut compact = summary.clone();
        compact["moves"] = moves
            .iter()
            .map(|m| {
                serde_json::json!({
                    "app": m.app,
                    "from": m.current.as_ref().map(Artifact::shown_version),
                    "to": m.version(),
                    "kind": m.kind,
                })
            })
            .collect();
        let mut least = summary;
        least["moves"] = serde_json::json!("in the Ferry-Moves trailers of the head commit");
        // Inside the HTML comment that carries it, no string may close the comment: `>` is
        // written as JSON's `\u003e` (the same JSON once parsed).
        [
            serde_json::to_string_pretty(&full).expect("JSON"),
            serde_json::to_string(&compact).expect("JSON"),
            serde_json::to_string(&least).expect("JSON"),
        ]
        .map(|json| json.replace('>', "\\u003e"))
        .to_vec()
    };
    let render_err = |e: render::RenderError| {
        Error::failure(e.to_string())
            .hint("fix the template on the target branch, or remove it to use ferry's")
    };
    #[derive(Serialize)]
    struct TitleData<'a> {
        from: &'a str,
        to: &'a str,
        rollback: bool,
        moves: &'a [MoveRow],
    }
    let title = render::render(
        render::PROMOTION_TITLE,
        title_template
            .as_ref()
            .map(|(t, o)| (t.as_str(), o.as_str())),
        &TitleData {
            from,
            to,
            rollback,
            moves: &rows,
        },
    )
    .map_err(render_err)?;
    let title = truncate_title(title.lines().next().unwrap_or_default());

    // Cut the changelog first (halving it, then dropping the apps it has nothing left for),
    // then the bot block's detail; never the table. A longer changelog never makes a shorter
    // body, so when the body does not fit without any changelog, halving it is skipped.
    let body_template = render::compile(
        render::PROMOTION_BODY,
        body_template
            .as_ref()
            .map(|(t, o)| (t.as_str(), o.as_str())),
    )
    .map_err(render_err)?;
    let gates: Vec<GateRow<'_>> = gates
        .iter()
        .map(|g| GateRow {
            passed: g.passed,
            gate: g.gate.as_str(),
            message: &g.message,
        })
        .collect();
    let render_body = |changelog: &[AppLog], truncated: bool, machine: &str| -> Result<String> {
        let data = BodyData {
            from,
            to,
            source: source.to_string(),
            base: to_tip.to_string(),
            rollback,
            count: moves.len(),
            plural: moves.len() != 1,
            moves: &rows,
            changelog,
            truncated,
            gates: &gates,
            machine,
        };
        body_template.render(&data).map_err(render_err)
    };
    let fits = |body: &String| body.len() <= BODY_LIMIT;
    let body = render_body(&changelog, false, &machines[0])?;
    if fits(&body) {
        return Ok((title, body));
    }
    let bare = render_body(&[], true, &machines[0])?;
    if fits(&bare) {
        let total: usize = changelog.iter().map(|l| l.entries.len()).sum();
        let mut keep = total / 2;
        while keep > 0 {
            let mut cut = changelog.clone();
            cut_changelog(&mut cut, keep);
            cut.retain(|log| !log.entries.is_empty());
            let body = render_body(&cut, true, &machines[0])?;
            if fits(&body) {
                return Ok((title, body));
            }
            keep /= 2;
        }
        return Ok((title, bare));
    }
    let mut last = bare;
    for machine in &machines[1..] {
        last = render_body(&[], true, machine)?;
        if fits(&last) {
            return Ok((title, last));
        }
    }
    Err(Error::failure(format!(
        "the request's table alone is {} bytes, over the {BODY_LIMIT}-byte limit",
        last.len()
    ))
    .hint("promote fewer apps at once with `--apps`"))
}

/// Keeps the newest `keep` changelog entries in all, spread over the apps in turn.
fn cut_changelog(changelog: &mut [AppLog], keep: usize) {
    let mut quota = vec![0usize; changelog.len()];
    let mut left = keep;
    while left > 0 {
        let mut gave = false;
        for (i, log) in changelog.iter().enumerate() {
            if left > 0 && quota[i] < log.entries.len() {
                quota[i] += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }
    for (log, q) in changelog.iter_mut().zip(quota) {
        log.entries.truncate(q);
    }
}

fn truncate_title(title: &str) -> String {
    if title.chars().count() <= TITLE_LIMIT {
        return title.to_owned();
    }
    let mut cut: String = title.chars().take(TITLE_LIMIT - 1).collect();
    if let Some(i) = cut.rfind(", ") {
        cut.truncate(i);
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_stay_within_the_limit_at_an_app_boundary() {
        let long = format!(
            "Promote dev → staging: {}",
            (0..100)
                .map(|i| format!("app{i} 1.0.{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let t = truncate_title(&long);
        assert!(t.chars().count() <= TITLE_LIMIT);
        assert!(t.ends_with('…'));
        assert!(!t.contains(", …"));
        assert_eq!(truncate_title("short"), "short");
    }

    #[test]
    fn the_changelog_is_cut_fairly() {
        let entry = || LogEntry {
            version: "1".into(),
            subject: "s".into(),
            author: "a".into(),
            date: "d".into(),
            commit: "c".into(),
        };
        let mut logs = vec![
            AppLog {
                app: "a".into(),
                entries: vec![entry(); 10],
            },
            AppLog {
                app: "b".into(),
                entries: vec![entry(); 1],
            },
            AppLog {
                app: "c".into(),
                entries: vec![entry(); 10],
            },
        ];
        cut_changelog(&mut logs, 7);
        let lens: Vec<usize> = logs.iter().map(|l| l.entries.len()).collect();
        assert_eq!(lens, [3, 1, 3]);
    }
}
