//! Editing pins in a manifest's text, in place: only the changed values are rewritten, so
//! formatting, key order and every other pin stay byte for byte, and a commit's diff is exactly
//! the change. Many pins change in one pass over the original text (a promotion of 1,000 apps
//! parses the manifest once).

use std::ops::Range;

use crate::json::{self, Document};
use crate::model::Pin;

/// The text of `doc` with each app's value replaced by its pin, or added after the last
/// artifact. `None` when the manifest has no `artifacts` object.
pub fn set_pins(doc: &Document, pins: &[(&str, &Pin)]) -> Option<String> {
    let text = doc.text();
    let members = doc.value.get("artifacts").and_then(|a| a.as_object())?;
    let artifacts = doc.span("/artifacts")?;
    let unit = unit(text);
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut added: Vec<(&str, &Pin)> = Vec::new();
    for (app, pin) in pins {
        let pointer = json::child("/artifacts", app);
        match doc.span(&pointer) {
            Some(span) => {
                let key = doc.key_offset(&pointer).unwrap_or(span.start);
                let rendered = render_in_place(text, key, span.clone(), pin, unit);
                edits.push((span, rendered));
            }
            None => added.push((app, pin)),
        }
    }
    if !added.is_empty() {
        let key = |app: &str| serde_json::to_string(app).expect("strings serialize");
        match members.keys().next_back() {
            Some(last) => {
                let last_pointer = json::child("/artifacts", last);
                let last_span = doc.span(&last_pointer)?;
                let last_key = doc.key_offset(&last_pointer)?;
                let multiline = text[artifacts.start..last_key].contains('\n');
                let last_value = &text[last_span.clone()];
                let mut insertion = String::new();
                for (app, pin) in &added {
                    if multiline {
                        let indent = line_indent(text, last_key);
                        let block = last_value.contains('\n') || !last_value.starts_with('{');
                        let pin_text = render_pin(pin, block, false, indent, unit);
                        insertion.push_str(&format!(",\n{indent}{}: {pin_text}", key(app)));
                    } else {
                        let pin_text = render_pin(pin, false, last_value.starts_with("{ "), "", "");
                        insertion.push_str(&format!(", {}: {pin_text}", key(app)));
                    }
                }
                edits.push((last_span.end..last_span.end, insertion));
            }
            None => {
                let base = line_indent(
                    text,
                    doc.key_offset("/artifacts").unwrap_or(artifacts.start),
                );
                let inner = format!("{base}{unit}");
                let entries: Vec<String> = added
                    .iter()
                    .map(|(app, pin)| {
                        format!(
                            "{inner}{}: {}",
                            key(app),
                            render_pin(pin, true, false, &inner, unit)
                        )
                    })
                    .collect();
                edits.push((
                    artifacts.clone(),
                    format!("{{\n{}\n{base}}}", entries.join(",\n")),
                ));
            }
        }
    }
    // Back to front, so earlier offsets stay valid.
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = text.to_owned();
    for (range, replacement) in edits {
        out.replace_range(range, &replacement);
    }
    Some(out)
}

/// `text` with the value of one existing pin (found by [`json::find_member`]) replaced: the
/// single-pin edit of `ferry bump`, without a parsed document.
pub fn replace_pin(text: &str, member: &json::Member, pin: &Pin) -> String {
    let rendered = render_in_place(text, member.key, member.value.clone(), pin, unit(text));
    let mut out = String::with_capacity(text.len() + rendered.len());
    out.push_str(&text[..member.value.start]);
    out.push_str(&rendered);
    out.push_str(&text[member.value.end..]);
    out
}

/// A pin formatted like the value at `span` it replaces (one line or a block, and indented
/// like its key at `key`).
fn render_in_place(text: &str, key: usize, span: Range<usize>, pin: &Pin, unit: &str) -> String {
    let old = &text[span];
    let indent = line_indent(text, key);
    render_pin(pin, old.contains('\n'), old.starts_with("{ "), indent, unit)
}

