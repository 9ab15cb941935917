//! The JSON Schemas of ferry's files, embedded in the binary, and their validation.
//!
//! The schemas in `schemas/` are the single description of the file formats: editors use them
//! for completion, and `ferry validate` uses them for every structural rule. Their errors are
//! turned into [`Diagnostic`]s with messages written for people (the schema's own
//! `description`s become hints), located at the offending value or key.

use std::sync::OnceLock;

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::diag::{At, Diagnostic};
use crate::json::{self, Document};

/// One of ferry's file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `manifest.json`.
    Manifest,
    /// `environments/<name>.json`.
    Environment,
    /// `<name>-env.json` at the repository root (the seed layout).
    SeedEnvironment,
}

/// The schema files, as shipped in `schemas/`.
pub const FILES: [(&str, &str); 3] = [
    (
        "manifest.schema.json",
        include_str!("../schemas/manifest.schema.json"),
    ),
    (
        "environment.schema.json",
        include_str!("../schemas/environment.schema.json"),
    ),
    (
        "seed-environment.schema.json",
        include_str!("../schemas/seed-environment.schema.json"),
    ),
];

struct Compiled {
    schema: Value,
    validator: Validator,
}

impl Schema {
    fn compiled(self) -> &'static Compiled {
        static CELLS: [OnceLock<Compiled>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let i = self as usize;
        CELLS[i].get_or_init(|| {
            let schema: Value =
                serde_json::from_str(FILES[i].1).expect("embedded schemas are valid JSON");
            let validator = jsonschema::options()
                .should_validate_formats(false)
                .build(&schema)
                .expect("embedded schemas compile");
            Compiled { schema, validator }
        })
    }

    /// Validates `doc` against this schema, appending a diagnostic per problem.
    pub fn check(self, doc: &Document, at: At<'_>, out: &mut Vec<Diagnostic>) {
        let compiled = self.compiled();
        for error in compiled.validator.iter_errors(&doc.value) {
            let instance_path = error.instance_path().as_str().to_owned();
            let schema_path = error.schema_path().as_str().to_owned();
            describe(
                &compiled.schema,
                &schema_path,
                &instance_path,
                error.kind(),
                error.instance(),
                at,
                out,
            );
        }
    }
}

/// The schema node holding the failed keyword (the parent of `schema_path`).
fn node<'s>(schema: &'s Value, schema_path: &str) -> Option<&'s Value> {
    let parent = schema_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    resolve(schema, parent)
}

/// The node at `path` of `schema`, following the local `$ref`s the path goes through (the
/// validator's paths name `$ref` as a step: `/properties/rollout/$ref/properties/waves`).
fn resolve<'s>(schema: &'s Value, path: &str) -> Option<&'s Value> {
    let mut at = schema;
    for token in path.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match (token.as_str(), at.get("$ref").and_then(Value::as_str)) {
            ("$ref", Some(target)) => schema.pointer(target.strip_prefix('#')?)?,
            _ => match at {
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => at.get(&token)?,
            },
        };
    }
    Some(at)
}

fn description(node: Option<&Value>) -> Option<String> {
    node.and_then(|n| n.get("description"))
        .and_then(Value::as_str)
        .map(|d| d.trim_end_matches('.').to_owned())
}

/// The name the schema gives the failed node: a `$defs` entry or a property name.
fn node_name(schema_path: &str) -> &str {
    let mut segments = schema_path.rsplit('/');
    segments.next(); // the keyword
    segments.next().unwrap_or("")
}

fn last_token(pointer: &str) -> String {
    pointer.rsplit_once('/').map_or(String::new(), |(_, t)| {
        t.replace("~1", "/").replace("~0", "~")
    })
}

