//! Printing: data to stdout (text or JSON), status and diagnostics about the run to stderr.

use std::io::{self, Write};

use serde::Serialize;

/// The format of a command's data on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// One JSON document, for machines.
    Json,
}

/// Where a command writes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
}

impl Output {
    /// Prints a line of data to stdout.
    pub fn data(&self, line: impl AsRef<str>) {
        let mut out = io::stdout().lock();
        // A closed pipe (`ferry … | head`) is not an error worth a panic.
        let _ = writeln!(out, "{}", line.as_ref());
    }

    /// Prints `value` as pretty JSON to stdout.
    pub fn json(&self, value: &impl Serialize) {
        let text = serde_json::to_string_pretty(value).expect("output types serialize");
        self.data(text);
    }

    /// Prints a status line to stderr, unless `--quiet`.
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{}", line.as_ref());
        }
    }

    /// Prints a line to stderr even under `--quiet` (diagnostics that must not be lost).
    pub fn stderr(&self, line: impl AsRef<str>) {
        let _ = writeln!(io::stderr().lock(), "{}", line.as_ref());
    }
}
