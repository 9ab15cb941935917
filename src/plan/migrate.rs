//! `ferry migrate`'s planning: one branch of the seed layout (`manifest.json` pinning artifacts
//! by bare file name, `dev-env.json`, `staging-env.json`, `prod-env.json` at the root) turned
//! into ferry's own layout (every pin `{version, url, sha256}`, `environments/<name>.json`).
//!
//! Two pure steps around the one effect, hashing the artifacts: [`analyse`] reads a branch's
//! files, reports every invalid value with its file, line and column (or, with
//! `--drop-invalid`, drops the optional fields that hold one) and lists the bare pins with
//! the version each file name carries; [`build`] then writes the new files from the digests
//! and validates the resulting tree exactly as `ferry validate` would. Nothing here reads a
//! file or the network, so every rule is unit-tested directly.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::diag::{At, Diagnostic, Problem};
use crate::json::{self, Document};
use crate::model::{Pin, SEED_ORDER};
use crate::plan::{edit, textdiff};
use crate::store::TreeSource;
use crate::validate::{self, ENVIRONMENTS_DIR, MANIFEST, State};

/// The seed layout's environment files end with this.
const SEED_SUFFIX: &str = "-env.json";

/// Archive extensions stripped from a file name to find its version, longest first.
pub const EXTENSIONS: [&str; 15] = [
    ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tgz", ".tbz2", ".txz", ".tar", ".zip", ".jar",
    ".war", ".ear", ".gz", ".xz", ".zst",
];

/// The field of a seed app without which it cannot be deployed: never dropped.
const REQUIRED: &str = "deployment_path";

/// Which layout a branch's files are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `environments/` and no seed file: migrated already (or never seed).
    Native,
    /// Seed files (perhaps beside `environments/`, which [`analyse`] reports).
    Seed,
    /// No environment file at all (which [`analyse`] reports).
    Neither,
}

/// The layout of the files of one branch (paths as [`TreeSource::files`] gives them).
pub fn layout(files: &BTreeMap<String, Vec<u8>>) -> Found {
    let seed = files.keys().any(|p| is_seed_file(p));
    let native = files
        .keys()
        .any(|p| p.starts_with(&format!("{ENVIRONMENTS_DIR}/")) && p.ends_with(".json"));
    match (seed, native) {
        (true, _) => Found::Seed,
        (false, true) => Found::Native,
        (false, false) => Found::Neither,
    }
}

fn is_seed_file(path: &str) -> bool {
    !path.contains('/') && path.ends_with(SEED_SUFFIX) && path.len() > SEED_SUFFIX.len()
}

/// A pin by file name, and what the file name says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BarePin {
    pub app: String,
    pub file_name: String,
    pub version: String,
}

/// A field dropped by `--drop-invalid`: the problem, where it was, and the field's pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub diagnostic: Diagnostic,
    /// The pointer of the dropped member (`/my-api/healthcheck_url`).
    pub pointer: String,
}

impl Dropped {
    /// `healthcheck_url` of `my-api`, or `version` (of the manifest).
    pub fn what(&self) -> String {
        let tokens = tokens(&self.pointer);
        match tokens.as_slice() {
            [app, field] => format!("`{field}` of `{app}`"),
            [field] => format!("`{field}`"),
            _ => format!("`{}`", self.pointer),
        }
    }
}

/// One seed environment file, its apps with any dropped field removed.
#[derive(Debug, Clone)]
struct SeedEnv {
    /// `dev`, `staging`, `prod` (`production-env.json` is `prod` too).
    name: String,
    path: String,
    apps: Map<String, Value>,
}

/// A branch read and checked.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub branch: String,
    /// Every problem that stops the migration, with its position.
    pub errors: Vec<Diagnostic>,
    /// Fields dropped (only with `--drop-invalid`).
    pub dropped: Vec<Dropped>,
    /// The pins to convert, in the manifest's order.
    pub pins: Vec<BarePin>,
    files: BTreeMap<String, Vec<u8>>,
    envs: Vec<SeedEnv>,
    /// Top-level members of the manifest to drop.
    manifest_drops: Vec<String>,
}

/// The name of the environment a seed file describes (`production-env.json`: `prod`).
fn env_of_seed_file(path: &str) -> &str {
    match path.trim_end_matches(SEED_SUFFIX) {
        "production" => "prod",
        other => other,
    }
}

