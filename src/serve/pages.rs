//! The store's side of the server: the documents of [`crate::view`], built once per state of
//! the refs (their fingerprint) and kept until the refs move, and the pages rendered from
//! them with the embedded templates (handlebars, HTML-escaped: every value is text).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use handlebars::Handlebars;
use hyper::StatusCode;
use serde::Serialize;
use sha2::Digest;

use super::background::Figures;
use super::markdown::{self, Block};
use super::routes::Route;
use super::svg;
use crate::agent::server::{Reply, reply};
use crate::error::{Error, ErrorKind};
use crate::forge::local::LocalForge;
use crate::forge::{RequestState, Statuses};
use crate::model::Environment;
use crate::output::format_time;
use crate::plan::compare::Change as Move;
use crate::sign::AllowedSigners;
use crate::store::{History, Store};
use crate::view::audit::Change;
use crate::view::diff::DiffReport;
use crate::view::history::Entry;
use crate::view::requests::{Listed, StateFilter};
use crate::view::status::{EnvStatus, Graph};

/// Apps per page of the matrix.
pub const APPS_PER_PAGE: usize = 100;
/// Changes per page of an environment's timeline.
pub const CHANGES_PER_PAGE: usize = 50;
/// Requests merged or closed that the requests page lists (the API lists them all).
const RECENT: usize = 30;
/// Rollouts named on an environment's card; the rest are counted.
const ROLLOUTS_SHOWN: usize = 5;
/// Hosts' rows on an environment's page; the rest are in its status document.
const HOST_ROWS: usize = 300;
/// Apps named on an edge of the promotion graph; the rest are counted.
const MOVES_SHOWN: usize = 8;

/// Why a page or a document cannot be answered.
#[derive(Debug, Clone)]
pub struct Failure {
    status: StatusCode,
    message: String,
    hints: Vec<String>,
}

impl Failure {
    fn not_found(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hints.push(hint.into());
        self
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            status: match error.kind {
                ErrorKind::Usage => StatusCode::BAD_REQUEST,
                ErrorKind::Failure => StatusCode::CONFLICT,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
            message: error.message_with_details(),
            hints: error.hints,
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Failure {
        Failure::from(Error::from(error))
    }
}

/// The documents built at one fingerprint of the refs; each is built when first asked for.
#[derive(Default)]
struct Documents {
    graph: Option<Result<Graph, Failure>>,
    status: Option<Result<Vec<EnvStatus>, Failure>>,
    diffs: HashMap<(String, String), Result<DiffReport, Failure>>,
    requests: Option<Result<Vec<Listed>, Failure>>,
    histories: HashMap<String, Result<Vec<Entry>, Failure>>,
    /// By environment and how many of the newest changes (`None`: all).
    audits: HashMap<(String, Option<usize>), Result<Vec<Change>, Failure>>,
    declared: HashMap<String, Option<Environment>>,
    /// By environment: its DORA report over its whole history.
    dora: HashMap<String, Result<crate::dora::Report, Failure>>,
}

/// The store, what was built from it, and the templates.
pub struct Dashboard {
    store: Store,
    /// DORA's figures, computed on a thread of their own.
    reports: super::background::Reports,
    relist: Duration,
    listed: Option<Instant>,
    fingerprint: String,
    documents: Documents,
    templates: Handlebars<'static>,
}

/// The templates, embedded.
const TEMPLATES: &[(&str, &str)] = &[
    ("head", include_str!("templates/head.hbs")),
    ("foot", include_str!("templates/foot.hbs")),
    ("chart", include_str!("templates/chart.hbs")),
    ("spans", include_str!("templates/spans.hbs")),
    ("overview", include_str!("templates/overview.hbs")),
    ("requests", include_str!("templates/requests.hbs")),
    ("request", include_str!("templates/request.hbs")),
    ("environment", include_str!("templates/environment.hbs")),
    ("diff", include_str!("templates/diff.hbs")),
    ("error", include_str!("templates/error.hbs")),
];

/// `{{plural N "app"}}`: `1 app`, `3 apps` (an `s` added, as the nouns on these pages take).
fn plural(
    h: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let n = h.param(0).and_then(|p| p.value().as_u64()).unwrap_or(0);
    let noun = h.param(1).and_then(|p| p.value().as_str()).unwrap_or("");
    let s = if n == 1 { "" } else { "s" };
    out.write(&handlebars::html_escape(&format!("{n} {noun}{s}")))?;
    Ok(())
}

/// The registry of the embedded templates, strict and HTML-escaping.
pub fn templates() -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.set_prevent_indent(true);
    registry.register_helper("plural", Box::new(plural));
    for (name, text) in TEMPLATES {
        registry
            .register_template_string(name, text.strip_suffix('\n').unwrap_or(text))
            .expect("the embedded templates parse");
    }
    registry
}

impl Dashboard {
    pub fn new(store: Store, relist: Duration, reports: super::background::Reports) -> Dashboard {
        Dashboard {
            store,
            reports,
            relist,
            listed: None,
            fingerprint: String::new(),
            documents: Documents::default(),
            templates: templates(),
        }
    }

