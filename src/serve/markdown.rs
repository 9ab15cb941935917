//! A promotion request's body, Markdown as ferry writes it, read into blocks a template
//! renders with escaping: headings, paragraphs, lists, tables, each of spans of text, code
//! and bold. No HTML from the body ever reaches the page as HTML: what is not one of these
//! is text.

use serde::Serialize;

/// A block of the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Block {
    Heading {
        level: u8,
        spans: Vec<Span>,
    },
    Paragraph {
        spans: Vec<Span>,
    },
    List {
        items: Vec<Vec<Span>>,
    },
    Table {
        head: Vec<Vec<Span>>,
        rows: Vec<Vec<Vec<Span>>>,
    },
}

/// A run of text: plain, `code` or **bold**.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub text: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub code: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strong: bool,
}

/// The blocks of `text`.
pub fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let flush = |paragraph: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !paragraph.is_empty() {
            blocks.push(Block::Paragraph {
                spans: spans(&paragraph.join(" ")),
            });
            paragraph.clear();
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            flush(&mut paragraph, &mut blocks);
            i += 1;
            continue;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading {
                level: u8::try_from(hashes).expect("at most 6"),
                spans: spans(trimmed[hashes..].trim()),
            });
            i += 1;
            continue;
        }
        if trimmed.starts_with("- ") || trimmed.starts_with("* ") {
            flush(&mut paragraph, &mut blocks);
            let mut items = Vec::new();
            while i < lines.len() {
                let item = lines[i].trim();
                match item.strip_prefix("- ").or_else(|| item.strip_prefix("* ")) {
                    Some(rest) => items.push(spans(rest)),
                    None => break,
                }
                i += 1;
            }
            blocks.push(Block::List { items });
            continue;
        }
        if trimmed.starts_with('|') && lines.get(i + 1).is_some_and(|l| separator(l)) {
            flush(&mut paragraph, &mut blocks);
            let head = cells(trimmed);
            i += 2;
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                rows.push(cells(lines[i].trim()));
                i += 1;
            }
            blocks.push(Block::Table { head, rows });
            continue;
        }
        paragraph.push(trimmed);
        i += 1;
    }
    flush(&mut paragraph, &mut blocks);
    blocks
}

/// `|---|:---:|`: the line under a table's head.
fn separator(line: &str) -> bool {
    let line = line.trim();
    line.starts_with('|')
        && line.contains('-')
        && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// The cells of a table row.
fn cells(row: &str) -> Vec<Vec<Span>> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(|cell| spans(cell.trim())).collect()
}

/// The spans of one line: `code` between backticks, **bold** between double stars.
fn spans(text: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut plain = String::new();
    let mut strong = false;
    let mut rest = text;
    let push = |out: &mut Vec<Span>, text: &mut String, code: bool, strong: bool| {
        if !text.is_empty() {
            out.push(Span {
                text: std::mem::take(text),
                code,
                strong,
            });
        }
    };
    while let Some(c) = rest.chars().next() {
        if c == '`'
            && let Some(end) = rest[1..].find('`')
        {
            push(&mut out, &mut plain, false, strong);
            let mut code = rest[1..1 + end].to_owned();
            push(&mut out, &mut code, true, strong);
            rest = &rest[end + 2..];
            continue;
        }
        if rest.starts_with("**") && (strong || rest[2..].contains("**")) {
            push(&mut out, &mut plain, false, strong);
            strong = !strong;
            rest = &rest[2..];
            continue;
        }
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    push(&mut out, &mut plain, false, strong);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(spans: &[Span]) -> String {
        spans.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn a_promotion_body_reads_as_blocks() {
        let body = "**Rollback.** Promotes 1 app from `dev` (abc) to `staging`.\n\n| App | From | To |\n|---|---|---|\n| web | — | 1.0.0 |\n\n## Gates\n- ✅ `soak`: ok\n- ❌ `checks`: <script>alert(1)</script>\n";
        let blocks = blocks(body);
        let Block::Paragraph { spans } = &blocks[0] else {
            panic!("{blocks:?}")
        };
        assert!(spans[0].strong && spans[0].text == "Rollback.");
        assert!(spans.iter().any(|s| s.code && s.text == "dev"));
        let Block::Table { head, rows } = &blocks[1] else {
            panic!("{blocks:?}")
        };
        assert_eq!(head.len(), 3);
        assert_eq!(text(&rows[0][2]), "1.0.0");
        assert!(matches!(&blocks[2], Block::Heading { level: 2, .. }));
        let Block::List { items } = &blocks[3] else {
            panic!("{blocks:?}")
        };
        // Markup in the body is text, escaped where it is rendered.
        assert_eq!(text(&items[1]), "❌ checks: <script>alert(1)</script>");
    }

    #[test]
    fn unbalanced_marks_are_text() {
        assert_eq!(text(&spans("a `b and **c")), "a `b and **c");
    }
}