/// The whitespace that starts the line holding `offset`.
fn line_indent(text: &str, offset: usize) -> &str {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The file's indentation unit: a tab, or the smallest run of leading spaces (2 by default).
fn unit(text: &str) -> &'static str {
    let mut smallest = usize::MAX;
    for line in text.lines().skip(1).take(50) {
        if line.starts_with('\t') {
            return "\t";
        }
        let n = line.len() - line.trim_start_matches(' ').len();
        if n > 0 {
            smallest = smallest.min(n);
        }
    }
    match smallest {
        4 => "    ",
        3 => "   ",
        1 => " ",
        _ => "  ",
    }
}

fn render_pin(pin: &Pin, multiline: bool, spaced: bool, indent: &str, unit: &str) -> String {
    let field = |name: &str, value: &str| {
        format!(
            "\"{name}\": {}",
            serde_json::to_string(value).expect("strings serialize")
        )
    };
    let fields = [
        field("version", &pin.version),
        field("url", &pin.url),
        field("sha256", &pin.sha256),
    ];
    if multiline {
        let inner = format!("{indent}{unit}");
        format!(
            "{{\n{inner}{}\n{indent}}}",
            fields.join(&format!(",\n{inner}"))
        )
    } else if spaced {
        format!("{{ {} }}", fields.join(", "))
    } else {
        format!("{{{}}}", fields.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(version: &str) -> Pin {
        Pin {
            version: version.into(),
            url: format!("https://a/{version}"),
            sha256: "d".repeat(64),
        }
    }

    #[test]
    fn many_pins_in_one_pass() {
        let text = "{\n  \"artifacts\": {\n    \"a\": {\"version\": \"1.0.0\", \"url\": \"https://a/1.0.0\", \"sha256\": \"x\"},\n    \"b\": \"b.zip\",\n    \"c\": {\"version\": \"3.0.0\", \"url\": \"u\", \"sha256\": \"y\"}\n  }\n}\n";
        let doc = Document::parse(text.as_bytes().to_vec()).unwrap();
        let (a, c, d, e) = (pin("1.1.0"), pin("3.1.0"), pin("0.1.0"), pin("0.2.0"));
        let out = set_pins(&doc, &[("c", &c), ("a", &a), ("d", &d), ("e", &e)]).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["artifacts"]["a"]["version"], "1.1.0");
        assert_eq!(value["artifacts"]["b"], "b.zip");
        assert_eq!(value["artifacts"]["c"]["version"], "3.1.0");
        assert_eq!(value["artifacts"]["d"]["version"], "0.1.0");
        assert_eq!(value["artifacts"]["e"]["version"], "0.2.0");
        // Untouched lines stay as they were.
        assert!(out.contains("    \"b\": \"b.zip\",\n"));
        let keys: Vec<&String> = value["artifacts"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    }

    /// A bump edits the text one of two ways: the whole document parsed (`set_pins`), or the
    /// one pin found in the text (`replace_pin`, on a tree validated before). They must write
    /// the same bytes, whatever the layout.
    #[test]
    fn replacing_one_pin_in_the_text_writes_what_the_parsed_edit_writes() {
        let layouts = [
            "{\n  \"artifacts\": {\n    \"a\": {\"version\": \"1.0.0\", \"url\": \"https://a/1.0.0\", \"sha256\": \"x\"},\n    \"b\": \"b.zip\"\n  }\n}\n",
            "{\n    \"artifacts\": {\n        \"b\": \"b.zip\",\n        \"a\": {\n            \"version\": \"1.0.0\",\n            \"url\": \"u\",\n            \"sha256\": \"x\"\n        }\n    }\n}\n",
            "{\"artifacts\":{\"a\":{\"version\":\"1.0.0\",\"url\":\"u\",\"sha256\":\"x\"}}}",
            "{\r\n\t\"artifacts\": {\r\n\t\t\"a\": { \"version\": \"1.0.0\", \"url\": \"u\", \"sha256\": \"x\" }\r\n\t}\r\n}\r\n",
        ];
        let new = pin("1.1.0");
        for text in layouts {
            let doc = Document::parse(text.as_bytes().to_vec()).unwrap();
            let parsed = set_pins(&doc, &[("a", &new)]).unwrap();
            let member = json::find_member(text, &["artifacts", "a"]).unwrap();
            assert_eq!(replace_pin(text, &member, &new), parsed, "{text:?}");
        }
    }
}