/// The unescaped tokens of a JSON pointer.
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Reads the seed files of `branch` (`files` as [`TreeSource::files`] gives them) and checks
/// them with ferry's validator, plus the version each bare file name must carry. `env` is the
/// environment whose branch this is, if any: its own file must be there. With `drop_invalid`,
/// an invalid optional field of an app (or the manifest's `version` or `description`) is
/// dropped and recorded instead of being an error.
pub fn analyse(
    branch: &str,
    env: Option<&str>,
    files: &BTreeMap<String, Vec<u8>>,
    drop_invalid: bool,
) -> Analysis {
    let source = TreeSource::from_files(branch, files.clone());
    let checked = validate::check(&source);
    let mut errors = Vec::new();
    let mut dropped: Vec<Dropped> = Vec::new();
    let mut manifest_drops: Vec<String> = Vec::new();
    let mut env_drops: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let prefix = format!("{branch}:");
    for diagnostic in checked.report.errors {
        let path = diagnostic
            .file
            .strip_prefix(&prefix)
            .unwrap_or(&diagnostic.file)
            .to_owned();
        let tokens = tokens(&diagnostic.pointer);
        let droppable = drop_invalid
            && diagnostic.line.is_some()
            && if is_seed_file(&path) {
                tokens.len() >= 2 && tokens[1] != REQUIRED
            } else {
                path == MANIFEST
                    && tokens.len() == 1
                    && (tokens[0] == "version" || tokens[0] == "description")
            };
        if !droppable {
            errors.push(diagnostic);
            continue;
        }
        let pointer = if is_seed_file(&path) {
            let list = env_drops.entry(path).or_default();
            let member = (tokens[0].clone(), tokens[1].clone());
            if !list.contains(&member) {
                list.push(member);
            }
            json::child(&json::child("", &tokens[0]), &tokens[1])
        } else {
            if !manifest_drops.contains(&tokens[0]) {
                manifest_drops.push(tokens[0].clone());
            }
            json::child("", &tokens[0])
        };
        if !dropped
            .iter()
            .any(|d| d.pointer == pointer && d.diagnostic.file == diagnostic.file)
        {
            dropped.push(Dropped {
                diagnostic,
                pointer,
            });
        }
    }

    // Each bare pin's file name must carry its version.
    let mut pins = Vec::new();
    let manifest_file = format!("{prefix}{MANIFEST}");
    if let Some(doc) = files
        .get(MANIFEST)
        .and_then(|bytes| Document::parse(bytes.clone()).ok())
    {
        let at = At::new(&manifest_file, Some(&doc));
        let artifacts = doc.value.get("artifacts").and_then(Value::as_object);
        for (app, value) in artifacts.into_iter().flatten() {
            let Some(file_name) = value.as_str() else {
                continue; // pinned already: kept as it is
            };
            match version_from_file_name(app, file_name) {
                Ok(version) => pins.push(BarePin {
                    app: app.clone(),
                    file_name: file_name.to_owned(),
                    version: version.to_string(),
                }),
                Err(problem) => errors.push(
                    at.error(&json::child("/artifacts", app), problem.0)
                        .hint(format!(
                            "name the file `{app}-VERSION{}` (a semantic version such as `1.0.4`), or pin `{app}` by hand as {{\"version\": …, \"url\": …, \"sha256\": …}}",
                            extension_of(file_name).unwrap_or(".zip")
                        )),
                ),
            }
        }
    }

    // The seed environments, in promotion order, with their dropped fields removed.
    let mut envs = Vec::new();
    for seed in SEED_ORDER {
        let path = format!("{seed}{SEED_SUFFIX}");
        let Some(Ok(doc)) = files.get(&path).map(|b| Document::parse(b.clone())) else {
            continue;
        };
        let Value::Object(mut apps) = doc.value else {
            continue; // reported by the validator
        };
        for (app, field) in env_drops.get(&path).into_iter().flatten() {
            if let Some(Value::Object(entry)) = apps.get_mut(app) {
                entry.shift_remove(field);
            }
        }
        envs.push(SeedEnv {
            name: env_of_seed_file(&path).to_owned(),
            path,
            apps,
        });
    }
    if let Some(env) = env
        && errors.is_empty()
        && !envs.iter().any(|e| e.name == env)
    {
        let wanted = if env == "prod" {
            "prod-env.json".to_owned()
        } else {
            format!("{env}{SEED_SUFFIX}")
        };
        errors.push(
            At::new(&format!("{prefix}{wanted}"), None)
                .error_at(
                    None,
                    format!("branch `{branch}` is `{env}`'s, but has no `{wanted}`"),
                )
                .hint(format!(
                    "add `{wanted}` on `{branch}`: each branch describes its own environment"
                )),
        );
    }
    Analysis {
        branch: branch.to_owned(),
        errors,
        dropped,
        pins,
        files: files.clone(),
        envs,
        manifest_drops,
    }
}

