//! What a promotion reads from the source's history, in one walk: since when each moving pin
//! has been in the source without interruption (for the soak gate) and, per moving app, the
//! commits that brought it from the target's version to the promoted one (the changelog).
//!
//! The walk itself reads commits (see [`super::gather`]); this fold decides what each commit
//! means and when the walk may stop, without I/O, so it is unit-tested on made-up histories.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Oid;
use serde::Serialize;

use crate::model::{Artifact, Manifest};
use crate::plan::promote::{Move, timestamp};

/// The changelog looks this far back (first parents) at most.
pub const CHANGELOG_DEPTH: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub version: String,
    pub subject: String,
    pub author: String,
    pub date: String,
    pub commit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppLog {
    pub app: String,
    pub entries: Vec<LogEntry>,
}

/// One commit of the source's first-parent history, newest first, as the fold needs it.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    pub id: Oid,
    /// Committer time, Unix seconds.
    pub time: i64,
    pub summary: &'a str,
    pub author: &'a str,
    /// The message's trailers, in order (empty when the fold does not want messages).
    pub trailers: &'a [(String, String)],
    /// The commit's manifest (`None`: none, or one that does not parse; only read when the
    /// fold wants manifests).
    pub manifest: Option<&'a Manifest>,
}

/// The soak and changelog of a promotion's moves, folded over the source's history.
pub struct Fold<'m> {
    /// Moving pins whose uninterrupted run in the source is still being traced back.
    soaking: BTreeMap<&'m str, &'m Artifact>,
    since: BTreeMap<String, i64>,
    logs: BTreeMap<&'m str, Vec<LogEntry>>,
    /// Where each app's changelog stops: the target's current version.
    stop_at: BTreeMap<&'m str, Option<String>>,
    done: BTreeSet<&'m str>,
    visited: usize,
    changelog: bool,
}

