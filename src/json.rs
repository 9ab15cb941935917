//! JSON documents that remember where their values are.
//!
//! serde_json parses fast but forgets positions and silently keeps the last of two duplicate
//! keys. A [`Document`] keeps the source text beside the parsed value: a scan of the text finds
//! duplicate keys, and on demand maps any JSON pointer back to the line and column of its value
//! (or of its key), which is what makes every diagnostic point at the exact spot in the file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

/// Files larger than this are refused before parsing (a manifest of 10,000 pinned artifacts is
/// about 3 MiB).
pub const MAX_FILE_SIZE: u64 = 32 * 1024 * 1024;

/// serde_json refuses documents nested deeper than this.
const MAX_DEPTH: usize = 128;

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Why a file could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: Option<Position>,
    pub message: String,
    pub hint: Option<String>,
}

/// A key that appears twice in the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Pointer of the duplicated member (the object's pointer plus the key).
    pub pointer: String,
    pub key: String,
    pub first: Position,
    pub second: Position,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    key: Option<usize>,
    value: usize,
}

/// A parsed JSON file with its text, for positions.
#[derive(Debug)]
pub struct Document {
    text: String,
    pub value: Value,
    /// Offsets of line starts, computed when the first position is asked for.
    line_starts: OnceLock<Vec<usize>>,
    index: OnceLock<HashMap<String, Span>>,
    duplicates: Vec<DuplicateKey>,
}

