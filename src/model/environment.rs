//! Environment files: where an environment's branch is, what it promotes from, its policy, its
//! protection, its agent, and where each application is deployed.
//!
//! Two layouts are read: ferry's own (`environments/<name>.json`) and the seed's
//! (`dev-env.json`, `staging-env.json`, `prod-env.json` at the root: a bare map of apps, with
//! the branch and the promotion order implied).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Duration, Rollout, Size};

/// The largest artifact the agent downloads for an app that names no `max_size`.
pub const DEFAULT_MAX_SIZE: Size = Size::from_bytes(2 << 30);

/// The seed layout's environments, in promotion order. `production` is another name for `prod`.
pub const SEED_ORDER: [&str; 4] = ["dev", "staging", "prod", "production"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `environments/<name>.json`.
    Native,
    /// `<name>-env.json` at the repository root.
    Seed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotes_from: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    /// `None`: the branch is not protected (anyone who can push may change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<Protection>,
    #[serde(default)]
    pub agent: AgentSettings,
    /// How a new state reaches the hosts of each app (an app's own `rollout` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<BTreeMap<String, App>>,
    /// The keys trusted to sign this environment's branch, as ssh's `allowed_signers` lines
    /// (`PRINCIPALS KEYTYPE BASE64`) or armored OpenPGP public keys: what
    /// `protection.require_signed_commits` checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Duration>,
    #[serde(default)]
    pub required_checks: Vec<String>,
    #[serde(default)]
    pub allow_prerelease: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    #[serde(default)]
    pub required_approvals: u32,
    #[serde(default)]
    pub require_code_owner_review: bool,
    #[serde(default)]
    pub dismiss_stale_reviews: bool,
    #[serde(default)]
    pub required_checks: Vec<String>,
    #[serde(default)]
    pub require_up_to_date: bool,
    #[serde(default)]
    pub allowed_mergers: Vec<String>,
    #[serde(default)]
    pub allowed_pushers: Vec<String>,
    #[serde(default)]
    pub linear_history: bool,
    #[serde(default)]
    pub allow_force_push: bool,
    #[serde(default)]
    pub allow_deletion: bool,
    #[serde(default)]
    pub enforce_admins: bool,
    /// Every commit pushed to the branch is signed by one of the environment's `signers`, as
    /// the branch declared them before the push.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signed_commits: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// The agents' `POST /trigger` endpoints, told when the branch moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_urls: Vec<String>,
    /// The environment variable holding the secret those events are signed with (or, unset,
    /// `NAME_FILE` naming a file that holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_secret: Option<String>,
    /// Who may report `ferry/deploy/ENV` (empty: anyone who may push).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reporters: Vec<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            interval: default_interval(),
            trigger_urls: Vec::new(),
            trigger_secret: None,
            reporters: Vec::new(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The one host it runs on (`hosts` for several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The hosts it runs on, in rollout order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    pub deployment_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate: Option<Vec<String>>,
    /// The largest artifact downloaded for it ([`DEFAULT_MAX_SIZE`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Size>,
}

impl App {
    /// The hosts it runs on, in rollout order (`hosts`, or `host`); empty when it names none:
    /// then it runs on every host of its environment's agents.
    pub fn hosts(&self) -> &[String] {
        match (&self.hosts, &self.host) {
            (Some(hosts), _) => hosts,
            (None, Some(host)) => std::slice::from_ref(host),
            (None, None) => &[],
        }
    }

    /// Whether the agent of `host` deploys it.
    pub fn runs_on(&self, host: &str) -> bool {
        let hosts = self.hosts();
        hosts.is_empty() || hosts.iter().any(|h| h == host)
    }

    /// Its health-check URL on `host` (`{host}` replaced).
    pub fn healthcheck_url_on(&self, host: &str) -> Option<String> {
        self.healthcheck_url
            .as_ref()
            .map(|url| url.replace("{host}", host))
    }

    /// Its rollout: its own fields over the environment's.
    pub fn rollout(&self, env: Option<&Rollout>) -> Rollout {
        self.rollout.clone().unwrap_or_default().over(env)
    }

    /// The largest artifact the agent downloads for this app.
    pub fn max_size(&self) -> u64 {
        self.max_size.unwrap_or(DEFAULT_MAX_SIZE).bytes()
    }
}

/// What an environment without a `protection` block gets: no rule at all.
pub static UNPROTECTED: Protection = Protection {
    required_approvals: 0,
    require_code_owner_review: false,
    dismiss_stale_reviews: false,
    required_checks: Vec::new(),
    require_up_to_date: false,
    allowed_mergers: Vec::new(),
    allowed_pushers: Vec::new(),
    linear_history: false,
    allow_force_push: false,
    allow_deletion: false,
    enforce_admins: false,
    require_signed_commits: false,
};

impl Environment {
    /// The environment's protection; [`UNPROTECTED`] when it declares none.
    pub fn protection(&self) -> &Protection {
        self.protection.as_ref().unwrap_or(&UNPROTECTED)
    }

    /// The branch holding this environment's desired state.
    pub fn branch(&self) -> &str {
        self.branch.as_deref().unwrap_or(&self.name)
    }

    /// An environment of the seed layout: the file is only the apps; the rest is implied.
    pub fn from_seed(
        name: &str,
        promotes_from: Option<String>,
        apps: BTreeMap<String, App>,
    ) -> Self {
        Environment {
            name: name.to_owned(),
            description: None,
            branch: None,
            promotes_from,
            policy: Policy::default(),
            protection: None,
            agent: AgentSettings::default(),
            rollout: None,
            apps: Some(apps),
            signers: Vec::new(),
            schema: None,
        }
    }
}

/// The branch an environment lives on, read from what `environments/<env>.json` declares
/// (`branch`, default: the name) in raw JSON: lenient, so that a file the schema refuses still
/// says where it points (and `ferry validate` says what is wrong with it).
pub fn declared_branch(env: &str, file: &[u8]) -> String {
    // Only `branch` is read: the rest of a large file is skipped, not built.
    #[derive(serde::Deserialize)]
    struct Declared {
        branch: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Declared>(file)
        .ok()
        .and_then(|d| d.branch)
        .and_then(|b| b.as_str().map(str::to_owned))
        .unwrap_or_else(|| env.to_owned())
}

/// Why an environment has no branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// More than one branch declares that it holds the environment.
    Ambiguous(Vec<String>),
    /// Branches declare where it lives, but no branch there declares it.
    Missing { declared: Vec<String> },
    /// Nothing declares it, and no branch of the seed layout holds it.
    Unknown,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |branches: &[String]| {
            branches
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Unresolved::Ambiguous(claims) => {
                write!(f, "branches {} each declare it as theirs", list(claims))
            }
            Unresolved::Missing { declared } => write!(
                f,
                "it is declared to live on {}, which does not declare it",
                list(declared)
            ),
            Unresolved::Unknown => write!(f, "no branch declares it"),
        }
    }
}

/// The branch that holds `env`'s desired state: the one branch whose own
/// `environments/<env>.json` declares that branch (`declared`: branch → the branch its file
/// declares, for every branch that has the file). A branch named like an environment counts
/// for nothing by its name, so nobody takes over an environment by creating a branch. Only
/// where no branch declares the environment (the seed layout, which has nowhere to say so) is
/// its branch the one named like it, or `production` for `prod`.
pub fn resolve_branch<'a>(
    env: &str,
    heads: impl IntoIterator<Item = &'a str>,
    declared: &BTreeMap<String, String>,
) -> Result<String, Unresolved> {
    let own: Vec<String> = declared
        .iter()
        .filter(|(branch, says)| branch == says)
        .map(|(branch, _)| branch.clone())
        .collect();
    match own.len() {
        1 => return Ok(own.into_iter().next().expect("one")),
        0 => {}
        _ => return Err(Unresolved::Ambiguous(own)),
    }
    if !declared.is_empty() {
        let mut elsewhere: Vec<String> = declared.values().cloned().collect();
        elsewhere.sort();
        elsewhere.dedup();
        return Err(Unresolved::Missing {
            declared: elsewhere,
        });
    }
    let heads: Vec<&str> = heads.into_iter().collect();
    let seed: Vec<&str> = [env, if env == "prod" { "production" } else { env }]
        .into_iter()
        .filter(|b| heads.contains(b))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match seed.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(Unresolved::Unknown),
        both => Err(Unresolved::Ambiguous(
            both.iter().map(|b| (*b).to_owned()).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(b, d)| ((*b).to_owned(), (*d).to_owned()))
            .collect()
    }

    #[test]
    fn an_environment_lives_on_the_branch_that_declares_it_not_on_one_named_like_it() {
        let heads = ["dev", "staging", "production", "prod"];
        // `prod` (someone's new branch, a copy of production) says prod lives on production.
        let says = declared(&[
            ("dev", "production"),
            ("staging", "production"),
            ("production", "production"),
            ("prod", "production"),
        ]);
        assert_eq!(
            resolve_branch("prod", heads, &says).as_deref(),
            Ok("production")
        );
        // A copy that claims prod for itself: two claims, and neither wins.
        let says = declared(&[("production", "production"), ("prod", "prod")]);
        assert_eq!(
            resolve_branch("prod", heads, &says),
            Err(Unresolved::Ambiguous(vec![
                "prod".into(),
                "production".into()
            ]))
        );
        // Declared, but its branch is gone: a branch named like it does not stand in.
        let says = declared(&[("dev", "production"), ("prod", "production")]);
        assert_eq!(
            resolve_branch("prod", ["dev", "prod"], &says),
            Err(Unresolved::Missing {
                declared: vec!["production".into()]
            })
        );
    }

    #[test]
    fn the_seed_layout_is_found_by_name() {
        let none = BTreeMap::new();
        assert_eq!(
            resolve_branch("dev", ["dev", "production"], &none).as_deref(),
            Ok("dev")
        );
        assert_eq!(
            resolve_branch("prod", ["dev", "production"], &none).as_deref(),
            Ok("production")
        );
        assert_eq!(
            resolve_branch("prod", ["prod", "production"], &none),
            Err(Unresolved::Ambiguous(vec![
                "prod".into(),
                "production".into()
            ]))
        );
        assert_eq!(
            resolve_branch("qa", ["dev"], &none),
            Err(Unresolved::Unknown)
        );
    }

    #[test]
    fn a_declaration_is_read_leniently() {
        assert_eq!(
            declared_branch("prod", br#"{"branch": "production"}"#),
            "production"
        );
        assert_eq!(declared_branch("prod", br#"{"name": "prod"}"#), "prod");
        assert_eq!(declared_branch("prod", b"not json"), "prod");
    }
}
