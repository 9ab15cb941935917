//! A promotion request's title and body, from ferry's templates or the target branch's own.
//!
//! The body keeps within [`BODY_LIMIT`] by cutting the changelog (never the table), then the
//! detail of the block for bots, and says so; the title within [`TITLE_LIMIT`]. With ferry's
//! own templates (the usual case) the texts are written here directly, byte for byte what
//! handlebars makes of `templates/promotion-*.hbs` (a unit test holds the two together), so a
//! body of 1,000 rows costs string appends, not a template engine's walk per row and per
//! attempt at fitting; a repository's own templates go through handlebars, compiled once.

use std::fmt::Write as _;

use serde::Serialize;

use super::history::AppLog;
use crate::model::Artifact;
use crate::plan::promote::{GateResult, Move};
use crate::render::{self, RenderError, markdown_escape};

/// GitHub's limits, which the embedded forge keeps too.
pub const TITLE_LIMIT: usize = 255;
pub const BODY_LIMIT: usize = 65_536;

/// A repository's own template: its text and where it was read (`staging:templates/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub text: String,
    pub origin: String,
}

/// The templates the target branch overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    pub title: Option<Override>,
    pub body: Option<Override>,
}

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the request's table alone is {size} bytes, over the {BODY_LIMIT}-byte limit")]
    TooLarge { size: usize },
}

/// What the texts say.
pub struct Facts<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub source: &'a str,
    pub base: &'a str,
    pub rollback: bool,
    pub moves: &'a [Move],
    pub gates: &'a [GateResult],
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
    source: &'a str,
    base: &'a str,
    rollback: bool,
    count: usize,
    plural: bool,
    moves: &'a [MoveRow],
    changelog: &'a [AppLog],
    truncated: bool,
    gates: &'a [GateRow<'a>],
    machine: &'a str,
}

#[derive(Serialize)]
struct TitleData<'a> {
    from: &'a str,
    to: &'a str,
    rollback: bool,
    moves: &'a [MoveRow],
}

fn rows(moves: &[Move]) -> Vec<MoveRow> {
    moves
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
        .collect()
}

/// The request's title and body.
pub fn render(
    facts: &Facts<'_>,
    changelog: Vec<AppLog>,
    templates: &Templates,
) -> Result<(String, String), TextError> {
    let rows = rows(facts.moves);
    let title = match &templates.title {
        None => default_title(facts, &rows),
        Some(own) => render::render(
            render::PROMOTION_TITLE,
            Some((own.text.as_str(), own.origin.as_str())),
            &TitleData {
                from: facts.from,
                to: facts.to,
                rollback: facts.rollback,
                moves: &rows,
            },
        )?,
    };
    let title = truncate_title(title.lines().next().unwrap_or_default());
    let machines = Machines::new(facts);
    let body = match &templates.body {
        None => {
            let body = DefaultBody::new(facts, &rows);
            let floor =
                |changelog: &[AppLog], truncated| body.render(changelog, truncated, "").len();
            fit(
                &changelog,
                &machines,
                Some(&floor),
                |changelog, truncated, machine| {
                    Ok::<_, std::convert::Infallible>(body.render(changelog, truncated, machine))
                },
            )?
        }
        Some(own) => {
            let compiled = render::compile(
                render::PROMOTION_BODY,
                Some((own.text.as_str(), own.origin.as_str())),
            )?;
            let gates = gate_rows(facts.gates);
            fit(
                &changelog,
                &machines,
                None,
                |changelog, truncated, machine| {
                    compiled.render(&BodyData {
                        from: facts.from,
                        to: facts.to,
                        source: facts.source,
                        base: facts.base,
                        rollback: facts.rollback,
                        count: facts.moves.len(),
                        plural: facts.moves.len() != 1,
                        moves: &rows,
                        changelog,
                        truncated,
                        gates: &gates,
                        machine,
                    })
                },
            )?
        }
    };
    Ok((title, body))
}