impl<'m> Fold<'m> {
    /// `soak`: whether to trace pins back (only the soak gate needs it); `changelog`:
    /// whether to collect the changelog (only a request's body shows it).
    pub fn new(moves: &'m [Move], soak: bool, changelog: bool) -> Fold<'m> {
        Fold {
            soaking: if soak {
                moves
                    .iter()
                    .map(|m| (m.app.as_str(), &m.promoted))
                    .collect()
            } else {
                BTreeMap::new()
            },
            since: BTreeMap::new(),
            logs: if changelog {
                moves.iter().map(|m| (m.app.as_str(), Vec::new())).collect()
            } else {
                BTreeMap::new()
            },
            stop_at: moves
                .iter()
                .map(|m| {
                    (
                        m.app.as_str(),
                        m.current.as_ref().map(Artifact::shown_version),
                    )
                })
                .collect(),
            done: BTreeSet::new(),
            visited: 0,
            changelog,
        }
    }

    /// Whether the next commit's manifest matters.
    pub fn wants_manifest(&self) -> bool {
        !self.soaking.is_empty()
    }

    /// Whether the next commit's message matters.
    pub fn wants_message(&self) -> bool {
        self.changelog && self.visited < CHANGELOG_DEPTH && self.done.len() < self.logs.len()
    }

    /// Whether the walk may stop.
    pub fn finished(&self) -> bool {
        !self.wants_manifest() && !self.wants_message()
    }

    pub fn visit(&mut self, commit: &Visit<'_>) {
        if self.wants_manifest() {
            let since = &mut self.since;
            self.soaking.retain(|app, pin| {
                let here = commit.manifest.and_then(|m| m.artifacts.get(*app)) == Some(*pin);
                if here {
                    since.insert((*app).to_owned(), commit.time);
                }
                here
            });
        }
        if self.wants_message() {
            self.log(commit);
        }
        self.visited += 1;
    }

    fn log(&mut self, commit: &Visit<'_>) {
        // Bumps say `Ferry-App` then `Ferry-Version`; promotions into the source say
        // `Ferry-Moves: web 2.0.0 -> 2.1.0`.
        let mut touched: Vec<(&str, &str)> = Vec::new();
        let mut app = None;
        for (key, value) in commit.trailers {
            match key.as_str() {
                "Ferry-App" => app = Some(value.as_str()),
                "Ferry-Version" => {
                    if let Some(a) = app.take() {
                        touched.push((a, value));
                    }
                }
                "Ferry-Moves" => {
                    let mut parts = value.split_whitespace();
                    if let (Some(a), Some(to)) = (parts.next(), parts.last()) {
                        touched.push((a, to));
                    }
                }
                _ => {}
            }
        }
        for (app, version) in touched {
            let Some((key, entries)) = self.logs.iter_mut().find(|(k, _)| **k == app) else {
                continue;
            };
            if self.done.contains(key) {
                continue;
            }
            if self.stop_at.get(key).cloned().flatten().as_deref() == Some(version) {
                self.done.insert(key);
                continue;
            }
            entries.push(LogEntry {
                version: version.to_owned(),
                subject: commit.summary.to_owned(),
                author: commit.author.to_owned(),
                date: crate::output::abbrev(&timestamp(commit.time), 10).to_owned(),
                commit: commit.id.to_string()[..7].to_owned(),
            });
        }
    }

    /// Since when each traced pin has been in the source, and the changelog by app.
    pub fn finish(self) -> (BTreeMap<String, i64>, Vec<AppLog>) {
        let logs = self
            .logs
            .into_iter()
            .map(|(app, entries)| AppLog {
                app: app.to_owned(),
                entries,
            })
            .collect();
        (self.since, logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pin;
    use crate::plan::promote::Kind;

    fn pin(v: &str) -> Artifact {
        Artifact::Pinned(Pin {
            version: v.into(),
            url: format!("https://a/{v}"),
            sha256: "e".repeat(64),
        })
    }

    fn manifest(pins: &[(&str, &str)]) -> Manifest {
        Manifest {
            version: None,
            description: None,
            artifacts: pins
                .iter()
                .map(|(a, v)| ((*a).to_owned(), pin(v)))
                .collect(),
        }
    }

    fn id(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    #[test]
    fn soak_runs_back_to_the_first_interruption_and_the_changelog_to_the_target_version() {
        let moves = vec![
            Move {
                app: "web".into(),
                current: Some(pin("1.0.0")),
                promoted: pin("1.2.0"),
                kind: Kind::Minor,
            },
            Move {
                app: "api".into(),
                current: None,
                promoted: pin("3.0.0"),
                kind: Kind::New,
            },
        ];
        let trailers = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let m3 = manifest(&[("web", "1.2.0"), ("api", "3.0.0")]);
        let m2 = manifest(&[("web", "1.2.0"), ("api", "2.0.0")]);
        let m1 = manifest(&[("web", "1.1.0"), ("api", "2.0.0")]);
        let m0 = manifest(&[("web", "1.0.0")]);
        let t3 = trailers(&[("Ferry-App", "api"), ("Ferry-Version", "3.0.0")]);
        let t2 = trailers(&[("Ferry-Moves", "web 1.1.0 -> 1.2.0")]);
        let t1 = trailers(&[("Ferry-App", "web"), ("Ferry-Version", "1.1.0")]);
        let t0 = trailers(&[("Ferry-App", "web"), ("Ferry-Version", "1.0.0")]);
        let history = [
            (id(3), 300, &m3, &t3),
            (id(2), 200, &m2, &t2),
            (id(1), 100, &m1, &t1),
            (id(0), 50, &m0, &t0),
        ];
        let mut fold = Fold::new(&moves, true, true);
        let mut walked = 0;
        for (id, time, manifest, trailers) in &history {
            if fold.finished() {
                break;
            }
            walked += 1;
            fold.visit(&Visit {
                id: *id,
                time: *time,
                summary: "subject",
                author: "alice",
                trailers,
                manifest: Some(manifest),
            });
        }
        // web's changelog stops at 1.0.0 (the target's), which is also where web's run began.
        assert_eq!(walked, 4);
        let (since, logs) = fold.finish();
        assert_eq!(since, [("api".into(), 300), ("web".into(), 200)].into());
        let versions: Vec<(&str, Vec<&str>)> = logs
            .iter()
            .map(|l| {
                (
                    l.app.as_str(),
                    l.entries.iter().map(|e| e.version.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            versions,
            [("api", vec!["3.0.0"]), ("web", vec!["1.2.0", "1.1.0"])]
        );
        assert_eq!(logs[0].entries[0].commit, "0303030");
        assert_eq!(logs[0].entries[0].date, "1970-01-01");

        // Neither soak nor changelog wanted: nothing to walk.
        assert!(Fold::new(&moves, false, false).finished());
    }
}