/// A short rendering of a value for messages.
pub fn show(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected_type(node: Option<&Value>) -> String {
    let article = |t: &str| match t {
        "object" | "array" | "integer" => format!("an {t}"),
        "null" => "null".to_owned(),
        other => format!("a {other}"),
    };
    match node.and_then(|n| n.get("type")) {
        Some(Value::String(t)) => article(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(article)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "another type".to_owned(),
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbouring characters as one edit (optimal string
/// alignment), since that is the commonest typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Why a string failed a `pattern`, in words, for the formats ferry's schemas define.
fn pattern_message(name: &str, field: &str, value: &str) -> String {
    match name {
        "semver" => match semver::Version::parse(value) {
            Err(err) => format!("`{value}` is not a semantic version: {err}"),
            Ok(_) => format!("`{value}` is not a semantic version"),
        },
        "sha256" => {
            let len = value.chars().count();
            if len != 64 {
                format!("`{field}` must be 64 hexadecimal characters, found {len}")
            } else if value.chars().all(|c| c.is_ascii_hexdigit()) {
                format!("`{field}` must be lowercase hexadecimal")
            } else {
                format!("`{field}` contains characters that are not hexadecimal")
            }
        }
        "artifactUrl" => format!(
            "`{}` is not an https://, http://, file:// or oci:// URL",
            show(&Value::String(value.into()))
        ),
        "healthcheck_url" => format!(
            "`{}` is not an http:// or https:// URL",
            show(&Value::String(value.into()))
        ),
        "duration" => format!("`{value}` is not a duration"),
        "deployment_path" if !value.starts_with('/') => {
            format!("`{value}` is not an absolute path")
        }
        "deployment_path" => format!(
            "`{value}` has a `.` or `..` segment, or is `/` itself: the agent deploys under its `--root`, never outside it"
        ),
        "max_size" => format!("`{value}` is not a size (such as `500MiB` or `2GiB`)"),
        "principal" => format!("`{value}` is neither a user (`alice`) nor a team (`org/team`)"),
        "bareArtifact" => format!("`{value}` is not a file name"),
        "name" | "appName" => format!("`{value}` is not a valid name"),
        "check" => crate::model::check_name(value)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| format!("`{value}` is not a check name")),
        _ => format!(
            "`{}` does not have the expected format",
            show(&Value::String(value.into()))
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn describe(
    schema: &Value,
    schema_path: &str,
    pointer: &str,
    kind: &ValidationErrorKind,
    instance: &Value,
    at: At<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let node = node(schema, schema_path);
    let field = last_token(pointer);
    match kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known: Vec<&str> = node
                .and_then(|n| n.get("properties"))
                .and_then(Value::as_object)
                .map(|p| {
                    p.keys()
                        .map(String::as_str)
                        .filter(|k| *k != "$schema")
                        .collect()
                })
                .unwrap_or_default();
            for name in unexpected {
                let hint = match suggest(name, known.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None if known.is_empty() => "no other fields are allowed here".to_owned(),
                    None => format!("expected one of: {}", known.join(", ")),
                };
                out.push(
                    at.error_at_key(
                        &json::child(pointer, name),
                        format!("unknown field `{name}`"),
                    )
                    .hint(hint),
                );
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let hint = node
                .and_then(|n| n.get("properties"))
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("description"))
                .and_then(Value::as_str)
                .map(|d| format!("`{name}`: {}", d.trim_end_matches('.')));
            out.push(
                at.error(pointer, format!("missing required field `{name}`"))
                    .maybe_hint(hint),
            );
        }
        ValidationErrorKind::Type { .. } => {
            let found = type_name(instance);
            if pointer.is_empty() {
                out.push(at.error(
                    pointer,
                    format!("the file must be a JSON object, found {found}"),
                ));
            } else {
                let expected = expected_type(node);
                out.push(
                    at.error(
                        pointer,
                        format!("`{field}` must be {expected}, found {found}"),
                    )
                    .maybe_hint(description(node)),
                );
            }
        }
        ValidationErrorKind::Pattern { .. } => {
            let value = instance.as_str().unwrap_or_default();
            let message = pattern_message(node_name(schema_path), &field, value);
            out.push(at.error(pointer, message).maybe_hint(description(node)));
        }
        ValidationErrorKind::PropertyNames { error } => {
            // The inner error's instance is the offending name.
            let name = error.instance().as_str().unwrap_or_default().to_owned();
            let inner_path = error.schema_path().as_str().to_owned();
            let inner_node =
                schema.pointer(inner_path.rsplit_once('/').map_or("", |(parent, _)| parent));
            let message = match error.kind() {
                ValidationErrorKind::Pattern { .. } => {
                    pattern_message(node_name(&inner_path), &field, &name)
                }
                _ => format!("`{name}` is not a valid name here"),
            };
            out.push(
                at.error_at_key(&json::child(pointer, &name), message)
                    .maybe_hint(description(inner_node).or_else(|| description(node))),
            );
        }
        ValidationErrorKind::UniqueItems => {
            out.push(
                at.error(
                    pointer,
                    format!("`{field}` lists the same entry more than once"),
                )
                .maybe_hint(description(node)),
            );
        }
        ValidationErrorKind::Not { schema: not } if not.get("required").is_some() => {
            // `"not": {"required": [a, b]}`: fields that exclude each other.
            let names: Vec<String> = not["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|n| format!("`{n}`"))
                .collect();
            let pointer = names
                .last()
                .map(|n| json::child(pointer, n.trim_matches('`')))
                .unwrap_or_else(|| pointer.to_owned());
            out.push(
                at.error_at_key(
                    &pointer,
                    format!(
                        "`{field}` sets {} together: they exclude each other",
                        names.join(" and ")
                    ),
                )
                .hint("keep one of them (`hosts` lists several hosts; `host` is the one host)"),
            );
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            // An item of an array: named after its array, described by it.
            let parent = pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
            let (what, hint) = if field.parse::<usize>().is_ok() {
                let array = schema_path
                    .rsplit_once("/items/")
                    .and_then(|(array, _)| resolve(schema, array));
                (
                    format!("entry of `{}`", last_token(parent)),
                    description(node).or_else(|| description(array)),
                )
            } else {
                (format!("`{field}`"), description(node))
            };
            out.push(
                at.error(
                    pointer,
                    format!("`{}` is not a valid {what}", show(instance)),
                )
                .maybe_hint(hint),
            );
        }
        _ => {
            let subject = if field.is_empty() {
                "value".to_owned()
            } else {
                format!("`{field}`")
            };
            let detail = match kind {
                ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
                ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
                ValidationErrorKind::MinLength { limit } => {
                    format!("must be at least {limit} characters long")
                }
                ValidationErrorKind::MaxLength { limit } => {
                    format!("must be at most {limit} characters long")
                }
                ValidationErrorKind::MinItems { limit } => {
                    format!("must list at least {limit} entries")
                }
                ValidationErrorKind::Enum { options } => format!("must be one of {options}"),
                _ => format!("is not valid ({})", kind.keyword()),
            };
            out.push(
                at.error(
                    pointer,
                    format!("{subject} {detail}, found `{}`", show(instance)),
                )
                .maybe_hint(description(node)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schemas_compile() {
        for schema in [
            Schema::Manifest,
            Schema::Environment,
            Schema::SeedEnvironment,
        ] {
            let _ = schema.compiled();
        }
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            suggest("sha265", ["version", "url", "sha256"]),
            Some("sha256")
        );
        assert_eq!(
            suggest("promote_from", ["promotes_from", "policy"]),
            Some("promotes_from")
        );
        assert_eq!(suggest("wbe", ["api", "web"]), Some("web"));
        assert_eq!(suggest("colour", ["version", "url", "sha256"]), None);
    }
}
