//! Branch protection as code, for GitHub: an environment's declared `protection`, translated
//! into GitHub's branch-protection rules, and compared field by field with what GitHub has.
//!
//! The translation: `allowed_pushers` are who may push directly (pull requests are required of
//! everyone else, so they are GitHub's `bypass_pull_request_allowances`); `allowed_mergers`,
//! when set, restrict who may update the branch at all (GitHub's push `restrictions`, which a
//! merge is subject to), pushers included; teams are `org/team`, in the repository's own
//! organization.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::Protection;

/// Branch rules as GitHub models them, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub required_approvals: u64,
    pub require_code_owner_review: bool,
    pub dismiss_stale_reviews: bool,
    pub required_checks: BTreeSet<String>,
    pub require_up_to_date: bool,
    /// Who may push without a pull request.
    pub direct_pushers: Principals,
    /// Who may update the branch at all; `None`: anyone with write access.
    pub restricted_to: Option<Principals>,
    pub linear_history: bool,
    pub allow_force_push: bool,
    pub allow_deletion: bool,
    pub enforce_admins: bool,
    /// Every commit on the branch carries a verified signature.
    pub require_signed_commits: bool,
}

/// Users (logins) and teams (slugs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Principals {
    pub users: BTreeSet<String>,
    pub teams: BTreeSet<String>,
}

impl fmt::Display for Principals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self
            .users
            .iter()
            .cloned()
            .chain(self.teams.iter().map(|t| format!("team {t}")))
            .collect();
        if all.is_empty() {
            f.write_str("nobody")
        } else {
            f.write_str(&all.join(", "))
        }
    }
}

/// A principal the repository's owner cannot name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "team `{team}` is not in `{owner}`: GitHub grants branch rights only to teams of the repository's organization"
)]
pub struct ForeignTeam {
    pub team: String,
    pub owner: String,
}