fn gate_rows(gates: &[GateResult]) -> Vec<GateRow<'_>> {
    gates
        .iter()
        .map(|g| GateRow {
            passed: g.passed,
            gate: g.gate.as_str(),
            message: &g.message,
        })
        .collect()
}

/// The block for bots, from most to least detailed: the full pins; the moves without pins; a
/// summary whose moves are in the head commit's `Ferry-Moves` trailers. Each is made only
/// when the body needs it.
struct Machines<'a> {
    facts: &'a Facts<'a>,
}

impl<'a> Machines<'a> {
    fn new(facts: &'a Facts<'a>) -> Self {
        Machines { facts }
    }

    /// The least length of the block at `detail`: the length of its moves' strings, before
    /// any escaping (which only lengthens them).
    fn floor(&self, detail: usize) -> usize {
        let moves = self.facts.moves;
        let version = |a: Option<&Artifact>| a.map_or(0, |a| a.shown_version().len());
        match detail {
            0 => moves
                .iter()
                .map(|m| {
                    m.app.len()
                        + version(m.current.as_ref())
                        + m.version().len()
                        + match &m.promoted {
                            Artifact::Pinned(p) => p.version.len() + p.url.len() + p.sha256.len(),
                            Artifact::Bare(name) => name.len(),
                        }
                })
                .sum(),
            1 => moves
                .iter()
                .map(|m| m.app.len() + version(m.current.as_ref()) + m.version().len())
                .sum(),
            _ => 0,
        }
    }

