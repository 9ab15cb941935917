//! Validation of a whole deployment repository: every file against its schema, then the rules
//! no schema can express (duplicate keys, URLs, the promotion graph, apps across files).
//!
//! Nothing here stops at the first problem: [`check`] returns every error and warning, and the
//! typed [`State`] only when there is no error. Every later command (bump, promote, agent)
//! acts only on a `State`, so an invalid desired state is never acted on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use crate::diag::{At, Diagnostic, Problem, Report, Severity};
use crate::json::{self, Document};
use crate::model::{App, Artifact, Environment, Layout, Manifest, SEED_ORDER};
use crate::schema::{self, Schema};
use crate::source::{ReadError, Source};

pub use crate::model::{ENVIRONMENTS_DIR, MANIFEST};
const SEED_SUFFIX: &str = "-env.json";

pub use crate::model::State;

/// The outcome of validating a repository.
#[derive(Debug)]
pub struct Checked {
    pub report: Report,
    /// Present only when there is no error.
    pub state: Option<State>,
    /// The files that parsed, with their positions.
    pub documents: Vec<(String, Document)>,
}

/// One environment file as loaded.
struct EnvFile {
    /// The environment's name, from the file name.
    name: String,
    file: String,
    doc: Option<Document>,
    env: Option<Environment>,
    /// Pointer of the apps map: `/apps` in native files, the root in seed files.
    apps_pointer: &'static str,
}

impl EnvFile {
    fn at(&self) -> At<'_> {
        At::new(&self.file, self.doc.as_ref())
    }
}

/// Validates the repository that `src` reads; I/O errors other than missing files are
/// reported as diagnostics too, so this never fails.
pub fn check(src: &dyn Source) -> Checked {
    let mut out: Vec<Diagnostic> = Vec::new();

    let manifest_file = src.display(MANIFEST);
    // Files are independent until the cross-file checks: read and check them in parallel.
    let ((manifest_doc, manifest, manifest_out), (layout, mut envs)) =
        std::thread::scope(|scope| {
            let manifest = scope.spawn(|| {
                let mut out = Vec::new();
                let doc = load(src, MANIFEST, &manifest_file, Schema::Manifest, &mut out);
                let manifest = doc.as_ref().and_then(|doc| {
                    check_manifest(doc, At::new(&manifest_file, Some(doc)), &mut out)
                });
                (doc, manifest, out)
            });
            let envs = load_environments(src, &mut out);
            (
                manifest.join().expect("manifest check does not panic"),
                envs,
            )
        });
    out.extend(manifest_out);
    check_graph(&envs, &mut out);
    if let (Some(manifest), Some(doc)) = (&manifest, &manifest_doc) {
        check_apps(
            manifest,
            At::new(&manifest_file, Some(doc)),
            &envs,
            &mut out,
        );
    }

    let mut documents: Vec<(String, Document)> = Vec::new();
    if let Some(doc) = manifest_doc {
        documents.push((manifest_file, doc));
    }
    for entry in &mut envs {
        if let Some(doc) = entry.doc.take() {
            documents.push((entry.file.clone(), doc));
        }
    }
    let mut report = Report::default();
    for diagnostic in out {
        report.push(diagnostic);
    }
    report.finish();
    let state = match (report.is_valid(), manifest, layout) {
        (true, Some(manifest), Some(layout)) => Some(State {
            manifest,
            environments: envs
                .into_iter()
                .filter_map(|e| e.env.map(|env| (e.name, env)))
                .collect(),
            layout,
        }),
        _ => None,
    };
    Checked {
        report,
        state,
        documents,
    }
}

/// The state of a repository found valid before (its verdict's `summary`), read without
/// checking it again: the typed parse only, no positions, schemas or rules. `None` when the
/// files do not read as the verdict says (the caller then validates in full); the seed layout
/// is always validated.
pub fn load_valid(src: &dyn Source, summary: &crate::verdict::Summary) -> Option<State> {
    if summary.layout != Layout::Native {
        return None;
    }
    let read = |path: &str| src.read(path).ok().flatten();
    let manifest: Manifest = serde_json::from_slice(&read(MANIFEST)?).ok()?;
    let environments = summary
        .environments
        .keys()
        .map(|name| {
            let bytes = read(&format!("{ENVIRONMENTS_DIR}/{name}.json"))?;
            let env: Environment = serde_json::from_slice(&bytes).ok()?;
            Some((name.clone(), env))
        })
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some(State {
        manifest,
        environments,
        layout: Layout::Native,
    })
}