/// The extension [`EXTENSIONS`] knows at the end of `file_name`.
fn extension_of(file_name: &str) -> Option<&'static str> {
    EXTENSIONS
        .iter()
        .copied()
        .find(|e| file_name.len() > e.len() && file_name.ends_with(e))
}

/// The version in an artifact's file name: `my-api-1.0.4.zip` of app `my-api` is `1.0.4`.
/// The app's name, then `-` or `_`, then an optional `v`, the version, and an archive
/// extension ([`EXTENSIONS`], or none).
pub fn version_from_file_name(app: &str, file_name: &str) -> Result<semver::Version, Problem> {
    let rest = file_name
        .strip_prefix(app)
        .and_then(|r| r.strip_prefix(['-', '_']))
        .ok_or_else(|| {
            format!("cannot read a version from `{file_name}`: it does not start with `{app}-`")
        })?;
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let version = match extension_of(rest) {
        Some(extension) => &rest[..rest.len() - extension.len()],
        None => rest,
    };
    semver::Version::parse(version).map_err(|e| {
        Problem(format!(
            "cannot read a version from `{file_name}`: `{version}` is not a semantic version ({e})"
        ))
    })
}

/// Where the artifact `file_name` is under `base` (a URL, `file:///dir` for a directory).
pub fn artifact_url(base: &str, file_name: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{file_name}")
    } else {
        format!("{base}/{file_name}")
    }
}

/// One branch's migration, planned and validated.
#[derive(Debug, Clone)]
pub struct Planned {
    pub branch: String,
    /// The files written (added or replaced).
    pub files: Vec<(String, Vec<u8>)>,
    /// The files removed: the seed environment files.
    pub removed: Vec<String>,
    /// The pins converted, as written.
    pub pins: Vec<(String, Pin)>,
    /// The change as unified diffs, one per file.
    pub diff: String,
    /// The resulting state (valid).
    pub state: State,
}

