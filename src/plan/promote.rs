//! Planning a promotion: which pins move from one environment into the next, what kind of
//! change each is, and whether the target's policy lets them through (the gates).
//!
//! Everything here is pure: the caller reads both manifests, the target's environment file
//! (from the target's own branch), the history and the statuses, and passes them in.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{Artifact, Environment, Manifest};
use crate::plan::compare::version_of;

/// What kind of change a move is, for people reading the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Major,
    Minor,
    Patch,
    Prerelease,
    Rollback,
    /// The app is new to the target.
    New,
    /// Same version, another URL or digest (or a bare file name).
    Repin,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Major => "major",
            Kind::Minor => "minor",
            Kind::Patch => "patch",
            Kind::Prerelease => "prerelease",
            Kind::Rollback => "rollback",
            Kind::New => "new",
            Kind::Repin => "repin",
        }
    }
}

/// One app's pin moving from the source into the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    pub app: String,
    /// The target's pin now (`None`: new to the target).
    pub current: Option<Artifact>,
    /// The source's pin, which the target takes.
    pub promoted: Artifact,
    pub kind: Kind,
}

impl Move {
    pub fn version(&self) -> String {
        self.promoted.shown_version()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("`{0}` is not an artifact of the source environment")]
    UnknownApp(String),
}

/// Every artifact whose pin differs between the manifests (or only those in `apps`) moves to
/// the source's pin. Apps the source lacks are left as they are.
pub fn plan(
    from: &Manifest,
    to: &Manifest,
    apps: Option<&[String]>,
) -> Result<Vec<Move>, PlanError> {
    if let Some(apps) = apps
        && let Some(unknown) = apps.iter().find(|a| !from.artifacts.contains_key(*a))
    {
        return Err(PlanError::UnknownApp(unknown.clone()));
    }
    let wanted: Option<BTreeSet<&String>> = apps.map(|a| a.iter().collect());
    Ok(from
        .artifacts
        .iter()
        .filter(|(app, _)| wanted.as_ref().is_none_or(|w| w.contains(app)))
        .filter(|(app, pin)| to.artifacts.get(*app) != Some(*pin))
        .map(|(app, pin)| {
            let current = to.artifacts.get(app).cloned();
            Move {
                app: app.clone(),
                kind: kind(current.as_ref(), pin),
                current,
                promoted: pin.clone(),
            }
        })
        .collect())
}

fn kind(current: Option<&Artifact>, promoted: &Artifact) -> Kind {
    let Some(current) = current else {
        return Kind::New;
    };
    let (Some(old), Some(new)) = (version_of(current), version_of(promoted)) else {
        return Kind::Repin;
    };
    match new.cmp_precedence(&old) {
        Ordering::Less => Kind::Rollback,
        Ordering::Equal => Kind::Repin,
        Ordering::Greater if !new.pre.is_empty() => Kind::Prerelease,
        Ordering::Greater if new.major != old.major => Kind::Major,
        Ordering::Greater if new.minor != old.minor => Kind::Minor,
        Ordering::Greater => Kind::Patch,
    }
}

/// A promotion gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The target promotes from the source.
    PromotesFrom,
    /// No version goes down unless it is a rollback.
    Rollback,
    /// Each moving pin has been in the source long enough.
    Soak,
    /// The source commit has every required check green.
    RequiredChecks,
    /// Prereleases only where the target allows them.
    Prerelease,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::PromotesFrom => "promotes_from",
            Gate::Rollback => "rollback",
            Gate::Soak => "soak",
            Gate::RequiredChecks => "required_checks",
            Gate::Prerelease => "prerelease",
        }
    }
}

/// A gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub message: String,
    /// For soak: when (Unix seconds) the gate will pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passes_at: Option<i64>,
}

/// What the gates look at, besides the plan.
pub struct GateInputs<'a> {
    pub from: &'a str,
    /// The target's environment, read from the target's own branch.
    pub target: &'a Environment,
    pub rollback: bool,
    /// Now, in Unix seconds.
    pub now: i64,
    /// Since when (Unix seconds) each moving app's pin has been on the source's branch.
    pub since: &'a BTreeMap<String, i64>,
    /// The state of each check on the source commit (`success`, `failure`, `pending`, …).
    pub checks: &'a BTreeMap<String, String>,
}