impl Document {
    /// Parses `bytes`; never panics, whatever the input.
    pub fn parse(bytes: Vec<u8>) -> Result<Document, ParseError> {
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                let offset = err.utf8_error().valid_up_to();
                let bytes = err.into_bytes();
                // The valid prefix is UTF-8, so positions can be computed on it.
                let prefix = String::from_utf8_lossy(&bytes[..offset]).into_owned();
                let starts = line_starts(&prefix);
                return Err(ParseError {
                    position: Some(position_in(&prefix, &starts, offset)),
                    message: format!(
                        "file is not valid UTF-8 (invalid byte 0x{:02x})",
                        bytes[offset]
                    ),
                    hint: Some("JSON files must be UTF-8 encoded".into()),
                });
            }
        };
        if text.trim().is_empty() {
            return Err(ParseError {
                position: Some(Position { line: 1, column: 1 }),
                message: "file is empty".into(),
                hint: Some("expected a JSON object, such as `{}`".into()),
            });
        }
        // serde_json keeps the last of two equal keys without a word: the parse notes whether
        // any object had one, and only then does a second pass find where (the common case
        // reads the text once).
        let duplicated = std::cell::Cell::new(false);
        let parsed = {
            let mut de = serde_json::Deserializer::from_str(&text);
            serde::de::DeserializeSeed::deserialize(Noting(&duplicated), &mut de)
                .and_then(|value| de.end().map(|()| value))
        };
        let value: Value = match parsed {
            Ok(value) => value,
            Err(err) => return Err(syntax_error(&text, &line_starts(&text), &err)),
        };
        let mut doc = Document {
            text,
            value,
            line_starts: OnceLock::new(),
            index: OnceLock::new(),
            duplicates: Vec::new(),
        };
        if !duplicated.get() {
            return Ok(doc);
        }
        let mut scanner = Scanner::new(&doc.text, false);
        scanner.value();
        doc.duplicates = scanner
            .duplicates
            .into_iter()
            .map(|(pointer, key, first, second)| DuplicateKey {
                pointer,
                key,
                first: doc.position(first),
                second: doc.position(second),
            })
            .collect();
        Ok(doc)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Keys that appear twice in one object, in file order.
    pub fn duplicates(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    /// Where the value at `pointer` starts; the nearest existing ancestor when the pointer
    /// names nothing (a missing member points at its object).
    pub fn locate(&self, pointer: &str) -> Position {
        self.find(pointer, false)
    }

    /// Where the key of the member at `pointer` starts (the value's position for array
    /// elements and the root).
    pub fn locate_key(&self, pointer: &str) -> Position {
        self.find(pointer, true)
    }

    fn find(&self, pointer: &str, key: bool) -> Position {
        let mut pointer = pointer;
        loop {
            if let Some(span) = self.find_span(pointer) {
                let offset = if key {
                    span.key.unwrap_or(span.value)
                } else {
                    span.value
                };
                return self.position(offset);
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    /// The byte range of the value at `pointer`, if it exists.
    pub fn span(&self, pointer: &str) -> Option<std::ops::Range<usize>> {
        self.find_span(pointer).map(|span| {
            let mut scanner = Scanner::new(&self.text, false);
            scanner.at = span.value;
            scanner.value();
            span.value..scanner.at
        })
    }

    /// The byte offset of the key of the member at `pointer`.
    pub fn key_offset(&self, pointer: &str) -> Option<usize> {
        self.find_span(pointer).and_then(|span| span.key)
    }

    /// The 1-based position of a byte offset.
    pub fn position_of(&self, offset: usize) -> Position {
        self.position(offset)
    }

    fn find_span(&self, pointer: &str) -> Option<Span> {
        self.index
            .get_or_init(|| {
                let mut scanner = Scanner::new(&self.text, true);
                scanner.value();
                scanner.index
            })
            .get(pointer)
            .copied()
    }

    fn position(&self, offset: usize) -> Position {
        let starts = self.line_starts.get_or_init(|| line_starts(&self.text));
        position_in(&self.text, starts, offset)
    }
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// The pointer of a member of the value at `parent`.
pub fn child(parent: &str, token: &str) -> String {
    format!("{parent}/{}", escape_token(token))
}

/// Where one member sits in a JSON text: the offset of its key, and its value's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: usize,
    pub value: std::ops::Range<usize>,
}

/// Finds the member at `path` (object keys from the root) in `text`, which must be JSON that
/// was validated before, without building a tree: one pass that skips every other value. For
/// one pin in a 10,000-pin manifest this costs a scan, where [`Document::parse`] allocates a
/// tree of the whole file. `None` when a key is missing or a value on the way is not an object.
pub fn find_member(text: &str, path: &[&str]) -> Option<Member> {
    let bytes = text.as_bytes();
    let mut at = skip_ws(bytes, 0);
    let mut found = None;
    for (depth, want) in path.iter().enumerate() {
        if bytes.get(at) != Some(&b'{') {
            return None;
        }
        at = skip_ws(bytes, at + 1);
        loop {
            if bytes.get(at) != Some(&b'"') {
                return None; // `}`: the key is not there
            }
            let key_start = at;
            let key_end = skip_string(bytes, at)?;
            let raw = &text[key_start + 1..key_end - 1];
            let matches = if raw.contains('\\') {
                serde_json::from_str::<String>(&text[key_start..key_end]).ok()? == *want
            } else {
                raw == *want
            };
            at = skip_ws(bytes, key_end);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = skip_ws(bytes, at + 1);
            if matches {
                if depth + 1 == path.len() {
                    let end = skip_value(bytes, at)?;
                    found = Some(Member {
                        key: key_start,
                        value: at..end,
                    });
                }
                break;
            }
            at = skip_ws(bytes, skip_value(bytes, at)?);
            match bytes.get(at) {
                Some(b',') => at = skip_ws(bytes, at + 1),
                _ => return None,
            }
        }
    }
    found
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// The offset just past the string starting at `at` (a `"`).
fn skip_string(bytes: &[u8], mut at: usize) -> Option<usize> {
    at += 1;
    loop {
        match bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The offset just past the value starting at `at`.
fn skip_value(bytes: &[u8], mut at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = skip_string(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            while let Some(b) = bytes.get(at) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                at += 1;
            }
            Some(at)
        }
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        text.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1),
    );
    starts
}

fn position_in(text: &str, starts: &[usize], offset: usize) -> Position {
    let offset = offset.min(text.len());
    let line = starts.partition_point(|&start| start <= offset).max(1);
    let start = starts[line - 1];
    let column = text
        .get(start..offset)
        .map_or(offset - start, |s| s.chars().count())
        + 1;
    Position { line, column }
}

fn syntax_error(text: &str, starts: &[usize], err: &serde_json::Error) -> ParseError {
    // serde_json counts columns in bytes; convert to characters for editors.
    let line = err.line().max(1);
    let byte_column = err.column().max(1);
    let offset = starts.get(line - 1).map_or(text.len(), |start| {
        (start + byte_column - 1).min(text.len())
    });
    let position = position_in(text, starts, offset);
    let full = err.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(message, _)| message);
    let (message, hint) = if message.contains("recursion limit exceeded") {
        (
            format!("JSON is nested deeper than {MAX_DEPTH} levels"),
            Some(
                "ferry's files are shallow; this is not a manifest or environment file".to_owned(),
            ),
        )
    } else if err.classify() == serde_json::error::Category::Eof {
        (
            "unexpected end of file: the JSON is incomplete".to_owned(),
            None,
        )
    } else {
        (format!("invalid JSON: {message}"), None)
    };
    ParseError {
        position: Some(position),
        message,
        hint,
    }
}

/// Walks text that serde_json already accepted, recording duplicate keys and (optionally) the
/// offset of every value and key by pointer. The input is valid JSON no deeper than
/// [`MAX_DEPTH`], so the recursion is bounded and no syntax checking is needed.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    pointer: String,
    pending_key: Option<usize>,
    record: bool,
    index: HashMap<String, Span>,
    duplicates: Vec<(String, String, usize, usize)>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, record: bool) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            pointer: String::new(),
            pending_key: None,
            record,
            index: HashMap::new(),
            duplicates: Vec::new(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn value(&mut self) {
        self.skip_ws();
        let key = self.pending_key.take();
        if self.record {
            self.index.insert(
                self.pointer.clone(),
                Span {
                    key,
                    value: self.at,
                },
            );
        }
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                self.string_end();
            }
            _ => {
                while let Some(b) = self.bytes.get(self.at) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.at += 1;
                }
            }
        }
    }

    /// Skips a string starting at the opening quote; returns its raw contents.
    fn string_end(&mut self) -> &'a str {
        let start = self.at + 1;
        let mut i = start;
        while let Some(&b) = self.bytes.get(i) {
            match b {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        &self.text[start..i.min(self.text.len())]
    }

    fn object(&mut self) {
        self.at += 1;
        // Most objects have a handful of keys: a list beats hashing until it grows.
        let mut few: Vec<(Cow<'a, str>, usize)> = Vec::new();
        let mut many: HashMap<Cow<'a, str>, usize> = HashMap::new();
        loop {
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b'}') | None => {
                    self.at += 1;
                    return;
                }
                Some(b',') => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let key_at = self.at;
            let raw = self.string_end();
            let key: Cow<'a, str> = if raw.contains('\\') {
                serde_json::from_str::<String>(&self.text[key_at..self.at])
                    .map_or(Cow::Borrowed(raw), Cow::Owned)
            } else {
                Cow::Borrowed(raw)
            };
            let len = self.pointer.len();
            self.pointer.push('/');
            self.pointer.push_str(&escape_token(&key));
            let first = if many.is_empty() {
                let found = few.iter().find(|(k, _)| *k == key).map(|(_, at)| *at);
                if found.is_none() {
                    few.push((key.clone(), key_at));
                    if few.len() > 16 {
                        many.extend(few.drain(..));
                    }
                }
                found
            } else {
                match many.get(&key) {
                    Some(&at) => Some(at),
                    None => {
                        many.insert(key.clone(), key_at);
                        None
                    }
                }
            };
            if let Some(first) = first {
                self.duplicates
                    .push((self.pointer.clone(), key.into_owned(), first, key_at));
            }
            self.skip_ws();
            self.at += 1; // the colon
            self.pending_key = Some(key_at);
            self.value();
            self.pointer.truncate(len);
        }
    }

    fn array(&mut self) {
        self.at += 1;
        let mut n = 0usize;
        loop {
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b']') | None => {
                    self.at += 1;
                    return;
                }
                Some(b',') => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let len = self.pointer.len();
            self.pointer.push('/');
            self.pointer.push_str(&n.to_string());
            self.value();
            self.pointer.truncate(len);
            n += 1;
        }
    }
}