    /// Detail `0` (most) to `2` (least). Serialized straight from the moves, in the order
    /// of their fields.
    fn get(&self, detail: usize) -> String {
        #[derive(Serialize)]
        struct Block<'a, M: Serialize> {
            from: &'a str,
            to: &'a str,
            source: &'a str,
            base: &'a str,
            rollback: bool,
            moves: M,
        }
        #[derive(Serialize)]
        struct Requested<'a> {
            app: &'a str,
            from: Option<String>,
            to: String,
            kind: crate::plan::promote::Kind,
            pin: &'a Artifact,
        }
        #[derive(Serialize)]
        struct Compact<'a> {
            app: &'a str,
            from: Option<String>,
            to: String,
            kind: crate::plan::promote::Kind,
        }
        let f = self.facts;
        fn block<'a, M: Serialize>(f: &Facts<'a>, moves: M) -> Block<'a, M> {
            Block {
                from: f.from,
                to: f.to,
                source: f.source,
                base: f.base,
                rollback: f.rollback,
                moves,
            }
        }
        let json = match detail {
            // As the request records them (`RequestedMove`), borrowed.
            0 => serde_json::to_string_pretty(&block(
                f,
                f.moves
                    .iter()
                    .map(|m| Requested {
                        app: &m.app,
                        from: m.current.as_ref().map(Artifact::shown_version),
                        to: m.version(),
                        kind: m.kind,
                        pin: &m.promoted,
                    })
                    .collect::<Vec<_>>(),
            )),
            1 => serde_json::to_string(&block(
                f,
                f.moves
                    .iter()
                    .map(|m| Compact {
                        app: &m.app,
                        from: m.current.as_ref().map(Artifact::shown_version),
                        to: m.version(),
                        kind: m.kind,
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => serde_json::to_string(&block(f, "in the Ferry-Moves trailers of the head commit")),
        }
        .expect("JSON");
        // Inside the HTML comment that carries it, no string may close the comment: `>` is
        // written as JSON's `\u003e` (the same JSON once parsed).
        json.replace('>', "\\u003e")
    }
}

/// A body's length without the block for bots, by changelog and truncation.
type Floor<'a> = &'a dyn Fn(&[AppLog], bool) -> usize;

/// Cuts the changelog first (halving it, then dropping the apps it has nothing left for),
/// then the bot block's detail; never the table. A longer changelog never makes a shorter
/// body, so when the body does not fit without any changelog, halving it is skipped.
///
/// `floor`, when the template is known to show the block for bots once: the body's length
/// without the block. A body that cannot fit (its floor and the block's least length, its
/// strings unescaped, are over the limit) is then not rendered, nor the block made.
fn fit<E>(
    changelog: &[AppLog],
    machines: &Machines<'_>,
    floor: Option<Floor<'_>>,
    render: impl Fn(&[AppLog], bool, &str) -> Result<String, E>,
) -> Result<String, TextError>
where
    TextError: From<E>,
{
    let fits = |body: &String| body.len() <= BODY_LIMIT;
    let cannot = |changelog: &[AppLog], truncated: bool, detail: usize| {
        floor.is_some_and(|floor| floor(changelog, truncated) + machines.floor(detail) > BODY_LIMIT)
    };
    let full = std::cell::OnceCell::new();
    let full = || full.get_or_init(|| machines.get(0)).as_str();
    if !cannot(changelog, false, 0) {
        let body = render(changelog, false, full())?;
        if fits(&body) {
            return Ok(body);
        }
    }
    if !cannot(&[], true, 0) {
        let bare = render(&[], true, full())?;
        if fits(&bare) {
            let total: usize = changelog.iter().map(|l| l.entries.len()).sum();
            let mut keep = total / 2;
            while keep > 0 {
                let mut cut = changelog.to_vec();
                cut_changelog(&mut cut, keep);
                cut.retain(|log| !log.entries.is_empty());
                if !cannot(&cut, true, 0) {
                    let body = render(&cut, true, full())?;
                    if fits(&body) {
                        return Ok(body);
                    }
                }
                keep /= 2;
            }
            return Ok(bare);
        }
    }
    let mut last = String::new();
    for detail in 1..=2 {
        if detail < 2 && cannot(&[], true, detail) {
            continue;
        }
        last = render(&[], true, &machines.get(detail))?;
        if fits(&last) {
            return Ok(last);
        }
    }
    Err(TextError::TooLarge { size: last.len() })
}

impl From<std::convert::Infallible> for TextError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// `templates/promotion-title.hbs`, written directly (no escaping: a title is plain text).
fn default_title(facts: &Facts<'_>, rows: &[MoveRow]) -> String {
    let mut title = String::new();
    title.push_str(if facts.rollback {
        "Roll back"
    } else {
        "Promote"
    });
    let _ = write!(title, " {} → {}: ", facts.from, facts.to);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            title.push_str(", ");
        }
        let _ = write!(title, "{} {}", row.app, row.version);
    }
    title
}

/// `templates/promotion-body.hbs`, written directly: the parts that do not change while the
/// body is cut to size are written once.
struct DefaultBody {
    /// Up to and including `## Changelog\n`.
    head: String,
    /// From `\n## Gates` to the start of the block for bots.
    gates: String,
    from: String,
}

impl DefaultBody {
    fn new(facts: &Facts<'_>, rows: &[MoveRow]) -> Self {
        let e = markdown_escape;
        let count = facts.moves.len();
        let mut head = String::with_capacity(256 + rows.len() * 64);
        if facts.rollback {
            head.push_str("**Rollback.** ");
        }
        let _ = write!(
            head,
            "Promotes {count} {} from `{}` ({}) to `{}` ({}).\n\n",
            if count != 1 { "apps" } else { "app" },
            e(facts.from),
            short(facts.source),
            e(facts.to),
            short(facts.base),
        );
        head.push_str("| App | From | To | Change | SHA-256 |\n|---|---|---|---|---|\n");
        for row in rows {
            let current = match row.current.as_deref() {
                Some(current) if !current.is_empty() => e(current),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                head,
                "| {} | {current} | {} | {} | `{}` |",
                e(&row.app),
                e(&row.version),
                e(row.kind),
                e(&row.digest),
            );
        }
        head.push_str("\n## Changelog\n");
        let mut gates = String::from("\n## Gates\n");
        for g in facts.gates {
            let _ = writeln!(
                gates,
                "- {} `{}`: {}",
                if g.passed { "✅" } else { "❌" },
                e(g.gate.as_str()),
                e(&g.message),
            );
        }
        gates.push_str("\n<!-- ferry:promotion\n");
        DefaultBody {
            head,
            gates,
            from: e(facts.from),
        }
    }