fn principals<'a>(
    names: impl IntoIterator<Item = &'a String>,
    owner: &str,
) -> Result<Principals, ForeignTeam> {
    let mut out = Principals::default();
    for name in names {
        match name.split_once('/') {
            None => {
                out.users.insert(name.clone());
            }
            Some((org, team)) if org.eq_ignore_ascii_case(owner) => {
                out.teams.insert(team.to_ascii_lowercase());
            }
            Some(_) => {
                return Err(ForeignTeam {
                    team: name.clone(),
                    owner: owner.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

impl Rules {
    /// The rules an environment declares, for a repository owned by `owner`.
    pub fn declared(protection: &Protection, owner: &str) -> Result<Rules, ForeignTeam> {
        let pushers = principals(&protection.allowed_pushers, owner)?;
        let restricted_to = if protection.allowed_mergers.is_empty() {
            None
        } else {
            Some(principals(
                protection
                    .allowed_mergers
                    .iter()
                    .chain(&protection.allowed_pushers),
                owner,
            )?)
        };
        Ok(Rules {
            required_approvals: u64::from(protection.required_approvals),
            require_code_owner_review: protection.require_code_owner_review,
            dismiss_stale_reviews: protection.dismiss_stale_reviews,
            required_checks: protection.required_checks.iter().cloned().collect(),
            require_up_to_date: protection.require_up_to_date,
            direct_pushers: pushers,
            restricted_to,
            linear_history: protection.linear_history,
            allow_force_push: protection.allow_force_push,
            allow_deletion: protection.allow_deletion,
            enforce_admins: protection.enforce_admins,
            require_signed_commits: protection.require_signed_commits,
        })
    }

    /// The rules in a `GET …/branches/B/protection` answer. Without required reviews, GitHub
    /// does not require pull requests: anyone who may update the branch may push to it.
    pub fn from_github(value: &Value) -> Rules {
        let enabled = |key: &str| value[key]["enabled"].as_bool().unwrap_or(false);
        let logins = |list: &Value, key: &str| -> BTreeSet<String> {
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p[key].as_str().map(str::to_owned))
                .collect()
        };
        let group = |v: &Value| Principals {
            users: logins(&v["users"], "login"),
            teams: logins(&v["teams"], "slug"),
        };
        let checks = &value["required_status_checks"];
        let reviews = &value["required_pull_request_reviews"];
        let restrictions = &value["restrictions"];
        let restricted_to = (!restrictions.is_null()).then(|| group(restrictions));
        let direct_pushers = if reviews.is_null() {
            // No pull request required: every writer (or everyone the restrictions name).
            restricted_to.clone().unwrap_or(Principals {
                users: BTreeSet::from(["(everyone with write access)".to_owned()]),
                teams: BTreeSet::new(),
            })
        } else {
            group(&reviews["bypass_pull_request_allowances"])
        };
        let mut required_checks: BTreeSet<String> = checks["contexts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        required_checks.extend(logins(&checks["checks"], "context"));
        Rules {
            required_approvals: reviews["required_approving_review_count"]
                .as_u64()
                .unwrap_or(0),
            require_code_owner_review: reviews["require_code_owner_reviews"]
                .as_bool()
                .unwrap_or(false),
            dismiss_stale_reviews: reviews["dismiss_stale_reviews"].as_bool().unwrap_or(false),
            required_checks,
            require_up_to_date: checks["strict"].as_bool().unwrap_or(false),
            direct_pushers,
            restricted_to,
            linear_history: enabled("required_linear_history"),
            allow_force_push: enabled("allow_force_pushes"),
            allow_deletion: enabled("allow_deletions"),
            enforce_admins: enabled("enforce_admins"),
            require_signed_commits: enabled("required_signatures"),
        }
    }

    /// The body of `PUT …/branches/B/protection` that sets these rules.
    pub fn to_github(&self) -> Value {
        let group = |p: &Principals| json!({ "users": p.users, "teams": p.teams });
        let checks = if self.required_checks.is_empty() && !self.require_up_to_date {
            Value::Null
        } else {
            json!({ "strict": self.require_up_to_date, "contexts": self.required_checks })
        };
        json!({
            "required_status_checks": checks,
            "enforce_admins": self.enforce_admins,
            "required_pull_request_reviews": {
                "dismiss_stale_reviews": self.dismiss_stale_reviews,
                "require_code_owner_reviews": self.require_code_owner_review,
                "required_approving_review_count": self.required_approvals,
                "bypass_pull_request_allowances": group(&self.direct_pushers),
            },
            "restrictions": self.restricted_to.as_ref().map(|p| {
                let mut v = group(p);
                v["apps"] = json!([]);
                v
            }),
            "required_linear_history": self.linear_history,
            "allow_force_pushes": self.allow_force_push,
            "allow_deletions": self.allow_deletion,
        })
    }
}

/// One field whose declared and actual values differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub field: &'static str,
    pub declared: String,
    pub actual: String,
}

/// Every difference between `declared` and `actual`, in declaration order.
pub fn drift(declared: &Rules, actual: &Rules) -> Vec<Drift> {
    type Shown = fn(&Rules) -> String;
    let fields: [(&'static str, Shown); 12] = [
        ("required_approvals", |r| r.required_approvals.to_string()),
        ("require_code_owner_review", |r| {
            r.require_code_owner_review.to_string()
        }),
        ("dismiss_stale_reviews", |r| {
            r.dismiss_stale_reviews.to_string()
        }),
        ("required_checks", |r| list(&r.required_checks)),
        ("require_up_to_date", |r| r.require_up_to_date.to_string()),
        ("allowed_pushers", |r| r.direct_pushers.to_string()),
        ("allowed_mergers", |r| {
            r.restricted_to
                .as_ref()
                .map_or("anyone with write access".to_owned(), Principals::to_string)
        }),
        ("linear_history", |r| r.linear_history.to_string()),
        ("allow_force_push", |r| r.allow_force_push.to_string()),
        ("allow_deletion", |r| r.allow_deletion.to_string()),
        ("enforce_admins", |r| r.enforce_admins.to_string()),
        ("require_signed_commits", |r| {
            r.require_signed_commits.to_string()
        }),
    ];
    fields
        .iter()
        .filter_map(|(field, shown)| {
            let (declared, actual) = (shown(declared), shown(actual));
            (declared != actual).then_some(Drift {
                field,
                declared,
                actual,
            })
        })
        .collect()
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protection(edit: impl FnOnce(&mut Protection)) -> Protection {
        let mut p = Protection::default();
        edit(&mut p);
        p
    }

    #[test]
    fn what_is_put_reads_back_the_same() {
        let p = protection(|p| {
            p.required_approvals = 2;
            p.dismiss_stale_reviews = true;
            p.required_checks = vec!["ci/test".into()];
            p.require_up_to_date = true;
            p.allowed_pushers = vec!["ci-bot".into()];
            p.allowed_mergers = vec!["alice".into(), "Acme/Release-Managers".into()];
            p.linear_history = true;
        });
        let rules = Rules::declared(&p, "acme").unwrap();
        assert_eq!(
            rules.restricted_to.as_ref().unwrap().teams,
            BTreeSet::from(["release-managers".to_owned()])
        );
        // GitHub answers with objects where the PUT took names.
        let mut answer = rules.to_github();
        let objects = |names: &Value, key: &str| -> Value {
            names
                .as_array()
                .unwrap()
                .iter()
                .map(|n| json!({ key: n }))
                .collect()
        };
        for group in [
            "/restrictions",
            "/required_pull_request_reviews/bypass_pull_request_allowances",
        ] {
            let g = answer.pointer_mut(group).unwrap();
            g["users"] = objects(&g["users"], "login");
            g["teams"] = objects(&g["teams"], "slug");
        }
        for flag in [
            "enforce_admins",
            "required_linear_history",
            "allow_force_pushes",
            "allow_deletions",
        ] {
            answer[flag] = json!({ "enabled": answer[flag] });
        }
        assert_eq!(drift(&rules, &Rules::from_github(&answer)), vec![]);
    }

    /// GitHub's recorded answer (`@octokit/fixtures`, scenario `branch-protection`) against a
    /// declaration that matches it, then against each field changed in turn: every kind of
    /// drift is found, under its own name, and nothing else.
    #[test]
    fn every_kind_of_drift_is_found_against_the_recorded_answer() {
        let record: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/github/protection-set.json"
        ))
        .unwrap();
        let actual = Rules::from_github(&record["body"]);
        let matching = protection(|p| {
            p.required_approvals = 1;
            p.dismiss_stale_reviews = true;
            p.required_checks = vec!["foo/bar".into()];
            p.require_up_to_date = true;
            p.allowed_mergers = vec![
                "octokit-fixture-user-a".into(),
                "octokit-fixture-org/a-team".into(),
            ];
            p.enforce_admins = true;
        });
        let owner = "octokit-fixture-org";
        assert_eq!(
            drift(&Rules::declared(&matching, owner).unwrap(), &actual),
            vec![]
        );
        type Edit = fn(&mut Protection);
        let cases: [(&str, Edit); 11] = [
            ("required_approvals", |p| p.required_approvals = 2),
            ("require_code_owner_review", |p| {
                p.require_code_owner_review = true
            }),
            ("dismiss_stale_reviews", |p| p.dismiss_stale_reviews = false),
            ("required_checks", |p| {
                p.required_checks.push("ci/e2e".into())
            }),
            ("require_up_to_date", |p| p.require_up_to_date = false),
            ("allowed_pushers", |p| {
                p.allowed_pushers = vec!["ci-bot".into()]
            }),
            ("allowed_mergers", |p| {
                p.allowed_mergers = vec!["octokit-fixture-user-a".into()]
            }),
            ("linear_history", |p| p.linear_history = true),
            ("allow_force_push", |p| p.allow_force_push = true),
            ("allow_deletion", |p| p.allow_deletion = true),
            ("enforce_admins", |p| p.enforce_admins = false),
        ];
        for (field, change) in cases {
            let mut declared = matching.clone();
            change(&mut declared);
            let found: Vec<&str> = drift(&Rules::declared(&declared, owner).unwrap(), &actual)
                .iter()
                .map(|d| d.field)
                .collect();
            // A new pusher also joins the restricted set, when there is one.
            let expected: &[&str] = if field == "allowed_pushers" {
                &["allowed_pushers", "allowed_mergers"]
            } else {
                &[field]
            };
            assert_eq!(found, expected, "{field}");
        }
    }

    #[test]
    fn a_team_of_another_organization_is_refused() {
        let p = protection(|p| p.allowed_mergers = vec!["other/admins".into()]);
        assert_eq!(
            Rules::declared(&p, "acme"),
            Err(ForeignTeam {
                team: "other/admins".into(),
                owner: "acme".into()
            })
        );
    }
}
