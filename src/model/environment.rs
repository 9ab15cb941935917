//! Environment files: where an environment's branch is, what it promotes from, its policy, its
//! protection, its agent, and where each application is deployed.
//!
//! Two layouts are read: ferry's own (`environments/<name>.json`) and the seed's
//! (`dev-env.json`, `staging-env.json`, `prod-env.json` at the root: a bare map of apps, with
//! the branch and the promotion order implied).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Duration;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<BTreeMap<String, App>>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub deployment_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate: Option<Vec<String>>,
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
            apps: Some(apps),
            schema: None,
        }
    }
}