/// The migration of `analysis` (which must have no errors): the pins pinned with `digests`
/// (by URL, under `base`), `environments/<name>.json` from each seed file with its branch
/// from `branches` (by environment), the seed files removed; then the resulting tree is
/// validated as `ferry validate` would. The error is that validation's report.
pub fn build(
    analysis: &Analysis,
    base: &str,
    digests: &BTreeMap<String, String>,
    branches: &BTreeMap<String, String>,
) -> Result<Planned, Vec<Diagnostic>> {
    let branch = &analysis.branch;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut diff = String::new();

    // manifest.json: each bare pin edited in place where each pin has a line of its own;
    // else (the seed's one-line `artifacts`, or a field dropped) the file is rewritten, its
    // members in their order.
    let pins: Vec<(String, Pin)> = analysis
        .pins
        .iter()
        .map(|bare| {
            let url = artifact_url(base, &bare.file_name);
            let sha256 = digests.get(&url).cloned().unwrap_or_default();
            (
                bare.app.clone(),
                Pin {
                    version: bare.version.clone(),
                    url,
                    sha256,
                },
            )
        })
        .collect();
    if let Some(doc) = analysis
        .files
        .get(MANIFEST)
        .and_then(|bytes| Document::parse(bytes.clone()).ok())
        && (!pins.is_empty() || !analysis.manifest_drops.is_empty())
    {
        let refs: Vec<(&str, &Pin)> = pins.iter().map(|(a, p)| (a.as_str(), p)).collect();
        let one_line = doc
            .span("/artifacts")
            .is_none_or(|span| !doc.text()[span].contains('\n'));
        let text = if analysis.manifest_drops.is_empty()
            && !one_line
            && let Some(text) = edit::set_pins(&doc, &refs)
        {
            text
        } else {
            let mut value = doc.value.clone();
            if let Value::Object(map) = &mut value {
                for key in &analysis.manifest_drops {
                    map.shift_remove(key);
                }
                if let Some(Value::Object(artifacts)) = map.get_mut("artifacts") {
                    for (app, pin) in &pins {
                        artifacts.insert(
                            app.clone(),
                            serde_json::to_value(pin).expect("pins serialize"),
                        );
                    }
                }
            }
            serde_json::to_string_pretty(&value).expect("JSON serializes") + "\n"
        };
        diff.push_str(&textdiff::unified(
            doc.text(),
            &text,
            &format!("a/{MANIFEST}"),
            &format!("b/{MANIFEST}"),
        ));
        files.push((MANIFEST.to_owned(), text.into_bytes()));
    }

    // environments/<name>.json, in promotion order.
    let mut previous: Option<&str> = None;
    for env in &analysis.envs {
        let mut value = Map::new();
        value.insert("name".into(), Value::from(env.name.as_str()));
        if let Some(own) = branches.get(&env.name).filter(|b| **b != env.name) {
            value.insert("branch".into(), Value::from(own.as_str()));
        }
        if let Some(from) = previous {
            value.insert("promotes_from".into(), Value::from(from));
        }
        value.insert("apps".into(), Value::Object(env.apps.clone()));
        previous = Some(&env.name);
        let path = format!("{ENVIRONMENTS_DIR}/{}.json", env.name);
        let text =
            serde_json::to_string_pretty(&Value::Object(value)).expect("JSON serializes") + "\n";
        diff.push_str(&textdiff::unified(
            "",
            &text,
            "/dev/null",
            &format!("b/{path}"),
        ));
        files.push((path, text.into_bytes()));
    }
    let mut removed = Vec::new();
    for env in &analysis.envs {
        let old = analysis
            .files
            .get(&env.path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        diff.push_str(&textdiff::unified(
            &old,
            "",
            &format!("a/{}", env.path),
            "/dev/null",
        ));
        removed.push(env.path.clone());
    }

    // The result must be what ferry's own validator accepts.
    let mut tree = analysis.files.clone();
    for path in &removed {
        tree.remove(path);
    }
    for (path, bytes) in &files {
        tree.insert(path.clone(), bytes.clone());
    }
    let checked = validate::check(&TreeSource::from_files(branch, tree));
    match checked.state {
        Some(state) => Ok(Planned {
            branch: branch.clone(),
            files,
            removed,
            pins,
            diff,
            state,
        }),
        None => Err(checked.report.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST_TEXT: &str = r#"{
  "version": "1.0.0",
  "description": "The seed example",
  "artifacts": { "my-app": "my-app-1.0.0.zip", "my-api": "my-api-1.0.4.zip" }
}
"#;

    fn seed(prod_health: &str) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        files.insert(MANIFEST.to_owned(), MANIFEST_TEXT.as_bytes().to_vec());
        for (env, octet) in [("dev", 0), ("staging", 1), ("prod", 2)] {
            let health = if env == "prod" {
                prod_health.to_owned()
            } else {
                format!("http://10.0.{octet}.6:8080/health")
            };
            files.insert(
                format!("{env}-env.json"),
                format!(
                    r#"{{
  "my-app": {{ "host": "10.0.{octet}.5", "deployment_path": "/opt/my-app" }},
  "my-api": {{ "host": "10.0.{octet}.6", "deployment_path": "/opt/my-api", "healthcheck_url": "{health}" }}
}}
"#
                )
                .into_bytes(),
            );
        }
        files
    }

    fn branches() -> BTreeMap<String, String> {
        [
            ("dev", "dev"),
            ("staging", "staging"),
            ("prod", "production"),
        ]
        .into_iter()
        .map(|(e, b)| (e.to_owned(), b.to_owned()))
        .collect()
    }

    fn digests(base: &str, analysis: &Analysis) -> BTreeMap<String, String> {
        analysis
            .pins
            .iter()
            .map(|p| (artifact_url(base, &p.file_name), "a".repeat(64)))
            .collect()
    }

    #[test]
    fn versions_come_from_file_names() {
        for (app, file, version) in [
            ("my-api", "my-api-1.0.4.zip", "1.0.4"),
            ("my-app", "my-app-1.0.0.tar.gz", "1.0.0"),
            ("web", "web-v2.1.0-rc.1.tgz", "2.1.0-rc.1"),
            ("web", "web_3.0.0+build.7.jar", "3.0.0+build.7"),
            ("tool", "tool-0.1.0", "0.1.0"),
            ("x", "x-1.2.3.tar", "1.2.3"),
        ] {
            assert_eq!(
                version_from_file_name(app, file).unwrap().to_string(),
                version,
                "{file}"
            );
        }
        for (app, file) in [
            ("my-api", "api-1.0.4.zip"),
            ("my-api", "my-api-1.0.zip"),
            ("my-api", "my-api-latest.zip"),
            ("my-api", "my-api1.0.0.zip"),
            ("my-api", "my-api-1.0.0.deb"),
        ] {
            assert!(version_from_file_name(app, file).is_err(), "{file}");
        }
    }

    #[test]
    fn urls_join_the_base_and_the_file_name() {
        assert_eq!(
            artifact_url("https://a.example/rel", "x-1.0.0.zip"),
            "https://a.example/rel/x-1.0.0.zip"
        );
        assert_eq!(artifact_url("file:///srv/", "x.zip"), "file:///srv/x.zip");
        assert_eq!(artifact_url("file:///", "x.zip"), "file:///x.zip");
    }

    #[test]
    fn a_seed_branch_becomes_ferry_layout_and_validates() {
        let files = seed("http://10.0.2.6:8080/health");
        assert_eq!(layout(&files), Found::Seed);
        let analysis = analyse("production", Some("prod"), &files, false);
        assert!(analysis.errors.is_empty(), "{:?}", analysis.errors);
        assert_eq!(
            analysis
                .pins
                .iter()
                .map(|p| p.version.as_str())
                .collect::<Vec<_>>(),
            ["1.0.0", "1.0.4"]
        );
        let base = "file:///srv/artifacts";
        let planned = build(&analysis, base, &digests(base, &analysis), &branches()).unwrap();
        assert_eq!(
            planned.removed,
            ["dev-env.json", "staging-env.json", "prod-env.json"]
        );
        let written: BTreeMap<&str, Value> = planned
            .files
            .iter()
            .map(|(p, b)| (p.as_str(), serde_json::from_slice(b).unwrap()))
            .collect();
        let manifest = &written[MANIFEST];
        assert_eq!(manifest["version"], "1.0.0");
        assert_eq!(manifest["description"], "The seed example");
        assert_eq!(
            manifest["artifacts"]["my-api"],
            serde_json::json!({"version": "1.0.4", "url": "file:///srv/artifacts/my-api-1.0.4.zip", "sha256": "a".repeat(64)})
        );
        let prod = &written["environments/prod.json"];
        assert_eq!(prod["name"], "prod");
        assert_eq!(prod["branch"], "production");
        assert_eq!(prod["promotes_from"], "staging");
        assert_eq!(prod["apps"]["my-app"]["host"], "10.0.2.5");
        let dev = &written["environments/dev.json"];
        assert!(dev.get("branch").is_none() && dev.get("promotes_from").is_none());
        assert_eq!(written["environments/staging.json"]["promotes_from"], "dev");
        assert_eq!(planned.state.environments["prod"].branch(), "production");
        assert!(planned.diff.contains("+++ b/environments/prod.json"));
        assert!(planned.diff.contains("--- a/prod-env.json\n+++ /dev/null"));

        // Migrated, it is ferry's layout: nothing more to do.
        let mut after = files.clone();
        for path in &planned.removed {
            after.remove(path);
        }
        after.extend(planned.files.iter().cloned());
        assert_eq!(layout(&after), Found::Native);
    }

    #[test]
    fn invalid_values_are_all_reported_or_dropped() {
        let mut files = seed("bttp://10.0.2.6:8080/health");
        files.insert(
            "staging-env.json".into(),
            br#"{
  "my-app": { "deployment_path": "opt/my-app" },
  "my-api": { "deployment_path": "/opt/my-api", "helthcheck_url": "http://h/" }
}"#
            .to_vec(),
        );
        files.insert(
            MANIFEST.into(),
            MANIFEST_TEXT
                .replace("my-api-1.0.4.zip", "my-api-1.0.zip")
                .into_bytes(),
        );
        let analysis = analyse("dev", Some("dev"), &files, false);
        let shown: Vec<String> = analysis
            .errors
            .iter()
            .map(|d| format!("{} {}", d.location(), d.pointer))
            .collect();
        assert_eq!(
            shown,
            [
                "dev:prod-env.json:3:88 /my-api/healthcheck_url",
                "dev:staging-env.json:2:34 /my-app/deployment_path",
                "dev:staging-env.json:3:49 /my-api/helthcheck_url",
                "dev:manifest.json:4:58 /artifacts/my-api",
            ]
        );

        // Dropping: the typo and the unknown field go; a relative deployment_path and an
        // unreadable version cannot.
        let analysis = analyse("dev", Some("dev"), &files, true);
        let dropped: Vec<String> = analysis
            .dropped
            .iter()
            .map(|d| format!("{} {}", d.diagnostic.location(), d.what()))
            .collect();
        assert_eq!(
            dropped,
            [
                "dev:prod-env.json:3:88 `healthcheck_url` of `my-api`",
                "dev:staging-env.json:3:49 `helthcheck_url` of `my-api`",
            ]
        );
        let pointers: Vec<&str> = analysis.errors.iter().map(|d| d.pointer.as_str()).collect();
        assert_eq!(pointers, ["/my-app/deployment_path", "/artifacts/my-api"]);
    }

    #[test]
    fn with_drop_invalid_the_typo_goes_and_the_rest_migrates() {
        let files = seed("bttp://10.0.2.6:8080/health");
        let analysis = analyse("dev", Some("dev"), &files, true);
        assert!(analysis.errors.is_empty(), "{:?}", analysis.errors);
        assert_eq!(analysis.dropped.len(), 1);
        let base = "https://artifacts.example/rel/";
        let planned = build(&analysis, base, &digests(base, &analysis), &branches()).unwrap();
        let prod: Value = serde_json::from_slice(
            &planned
                .files
                .iter()
                .find(|(p, _)| p == "environments/prod.json")
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(
            prod["apps"]["my-api"],
            serde_json::json!({"host": "10.0.2.6", "deployment_path": "/opt/my-api"})
        );
        assert_eq!(
            planned.pins[0].1.url,
            "https://artifacts.example/rel/my-app-1.0.0.zip"
        );
    }

    #[test]
    fn pinned_artifacts_stay_and_a_missing_own_file_is_an_error() {
        let mut files = seed("http://h/health");
        // One pin a line: edited in place, the pinned one byte for byte.
        let pinned = format!(
            "{{\n  \"artifacts\": {{\n    \"my-app\": {{ \"version\": \"1.0.0\", \"url\": \"https://a.example/my-app.zip\", \"sha256\": \"{}\" }},\n    \"my-api\": \"my-api-1.0.4.zip\"\n  }}\n}}\n",
            "b".repeat(64)
        );
        files.insert(MANIFEST.into(), pinned.clone().into_bytes());
        let analysis = analyse("staging", Some("staging"), &files, false);
        assert_eq!(analysis.pins.len(), 1);
        let planned = build(
            &analysis,
            "file:///a",
            &digests("file:///a", &analysis),
            &branches(),
        )
        .unwrap();
        let manifest = String::from_utf8(planned.files[0].1.clone()).unwrap();
        let kept = &pinned[..pinned.find("    \"my-api\"").unwrap()];
        assert_eq!(
            manifest,
            format!(
                "{kept}    \"my-api\": {{\"version\": \"1.0.4\", \"url\": \"file:///a/my-api-1.0.4.zip\", \"sha256\": \"{}\"}}\n  }}\n}}\n",
                "a".repeat(64)
            )
        );

        files.remove("staging-env.json");
        let analysis = analyse("staging", Some("staging"), &files, false);
        assert_eq!(
            analysis.errors[0].message,
            "branch `staging` is `staging`'s, but has no `staging-env.json`"
        );
    }

    #[test]
    fn a_production_file_is_prod() {
        let mut files = seed("http://h/health");
        let prod = files.remove("prod-env.json").unwrap();
        files.insert("production-env.json".into(), prod);
        let analysis = analyse("production", Some("prod"), &files, false);
        assert!(analysis.errors.is_empty(), "{:?}", analysis.errors);
        let planned = build(
            &analysis,
            "file:///a",
            &digests("file:///a", &analysis),
            &branches(),
        )
        .unwrap();
        assert!(planned.removed.contains(&"production-env.json".to_owned()));
        assert!(
            planned
                .files
                .iter()
                .any(|(p, _)| p == "environments/prod.json")
        );
    }
}
