//! The user-facing error: what went wrong, why (the cause chain), what to do (hints), and the
//! exit code it maps to.
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a user-facing failure: invalid input, a policy refusal, drift found |
//! | 2 | bad command line, or a path given on it that cannot be read |

use std::fmt;

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran and reported a failure (for instance, an invalid repository)
    /// on its own.
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Exit 1.
    Failure,
    /// Exit 2.
    Usage,
}

/// An error to show the user: `error: MESSAGE`, its causes, a blank line, then `hint: …` lines.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub source: Option<anyhow::Error>,
    pub hints: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn failure(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Failure,
            message: message.into(),
            source: None,
            hints: Vec::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Usage,
            message: message.into(),
            source: None,
            hints: Vec::new(),
        }
    }

    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Failure => 1,
            ErrorKind::Usage => 2,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(source) = &self.source {
            for cause in source
                .chain()
                .map(|c| c.to_string())
                .filter(|c| *c != self.message)
            {
                write!(f, "\n  caused by: {cause}")?;
            }
        }
        if !self.hints.is_empty() {
            writeln!(f)?;
            for hint in &self.hints {
                write!(f, "\nhint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl From<anyhow::Error> for Error {
    fn from(err: anyhow::Error) -> Self {
        let message = err.to_string();
        let source = err.source().is_some().then_some(err);
        Error {
            kind: ErrorKind::Failure,
            message,
            source,
            hints: Vec::new(),
        }
    }
}
