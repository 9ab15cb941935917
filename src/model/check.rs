//! Check names (`ferry/deploy/prod`, `ci/test`): what a status, a gate's `required_checks`
//! and a protection's `required_checks` may name. The schema's `check` format, the hook and
//! `ferry status set` all hold names to this one rule.

/// The longest check name.
pub const CHECK_NAME_LIMIT: usize = 128;

/// Why a name is not a check name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckNameError {
    #[error("a check name is empty")]
    Empty,
    #[error("the check name {shown} is longer than {CHECK_NAME_LIMIT} characters")]
    TooLong { shown: String },
    #[error(
        "the check name {shown} contains {bad:?}: a check name is letters, digits, `.`, `_`, `/`, `:` and `-`"
    )]
    Character { shown: String, bad: char },
    #[error("the check name {shown} starts with {first:?}: it starts with a letter or a digit")]
    Start { shown: String, first: char },
}

/// Whether `name` is a check name: letters, digits, `.`, `_`, `/`, `:` and `-`, starting with a
/// letter or digit, at most [`CHECK_NAME_LIMIT`] characters (the schema's `check` pattern,
/// `^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$`). Names are printed in tables, messages and commit
/// messages: nothing in one may start a line or hide what follows.
pub fn check_name(name: &str) -> Result<(), CheckNameError> {
    let shown = || {
        format!(
            "{:?}",
            name.chars().take(CHECK_NAME_LIMIT + 8).collect::<String>()
        )
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '-');
    if name.is_empty() {
        return Err(CheckNameError::Empty);
    }
    if name.chars().count() > CHECK_NAME_LIMIT {
        return Err(CheckNameError::TooLong { shown: shown() });
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(CheckNameError::Character {
            shown: shown(),
            bad,
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(CheckNameError::Start {
            shown: shown(),
            first: name.chars().next().expect("not empty"),
        });
    }
    Ok(())
}

/// Whether `host` can name a host (`hosts`, `--host`): it names the host's deploy status,
/// `ferry/deploy/ENV/HOST`. The environment schema's `host` says the same.
pub fn is_host_name(host: &str) -> bool {
    host.len() <= 100
        && host
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}
