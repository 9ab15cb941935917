//! How a new desired state reaches a fleet: the hosts of an app in waves, a pause between
//! waves, and how many hosts may fail before the rollout halts.
//!
//! `waves` counts hosts cumulatively, as Argo Rollouts' steps and Flagger's weights do: in
//! `[1, "50%", "100%"]` the first wave is one host (the canary), the second brings the
//! rollout to half the hosts, the third to all of them. A host's wave follows the order of
//! the app's `hosts`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Duration;

/// `rollout` of an environment or of one app (whose fields override the environment's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Vec<Wave>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<u32>,
}

impl Rollout {
    /// This rollout's fields, the missing ones taken from `base`.
    pub fn over(&self, base: Option<&Rollout>) -> Rollout {
        let base = base.cloned().unwrap_or_default();
        Rollout {
            waves: self.waves.clone().or(base.waves),
            pause: self.pause.or(base.pause),
            max_failures: self.max_failures.or(base.max_failures),
        }
    }

    /// Hosts that may fail before the rollout halts (default 0).
    pub fn max_failures(&self) -> u32 {
        self.max_failures.unwrap_or(0)
    }

    /// The pause between a wave's last success and the next wave (default none).
    pub fn pause(&self) -> std::time::Duration {
        self.pause.map(Duration::as_std).unwrap_or_default()
    }

    /// `hosts` split into waves, in order; empty waves (a step that adds no host) are
    /// dropped, and hosts past the last step form a last wave. Default: one wave of all.
    pub fn split<'h>(&self, hosts: &'h [String]) -> Vec<&'h [String]> {
        let total = hosts.len();
        let mut waves = Vec::new();
        let mut done = 0;
        for step in self.waves.iter().flatten() {
            let upto = step.hosts_of(total).min(total);
            if upto > done {
                waves.push(&hosts[done..upto]);
                done = upto;
            }
        }
        if done < total {
            waves.push(&hosts[done..]);
        }
        waves
    }
}

/// One step of `waves`: a number of hosts, or a share of them (`"50%"`, rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wave {
    Hosts(u32),
    Percent(u8),
}

impl Wave {
    /// How many hosts of `total` the rollout has reached once this wave is open.
    pub fn hosts_of(self, total: usize) -> usize {
        match self {
            Wave::Hosts(n) => n as usize,
            Wave::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

impl fmt::Display for Wave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wave::Hosts(n) => write!(f, "{n}"),
            Wave::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Wave {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Wave::Hosts(n) => s.serialize_u32(*n),
            Wave::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Wave {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Hosts(u32),
            Share(String),
        }
        let bad = |text: &str| {
            serde::de::Error::custom(format!(
                "`{text}` is not a wave: a number of hosts (1 or more) or a share such as `\"50%\"`"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Hosts(0) => Err(bad("0")),
            Raw::Hosts(n) => Ok(Wave::Hosts(n)),
            Raw::Share(text) => {
                let share = text
                    .strip_suffix('%')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| bad(&text))?;
                Ok(Wave::Percent(share))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(waves: serde_json::Value) -> Rollout {
        serde_json::from_value(serde_json::json!({ "waves": waves })).unwrap()
    }

    fn hosts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("h{i}")).collect()
    }

    fn sizes(rollout: &Rollout, n: usize) -> Vec<usize> {
        rollout.split(&hosts(n)).iter().map(|w| w.len()).collect()
    }

    #[test]
    fn waves_count_hosts_cumulatively_and_drop_empty_steps() {
        let canary = rollout(serde_json::json!([1, "50%", "100%"]));
        assert_eq!(sizes(&canary, 4), [1, 1, 2]);
        assert_eq!(sizes(&canary, 10), [1, 4, 5]);
        // Two hosts: 50% is the canary already.
        assert_eq!(sizes(&canary, 2), [1, 1]);
        assert_eq!(sizes(&canary, 1), [1]);
        assert_eq!(sizes(&canary, 0), Vec::<usize>::new());
        // Hosts past the last step are a last wave; a step past the hosts stops at them.
        assert_eq!(sizes(&rollout(serde_json::json!([2])), 5), [2, 3]);
        assert_eq!(sizes(&rollout(serde_json::json!([9])), 5), [5]);
        // Default: one wave of every host.
        assert_eq!(sizes(&Rollout::default(), 3), [3]);
    }

    #[test]
    fn an_apps_fields_override_the_environments() {
        let env = Rollout {
            waves: Some(vec![Wave::Hosts(1)]),
            pause: Some(Duration::from_secs(60)),
            max_failures: Some(2),
        };
        let app = Rollout {
            max_failures: Some(0),
            ..Rollout::default()
        };
        let both = app.over(Some(&env));
        assert_eq!(both.waves, env.waves);
        assert_eq!(both.pause(), std::time::Duration::from_secs(60));
        assert_eq!(both.max_failures(), 0);
    }

    #[test]
    fn waves_are_counts_or_shares() {
        let bad = |v: serde_json::Value| serde_json::from_value::<Wave>(v).unwrap_err().to_string();
        assert!(bad(serde_json::json!(0)).contains("not a wave"));
        assert!(bad(serde_json::json!("0%")).contains("not a wave"));
        assert!(bad(serde_json::json!("101%")).contains("not a wave"));
        assert!(bad(serde_json::json!("half")).contains("not a wave"));
        assert_eq!(
            serde_json::to_value(rollout(serde_json::json!([1, "25%"]))).unwrap(),
            serde_json::json!({"waves": [1, "25%"]})
        );
    }
}