/// Whether `artifacts`, as the only ones of a manifest, pass every manifest check. This is
/// all that replacing pins adds to a manifest found valid before (see [`crate::verdict`]):
/// the manifest's schema and rules look at each artifact on its own (a unit test keeps the
/// schema honest about it), and the apps that the cross-file checks compare do not change as
/// long as every app was pinned before.
pub fn artifacts_are_valid<'a>(
    artifacts: impl IntoIterator<Item = (&'a str, &'a Artifact)>,
) -> bool {
    let artifacts: serde_json::Map<String, Value> = artifacts
        .into_iter()
        .map(|(app, artifact)| {
            (
                app.to_owned(),
                serde_json::to_value(artifact).expect("artifacts serialize"),
            )
        })
        .collect();
    let text = serde_json::json!({ "artifacts": artifacts }).to_string();
    let Ok(doc) = Document::parse(text.into_bytes()) else {
        return false;
    };
    let mut out = Vec::new();
    let at = At::new(MANIFEST, Some(&doc));
    Schema::Manifest.check(&doc, at, &mut out);
    check_manifest(&doc, at, &mut out);
    !out.iter().any(|d| d.severity == Severity::Error)
}

/// Reads and parses one file and checks it against its schema. `None` when the file is
/// missing, unreadable or not JSON (each reported).
/// Builds a file's typed form from its document, checking its per-file rules.
type Typed<'f, T> =
    dyn Fn(&'f (String, String), &Document, At<'_>, &mut Vec<Diagnostic>) -> Option<T> + Sync;
/// A file as loaded: its `(name, path)`, its document and its typed form, when it has them.
type Loaded<'f, T> = (&'f (String, String), Option<Document>, Option<T>);

/// [`load`] for several `(name, path)` files at once, one thread each; `typed` builds a
/// file's typed form (and checks its per-file rules) in the same thread, when the file has no
/// error so far.
fn load_all<'f, T: Send>(
    src: &dyn Source,
    files: &'f [(String, String)],
    schema: Schema,
    typed: &Typed<'f, T>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Loaded<'f, T>> {
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|entry| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let file = src.display(&entry.1);
                    let doc = load(src, &entry.1, &file, schema, &mut out);
                    let value = doc
                        .as_ref()
                        .filter(|_| !has_errors(&out, &file))
                        .and_then(|doc| typed(entry, doc, At::new(&file, Some(doc)), &mut out));
                    (entry, doc, value, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("file check does not panic"))
            .collect()
    });
    results
        .into_iter()
        .map(|(entry, doc, value, diagnostics)| {
            out.extend(diagnostics);
            (entry, doc, value)
        })
        .collect()
}

fn load(
    src: &dyn Source,
    path: &str,
    file: &str,
    schema: Schema,
    out: &mut Vec<Diagnostic>,
) -> Option<Document> {
    let at = At::new(file, None);
    let bytes = match src.read(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            out.push(at.error_at(None, "file not found").hint(match schema {
                Schema::Manifest => "a deployment repository has a `manifest.json` at its root",
                _ => "the file was listed but has disappeared",
            }));
            return None;
        }
        Err(err @ ReadError::TooLarge { .. }) => {
            out.push(
                at.error_at(None, err.to_string())
                    .hint("is this really a ferry file?"),
            );
            return None;
        }
        Err(err) => {
            out.push(at.error_at(None, err.to_string()));
            return None;
        }
    };
    let doc = match Document::parse(bytes) {
        Ok(doc) => doc,
        Err(err) => {
            out.push(at.error_at(err.position, err.message).maybe_hint(err.hint));
            return None;
        }
    };
    let at = At::new(file, Some(&doc));
    for dup in doc.duplicates() {
        out.push(
            at.error_at_key(
                &dup.pointer,
                format!(
                    "duplicate key `{}`: it is also defined at line {}, column {}",
                    dup.key, dup.first.line, dup.first.column
                ),
            )
            .hint("JSON readers keep only one of the two values, silently; remove or rename one"),
        );
    }
    schema.check(&doc, at, out);
    Some(doc)
}

/// Errors of a file so far, to decide whether its typed form can be built.
fn has_errors(out: &[Diagnostic], file: &str) -> bool {
    out.iter().any(|d| d.file == file)
}