/// Evaluates every gate; a promotion may proceed when all passed.
pub fn gates(moves: &[Move], input: &GateInputs<'_>) -> Vec<GateResult> {
    let mut results = Vec::new();
    let target = &input.target.name;
    let pass = |gate, message: String| GateResult {
        gate,
        passed: true,
        app: None,
        message,
        passes_at: None,
    };

    match input.target.promotes_from.as_deref() {
        Some(source) if source == input.from => results.push(pass(
            Gate::PromotesFrom,
            format!("`{target}` promotes from `{source}`"),
        )),
        other => results.push(GateResult {
            gate: Gate::PromotesFrom,
            passed: false,
            app: None,
            message: match other {
                Some(source) => format!(
                    "`{target}` promotes from `{source}`, not from `{}`",
                    input.from
                ),
                None => format!("`{target}` is the first environment: nothing promotes into it"),
            },
            passes_at: None,
        }),
    }

    let downs: Vec<&Move> = moves.iter().filter(|m| m.kind == Kind::Rollback).collect();
    if downs.is_empty() {
        results.push(pass(Gate::Rollback, "no version goes down".into()));
    }
    for m in downs {
        let from = m
            .current
            .as_ref()
            .map(Artifact::shown_version)
            .unwrap_or_default();
        results.push(GateResult {
            gate: Gate::Rollback,
            passed: input.rollback,
            app: Some(m.app.clone()),
            message: if input.rollback {
                format!(
                    "`{}` rolls back from {from} to {} (--rollback)",
                    m.app,
                    m.version()
                )
            } else {
                format!(
                    "`{}` would go down from {from} to {}: pass `--rollback` if that is intended",
                    m.app,
                    m.version()
                )
            },
            passes_at: None,
        });
    }

    match input.target.policy.soak {
        None => results.push(pass(Gate::Soak, "no soak time required".into())),
        Some(soak) => {
            let soak_secs = soak.as_std().as_secs() as i64;
            let mut all = true;
            for m in moves {
                let Some(since) = input.since.get(&m.app) else {
                    continue;
                };
                let passes_at = since + soak_secs;
                if passes_at > input.now {
                    all = false;
                    results.push(GateResult {
                        gate: Gate::Soak,
                        passed: false,
                        app: Some(m.app.clone()),
                        message: format!(
                            "`{}` {} has been in `{}` for {}, less than the {soak} soak: it passes at {}",
                            m.app,
                            m.version(),
                            input.from,
                            human(input.now - since),
                            timestamp(passes_at)
                        ),
                        passes_at: Some(passes_at),
                    });
                }
            }
            if all {
                results.push(pass(
                    Gate::Soak,
                    format!("every pin has been in `{}` for at least {soak}", input.from),
                ));
            }
        }
    }

    let required = &input.target.policy.required_checks;
    if required.is_empty() {
        results.push(pass(Gate::RequiredChecks, "no checks required".into()));
    }
    for check in required {
        let state = input.checks.get(check).map(String::as_str);
        let passed = state == Some("success");
        results.push(GateResult {
            gate: Gate::RequiredChecks,
            passed,
            app: None,
            message: match state {
                Some("success") => format!(
                    "`{check}` succeeded on the promoted `{}` commit",
                    input.from
                ),
                Some(other) => format!(
                    "`{check}` is {other} on the promoted `{}` commit",
                    input.from
                ),
                None => format!(
                    "`{check}` has not reported on the promoted `{}` commit",
                    input.from
                ),
            },
            passes_at: None,
        });
    }

    let allow = input.target.policy.allow_prerelease;
    let pre: Vec<&Move> = moves
        .iter()
        .filter(|m| version_of(&m.promoted).is_some_and(|v| !v.pre.is_empty()))
        .collect();
    if pre.is_empty() || allow {
        results.push(pass(
            Gate::Prerelease,
            if pre.is_empty() {
                "no prerelease".into()
            } else {
                format!("`{target}` allows prereleases")
            },
        ));
    } else {
        for m in pre {
            results.push(GateResult {
                gate: Gate::Prerelease,
                passed: false,
                app: Some(m.app.clone()),
                message: format!(
                    "`{}` {} is a prerelease, and `{target}` does not allow them",
                    m.app,
                    m.version()
                ),
                passes_at: None,
            });
        }
    }
    results
}

