//! `ferry schema`: print the embedded JSON Schemas, for editors and other validators.

use crate::error::{Error, Outcome, Result};
use crate::output::Output;
use crate::schema::FILES;

/// Print the JSON Schema (draft 2020-12) of one of ferry's files.
///
/// Editors complete and check files whose `"$schema"` points at these schemas; they are the
/// same ones `ferry validate` uses. Without NAME, lists the schemas.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry schema                              # list the schemas
  ferry schema manifest > manifest.schema.json
  ferry schema environment")]
pub struct SchemaArgs {
    /// `manifest`, `environment` or `seed-environment`.
    pub name: Option<String>,
}

pub fn run(args: SchemaArgs, out: Output) -> Result<Outcome> {
    let names = || {
        FILES
            .iter()
            .map(|(file, _)| file.trim_end_matches(".schema.json"))
    };
    let Some(name) = args.name else {
        for name in names() {
            out.data(name);
        }
        return Ok(Outcome::Success);
    };
    let wanted = name.trim_end_matches(".json").trim_end_matches(".schema");
    match FILES
        .iter()
        .find(|(file, _)| file.trim_end_matches(".schema.json") == wanted)
    {
        Some((_, text)) => {
            out.data(text.trim_end());
            Ok(Outcome::Success)
        }
        None => Err(
            Error::usage(format!("no schema named `{name}`")).hint(format!(
                "schemas: {}",
                names().collect::<Vec<_>>().join(", ")
            )),
        ),
    }
}