fn check_manifest(doc: &Document, at: At<'_>, out: &mut Vec<Diagnostic>) -> Option<Manifest> {
    if has_errors(out, at.file) {
        return None;
    }
    let manifest = Manifest::deserialize(&doc.value).ok()?;
    for (name, artifact) in &manifest.artifacts {
        let pointer = json::child("/artifacts", name);
        match artifact.pin() {
            None => out.push(
                at.warning(
                    &pointer,
                    format!("`{name}` is pinned by file name only: no version or digest, so it is not immutable"),
                )
                .hint(r#"pin it as {"version": "…", "url": "…", "sha256": "…"}"#),
            ),
            Some(pin) => {
                if let Err(problem) = check_artifact_url(&pin.url) {
                    let diagnostic = at.error(&json::child(&pointer, "url"), format!("`url` {problem}"));
                    out.push(if problem.0.contains("credentials") {
                        diagnostic
                    } else {
                        diagnostic.hint("such as `https://artifacts.example.com/web/web-2.1.0.tar.gz`, `file:///srv/artifacts/web-2.1.0.tar.gz` or `oci://registry.example.com/web:2.1.0`")
                    });
                }
                if let Some(named) = pin.url.strip_prefix("oci://").and_then(|r| r.split_once("@sha256:")).map(|(_, d)| d)
                    && named != pin.sha256
                {
                    out.push(
                        at.error(
                            &json::child(&pointer, "url"),
                            format!("`url` names manifest digest sha256:{named}, but `sha256` pins {}", pin.sha256),
                        )
                        .hint("for an `oci://` artifact, `sha256` is the digest of its OCI manifest: the two must agree"),
                    );
                }
            }
        }
    }
    Some(manifest)
}

/// Checks what the schema's scheme pattern cannot: that the URL names something fetchable.
fn check_artifact_url(url: &str) -> Result<(), Problem> {
    let (scheme, rest) = url.split_once("://").ok_or("has no scheme")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match scheme {
        "file" => {
            if !(authority.is_empty() || authority == "localhost") {
                return Err(Problem::from(format!(
                    "names host `{authority}`: file URLs are local, like `file:///path`"
                )));
            }
            if path.is_empty() {
                return Err("has no path".into());
            }
        }
        "oci" => {
            if authority.is_empty() {
                return Err("has no registry host".into());
            }
            if path.is_empty() || path.starts_with(['/', ':', '@']) {
                return Err("has no repository: expected `oci://HOST/REPO:TAG` or `oci://HOST/REPO@sha256:DIGEST`".into());
            }
        }
        _ => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            if host.is_empty() || host.starts_with(':') {
                return Err("has no host".into());
            }
            if authority.contains('@') {
                return Err("contains credentials: keep secrets out of the manifest; the agent reads them from its environment".into());
            }
        }
    }
    Ok(())
}

fn load_environments(
    src: &dyn Source,
    out: &mut Vec<Diagnostic>,
) -> (Option<Layout>, Vec<EnvFile>) {
    let list = |dir: &str, out: &mut Vec<Diagnostic>| match src.list(dir) {
        Ok(names) => names,
        Err(err) => {
            let shown = if dir.is_empty() {
                src.display(".")
            } else {
                src.display(dir)
            };
            out.push(
                At::new(&shown, None).error_at(None, format!("cannot list the directory: {err}")),
            );
            Vec::new()
        }
    };
    let native: Vec<String> = list(ENVIRONMENTS_DIR, out)
        .into_iter()
        .filter(|n| n.ends_with(".json") && n.len() > ".json".len())
        .collect();
    let seed: Vec<String> = list("", out)
        .into_iter()
        .filter(|n| n.ends_with(SEED_SUFFIX) && n.len() > SEED_SUFFIX.len())
        .collect();

    if !native.is_empty() {
        for name in &seed {
            out.push(
                At::new(&src.display(name), None)
                    .error_at(None, format!("`{name}` is a seed-layout file, but this repository uses `environments/`"))
                    .hint(format!(
                        "ferry reads one layout; move its apps into `environments/{}.json`",
                        name.trim_end_matches(SEED_SUFFIX)
                    )),
            );
        }
        let files: Vec<(String, String)> = native
            .iter()
            .map(|name| (name.clone(), format!("{ENVIRONMENTS_DIR}/{name}")))
            .collect();
        let typed = |(file_name, _): &(String, String),
                     doc: &Document,
                     at: At<'_>,
                     out: &mut Vec<Diagnostic>| {
            native_environment(file_name.trim_end_matches(".json"), doc, at, out)
        };
        let envs = load_all(src, &files, Schema::Environment, &typed, out)
            .into_iter()
            .map(|((file_name, path), doc, env)| EnvFile {
                name: file_name.trim_end_matches(".json").to_owned(),
                file: src.display(path),
                doc,
                env,
                apps_pointer: "/apps",
            })
            .collect();
        return (Some(Layout::Native), envs);
    }
    if !seed.is_empty() {
        let mut envs: Vec<EnvFile> = Vec::new();
        // Visit in promotion order; unknown names are reported.
        for name in &seed {
            let env = name.trim_end_matches(SEED_SUFFIX);
            if !SEED_ORDER.contains(&env) {
                out.push(
                    At::new(&src.display(name), None)
                        .error_at(None, format!("`{env}` is not an environment of the seed layout, which knows only dev, staging and prod"))
                        .hint(format!("declare it as `environments/{env}.json` with its `promotes_from`, and move the other environments there too")),
                );
            }
        }
        let mut files: Vec<(String, String)> = Vec::new();
        for env in SEED_ORDER {
            let file_name = format!("{env}{SEED_SUFFIX}");
            if !seed.contains(&file_name) {
                continue;
            }
            if env == "production" && seed.iter().any(|n| n == "prod-env.json") {
                out.push(
                    At::new(&src.display(&file_name), None)
                        .error_at(
                            None,
                            "both `prod-env.json` and `production-env.json` describe production",
                        )
                        .hint("keep one of them"),
                );
                continue;
            }
            files.push((env.to_owned(), file_name));
        }
        let mut previous: Option<String> = None;
        let typed = |(env, _): &(String, String),
                     doc: &Document,
                     at: At<'_>,
                     out: &mut Vec<Diagnostic>| {
            let apps = match BTreeMap::<String, App>::deserialize(&doc.value) {
                Ok(apps) => apps,
                Err(e) => {
                    out.push(
                            at.error("", format!("cannot be read as an environment: {e}"))
                                .hint("a value is out of the range ferry can hold (a duration of centuries?)"),
                        );
                    return None;
                }
            };
            check_places(env, &apps, "", at, out);
            Some(apps)
        };
        for ((env, path), doc, apps) in load_all(src, &files, Schema::SeedEnvironment, &typed, out)
        {
            let file = src.display(path);
            let env_value = apps.map(|apps| Environment::from_seed(env, previous.clone(), apps));
            previous = Some(env.clone());
            envs.push(EnvFile {
                name: env.clone(),
                file,
                doc,
                env: env_value,
                apps_pointer: "",
            });
        }
        return (Some(Layout::Seed), envs);
    }
    out.push(
        At::new(&src.display(ENVIRONMENTS_DIR), None)
            .error_at(None, "no environment files")
            .hint("describe each environment in `environments/<name>.json` (or, in the seed layout, `dev-env.json`, `staging-env.json`, `prod-env.json`)"),
    );
    (None, Vec::new())
}