    /// The answer to `route`.
    pub fn answer(&mut self, route: &Route) -> Reply {
        let json = match route {
            Route::Overview { json, .. }
            | Route::Requests { json, .. }
            | Route::Request { json, .. }
            | Route::Diff { json, .. }
            | Route::NotFound { json, .. } => *json,
            Route::Environment { .. } => false,
            _ => true,
        };
        let started = Instant::now();
        let mut answer = match self.relisted().and_then(|()| self.route(route)) {
            Ok(answer) => answer,
            Err(failure) if json => json_reply(
                failure.status,
                &serde_json::json!({ "error": failure.message, "hints": failure.hints }),
            ),
            Err(failure) => self.error_page(&failure),
        };
        // How long the answer took to build here (`bench/serve.sh` reads it; so do a
        // browser's developer tools).
        let took = format!("app;dur={:.1}", started.elapsed().as_secs_f64() * 1000.0);
        if let Ok(value) = hyper::header::HeaderValue::from_str(&took) {
            answer.headers_mut().insert("server-timing", value);
        }
        answer
    }

    /// Lists the refs again when the last listing is older than `relist`; when they moved,
    /// what was built from them is dropped.
    fn relisted(&mut self) -> Result<(), Failure> {
        if self.listed.is_some_and(|at| at.elapsed() < self.relist) {
            return Ok(());
        }
        self.store.refresh();
        let fingerprint = fingerprint(&self.store.refs()?);
        if fingerprint != self.fingerprint {
            self.fingerprint = fingerprint;
            self.documents = Documents::default();
        }
        self.listed = Some(Instant::now());
        Ok(())
    }

    fn route(&mut self, route: &Route) -> Result<Reply, Failure> {
        match route {
            Route::Fingerprint => Ok(json_reply(
                StatusCode::OK,
                &serde_json::json!({
                    "fingerprint": self.fingerprint,
                    "computing": self.reports.computing(),
                }),
            )),
            Route::Status { env } => {
                if let Some(env) = env {
                    self.known(env)?;
                }
                let status = self.status()?;
                let shown: Vec<&EnvStatus> = status
                    .iter()
                    .filter(|s| env.as_ref().is_none_or(|e| &s.env == e))
                    .collect();
                Ok(json_reply(StatusCode::OK, &shown))
            }
            Route::Overview { page, q, json } => {
                let overview = self.overview(*page, q)?;
                if *json {
                    Ok(json_reply(StatusCode::OK, &overview))
                } else {
                    let common = self.common("Overview", "/api/overview".to_owned())?;
                    self.page(
                        "overview",
                        &Page {
                            common,
                            body: overview,
                        },
                    )
                }
            }
            Route::Requests { state, env, json } => {
                let filter = StateFilter::parse(state).ok_or_else(|| {
                    Failure::not_found(format!("no such state of requests: `{state}`"))
                        .hint("open, merged, closed or all")
                })?;
                if let Some(env) = env {
                    self.known(env)?;
                }
                let of_env: Vec<Listed> = self
                    .requests()?
                    .iter()
                    .filter(|l| {
                        env.as_ref()
                            .is_none_or(|e| &l.request.to == e || &l.request.from == e)
                    })
                    .cloned()
                    .collect();
                if *json {
                    let listed: Vec<&Listed> = of_env
                        .iter()
                        .filter(|l| keeps(filter, l.request.state))
                        .collect();
                    return Ok(json_reply(StatusCode::OK, &listed));
                }
                let body = requests_page(&of_env, filter, env.as_deref());
                let mut api = format!("/api/requests?state={state}");
                if let Some(env) = env {
                    api.push_str(&format!("&env={}", encode(env)));
                }
                let common = self.common("Requests", api)?;
                self.page("requests", &Page { common, body })
            }
            Route::Request { id, json } => {
                let listed = self
                    .requests()?
                    .iter()
                    .find(|l| l.request.id == *id)
                    .cloned()
                    .ok_or_else(|| Failure::not_found(format!("no request #{id}")))?;
                if *json {
                    return Ok(json_reply(StatusCode::OK, &listed));
                }
                let body = request_page(&listed);
                let common =
                    self.common(&format!("Request #{id}"), format!("/api/requests/{id}"))?;
                self.page("request", &Page { common, body })
            }
            Route::Diff { from, to, json } => {
                self.known(from)?;
                self.known(to)?;
                let report = self.diff(from, to)?;
                if *json {
                    return Ok(json_reply(StatusCode::OK, &report));
                }
                let body = diff_page(report);
                let common = self.common(
                    &format!("{from} → {to}"),
                    format!("/api/diff/{}/{}", encode(from), encode(to)),
                )?;
                self.page("diff", &Page { common, body })
            }
            Route::History { env, app, limit } => {
                self.known(env)?;
                // A page of a history not built whole yet costs only that page, as the
                // CLI's `-n` does.
                if limit.is_some() && !self.documents.histories.contains_key(env) {
                    let query = crate::view::history::Query {
                        app: app.as_deref(),
                        limit: *limit,
                    };
                    let (_, entries) = crate::view::history::history(
                        &self.store,
                        env,
                        &query,
                        &AllowedSigners::default(),
                    )?;
                    return Ok(json_reply(StatusCode::OK, &entries));
                }
                let entries: Vec<&Entry> = self
                    .history(env)?
                    .iter()
                    .filter(|e| {
                        app.as_ref()
                            .is_none_or(|app| e.changes.iter().any(|m| &m.app == app))
                    })
                    .take(limit.unwrap_or(usize::MAX))
                    .collect();
                Ok(json_reply(StatusCode::OK, &entries))
            }
            Route::Audit { env, since } => {
                self.known(env)?;
                match since {
                    None => Ok(json_reply(StatusCode::OK, self.audit(env, None)?)),
                    Some(text) => {
                        let since = crate::view::parse_since(text)?;
                        let forge = LocalForge::new(&self.store);
                        let (_, changes) =
                            crate::view::audit::audit(&self.store, &forge, env, Some(since), None)?;
                        Ok(json_reply(StatusCode::OK, &changes))
                    }
                }
            }
            Route::Dora { env, since } => {
                self.known(env)?;
                match since {
                    None => {
                        let report = self.dora(env)?.clone();
                        Ok(json_reply(StatusCode::OK, &[report]))
                    }
                    Some(text) => {
                        let since = crate::view::parse_since(text)?;
                        let reports = crate::view::dora::reports(
                            &self.store,
                            Some(env),
                            Some(since),
                            crate::identity::now(),
                        )?;
                        Ok(json_reply(StatusCode::OK, &reports.reports))
                    }
                }
            }
            Route::Environment { env, page } => {
                self.known(env)?;
                let body = self.environment(env, *page)?;
                let mut common = self.common(env, format!("/api/status?env={}", encode(env)))?;
                common.computing = body.dora_note.is_some();
                self.page("environment", &Page { common, body })
            }
            Route::NotFound { path, .. } => Err(Failure::not_found(format!("nothing at `{path}`"))
                .hint("the overview is at `/`; the JSON documents under `/api/`")),
        }
    }

