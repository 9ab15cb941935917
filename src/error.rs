//! The user-facing error: what went wrong, why (the cause chain), what to do (hints), and the
//! exit code it maps to.
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a user-facing failure: invalid input, a policy refusal, drift found |
//! | 2 | bad command line, or a path given on it that cannot be read |
//! | 3 | a service (a git remote, a registry, an API, an artifact server) could not be reached or did not answer: trying again later may help |

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
    /// Exit 3: a service could not be reached or timed out; the same command may succeed later.
    Unavailable,
}

/// An error to show the user: `error: MESSAGE`, its causes, a blank line, then `hint: …` lines.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub source: Option<anyhow::Error>,
    /// Lines shown under the message (such as the diagnostics of an invalid state).
    pub details: Vec<String>,
    pub hints: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn new(kind: ErrorKind, message: String) -> Self {
        Error {
            kind,
            message,
            source: None,
            details: Vec::new(),
            hints: Vec::new(),
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Failure, message.into())
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message.into())
    }

    /// A service could not be reached or did not answer in time (exit 3).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unavailable, message.into())
    }

    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The message and its detail lines, without hints (for a report that keeps the why).
    pub fn message_with_details(&self) -> String {
        let mut text = self.message.clone();
        for line in &self.details {
            text.push('\n');
            text.push_str(line);
        }
        text
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Failure => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Unavailable => 3,
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
        for line in &self.details {
            write!(f, "\n{line}")?;
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
            source,
            ..Error::new(ErrorKind::Failure, message)
        }
    }
}