/// Per-file rules of a native environment file, and its typed form (`None` when it does not
/// have one: the schema's errors are reported already).
fn native_environment(
    name: &str,
    doc: &Document,
    at: At<'_>,
    out: &mut Vec<Diagnostic>,
) -> Option<Environment> {
    if !durations_ok(&doc.value, at, out) || !sizes_ok(&doc.value, at, out) {
        return None;
    }
    let env = match Environment::deserialize(&doc.value) {
        Ok(env) => env,
        Err(e) => {
            // The schema and the rules above let nothing through that the model cannot
            // hold; should they ever, the file is an error, never an environment dropped.
            out.push(
                at.error("", format!("cannot be read as an environment: {e}"))
                    .hint("a value is out of the range ferry can hold; `ferry schema environment` shows the fields"),
            );
            return None;
        }
    };
    if env.name != name {
        out.push(
            at.error("/name", format!("`name` is `{}`, but the file is `{name}.json`", env.name))
                .hint(format!("an environment's file is named after it: set \"name\": \"{name}\" or rename the file")),
        );
    }
    let branch_pointer = if env.branch.is_some() {
        "/branch"
    } else {
        "/name"
    };
    if let Err(problem) = check_branch_name(env.branch()) {
        out.push(at.error(
            branch_pointer,
            format!("branch `{}` {problem}", env.branch()),
        ));
    }
    if let Some(apps) = &env.apps {
        check_places(name, apps, "/apps", at, out);
    }
    for (i, line) in env.signers.iter().enumerate() {
        if let Err(e) = crate::sign::AllowedSigners::parse(line, std::path::Path::new("signers")) {
            let why = e.to_string();
            let why = why.strip_prefix("signers:1: ").unwrap_or(&why).to_owned();
            out.push(
                at.error(&format!("/signers/{i}"), format!("`signers` entry {why}"))
                    .hint("one ssh allowed_signers line, `PRINCIPALS KEYTYPE BASE64` with the key as its `.pub` file has it, or one armored OpenPGP public key (`gpg --armor --export KEY`)"),
            );
        }
    }
    // `require_signed_commits` without `signers` is valid: on GitHub, signatures are checked
    // against its users' keys; the local hook refuses every push then, and says why.
    Some(env)
}

/// Where an environment's apps run and are checked: health-check URLs, deployment paths, and
/// paths that overlap on a host.
fn check_places(
    env: &str,
    apps: &BTreeMap<String, App>,
    apps_pointer: &str,
    at: At<'_>,
    out: &mut Vec<Diagnostic>,
) {
    for (app, settings) in apps {
        let app_pointer = json::child(apps_pointer, app);
        // `{host}` stands for each host: checked as a host name would be.
        if let Some(url) = settings.healthcheck_url_on("host")
            && let Err(problem) = check_artifact_url(&url)
        {
            let pointer = json::child(&app_pointer, "healthcheck_url");
            out.push(at.error(&pointer, format!("`healthcheck_url` {problem}")));
        }
        if let Err(problem) = check_deployment_path(&settings.deployment_path) {
            let pointer = json::child(&app_pointer, "deployment_path");
            out.push(
                at.error(&pointer, format!("`deployment_path` {problem}"))
                    .hint("an absolute path such as `/srv/web`: the agent deploys under its `--root`, never outside it"),
            );
        }
    }
    for (app, settings) in apps {
        let too_long = settings
            .hosts()
            .iter()
            .find(|host| crate::model::check_name(&format!("ferry/deploy/{env}/{host}")).is_err());
        if let Some(host) = too_long {
            let field = if settings.hosts.is_some() {
                "hosts"
            } else {
                "host"
            };
            out.push(
                at.error(&json::child(&json::child(apps_pointer, app), field), format!(
                    "host `{host}` makes its deploy status `ferry/deploy/{env}/{host}` longer than a check name may be ({} characters)",
                    crate::model::CHECK_NAME_LIMIT
                ))
                .hint("name hosts as their agents' `--host` does, by a short name"),
            );
        }
    }
    for (app, other) in nested_deployment_paths(apps.iter()) {
        let pointer = json::child(&json::child(apps_pointer, app), "deployment_path");
        out.push(
            at.error(
                &pointer,
                format!(
                    "`deployment_path` of `{app}` overlaps `{other}`'s (its path, or the `.NAME.releases` beside it): one app's releases would land inside the other's"
                ),
            )
            .hint("give each app of a host a directory of its own, such as `/srv/web` and `/srv/api`"),
        );
    }
}

