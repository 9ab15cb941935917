//! The architecture, checked: the modules of `src/` form layers with no import cycle, nothing
//! below `cmd/` reaches up into it, commands do not import each other, and no module hands
//! another a `Result<_, String>`. Read from the source text (what `use crate::…` and
//! `crate::…` paths name), so a change that breaks a layer fails here with the path that did.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's lines of code (numbered from 1), without comments and without the test module at
/// its end (tests may reach anywhere).
fn lines_of(text: &str) -> Vec<(usize, &str)> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(n, l)| (n + 1, l))
        .collect()
}

fn code_of(text: &str) -> String {
    lines_of(text)
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file of `src/` belongs to (`agent` for `src/agent/execute.rs`), and
/// for `cmd/` files the command (`cmd::bump`).
fn module_of(path: &Path) -> (String, Option<String>) {
    let rel = path.strip_prefix(src()).unwrap();
    let mut parts = rel
        .iter()
        .map(|p| p.to_str().unwrap().trim_end_matches(".rs"));
    let top = parts.next().unwrap().to_owned();
    let sub = parts.next().map(str::to_owned);
    (top, sub)
}

/// The `crate::NAME` paths a piece of code names, with the segment after `cmd` for commands.
fn crate_paths(code: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let next = after[name.len()..]
            .strip_prefix("::")
            .map(|t| {
                t.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|t| !t.is_empty());
        if !name.is_empty() {
            found.push((name, next));
        }
        rest = after;
    }
    found
}

struct Tree {
    /// module → modules it names, each with one file that does.
    edges: BTreeMap<String, BTreeMap<String, String>>,
    /// (command file, the other command it names)
    command_imports: Vec<(String, String)>,
}

fn tree() -> Tree {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut command_imports = Vec::new();
    for file in files {
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let (module, sub) = module_of(&file);
        let shown = file
            .strip_prefix(src().parent().unwrap())
            .unwrap()
            .display()
            .to_string();
        for (target, next) in crate_paths(&code) {
            if target == module {
                if module == "cmd"
                    && let (Some(from), Some(to)) = (&sub, &next)
                    && from != "mod"
                    && from != to
                    && !["shared", "cli"].contains(&to.as_str())
                {
                    command_imports.push((shown.clone(), format!("cmd::{to}")));
                }
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .entry(target)
                .or_insert_with(|| shown.clone());
        }
    }
    Tree {
        edges,
        command_imports,
    }
}

#[test]
fn nothing_below_cmd_imports_cmd() {
    let tree = tree();
    let up: Vec<String> = tree
        .edges
        .iter()
        .filter(|(module, _)| !["cmd", "main", "lib"].contains(&module.as_str()))
        .filter_map(|(module, to)| to.get("cmd").map(|file| format!("{module} ({file})")))
        .collect();
    assert!(up.is_empty(), "modules below cmd/ that import it: {up:?}");
}

#[test]
fn commands_do_not_import_each_other() {
    let tree = tree();
    assert!(
        tree.command_imports.is_empty(),
        "a command imports another (move what they share below cmd/): {:?}",
        tree.command_imports
    );
}

#[test]
fn the_modules_form_layers_with_no_cycle() {
    let tree = tree();
    // Depth-first search for a cycle, reporting its path and a file for each step.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = stack[at..]
                .iter()
                .enumerate()
                .map(|(i, from)| {
                    let to = stack.get(at + i + 1).copied().unwrap_or(node);
                    format!("{from} → {to} ({})", edges[*from][to])
                })
                .collect();
            cycle.dedup();
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        if let Some(next) = edges.get(node) {
            for to in next.keys() {
                if let Some(cycle) = visit(to, edges, stack, done) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in tree.edges.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(module, &tree.edges, &mut stack, &mut done) {
            panic!("an import cycle between modules: {cycle:#?}");
        }
    }
}

/// Whether `line` names a `Result<…, String>`: `String` as the last of its generic arguments.
fn string_error(line: &str) -> bool {
    let compact: String = line.split_whitespace().collect();
    let mut rest = compact.as_str();
    while let Some(at) = rest.find("Result<") {
        let args = &rest[at + "Result<".len()..];
        let (mut depth, mut last) = (0usize, 0usize);
        for (i, c) in args.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ',' if depth == 0 => last = i + 1,
                '>' | ')' | ']' if depth == 0 => {
                    if last > 0 && &args[last..i] == "String" {
                        return true;
                    }
                    break;
                }
                '>' | ')' | ']' => depth -= 1,
                _ => {}
            }
        }
        rest = args;
    }
    false
}

#[test]
fn no_module_returns_a_string_error() {
    assert!(string_error("fn f() -> Result<(), String> {"));
    assert!(string_error("fn f() -> Result<Vec<(u8, u8)>, String> {"));
    assert!(!string_error(
        "fn f() -> Result<BTreeMap<String, String>, GitHubError> {"
    ));
    assert!(!string_error(
        "fn f() -> Result<BTreeMap<String, String>> {"
    ));
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in lines_of(&text) {
            if string_error(line) {
                found.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(src().parent().unwrap())
                        .unwrap()
                        .display(),
                    n,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "errors as bare strings (give them a type: thiserror):\n{}",
        found.join("\n")
    );
}

/// Lines of code under `src/` (tests excluded) that contain `needle`, outside the files
/// `allowed` starts.
fn lines_with(needle: &str, allowed: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for file in files {
        let shown = file
            .strip_prefix(src().parent().unwrap())
            .unwrap()
            .display()
            .to_string();
        if allowed.iter().any(|a| shown.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in lines_of(&text) {
            if line.contains(needle) {
                found.push(format!("{shown}:{n}: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn one_runtime_per_process() {
    let found = lines_with("runtime::Builder", &["src/net/"]);
    assert!(
        found.is_empty(),
        "a tokio runtime built outside src/net/ (use net::block_on or net::runtime()):\n{}",
        found.join("\n")
    );
}

#[test]
fn commands_reach_git_through_the_store() {
    let mut found = lines_with(".repo()", &["src/store/", "src/forge/", "src/enforce.rs"]);
    found.extend(lines_with(
        "git2::Repository",
        &["src/store/", "src/forge/", "src/enforce.rs"],
    ));
    assert!(
        found.is_empty(),
        "a raw repository outside the store, the forges and the hook's rules:\n{}",
        found.join("\n")
    );
}