/// Builds a [`Value`] as serde_json does (objects keep their keys' order), noting in the cell
/// whether an object repeated a key.
#[derive(Clone, Copy)]
struct Noting<'d>(&'d std::cell::Cell<bool>);

impl<'de> serde::de::DeserializeSeed<'de> for Noting<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Noting<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            if object.insert(key, value).is_some() {
                self.0.set(true);
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn find_member_matches_the_parsed_spans() {
        let text = r#"{ "a": [1, {"x": "}"}], "b\u0020c": 2,
  "artifacts": { "web": { "version": "1.0.0" }, "api": "api.zip", "w\"x": true }, "z": null }"#;
        let doc = Document::parse(text.as_bytes().to_vec()).unwrap();
        for path in [
            &["artifacts", "web"][..],
            &["artifacts", "api"],
            &["artifacts", "w\"x"],
            &["b c"],
            &["z"],
            &["a"],
        ] {
            let pointer: String = path
                .iter()
                .map(|t| format!("/{}", escape_token(t)))
                .collect();
            let member = find_member(text, path).unwrap_or_else(|| panic!("{pointer}"));
            assert_eq!(Some(member.value), doc.span(&pointer), "{pointer}");
            assert_eq!(Some(member.key), doc.key_offset(&pointer), "{pointer}");
        }
        assert_eq!(find_member(text, &["artifacts", "nope"]), None);
        assert_eq!(find_member(text, &["a", "x"]), None);
        assert_eq!(find_member(text, &["missing", "web"]), None);
    }

    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(text.as_bytes().to_vec()).expect("valid JSON")
    }

    #[test]
    fn locates_values_and_keys() {
        let d = doc("{\n  \"a\": {\"b/c\": [1, \"é\", {\"d\": true}]},\n  \"x\": null\n}");
        assert_eq!(d.locate(""), Position { line: 1, column: 1 });
        assert_eq!(d.locate("/a"), Position { line: 2, column: 8 });
        assert_eq!(d.locate_key("/a"), Position { line: 2, column: 3 });
        assert_eq!(
            d.locate("/a/b~1c/1"),
            Position {
                line: 2,
                column: 20
            }
        );
        assert_eq!(
            d.locate("/a/b~1c/2/d"),
            Position {
                line: 2,
                column: 31
            }
        );
        assert_eq!(d.locate("/x"), Position { line: 3, column: 8 });
        // Missing members fall back to the nearest ancestor.
        assert_eq!(d.locate("/a/nope/deeper"), Position { line: 2, column: 8 });
    }

    #[test]
    fn spans_cover_whole_values() {
        let text = "{\n  \"a\": {\"b\": [1, \"x]\"]},\n  \"c\": 12.5e3 }";
        let d = doc(text);
        assert_eq!(&text[d.span("/a").unwrap()], "{\"b\": [1, \"x]\"]}");
        assert_eq!(&text[d.span("/a/b/1").unwrap()], "\"x]\"");
        assert_eq!(&text[d.span("/c").unwrap()], "12.5e3");
        assert_eq!(&text[d.span("").unwrap()], text);
        assert_eq!(d.key_offset("/c"), Some(text.find("\"c\"").unwrap()));
        assert_eq!(d.span("/nope"), None);
    }

    #[test]
    fn finds_duplicate_keys_at_every_depth() {
        let d = doc(r#"{"a": 1, "o": {"k": 1, "k": 2}, "a": 3, "\u0061": 4}"#);
        let found: Vec<_> = d.duplicates().iter().map(|d| d.pointer.as_str()).collect();
        assert_eq!(found, ["/o/k", "/a", "/a"]);
        assert_eq!(
            d.duplicates()[0].first,
            Position {
                line: 1,
                column: 16
            }
        );
        assert_eq!(
            d.duplicates()[0].second,
            Position {
                line: 1,
                column: 24
            }
        );
    }

    /// The parse notes a repeated key wherever it is (else the second pass that finds where
    /// is skipped), and builds the value serde_json builds.
    #[test]
    fn a_repeated_key_is_noticed_in_arrays_and_deep_objects() {
        for text in [
            r#"[{"x": [1, {"k": true, "k": false}]}]"#,
            r#"{"a": {"b": {"c": {"d": 1, "d": 2}}}}"#,
            r#"{"a": [[], [{"z": null, "z": null}]]}"#,
        ] {
            let d = doc(text);
            assert_eq!(d.duplicates().len(), 1, "{text}");
            assert_eq!(
                d.value,
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
        for text in [
            r#"{"a": 1, "b": [1.5, -2, 18446744073709551615, "s", null], "c": {"a": 1}}"#,
            r#"[{"k": 1}, {"k": 2}]"#,
        ] {
            let d = doc(text);
            assert!(d.duplicates().is_empty(), "{text}");
            assert_eq!(
                d.value,
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"  \n".to_vec(),
            b"{\"a\": }".to_vec(),
            b"{\"a\": 1".to_vec(),
            vec![b'{', b'"', 0xff, b'"', b'}'],
            "[".repeat(10_000).into_bytes(),
        ];
        for case in cases {
            let err = Document::parse(case).expect_err("invalid input");
            assert!(err.position.is_some(), "{err:?}");
        }
    }

    #[test]
    fn deep_nesting_says_so() {
        let err = Document::parse("[".repeat(10_000).into_bytes()).unwrap_err();
        assert!(
            err.message.contains("nested deeper than 128"),
            "{}",
            err.message
        );
    }

    #[test]
    fn not_utf8_points_at_the_byte() {
        let err = Document::parse(b"{\n  \"a\": \"\xc3\x28\"}".to_vec()).unwrap_err();
        assert_eq!(err.position, Some(Position { line: 2, column: 9 }));
    }
}