/// The apps whose places on a host overlap another's: its `deployment_path`, or the agent's
/// directories beside it (`.NAME.releases`, `.NAME.ferry-switch`), equal to or inside another
/// app's, or holding them. Apps on different hosts never overlap (an app without `host` is on
/// every host of its environment's agents). Each app that overlaps another is reported, with
/// the first it overlaps.
fn nested_deployment_paths<'a>(
    apps: impl Iterator<Item = (&'a String, &'a crate::model::App)>,
) -> Vec<(&'a str, &'a str)> {
    use std::borrow::Cow;
    // Each app's places, as path components: the live path, then its siblings.
    let places = |path: &'a str| -> Vec<Vec<Cow<'a, str>>> {
        let live: Vec<Cow<'a, str>> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(Cow::Borrowed)
            .collect();
        let Some((name, parent)) = live.split_last() else {
            return Vec::new();
        };
        let beside = |sibling: String| {
            let mut place = parent.to_vec();
            place.push(Cow::Owned(sibling));
            place
        };
        let (releases, switch) = (format!(".{name}.releases"), format!(".{name}.ferry-switch"));
        vec![live.clone(), beside(releases), beside(switch)]
    };
    let apps: Vec<(&str, &[String], &str)> = apps
        .map(|(name, app)| (name.as_str(), app.hosts(), app.deployment_path.as_str()))
        .collect();
    // The apps of each host with the apps on every host (no `host`): an overlap needs both
    // apps on one host. Within a group, places sorted by components put each path right
    // before the paths under it, so one pass with a stack of the open ancestors finds every
    // pair where one place holds (or is) another: O(n log n), for 10,000 apps as for 3.
    let everywhere: Vec<usize> = (0..apps.len()).filter(|i| apps[*i].1.is_empty()).collect();
    let mut hosts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (_, on, _)) in apps.iter().enumerate() {
        for host in *on {
            hosts.entry(host.as_str()).or_default().push(i);
        }
    }
    let mut groups: Vec<Vec<usize>> = hosts
        .into_values()
        .map(|mut group| {
            group.extend(&everywhere);
            group
        })
        .collect();
    if groups.is_empty() {
        groups.push(everywhere);
    }
    let mut first: BTreeMap<usize, usize> = BTreeMap::new();
    for group in groups {
        let mut placed: Vec<(Vec<Cow<'a, str>>, usize)> = group
            .iter()
            .flat_map(|&i| places(apps[i].2).into_iter().map(move |p| (p, i)))
            .collect();
        placed.sort();
        let mut open: Vec<(&[Cow<'a, str>], usize)> = Vec::new();
        for (path, app) in &placed {
            while open
                .last()
                .is_some_and(|(ancestor, _)| !path.starts_with(ancestor))
            {
                open.pop();
            }
            for (_, other) in &open {
                if *other != *app {
                    first.entry(*app).or_insert(*other);
                    first.entry(*other).or_insert(*app);
                }
            }
            open.push((path, *app));
        }
    }
    first
        .into_iter()
        .map(|(app, other)| (apps[app].0, apps[other].0))
        .collect()
}

/// Durations that match the schema's pattern but overflow.
fn durations_ok(value: &Value, at: At<'_>, out: &mut Vec<Diagnostic>) -> bool {
    let mut found: Vec<(String, &Value)> = Vec::new();
    for pointer in ["/policy/soak", "/agent/interval", "/rollout/pause"] {
        if let Some(v) = value.pointer(pointer) {
            found.push((pointer.to_owned(), v));
        }
    }
    if let Some(apps) = value.get("apps").and_then(Value::as_object) {
        for (name, app) in apps {
            let app_pointer = json::child("/apps", name);
            if let Some(v) = app.get("healthcheck_timeout") {
                found.push((json::child(&app_pointer, "healthcheck_timeout"), v));
            }
            if let Some(v) = app.pointer("/rollout/pause") {
                found.push((format!("{app_pointer}/rollout/pause"), v));
            }
        }
    }
    let mut ok = true;
    for (pointer, v) in found {
        match v.as_str().map(str::parse::<crate::model::Duration>) {
            Some(Err(err)) => {
                out.push(
                    at.error(&pointer, err.to_string())
                        .hint("durations are at most about 292 years"),
                );
                ok = false;
            }
            Some(Ok(interval))
                if pointer == "/agent/interval"
                    && interval.as_std() < crate::model::MIN_INTERVAL =>
            {
                out.push(
                    at.error(
                        &pointer,
                        format!("`agent.interval` {interval} is under a second: the agents would poll without a pause"),
                    )
                    .hint("such as `30s` or `5m` (at least `1s`)"),
                );
                ok = false;
            }
            _ => {}
        }
    }
    ok
}

/// Apps' `max_size` that match the schema's pattern but overflow.
fn sizes_ok(value: &Value, at: At<'_>, out: &mut Vec<Diagnostic>) -> bool {
    let mut ok = true;
    let apps = value.get("apps").and_then(Value::as_object);
    for (app, settings) in apps.into_iter().flatten() {
        if let Some(text) = settings.get("max_size").and_then(Value::as_str)
            && let Err(e) = text.parse::<crate::model::Size>()
        {
            let pointer = json::child(&json::child("/apps", app), "max_size");
            out.push(at.error(&pointer, e.to_string()));
            ok = false;
        }
    }
    ok
}

/// Whether `path` can be an app's `deployment_path`: absolute, with no `.` or `..` segment
/// (`/../../outside` would put the live link outside the agent's `--root`), not the root
/// itself, no NUL. The agent checks it again before it deploys.
pub fn check_deployment_path(path: &str) -> Result<(), Problem> {
    if !path.starts_with('/') {
        return Err(Problem::from(format!("`{path}` is not an absolute path")));
    }
    if path.chars().any(char::is_control) {
        return Err(Problem::from(
            "contains a control character (a newline, a tab, NUL)".to_owned(),
        ));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == ".." || *s == ".") {
        return Err(Problem::from(format!(
            "`{path}` has a `.` or `..` segment: it would lead outside the agent's `--root`"
        )));
    }
    if segments.is_empty() {
        return Err(Problem::from(format!(
            "`{path}` is the root itself: an app's live link needs a name"
        )));
    }
    Ok(())
}

/// Git's rules for branch names (`git check-ref-format --branch`), plus ferry's reserved
/// namespace.
pub fn check_branch_name(branch: &str) -> Result<(), Problem> {
    let bad = |why: &str| Err(Problem::from(why));
    if branch.is_empty() {
        return bad("is empty");
    }
    if branch.starts_with('-') {
        return bad("starts with `-`");
    }
    if branch == "HEAD" || branch == "@" {
        return bad("is reserved by git");
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.contains("//") {
        return bad("has an empty path component");
    }
    if branch.ends_with('.') {
        return bad("ends with `.`");
    }
    if branch.contains("..") {
        return bad("contains `..`");
    }
    if branch.contains("@{") {
        return bad("contains `@{`");
    }
    if let Some(c) = branch.chars().find(|c| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err(Problem::from(format!(
            "contains `{}`, which git does not allow in branch names",
            c.escape_default()
        )));
    }
    if branch
        .split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return bad("has a component starting with `.` or ending with `.lock`");
    }
    if branch == "ferry" || branch.starts_with("ferry/") {
        return bad("is in `ferry/`, which is reserved for promotion requests");
    }
    Ok(())
}

/// The promotion graph: parents exist, exactly one root, no cycles, unique branches.
fn check_graph(envs: &[EnvFile], out: &mut Vec<Diagnostic>) {
    let names: BTreeSet<&str> = envs.iter().map(|e| e.name.as_str()).collect();
    let typed: BTreeMap<&str, (&EnvFile, &Environment)> = envs
        .iter()
        .filter_map(|e| e.env.as_ref().map(|env| (e.name.as_str(), (e, env))))
        .collect();
    let all_typed = typed.len() == envs.len();
    let list = || names.iter().copied().collect::<Vec<_>>().join(", ");

    for (name, (entry, env)) in &typed {
        if let Some(parent) = &env.promotes_from
            && !names.contains(parent.as_str())
        {
            let hint = match schema::suggest(parent, names.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? environments: {}", list()),
                None => format!("environments: {}", list()),
            };
            out.push(
                entry
                    .at()
                    .error(
                        "/promotes_from",
                        format!("`{name}` promotes from `{parent}`, which is not an environment"),
                    )
                    .hint(hint),
            );
        }
    }

    // Cycles: follow parents from every environment; report each cycle once.
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    for start in typed.keys() {
        let mut path: Vec<&str> = vec![start];
        let mut current = *start;
        while let Some(parent) = typed
            .get(current)
            .and_then(|(_, env)| env.promotes_from.as_deref())
        {
            if let Some(pos) = path.iter().position(|n| *n == parent) {
                let mut cycle: Vec<&str> = path[pos..].to_vec();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .map_or(0, |(i, _)| i);
                cycle.rotate_left(min);
                if reported.insert(cycle.clone()) {
                    let (entry, _) = typed[cycle[0]];
                    let mut shown: Vec<&str> = cycle.iter().rev().copied().collect();
                    shown.rotate_right(1);
                    shown.push(shown[0]);
                    out.push(
                        entry
                            .at()
                            .error("/promotes_from", format!("promotion cycle: {}", shown.join(" → ")))
                            .hint("promotions flow one way, from the first environment to the last; one of these must promote from elsewhere"),
                    );
                }
                break;
            }
            if !typed.contains_key(parent) {
                break;
            }
            path.push(parent);
            current = parent;
        }
    }

    // Exactly one first environment (decidable only when every file could be read).
    if all_typed && !typed.is_empty() {
        let roots: Vec<&str> = typed
            .iter()
            .filter(|(_, (_, env))| env.promotes_from.is_none())
            .map(|(name, _)| *name)
            .collect();
        if roots.is_empty() && reported.is_empty() {
            let (entry, _) = typed.values().next().expect("not empty");
            out.push(
                entry
                    .at()
                    .error("/promotes_from", "every environment promotes from another: none is first")
                    .hint("the first environment (where CI bumps land, usually `dev`) has no `promotes_from`"),
            );
        }
        if roots.len() > 1 {
            // Which one is the real first is the user's call: name them all, at each of them.
            for root in &roots {
                let others: Vec<String> = roots
                    .iter()
                    .filter(|r| *r != root)
                    .map(|r| format!("`{r}`"))
                    .collect();
                let (entry, _) = typed[root];
                out.push(
                    entry
                        .at()
                        .error("/name", format!("`{root}` has no `promotes_from`, and neither has {}: exactly one environment may be first", others.join(", ")))
                        .hint("give every environment but the first (where CI bumps land, usually `dev`) a `promotes_from`"),
                );
            }
        }
    }

    // Branches are unique.
    let mut by_branch: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, (entry, env)) in &typed {
        if let Some(other) = by_branch.insert(env.branch(), name) {
            let pointer = if env.branch.is_some() {
                "/branch"
            } else {
                "/name"
            };
            out.push(
                entry
                    .at()
                    .error(
                        pointer,
                        format!(
                            "branch `{}` is already the branch of environment `{other}`",
                            env.branch()
                        ),
                    )
                    .hint("each environment has a branch of its own"),
            );
        }
    }
}

/// Every artifact has its per-environment entry where an environment declares apps, and no
/// environment names an app the manifest lacks.
fn check_apps(
    manifest: &Manifest,
    manifest_at: At<'_>,
    envs: &[EnvFile],
    out: &mut Vec<Diagnostic>,
) {
    for entry in envs {
        let Some(apps) = entry.env.as_ref().and_then(|e| e.apps.as_ref()) else {
            continue;
        };
        let at = entry.at();
        let apps_pointer = entry.apps_pointer;
        // Both maps are sorted: one walk over the two finds what is in one only (a lookup per
        // name costs ten times more for 10,000 apps).
        let (unplaced, unpinned) = one_sided(manifest.artifacts.keys(), apps.keys());
        for name in unplaced {
            {
                out.push(
                    at.error_at_key(
                        apps_pointer,
                        format!(
                            "artifact `{name}` of `{}` has no entry here",
                            manifest_at.file
                        ),
                    )
                    .hint(format!(
                        "add \"{name}\": {{\"host\": \"…\", \"deployment_path\": \"/srv/{name}\"}}"
                    )),
                );
            }
        }
        for name in unpinned {
            {
                // Where an app will run may be declared before it is promoted here: a
                // warning, which says what a typo would look like.
                let hint = match schema::suggest(
                    name,
                    manifest.artifacts.keys().map(String::as_str),
                ) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => match entry.env.as_ref() {
                        // The first environment gets its pins from CI's bumps.
                        Some(env) if env.promotes_from.is_none() => format!(
                            "it deploys once it is pinned here: `ferry bump {name} VERSION --env {} --add --url URL --artifact FILE`",
                            env.name
                        ),
                        _ => "it deploys once it is pinned here (by a promotion)".to_owned(),
                    },
                };
                out.push(
                    at.warning_at_key(
                        &json::child(apps_pointer, name),
                        format!(
                            "`{name}` is not an artifact of `{}` (yet): nothing is deployed for it",
                            manifest_at.file
                        ),
                    )
                    .hint(hint),
                );
            }
        }
    }
}

