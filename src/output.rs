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
        let _ = writeln!(out, "{}", printable(line.as_ref()));
    }

    /// Prints `value` as pretty JSON to stdout.
    pub fn json(&self, value: &impl Serialize) {
        let text = serde_json::to_string_pretty(value).expect("output types serialize");
        self.data(text);
    }

    /// Prints a status line to stderr, unless `--quiet`.
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{}", printable(line.as_ref()));
        }
    }

    /// Prints a line to stderr even under `--quiet` (diagnostics that must not be lost).
    pub fn stderr(&self, line: impl AsRef<str>) {
        let _ = writeln!(io::stderr().lock(), "{}", printable(line.as_ref()));
    }
}

/// `text` safe for a terminal: what others wrote (a pull request's title or body, a login, a
/// status's description, a commit's subject) may hold escapes that would rewrite the screen.
/// Line feeds and tabs stay, a carriage return before a line feed goes, and every other
/// control character (C0, DEL, C1) is shown as U+FFFD.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let text = text.replace("\r\n", "\n");
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// A time as RFC 3339 in UTC, such as `2026-10-14T12:00:01Z`.
pub fn format_time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// The first `chars` characters of `text` (all of it when shorter): commit ids and digests
/// shortened for people. Safe on any input, unlike slicing, since records, annotations and
/// historical manifests can hold strings no validation has seen.
pub fn abbrev(text: &str, chars: usize) -> &str {
    text.char_indices()
        .nth(chars)
        .map_or(text, |(end, _)| &text[..end])
}

/// Writes `bytes` to stdout as they are (a completion script, a manual page). A closed pipe
/// (`ferry man | head`) ends the output, not the process with a panic.
pub fn write_raw(bytes: &[u8]) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(bytes);
}

#[cfg(test)]
mod tests {
    #[test]
    fn abbrev_never_panics() {
        assert_eq!(super::abbrev("0123456789abcdef", 7), "0123456");
        assert_eq!(super::abbrev("abc", 7), "abc");
        assert_eq!(super::abbrev("", 7), "");
        assert_eq!(super::abbrev("ééééééééé", 7), "ééééééé");
    }
}