    /// An error unless `env` is an environment of the repository.
    fn known(&mut self, env: &str) -> Result<(), Failure> {
        let graph = self.graph()?;
        if graph.order.iter().any(|e| e == env) {
            return Ok(());
        }
        Err(Failure::not_found(format!("no environment `{env}`"))
            .hint(format!("its environments: {}", graph.order.join(", "))))
    }

    fn graph(&mut self) -> Result<&Graph, Failure> {
        let store = &self.store;
        self.documents
            .graph
            .get_or_insert_with(|| crate::view::status::graph(store).map_err(Failure::from))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn status(&mut self) -> Result<&Vec<EnvStatus>, Failure> {
        let store = &self.store;
        self.documents
            .status
            .get_or_insert_with(|| {
                let forge = LocalForge::new(store);
                crate::view::status::status(store, &forge, None).map_err(Failure::from)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn requests(&mut self) -> Result<&Vec<Listed>, Failure> {
        let store = &self.store;
        self.documents
            .requests
            .get_or_insert_with(|| {
                let forge = LocalForge::new(store);
                crate::view::requests::list(&forge, None, StateFilter::All).map_err(Failure::from)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn diff(&mut self, from: &str, to: &str) -> Result<&DiffReport, Failure> {
        let store = &self.store;
        self.documents
            .diffs
            .entry((from.to_owned(), to.to_owned()))
            .or_insert_with(|| crate::view::diff::diff(store, from, to).map_err(Failure::from))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn history(&mut self, env: &str) -> Result<&Vec<Entry>, Failure> {
        let store = &self.store;
        self.documents
            .histories
            .entry(env.to_owned())
            .or_insert_with(|| {
                let query = crate::view::history::Query::default();
                crate::view::history::history(store, env, &query, &AllowedSigners::default())
                    .map(|(_, entries)| entries)
                    .map_err(Failure::from)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The audit of `env`: its `limit` newest changes, or all. Once all are built, any
    /// number of them is taken from it.
    fn audit(&mut self, env: &str, limit: Option<usize>) -> Result<&Vec<Change>, Failure> {
        let store = &self.store;
        let whole = (env.to_owned(), None);
        let key = if self.documents.audits.contains_key(&whole) {
            whole
        } else {
            (env.to_owned(), limit)
        };
        self.documents
            .audits
            .entry(key)
            .or_insert_with(|| {
                let forge = LocalForge::new(store);
                crate::view::audit::audit(store, &forge, env, None, limit)
                    .map(|(_, changes)| changes)
                    .map_err(Failure::from)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The DORA report of `env` over its whole history, to now.
    fn dora(&mut self, env: &str) -> Result<&crate::dora::Report, Failure> {
        let store = &self.store;
        self.documents
            .dora
            .entry(env.to_owned())
            .or_insert_with(|| {
                crate::view::dora::reports(store, Some(env), None, crate::identity::now())
                    .map_err(Failure::from)?
                    .reports
                    .pop()
                    .ok_or_else(|| Failure::not_found(format!("no DORA report of `{env}`")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The environment's file as its branch's tip declares it.
    fn declared(&mut self, env: &str) -> Option<Environment> {
        let store = &self.store;
        self.documents
            .declared
            .entry(env.to_owned())
            .or_insert_with(|| {
                let branch = crate::state::branch_of(store, env).ok()?;
                let tip = store.tip(&branch, History::Tip).ok()?;
                crate::enforce::environment_in(store, tip, &branch)
            })
            .clone()
    }

    /// What every page shows around its own content.
    fn common(&mut self, title: &str, json: String) -> Result<Common, Failure> {
        let envs = self.graph()?.order.clone();
        Ok(Common {
            title: title.to_owned(),
            fingerprint: self.fingerprint.clone(),
            remote: self.store.remote().shown.clone(),
            environments: envs
                .iter()
                .map(|e| Link {
                    text: e.clone(),
                    href: format!("/env/{}", encode(e)),
                })
                .collect(),
            json,
            generated: format_time(crate::identity::now()),
            computing: false,
        })
    }

    fn page(&self, template: &str, data: &impl Serialize) -> Result<Reply, Failure> {
        let html = self.templates.render(template, data).map_err(|e| Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the page could not be rendered: {e}"),
            hints: Vec::new(),
        })?;
        Ok(reply(StatusCode::OK, html, "text/html; charset=utf-8"))
    }

    fn error_page(&mut self, failure: &Failure) -> Reply {
        let common = Common {
            title: failure.status.to_string(),
            fingerprint: self.fingerprint.clone(),
            remote: self.store.remote().shown.clone(),
            environments: Vec::new(),
            json: String::new(),
            generated: format_time(crate::identity::now()),
            computing: false,
        };
        let body = serde_json::json!({
            "status": failure.status.as_u16(),
            "reason": failure.status.canonical_reason().unwrap_or(""),
            "message": failure.message,
            "hints": failure.hints,
        });
        let html = self
            .templates
            .render("error", &Page { common, body })
            .unwrap_or_else(|e| format!("error: {e}"));
        reply(failure.status, html, "text/html; charset=utf-8")
    }

    /// The overview: each environment's card, the promotion graph's edges, one page of the
    /// matrix (apps whose name holds `q`).
    fn overview(&mut self, page: usize, q: &str) -> Result<Overview, Failure> {
        let graph = self.graph()?.clone();
        let status = self.status()?.clone();
        let mut edges = Vec::new();
        for (from, to) in &graph.edges {
            let report = self.diff(from, to)?;
            edges.push(edge(report));
        }
        let environments = status.iter().map(card).collect();
        let needle = q.to_lowercase();
        let mut apps: Vec<&String> = status.iter().flat_map(|e| e.apps.keys()).collect();
        apps.sort_unstable();
        apps.dedup();
        let matching: Vec<&String> = apps
            .into_iter()
            .filter(|a| needle.is_empty() || a.to_lowercase().contains(&needle))
            .collect();
        let total = matching.len();
        let pages = total.div_ceil(APPS_PER_PAGE).max(1);
        let number = page.min(pages);
        let upstream: BTreeMap<&str, &str> = graph
            .edges
            .iter()
            .map(|(from, to)| (to.as_str(), from.as_str()))
            .collect();
        let rows = matching
            .iter()
            .skip((number - 1) * APPS_PER_PAGE)
            .take(APPS_PER_PAGE)
            .map(|app| MatrixRow {
                app: (*app).clone(),
                cells: status
                    .iter()
                    .map(|e| {
                        let version = e.apps.get(*app).cloned();
                        let before = upstream
                            .get(e.env.as_str())
                            .and_then(|from| status.iter().find(|s| s.env == *from))
                            .map(|s| s.apps.get(*app).cloned());
                        let class = match (&version, before) {
                            (None, _) => "absent",
                            (Some(_), Some(None)) => "only",
                            (Some(v), Some(Some(b))) if *v != b => "behind",
                            _ => "same",
                        };
                        Cell {
                            version: version.unwrap_or_else(|| "—".to_owned()),
                            class,
                        }
                    })
                    .collect(),
            })
            .collect();
        let link = |n: usize| {
            let mut href = format!("/?page={n}");
            if !q.is_empty() {
                href.push_str(&format!("&q={}", encode(q)));
            }
            href
        };
        Ok(Overview {
            environments,
            edges,
            env_names: status.iter().map(|e| e.env.clone()).collect(),
            rows,
            pager: Pager {
                number,
                pages,
                total,
                first: (number - 1) * APPS_PER_PAGE + usize::from(total > 0),
                last: (number * APPS_PER_PAGE).min(total),
                previous: (number > 1).then(|| link(number - 1)),
                next: (number < pages).then(|| link(number + 1)),
            },
            q: q.to_owned(),
        })
    }

    /// An environment's page: its card, its protection as declared, its DORA charts and one
    /// page of its timeline.
    fn environment(&mut self, env: &str, page: usize) -> Result<EnvPage, Failure> {
        let status = self
            .status()?
            .iter()
            .find(|s| s.env == env)
            .cloned()
            .ok_or_else(|| Failure::not_found(format!("no status of `{env}`")))?;
        let declared = self.declared(env);
        // The figures the API built at these refs, else the background thread's.
        let figures = match self.documents.dora.get(env) {
            Some(Ok(report)) => Figures::Ready {
                report: Box::new(report.clone()),
                current: true,
            },
            _ => self
                .reports
                .figures(env, &self.fingerprint, super::background::WAIT),
        };
        let (charts, dora_note, dora_failed) = match figures {
            Figures::Ready { report, current } => (
                svg::dora_charts(&report),
                (!current).then(|| {
                    "as of an earlier state of the repository: being brought up to date".to_owned()
                }),
                None,
            ),
            Figures::Computing => (
                Vec::new(),
                Some("being computed over the branch's history: the page reloads when they are ready (without JavaScript, reload it)".to_owned()),
                None,
            ),
            Figures::Failed(why) => (Vec::new(), None, Some(why)),
        };
        // The changes up to this page's, and one more to tell whether an older page exists:
        // a page costs what it shows, not the whole history.
        let wanted = page.saturating_mul(CHANGES_PER_PAGE).saturating_add(1);
        let audit = self.audit(env, Some(wanted))?;
        // What is known: the changes up to this page's (fewer at the end of the history), and
        // whether there are older ones.
        let known = audit.len().min(page.saturating_mul(CHANGES_PER_PAGE));
        let pages = known.div_ceil(CHANGES_PER_PAGE).max(1);
        let number = page.min(pages);
        let older = audit.len() > number * CHANGES_PER_PAGE;
        let timeline: Vec<TimelineRow> = audit
            .iter()
            .skip((number - 1) * CHANGES_PER_PAGE)
            .take(CHANGES_PER_PAGE)
            .map(timeline_row)
            .collect();
        let flagged = timeline.iter().filter(|c| !c.violations.is_empty()).count();
        let link = |n: usize| format!("/env/{}?page={n}", encode(env));
        let (protection, policy) = match &declared {
            Some(e) => (e.protection.as_ref().map(facts), facts(&e.policy)),
            None => (None, Vec::new()),
        };
        Ok(EnvPage {
            card: card(&status),
            hosts: status.hosts.iter().take(HOST_ROWS).map(host_row).collect(),
            hosts_more: status.hosts.len().saturating_sub(HOST_ROWS),
            declared: declared.is_some(),
            protection,
            policy,
            signers: declared.map(|e| e.signers).unwrap_or_default(),
            timeline,
            flagged,
            charts,
            dora_note,
            dora_failed,
            pager: Pager {
                number,
                pages,
                total: known,
                first: (number - 1) * CHANGES_PER_PAGE + usize::from(known > 0),
                last: (number * CHANGES_PER_PAGE).min(known),
                previous: (number > 1).then(|| link(number - 1)),
                next: older.then(|| link(number + 1)),
            },
            links: EnvLinks {
                history: format!("/api/history/{}", encode(env)),
                audit: format!("/api/audit/{}", encode(env)),
                requests: format!("/requests?state=all&env={}", encode(env)),
                dora: format!("/api/dora/{}", encode(env)),
            },
        })
    }
}

/// The fingerprint of `refs`: a hash of every name and id, 24 hex digits.
pub fn fingerprint(refs: &BTreeMap<String, crate::store::Oid>) -> String {
    let mut hash = sha2::Sha256::new();
    for (name, id) in refs {
        hash.update(name.as_bytes());
        hash.update(b" ");
        hash.update(id.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(&hash.finalize()[..12])
}

fn keeps(filter: StateFilter, state: RequestState) -> bool {
    match filter {
        StateFilter::All => true,
        StateFilter::Open => state == RequestState::Open,
        StateFilter::Merged => state == RequestState::Merged,
        StateFilter::Closed => state == RequestState::Closed,
    }
}

/// `value` as the CLI prints it with `--format json`, then a line feed.
fn json_reply(status: StatusCode, value: &impl Serialize) -> Reply {
    let mut text = serde_json::to_string_pretty(value).expect("documents serialize");
    text.push('\n');
    reply(status, text, "application/json")
}

/// `text` for a path segment or a query value: every byte but unreserved ones escaped.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A link to show: `url` when it is an http(s) one, else none (a reporter's URL is theirs to
/// write: `javascript:` is not a link).
fn web_link(url: Option<&str>) -> Option<String> {
    url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_owned)
}

#[derive(Serialize)]
struct Page<T: Serialize> {
    common: Common,
    body: T,
}

#[derive(Serialize)]
struct Common {
    title: String,
    fingerprint: String,
    remote: String,
    environments: Vec<Link>,
    /// The JSON document behind the page.
    json: String,
    generated: String,
    /// Figures of the page are being computed: its script reloads it when they are ready.
    computing: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Link {
    text: String,
    href: String,
}

#[derive(Debug, Serialize)]
pub struct Overview {
    environments: Vec<Card>,
    edges: Vec<Edge>,
    env_names: Vec<String>,
    rows: Vec<MatrixRow>,
    pager: Pager,
    q: String,
}

#[derive(Debug, Serialize)]
struct Pager {
    number: usize,
    pages: usize,
    total: usize,
    first: usize,
    last: usize,
    previous: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Serialize)]
struct MatrixRow {
    app: String,
    cells: Vec<Cell>,
}

#[derive(Debug, Serialize)]
struct Cell {
    version: String,
    /// `same` as upstream, `behind` it (a promotion would move it), `only` here, `absent`.
    class: &'static str,
}

/// An environment at a glance.
#[derive(Debug, Serialize)]
struct Card {
    env: String,
    href: String,
    branch: String,
    commit: String,
    short: String,
    apps: usize,
    /// `success`, `failure`, `error`, `pending` or `none`.
    state: String,
    deploy: Option<Deploy>,
    /// Hosts' app reports by state, for fleets.
    host_states: Vec<Count>,
    /// The rollouts under way or halted (the first few).
    rollouts: Vec<Said>,
    rollouts_more: usize,
    /// The apps whose rollout of the tip is over.
    rollouts_done: usize,
}

#[derive(Debug, Serialize)]
struct Deploy {
    by: String,
    at: String,
    description: String,
    url: Option<String>,
}

#[derive(Debug, Serialize)]
struct Count {
    state: String,
    /// The state as a CSS class (`not-reported`).
    class: String,
    count: usize,
}

impl Count {
    fn of(state: &str, count: usize) -> Count {
        Count {
            state: state.to_owned(),
            class: state.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            count,
        }
    }
}

#[derive(Debug, Serialize)]
struct Said {
    app: String,
    text: String,
    halted: bool,
}

fn card(status: &EnvStatus) -> Card {
    // The rollouts under way or halted, halted first; the finished ones are counted.
    let mut moving: Vec<(&String, &crate::view::status::AppRollout)> = status
        .rollouts
        .iter()
        .filter(|(_, r)| {
            r.halted || r.wave < r.waves || r.deployed + r.failed < r.hosts || r.failed > 0
        })
        .collect();
    moving.sort_by_key(|(_, r)| !r.halted);
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for host in &status.hosts {
        *states.entry(host.state.as_str()).or_default() += 1;
    }
    Card {
        env: status.env.clone(),
        href: format!("/env/{}", encode(&status.env)),
        branch: status.branch.clone(),
        short: crate::output::abbrev(&status.commit, 7).to_owned(),
        commit: status.commit.clone(),
        apps: status.apps.len(),
        state: status
            .deploy
            .as_ref()
            .map_or("none", |d| d.state.as_str())
            .to_owned(),
        deploy: status.deploy.as_ref().map(|d| Deploy {
            by: d.by.clone(),
            at: format_time(d.at),
            description: d.description.clone(),
            url: web_link(d.url.as_deref()),
        }),
        host_states: states
            .into_iter()
            .map(|(state, count)| Count::of(state, count))
            .collect(),
        rollouts: moving
            .iter()
            .take(ROLLOUTS_SHOWN)
            .map(|(app, r)| Said {
                app: (*app).clone(),
                text: r.said(),
                halted: r.halted,
            })
            .collect(),
        rollouts_more: moving.len().saturating_sub(ROLLOUTS_SHOWN),
        rollouts_done: status.rollouts.len() - moving.len(),
    }
}

/// An edge of the promotion graph: what promoting `from` into `to` would move.
#[derive(Debug, Serialize)]
struct Edge {
    from: String,
    to: String,
    href: String,
    moving: Vec<Moving>,
    more: usize,
    counts: Vec<Count>,
}

#[derive(Debug, Serialize)]
struct Moving {
    app: String,
    from: String,
    to: String,
    change: &'static str,
}

fn change_word(change: Move) -> &'static str {
    match change {
        Move::Same => "same",
        Move::Up => "up",
        Move::Down => "down",
        Move::Repinned => "repinned",
        Move::Added => "added",
        Move::OnlyInTarget => "only-in-target",
    }
}

fn version(artifact: Option<&crate::model::Artifact>) -> String {
    artifact.map_or("—".to_owned(), crate::model::Artifact::shown_version)
}

fn edge(report: &DiffReport) -> Edge {
    let moving: Vec<Moving> = report
        .apps
        .iter()
        .filter(|a| {
            matches!(
                a.change,
                Move::Up | Move::Down | Move::Added | Move::Repinned
            )
        })
        .map(|a| Moving {
            app: a.app.clone(),
            // The target's version before, the source's after.
            from: version(a.to.as_ref()),
            to: version(a.from.as_ref()),
            change: change_word(a.change),
        })
        .collect();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for a in &report.apps {
        *counts.entry(change_word(a.change)).or_default() += 1;
    }
    Edge {
        from: report.from.clone(),
        to: report.to.clone(),
        href: format!("/diff/{}/{}", encode(&report.from), encode(&report.to)),
        more: moving.len().saturating_sub(MOVES_SHOWN),
        moving: moving.into_iter().take(MOVES_SHOWN).collect(),
        counts: counts
            .into_iter()
            .map(|(state, count)| Count::of(state, count))
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct DiffPage {
    from: String,
    to: String,
    from_href: String,
    to_href: String,
    rows: Vec<Moving>,
}

fn diff_page(report: &DiffReport) -> DiffPage {
    DiffPage {
        from: report.from.clone(),
        to: report.to.clone(),
        from_href: format!("/env/{}", encode(&report.from)),
        to_href: format!("/env/{}", encode(&report.to)),
        rows: report
            .apps
            .iter()
            .map(|a| Moving {
                app: a.app.clone(),
                from: version(a.from.as_ref()),
                to: version(a.to.as_ref()),
                change: change_word(a.change),
            })
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct RequestsPage {
    tabs: Vec<Tab>,
    env: Option<String>,
    show_open: bool,
    done_title: &'static str,
    open: Vec<RequestRow>,
    recent: Vec<RequestRow>,
    more: usize,
}

#[derive(Debug, Serialize)]
struct Tab {
    text: &'static str,
    href: String,
    current: bool,
}

#[derive(Debug, Serialize)]
struct RequestRow {
    id: u64,
    href: String,
    state: &'static str,
    title: String,
    from: String,
    to: String,
    rollback: bool,
    moves: String,
    approvals: String,
    checks: Vec<Check>,
    author: String,
    updated: String,
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    state: &'static str,
    by: String,
    description: String,
    url: Option<String>,
}

fn checks(statuses: Option<&Statuses>) -> Vec<Check> {
    statuses
        .into_iter()
        .flatten()
        .map(|(name, s)| Check {
            name: name.clone(),
            state: s.state.as_str(),
            by: s.by.clone(),
            description: s.description.clone(),
            url: web_link(s.url.as_deref()),
        })
        .collect()
}

fn request_row(listed: &Listed) -> RequestRow {
    let r = &listed.request;
    RequestRow {
        id: r.id,
        href: format!("/requests/{}", r.id),
        state: r.state.as_str(),
        title: r.title.clone(),
        from: r.from.clone(),
        to: r.to.clone(),
        rollback: r.rollback,
        moves: r
            .moves
            .iter()
            .map(|m| format!("{} {}", m.app, m.to))
            .collect::<Vec<_>>()
            .join(", "),
        approvals: crate::view::requests::approvals(r),
        checks: checks(listed.checks.as_ref()),
        author: r.author.clone(),
        updated: format_time(r.updated_at),
    }
}

fn requests_page(listed: &[Listed], filter: StateFilter, env: Option<&str>) -> RequestsPage {
    let tab = |text: &'static str, state: StateFilter| {
        let mut href = format!("/requests?state={text}");
        if let Some(env) = env {
            href.push_str(&format!("&env={}", encode(env)));
        }
        Tab {
            text,
            href,
            current: state == filter,
        }
    };
    // The open requests (unless merged or closed ones are asked for), and the latest of the
    // others: all of them when asked for, else the most recent.
    let open: Vec<&Listed> = listed
        .iter()
        .filter(|l| l.request.state == RequestState::Open)
        .filter(|_| matches!(filter, StateFilter::Open | StateFilter::All))
        .collect();
    let mut done: Vec<&Listed> = listed
        .iter()
        .filter(|l| l.request.state != RequestState::Open)
        .filter(|l| filter == StateFilter::Open || keeps(filter, l.request.state))
        .collect();
    done.sort_by_key(|l| std::cmp::Reverse(l.request.updated_at));
    let shown = if filter == StateFilter::Open {
        RECENT
    } else {
        usize::MAX
    };
    RequestsPage {
        tabs: vec![
            tab("open", StateFilter::Open),
            tab("merged", StateFilter::Merged),
            tab("closed", StateFilter::Closed),
            tab("all", StateFilter::All),
        ],
        env: env.map(str::to_owned),
        show_open: matches!(filter, StateFilter::Open | StateFilter::All),
        done_title: match filter {
            StateFilter::Open => "Recently merged or closed",
            StateFilter::Merged => "Merged",
            StateFilter::Closed => "Closed",
            StateFilter::All => "Merged or closed",
        },
        open: open.into_iter().map(request_row).collect(),
        more: done.len().saturating_sub(shown),
        recent: done.into_iter().take(shown).map(request_row).collect(),
    }
}

#[derive(Debug, Serialize)]
struct RequestPage {
    row: RequestRow,
    branch: String,
    head: String,
    base: String,
    source: String,
    created: String,
    merged: Option<String>,
    closed: Option<String>,
    approvals: Vec<ApprovalRow>,
    moves: Vec<MoveRow>,
    body: Vec<Block>,
    diff: String,
}

#[derive(Debug, Serialize)]
struct ApprovalRow {
    by: String,
    at: String,
    head: String,
    current: bool,
}

#[derive(Debug, Serialize)]
struct MoveRow {
    app: String,
    from: String,
    to: String,
    kind: &'static str,
    sha256: String,
    url: String,
}

fn request_page(listed: &Listed) -> RequestPage {
    let r = &listed.request;
    let short = |id: &str| crate::output::abbrev(id, 7).to_owned();
    RequestPage {
        row: request_row(listed),
        branch: r.branch.clone(),
        head: short(&r.head),
        base: short(&r.base),
        source: short(&r.source),
        created: format_time(r.created_at),
        merged: r
            .merged_by
            .as_ref()
            .map(|by| format!("{by} at {}", format_time(r.merged_at.unwrap_or_default()))),
        closed: r
            .closed_by
            .as_ref()
            .map(|by| format!("{by} at {}", format_time(r.closed_at.unwrap_or_default()))),
        approvals: r
            .approvals
            .iter()
            .map(|a| ApprovalRow {
                by: a.by.clone(),
                at: format_time(a.at),
                head: short(&a.head),
                current: a.head == r.head,
            })
            .collect(),
        moves: r
            .moves
            .iter()
            .map(|m| MoveRow {
                app: m.app.clone(),
                from: m.from.clone().unwrap_or_else(|| "(new)".to_owned()),
                to: m.to.clone(),
                kind: m.kind.as_str(),
                sha256: m
                    .pin
                    .pin()
                    .map(|p| crate::output::abbrev(&p.sha256, 12).to_owned())
                    .unwrap_or_default(),
                url: m.pin.pin().map(|p| p.url.clone()).unwrap_or_default(),
            })
            .collect(),
        body: markdown::blocks(&crate::view::requests::for_people(&r.body)),
        diff: format!("/diff/{}/{}", encode(&r.from), encode(&r.to)),
    }
}

#[derive(Debug, Serialize)]
struct EnvPage {
    card: Card,
    hosts: Vec<HostLine>,
    hosts_more: usize,
    declared: bool,
    protection: Option<Vec<Fact>>,
    policy: Vec<Fact>,
    signers: Vec<String>,
    timeline: Vec<TimelineRow>,
    flagged: usize,
    charts: Vec<svg::Chart>,
    /// Why the charts are not there, or not current.
    dora_note: Option<String>,
    /// Why they cannot be computed.
    dora_failed: Option<String>,
    pager: Pager,
    links: EnvLinks,
}

#[derive(Debug, Serialize)]
struct EnvLinks {
    history: String,
    audit: String,
    requests: String,
    dora: String,
}

#[derive(Debug, Serialize)]
struct HostLine {
    host: String,
    app: String,
    version: String,
    state: String,
    wave: String,
    since: String,
    message: String,
}

fn host_row(h: &crate::view::status::HostRow) -> HostLine {
    HostLine {
        host: h.host.clone(),
        app: h.app.clone(),
        version: if h.version.is_empty() {
            "—".to_owned()
        } else {
            h.version.clone()
        },
        state: h.state.clone(),
        wave: h.wave.map_or("—".to_owned(), |(k, n)| format!("{k}/{n}")),
        since: h.since.map_or("—".to_owned(), format_time),
        message: h.message.clone(),
    }
}

/// A declared setting: its name and its value as text.
#[derive(Debug, Serialize)]
struct Fact {
    name: String,
    value: String,
}

/// The fields of `value` (a protection, a policy) as facts, in their declared order.
fn facts(value: &impl Serialize) -> Vec<Fact> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(value) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(name, value)| Fact {
            name,
            value: match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(items) if items.is_empty() => "none".to_owned(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                serde_json::Value::Null => "—".to_owned(),
                other => other.to_string(),
            },
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct TimelineRow {
    time: String,
    commit: String,
    short: String,
    kind: &'static str,
    subject: String,
    author: String,
    request: Option<Link>,
    requested_by: Option<String>,
    approved_by: String,
    merged_by: Option<String>,
    pushed_by: String,
    moves: String,
    signature: String,
    checks: Vec<Check>,
    violations: Vec<String>,
}

fn timeline_row(c: &Change) -> TimelineRow {
    TimelineRow {
        time: c.time.clone(),
        short: crate::output::abbrev(&c.commit, 7).to_owned(),
        commit: c.commit.clone(),
        kind: c.kind,
        subject: c.subject.clone(),
        author: c.author.clone(),
        request: c.request.map(|id| Link {
            text: format!("#{id}"),
            href: format!("/requests/{id}"),
        }),
        requested_by: c.requested_by.clone(),
        approved_by: c.approved_by.join(", "),
        merged_by: c.merged_by.clone(),
        pushed_by: match (&c.pushed_by, c.push_logged) {
            (Some(p), _) => p.clone(),
            (None, true) => "(not named)".to_owned(),
            (None, false) => "(not logged)".to_owned(),
        },
        moves: if c.moves.is_empty() {
            "(no artifact moved)".to_owned()
        } else {
            crate::plan::history::shown(&c.moves)
        },
        signature: c.signature.short(),
        checks: c
            .checks
            .iter()
            .map(|g| Check {
                name: g.check.clone(),
                state: g
                    .state
                    .map_or("not reported", crate::forge::CheckState::as_str),
                by: g.by.clone().unwrap_or_default(),
                description: g.required_by.to_owned(),
                url: None,
            })
            .collect(),
        violations: c.violations.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_parse_and_names_are_encoded() {
        super::templates();
        assert_eq!(super::encode("a b/../<x>"), "a%20b%2F..%2F%3Cx%3E");
    }
}