/// The items of two sorted sequences found in only one of them: `(only in a, only in b)`.
fn one_sided<'a, T: Ord + ?Sized + 'a>(
    a: impl IntoIterator<Item = &'a T>,
    b: impl IntoIterator<Item = &'a T>,
) -> (Vec<&'a T>, Vec<&'a T>) {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => only_a.extend(a.next()),
                std::cmp::Ordering::Greater => only_b.extend(b.next()),
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                }
            },
            (Some(_), None) => only_a.extend(a.next()),
            (None, Some(_)) => only_b.extend(b.next()),
            (None, None) => return (only_a, only_b),
        }
    }
}

impl State {
    /// The promotion chains from the first environment to each last one, such as
    /// `dev → staging → prod`.
    pub fn promotion_paths(&self) -> Vec<Vec<&str>> {
        let children = |parent: Option<&str>| -> Vec<&str> {
            self.environments
                .values()
                .filter(|e| e.promotes_from.as_deref() == parent)
                .map(|e| e.name.as_str())
                .collect()
        };
        let mut paths = Vec::new();
        let mut stack: Vec<Vec<&str>> = children(None).into_iter().map(|r| vec![r]).collect();
        while let Some(path) = stack.pop() {
            let next = children(path.last().copied());
            if next.is_empty() {
                paths.push(path);
            } else {
                for child in next.into_iter().rev() {
                    let mut longer = path.clone();
                    longer.push(child);
                    stack.push(longer);
                }
            }
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`artifacts_are_valid`] (and so `ferry bump` on a tree found valid before) relies on the
    /// manifest schema checking each artifact on its own: no keyword may relate artifacts to
    /// each other or constrain how many there are.
    #[test]
    fn the_manifest_schema_checks_artifacts_one_by_one() {
        let schema: Value =
            serde_json::from_str(include_str!("../schemas/manifest.schema.json")).unwrap();
        let artifacts = &schema["properties"]["artifacts"];
        let mut keywords: Vec<&str> = artifacts
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keywords.sort_unstable();
        assert_eq!(
            keywords,
            [
                "additionalProperties",
                "description",
                "propertyNames",
                "type"
            ],
            "a new keyword on `artifacts` may relate artifacts: review verdict.rs"
        );
        let text = schema.to_string();
        for cross in [
            "dependentRequired",
            "dependentSchemas",
            "uniqueItems",
            "minProperties",
            "maxProperties",
            "$data",
        ] {
            assert!(!text.contains(cross), "{cross}: review verdict.rs");
        }
    }

    /// A verified tree read back without checks gives the state the full validation gives.
    #[test]
    fn a_valid_repository_reads_back_the_same_without_checks() {
        let src = crate::source::DirSource::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap();
        let state = check(&src).state.expect("the example repository is valid");
        let summary = crate::verdict::Summary::of(&state);
        let read = load_valid(&src, &summary).expect("reads back");
        assert_eq!(format!("{read:?}"), format!("{state:?}"));
    }

    #[test]
    fn artifacts_are_checked_on_their_own() {
        let pin = |url: &str, sha256: &str| {
            Artifact::Pinned(crate::model::Pin {
                version: "1.2.3".into(),
                url: url.into(),
                sha256: sha256.into(),
            })
        };
        let good = "a".repeat(64);
        let ok = pin("https://a.example/w.tgz", &good);
        let bare = Artifact::Bare("web-1.0.zip".into());
        assert!(artifacts_are_valid([("web", &ok), ("api", &bare)]));
        for (app, bad) in [
            ("web", pin("https://user:pw@a.example/w.tgz", &good)),
            ("web", pin("ftp://a.example/w.tgz", &good)),
            ("web", pin("https://a.example/w.tgz", "ABC")),
            ("-web", ok.clone()),
        ] {
            assert!(!artifacts_are_valid([("api", &ok), (app, &bad)]), "{bad:?}");
        }
    }

    #[test]
    fn deployment_paths_stay_under_the_root() {
        for ok in [
            "/srv/web",
            "/srv//web/",
            "/opt/.hidden",
            "/a/..b",
            "/a/...",
            "/x",
        ] {
            assert_eq!(check_deployment_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/../../outside/web",
            "/srv/../..",
            "/",
            "//",
            "/.",
            "/srv/./web",
            "srv/web",
            "",
            "/a\0b",
        ] {
            assert!(check_deployment_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn branch_names_follow_git() {
        for ok in ["dev", "prod", "env/prod-eu", "release-1.2"] {
            assert_eq!(check_branch_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "a:b",
            "x.lock",
            "a/.b",
            "a/",
            "a//b",
            "HEAD",
            "x.",
            "a@{b",
            "ferry/promote/x",
        ] {
            assert!(check_branch_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_urls_name_something_fetchable() {
        for ok in [
            "https://a.example/x.tgz",
            "http://127.0.0.1:8080/x",
            "file:///srv/a.zip",
            "file://localhost/srv/a.zip",
            "oci://reg.example/team/app:1.0",
            "oci://reg.example:5000/app@sha256:abc",
        ] {
            assert_eq!(check_artifact_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https:///x",
            "file://host/x",
            "file://",
            "oci://reg.example",
            "oci:///app",
            "https://u:p@h/x",
        ] {
            assert!(check_artifact_url(bad).is_err(), "{bad}");
        }
    }
}
