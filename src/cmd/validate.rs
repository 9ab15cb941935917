//! `ferry validate`: check a deployment repository's files against the schemas and the rules
//! no schema can express, and report every problem with its position.

use std::path::PathBuf;

use serde::Serialize;

use crate::diag::{Diagnostic, Report};
use crate::error::{Error, Outcome, Result};
use crate::output::{Format, Output};
use crate::source::DirSource;
use crate::validate;

/// Validate a deployment repository: `manifest.json` and every environment file.
///
/// Checks each file against its JSON Schema (`ferry schema` prints them), then what no schema
/// can express: duplicate keys, artifact URLs, the promotion graph (every `promotes_from`
/// exists, exactly one first environment, no cycles, unique and valid branch names) and that
/// the manifest and the environments' `apps` name the same applications. Reports every
/// problem as `FILE:LINE:COLUMN: error: MESSAGE`, with the JSON pointer of the offending value
/// and a hint. With `GITHUB_ACTIONS=true`, also prints workflow annotations.
///
/// Exits 0 when valid (warnings allowed), 1 when invalid, 2 when PATH cannot be read.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ferry validate                   # the repository in the current directory
  ferry validate path/to/deploy    # another checkout
  ferry validate --format json     # {\"valid\": …, \"errors\": […], \"warnings\": […]}")]
pub struct ValidateArgs {
    /// The deployment repository's directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: &'a [Diagnostic],
    warnings: &'a [Diagnostic],
}

pub fn run(args: ValidateArgs, out: Output) -> Result<Outcome> {
    let shown = args.path.display().to_string();
    let src = DirSource::open(&args.path).map_err(|err| {
        Error::usage(format!("cannot read `{shown}`"))
            .with_source(err)
            .hint("PATH is the directory of a deployment repository, holding `manifest.json`")
    })?;
    let checked = validate::check(&src);
    let report = &checked.report;

    match out.format {
        Format::Json => out.json(&JsonReport {
            valid: report.is_valid(),
            errors: &report.errors,
            warnings: &report.warnings,
        }),
        Format::Text => print_text(report, out),
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        // Annotations must not corrupt JSON on stdout; the runner reads both streams.
        for line in annotations(report) {
            match out.format {
                Format::Text => out.data(line),
                Format::Json => out.stderr(line),
            }
        }
    }

    let outcome = summarize(&checked, &shown, out);
    // The process ends next: freeing the parsed files (hundreds of thousands of allocations
    // for a large repository) would only cost time.
    std::mem::forget(checked);
    Ok(outcome)
}

fn summarize(checked: &validate::Checked, shown: &str, out: Output) -> Outcome {
    let report = &checked.report;
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match &checked.state {
        Some(state) => {
            let paths: Vec<String> = state
                .promotion_paths()
                .iter()
                .map(|p| p.join(" → "))
                .collect();
            let mut line = format!(
                "`{shown}` is valid: {}, {} ({})",
                count(state.manifest.artifacts.len(), "artifact"),
                count(state.environments.len(), "environment"),
                paths.join(", ")
            );
            if !report.warnings.is_empty() {
                line.push_str(&format!(", {}", count(report.warnings.len(), "warning")));
            }
            out.status(line);
            Outcome::Success
        }
        None => {
            let mut line = format!(
                "error: `{shown}` is invalid: {}",
                count(report.errors.len(), "error")
            );
            if !report.warnings.is_empty() {
                line.push_str(&format!(", {}", count(report.warnings.len(), "warning")));
            }
            out.stderr(line);
            Outcome::Failure
        }
    }
}

fn print_text(report: &Report, out: Output) {
    for (kind, list) in [("error", &report.errors), ("warning", &report.warnings)] {
        for d in list {
            out.data(format!("{}: {kind}: {}", d.location(), d.message));
            if !d.pointer.is_empty() {
                out.data(format!("  pointer: {}", d.pointer));
            }
            if let Some(hint) = &d.hint {
                out.data(format!("  hint: {hint}"));
            }
        }
    }
}

/// GitHub workflow commands (`::error file=…,line=…,col=…::…`).
fn annotations(report: &Report) -> Vec<String> {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    let mut lines = Vec::new();
    for (kind, list) in [("error", &report.errors), ("warning", &report.warnings)] {
        for d in list {
            let mut props = vec![format!("file={}", property(&d.file))];
            if let (Some(line), Some(col)) = (d.line, d.column) {
                props.push(format!("line={line}"));
                props.push(format!("col={col}"));
            }
            props.push("title=ferry validate".to_owned());
            let mut message = d.message.clone();
            if !d.pointer.is_empty() {
                message.push_str(&format!(" (at {})", d.pointer));
            }
            if let Some(hint) = &d.hint {
                message.push_str(&format!("\nhint: {hint}"));
            }
            lines.push(format!("::{kind} {}::{}", props.join(","), data(&message)));
        }
    }
    lines
}
