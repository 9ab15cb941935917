//! Diagnostics: what is wrong with a deployment repository, and where.
//!
//! Every check (parsing, JSON Schema, the rules no schema can express) produces
//! [`Diagnostic`]s rather than stopping at the first problem, so a user sees every problem at
//! once, each with its file, line, column, JSON pointer and, where one helps, a hint.

use serde::Serialize;

use crate::json::{Document, Position};

/// One thing wrong with a value, in words; the caller knows where the value came from and
/// turns it into a [`Diagnostic`] or an error that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Problem(pub String);

impl From<String> for Problem {
    fn from(text: String) -> Self {
        Problem(text)
    }
}

impl From<&str> for Problem {
    fn from(text: &str) -> Self {
        Problem(text.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    #[serde(skip)]
    pub severity: Severity,
    /// Path of the file as shown to the user.
    pub file: String,
    /// 1-based; absent when the problem is the file itself (missing, unreadable).
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// JSON pointer of the offending value (`""` for the whole document).
    pub pointer: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The location prefix `FILE:LINE:COLUMN` (or `FILE` without a position).
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file),
            _ => self.file.clone(),
        }
    }
}

/// A finished list of diagnostics, errors first, each group in file order.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        match diagnostic.severity {
            Severity::Error => self.errors.push(diagnostic),
            Severity::Warning => self.warnings.push(diagnostic),
        }
    }

    /// Sorts each group by file and position, and drops exact repeats.
    pub fn finish(&mut self) {
        for list in [&mut self.errors, &mut self.warnings] {
            list.sort_by(|a, b| {
                (&a.file, a.line, a.column, &a.pointer)
                    .cmp(&(&b.file, b.line, b.column, &b.pointer))
            });
            list.dedup();
        }
    }
}

/// A diagnostic builder bound to one file (and its parsed document, when it parsed).
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub file: &'a str,
    pub doc: Option<&'a Document>,
}

impl<'a> At<'a> {
    pub fn new(file: &'a str, doc: Option<&'a Document>) -> Self {
        At { file, doc }
    }

    fn make(
        &self,
        severity: Severity,
        position: Option<Position>,
        pointer: &str,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.to_owned(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            pointer: pointer.to_owned(),
            message,
            hint: None,
        }
    }

    /// An error at the value that `pointer` names.
    pub fn error(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let position = self.doc.map(|d| d.locate(pointer));
        self.make(Severity::Error, position, pointer, message.into())
    }

    /// An error at the key of the member that `pointer` names.
    pub fn error_at_key(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let position = self.doc.map(|d| d.locate_key(pointer));
        self.make(Severity::Error, position, pointer, message.into())
    }

    /// A warning at the key of the member that `pointer` names.
    pub fn warning_at_key(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let position = self.doc.map(|d| d.locate_key(pointer));
        self.make(Severity::Warning, position, pointer, message.into())
    }

    pub fn warning(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        let position = self.doc.map(|d| d.locate(pointer));
        self.make(Severity::Warning, position, pointer, message.into())
    }

    /// An error at a known position (parse errors), or about the whole file.
    pub fn error_at(&self, position: Option<Position>, message: impl Into<String>) -> Diagnostic {
        self.make(Severity::Error, position, "", message.into())
    }
}

impl Diagnostic {
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}