/// `1h 5m`, `3d 2h`, `45s`.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Unix seconds as RFC 3339 UTC.
pub fn timestamp(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Duration, Pin, Policy};

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

    fn env(promotes_from: &str, policy: Policy) -> Environment {
        let mut e =
            Environment::from_seed("staging", Some(promotes_from.into()), Default::default());
        e.apps = None;
        e.policy = policy;
        e
    }

    #[test]
    fn moves_every_differing_pin_and_names_its_kind() {
        let from = manifest(&[
            ("a", "2.0.0"),
            ("b", "1.3.0"),
            ("c", "1.0.1"),
            ("d", "0.9.0"),
            ("e", "1.0.0"),
            ("f", "3.0.0-rc.1"),
            ("g", "1.0.0"),
        ]);
        let to = manifest(&[
            ("a", "1.9.0"),
            ("b", "1.2.9"),
            ("c", "1.0.0"),
            ("d", "1.0.0"),
            ("f", "2.0.0"),
            ("g", "1.0.0"),
            ("z", "5.0.0"),
        ]);
        let kinds: Vec<(String, Kind)> = plan(&from, &to, None)
            .unwrap()
            .into_iter()
            .map(|m| (m.app, m.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a".into(), Kind::Major),
                ("b".into(), Kind::Minor),
                ("c".into(), Kind::Patch),
                ("d".into(), Kind::Rollback),
                ("e".into(), Kind::New),
                ("f".into(), Kind::Prerelease),
            ]
        );
        let only: Vec<String> = plan(&from, &to, Some(&["b".into()]))
            .unwrap()
            .into_iter()
            .map(|m| m.app)
            .collect();
        assert_eq!(only, ["b"]);
        assert_eq!(
            plan(&from, &to, Some(&["z".into()])),
            Err(PlanError::UnknownApp("z".into()))
        );
        assert!(plan(&from, &from, None).unwrap().is_empty());
    }

    #[test]
    fn gates_refuse_and_say_when_soak_passes() {
        let from = manifest(&[("a", "2.0.0"), ("d", "0.9.0"), ("f", "3.0.0-rc.1")]);
        let to = manifest(&[("a", "1.0.0"), ("d", "1.0.0"), ("f", "2.0.0")]);
        let moves = plan(&from, &to, None).unwrap();
        let target = env(
            "dev",
            Policy {
                soak: Some("1h".parse::<Duration>().unwrap()),
                required_checks: vec!["ci/test".into(), "ferry/deploy/dev".into()],
                allow_prerelease: false,
            },
        );
        let since: BTreeMap<String, i64> = [
            ("a".into(), 1_000),
            ("d".into(), -5_000),
            ("f".into(), -5_000),
        ]
        .into();
        let checks: BTreeMap<String, String> = [
            ("ci/test".into(), "success".into()),
            ("ferry/deploy/dev".into(), "failure".into()),
        ]
        .into();
        let input = GateInputs {
            from: "dev",
            target: &target,
            rollback: false,
            now: 3_000,
            since: &since,
            checks: &checks,
        };
        let failed: Vec<(Gate, Option<String>)> = gates(&moves, &input)
            .into_iter()
            .filter(|g| !g.passed)
            .map(|g| (g.gate, g.app))
            .collect();
        assert_eq!(
            failed,
            [
                (Gate::Rollback, Some("d".into())),
                (Gate::Soak, Some("a".into())),
                (Gate::RequiredChecks, None),
                (Gate::Prerelease, Some("f".into())),
            ]
        );
        let soak = gates(&moves, &input)
            .into_iter()
            .find(|g| g.gate == Gate::Soak)
            .unwrap();
        assert_eq!(soak.passes_at, Some(4_600));
        assert!(
            soak.message.contains("passes at 1970-01-01T01:16:40Z"),
            "{}",
            soak.message
        );

        // From the wrong environment.
        let wrong = GateInputs {
            from: "qa",
            ..input
        };
        assert!(!gates(&moves, &wrong)[0].passed);
        // Everything satisfied.
        let checks: BTreeMap<String, String> = [
            ("ci/test".into(), "success".into()),
            ("ferry/deploy/dev".into(), "success".into()),
        ]
        .into();
        let mut target = target.clone();
        target.policy.allow_prerelease = true;
        let ok = GateInputs {
            from: "dev",
            target: &target,
            rollback: true,
            now: 10_000,
            since: &since,
            checks: &checks,
        };
        assert!(
            gates(&moves, &ok).iter().all(|g| g.passed),
            "{:?}",
            gates(&moves, &ok)
        );
    }
}