    fn render(&self, changelog: &[AppLog], truncated: bool, machine: &str) -> String {
        let e = markdown_escape;
        let mut body = String::with_capacity(self.head.len() + self.gates.len() + machine.len());
        body.push_str(&self.head);
        for log in changelog {
            let _ = write!(body, "\n### {}\n", e(&log.app));
            for entry in &log.entries {
                let _ = writeln!(
                    body,
                    "- {}: {} ({}, {}, {})",
                    e(&entry.version),
                    e(&entry.subject),
                    e(&entry.author),
                    e(&entry.date),
                    e(&entry.commit),
                );
            }
            if log.entries.is_empty() {
                let _ = writeln!(body, "- no bump commits found in `{}`'s history", self.from);
            }
        }
        if truncated {
            let _ = writeln!(
                body,
                "\n_The changelog was truncated to fit the request's size limit; `ferry history {}` shows all of it._",
                self.from
            );
        }
        body.push_str(&self.gates);
        body.push_str(machine);
        body.push_str("\n-->");
        body.truncate(body.trim_end().len());
        body
    }
}

/// `{{short sha}}`: the first 7 characters.
fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
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
    use crate::model::Pin;
    use crate::plan::promote::{Gate, Kind};
    use crate::promotion::history::LogEntry;

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

    fn entry(v: &str) -> LogEntry {
        LogEntry {
            version: v.into(),
            subject: "s".into(),
            author: "a".into(),
            date: "d".into(),
            commit: "c".into(),
        }
    }

    #[test]
    fn the_changelog_is_cut_fairly() {
        let mut logs = vec![
            AppLog {
                app: "a".into(),
                entries: vec![entry("1"); 10],
            },
            AppLog {
                app: "b".into(),
                entries: vec![entry("1"); 1],
            },
            AppLog {
                app: "c".into(),
                entries: vec![entry("1"); 10],
            },
        ];
        cut_changelog(&mut logs, 7);
        let lens: Vec<usize> = logs.iter().map(|l| l.entries.len()).collect();
        assert_eq!(lens, [3, 1, 3]);
    }

    #[test]
    fn the_block_for_bots_is_the_request_as_recorded() {
        let moves = [Move {
            app: "web".into(),
            current: Some(pinned("1.0.0", "https://a/w")),
            promoted: pinned("1.1.0", "https://a/w?a=<b>"),
            kind: Kind::Minor,
        }];
        let facts = Facts {
            from: "dev",
            to: "staging",
            source: "s",
            base: "b",
            rollback: false,
            moves: &moves,
            gates: &[],
        };
        let machines = Machines::new(&facts);
        let summary = serde_json::json!({
            "from": "dev", "to": "staging", "source": "s", "base": "b", "rollback": false,
        });
        let mut full = summary.clone();
        full["moves"] = serde_json::to_value(crate::promotion::requested(&moves)).unwrap();
        let full = serde_json::to_string_pretty(&full)
            .unwrap()
            .replace('>', "\\u003e");
        assert_eq!(machines.get(0), full);
        assert!(!full.contains('>'));
        let mut least = summary;
        least["moves"] = serde_json::json!("in the Ferry-Moves trailers of the head commit");
        assert_eq!(machines.get(2), serde_json::to_string(&least).unwrap());
        let compact: serde_json::Value = serde_json::from_str(&machines.get(1)).unwrap();
        assert_eq!(
            compact["moves"],
            serde_json::json!([{"app": "web", "from": "1.0.0", "to": "1.1.0", "kind": "minor"}])
        );
    }

    fn pinned(v: &str, url: &str) -> Artifact {
        Artifact::Pinned(Pin {
            version: v.into(),
            url: url.into(),
            sha256: "ab".repeat(32),
        })
    }

    /// The default templates through handlebars, as a repository's own copy of them renders.
    fn by_handlebars(facts: &Facts<'_>, changelog: &[AppLog]) -> (String, String) {
        let templates = Templates {
            title: Some(Override {
                text: render::PROMOTION_TITLE.text.to_owned(),
                origin: "t".into(),
            }),
            body: Some(Override {
                text: render::PROMOTION_BODY.text.to_owned(),
                origin: "b".into(),
            }),
        };
        render(facts, changelog.to_vec(), &templates).unwrap()
    }

    #[test]
    fn the_default_texts_are_what_handlebars_makes_of_the_default_templates() {
        let moves = [
            Move {
                app: "web".into(),
                current: Some(pinned("1.0.0", "https://a/w?x=1&y=<2>")),
                promoted: pinned("1.1.0", "https://a/w"),
                kind: Kind::Minor,
            },
            Move {
                app: "api".into(),
                current: None,
                promoted: pinned("2.0.0-rc.1", "https://a/api"),
                kind: Kind::New,
            },
        ];
        let gates = vec![
            GateResult {
                gate: Gate::Soak,
                passed: true,
                app: None,
                message: "every pin <ok> & more".into(),
                passes_at: None,
            },
            GateResult {
                gate: Gate::Rollback,
                passed: false,
                app: Some("web".into()),
                message: "`web` would go down".into(),
                passes_at: None,
            },
        ];
        let changelogs = [
            vec![],
            vec![
                AppLog {
                    app: "api".into(),
                    entries: vec![],
                },
                AppLog {
                    app: "web".into(),
                    entries: vec![
                        LogEntry {
                            version: "1.1.0".into(),
                            subject: "dev: bump web <!-- & -->".into(),
                            author: "Ann <a>".into(),
                            date: "2026-11-29".into(),
                            commit: "abcdef0".into(),
                        },
                        entry("1.0.5"),
                    ],
                },
            ],
        ];
        for rollback in [false, true] {
            for n in [1, 2] {
                for changelog in &changelogs {
                    let facts = Facts {
                        from: "dev",
                        to: "stag&ing",
                        source: "0123456789abcdef0123456789abcdef01234567",
                        base: "89abcdef0123456789abcdef0123456789abcdef",
                        rollback,
                        moves: &moves[..n],
                        gates: &gates,
                    };
                    let native = render(&facts, changelog.clone(), &Templates::default()).unwrap();
                    assert_eq!(native, by_handlebars(&facts, changelog));
                }
            }
        }
        // Cut to size: the same cuts, the same bytes.
        let many: Vec<Move> = (0..1_000)
            .map(|i| Move {
                app: format!("app{i:04}"),
                current: (i % 3 != 0).then(|| pinned("1.0.0", "https://a/x")),
                promoted: pinned("1.1.0", "https://a/y"),
                kind: Kind::Minor,
            })
            .collect();
        let changelog: Vec<AppLog> = many
            .iter()
            .take(300)
            .map(|m| AppLog {
                app: m.app.clone(),
                entries: vec![entry("1.1.0"); 3],
            })
            .collect();
        for n in [100, 400, 1_000] {
            let facts = Facts {
                from: "dev",
                to: "staging",
                source: "0123456789abcdef0123456789abcdef01234567",
                base: "89abcdef0123456789abcdef0123456789abcdef",
                rollback: false,
                moves: &many[..n],
                gates: &gates,
            };
            let native = render(&facts, changelog.clone(), &Templates::default()).unwrap();
            assert!(native.1.len() <= BODY_LIMIT);
            assert_eq!(native, by_handlebars(&facts, &changelog), "{n} moves");
        }
    }
}
