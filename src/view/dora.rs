//! The document of `ferry dora`: DORA's four keys per environment, computed by
//! [`crate::dora`] from the events [`crate::dora::load`] reads.

use crate::dora::{self, Report, load::Loader};
use crate::error::{Error, Result};
use crate::store::Store;

/// The reports, and what the figures could not count.
#[derive(Debug, Clone)]
pub struct Reports {
    /// One per environment, in promotion order.
    pub reports: Vec<Report>,
    /// For the person reading them: environments passed over, events not counted.
    pub notes: Vec<String>,
    /// Whether any deploy report was found.
    pub reported: bool,
}

/// The reports of every environment (or only `only`'s), over the events from `since` (Unix
/// seconds) to `until`.
pub fn reports(
    store: &Store,
    only: Option<&str>,
    since: Option<i64>,
    until: i64,
) -> Result<Reports> {
    let paths = crate::state::promotion_paths(store)?;
    let envs = crate::state::environments(&paths);
    if envs.is_empty() {
        return Err(Error::failure(format!(
            "`{}` has no valid environment branch",
            store.remote().shown
        ))
        .hint("`ferry init` creates a deployment repository"));
    }
    let chosen: Vec<String> = match only {
        Some(env) if !envs.iter().any(|e| e == env) => {
            return Err(Error::usage(format!(
                "`{env}` is not an environment of `{}`",
                store.remote().shown
            ))
            .hint(format!("its environments: {}", envs.join(", "))));
        }
        Some(env) => vec![env.to_owned()],
        None => envs,
    };
    let window = dora::Window { since, until };
    let mut loader = Loader::new(store, paths);
    let mut reports = Vec::new();
    let mut notes = Vec::new();
    let mut reported = false;
    for env in &chosen {
        // Every environment: one whose branch cannot be found is said and passed over (asked
        // for by name, it is the error).
        if only.is_none()
            && let Err(e) = crate::state::branch_of(store, env)
        {
            notes.push(format!("{env} passed over: {}", e.message));
            continue;
        }
        let events = loader.events(env)?;
        reported |= !events.reports.is_empty();
        reports.push(dora::compute(&events, window));
    }
    notes.extend(loader.notes);
    Ok(Reports {
        reports,
        notes,
        reported,
    })
}
