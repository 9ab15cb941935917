//! The promotion plan, pure: made-up states, no repository.

use std::collections::BTreeMap;

use super::*;
use crate::forge::memory::MemoryForge;
use crate::forge::{Forge, RequestState};
use crate::plan::promote::{Gate, Kind};

const SOURCE: &str = "5555555555555555555555555555555555555555";
const BASE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const NOW: i64 = 1_800_000_000;

fn pin(app: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "version": version,
        "url": format!("https://artifacts.example.com/{app}-{version}.tgz"),
        "sha256": format!("{:0>64}", version.replace(['.', '-'], "").len()),
    })
}

fn manifest_text(pins: &[(&str, &str)]) -> String {
    let artifacts: serde_json::Map<String, serde_json::Value> = pins
        .iter()
        .map(|(app, version)| ((*app).to_owned(), pin(app, version)))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "description": "test",
        "artifacts": artifacts,
    }))
    .unwrap()
        + "\n"
}

/// staging's branch with these pins and this `policy`.
fn target(pins: &[(&str, &str)], policy: serde_json::Value) -> Target {
    let env = |name: &str, from: Option<&str>, policy: serde_json::Value| {
        let mut e = serde_json::json!({"name": name, "branch": name, "policy": policy});
        if let Some(from) = from {
            e["promotes_from"] = serde_json::json!(from);
        }
        serde_json::to_vec_pretty(&e).unwrap()
    };
    let files: BTreeMap<String, Vec<u8>> = [
        ("manifest.json".to_owned(), manifest_text(pins).into_bytes()),
        (
            "environments/dev.json".to_owned(),
            env("dev", None, serde_json::json!({"allow_prerelease": true})),
        ),
        (
            "environments/staging.json".to_owned(),
            env("staging", Some("dev"), policy),
        ),
        (
            "environments/prod.json".to_owned(),
            env("prod", Some("staging"), serde_json::json!({})),
        ),
    ]
    .into();
    let files = TreeSource::from_files("staging", files);
    let checked = validate::check(&files);
    let state = checked
        .state
        .unwrap_or_else(|| panic!("a valid state: {:?}", checked.report.errors));
    Target {
        branch: "staging".into(),
        tip: Oid::from_str(BASE).unwrap(),
        files,
        state,
    }
}

fn inputs(from: &[(&str, &str)], to: &[(&str, &str)], policy: serde_json::Value) -> Inputs {
    Inputs {
        ask: Ask {
            from: "dev".into(),
            to: "staging".into(),
            apps: None,
            rollback: false,
            write: true,
        },
        source: Oid::from_str(SOURCE).unwrap(),
        from: serde_json::from_str(&manifest_text(from)).unwrap(),
        target: target(to, policy),
        now: NOW,
        since: BTreeMap::new(),
        checks: BTreeMap::new(),
        changelog: Vec::new(),
        templates: Templates::default(),
    }
}

fn refused(plan: &Plan) -> Vec<(Gate, Option<&str>)> {
    plan.refused()
        .into_iter()
        .map(|g| (g.gate, g.app.as_deref()))
        .collect()
}

#[test]
fn a_promotion_plans_its_moves_and_every_text_it_writes() {
    let mut inputs = inputs(
        &[("api", "2.0.0"), ("web", "1.1.0"), ("db", "3.0.0")],
        &[("web", "1.0.0"), ("db", "3.0.0")],
        serde_json::json!({}),
    );
    inputs.changelog = vec![
        AppLog {
            app: "api".into(),
            entries: vec![],
        },
        AppLog {
            app: "web".into(),
            entries: vec![LogEntry {
                version: "1.1.0".into(),
                subject: "dev: bump web 1.0.0 → 1.1.0".into(),
                author: "ci".into(),
                date: "2027-01-15".into(),
                commit: "1234567".into(),
            }],
        },
    ];
    let plan = plan(&inputs).unwrap();
    let moves: Vec<(&str, Kind)> = plan
        .moves
        .iter()
        .map(|m| (m.app.as_str(), m.kind))
        .collect();
    assert_eq!(moves, [("api", Kind::New), ("web", Kind::Minor)]);
    assert!(plan.refused().is_empty(), "{:?}", plan.gates);
    let texts = plan.texts.expect("texts when every gate passes");
    assert_eq!(texts.title, "Promote dev → staging: api 2.0.0, web 1.1.0");
    assert_eq!(
        texts.message,
        "Promote dev → staging: api 2.0.0, web 1.1.0\n\nFerry-Promotion: dev -> staging\n\
         Ferry-Moves: api none -> 2.0.0\nFerry-Moves: web 1.0.0 -> 1.1.0\n"
    );
    let manifest: serde_json::Value = serde_json::from_str(&texts.manifest).unwrap();
    assert_eq!(manifest["artifacts"]["web"], pin("web", "1.1.0"));
    assert_eq!(manifest["artifacts"]["api"], pin("api", "2.0.0"));
    assert_eq!(manifest["artifacts"]["db"], pin("db", "3.0.0"));
    let body = &texts.body;
    assert!(
        body.starts_with("Promotes 2 apps from `dev` (5555555) to `staging` (bbbbbbb).\n"),
        "{body}"
    );
    assert!(
        body.contains("| api | — | 2.0.0 | new | `000000000000` |\n"),
        "{body}"
    );
    assert!(body.contains("| web | 1.0.0 | 1.1.0 | minor |"), "{body}");
    assert!(body.contains("### api\n- no bump commits found in `dev`'s history\n"));
    assert!(body.contains("- 1.1.0: dev: bump web 1.0.0 → 1.1.0 (ci, 2027-01-15, 1234567)\n"));
    assert!(body.contains("- ✅ `soak`: no soak time required\n"));
    assert!(body.ends_with("\n-->"));
    let requested: Vec<(&str, Option<&str>, &str)> = texts
        .requested
        .iter()
        .map(|m| (m.app.as_str(), m.from.as_deref(), m.to.as_str()))
        .collect();
    assert_eq!(
        requested,
        [("api", None, "2.0.0"), ("web", Some("1.0.0"), "1.1.0")]
    );
}

#[test]
fn nothing_to_promote_still_follows_the_graph() {
    let same = [("web", "1.0.0")];
    let plan = plan(&inputs(&same, &same, serde_json::json!({}))).unwrap();
    assert!(plan.moves.is_empty() && plan.texts.is_none());
    assert_eq!(plan.gates.len(), 1);
    assert!(plan.gates[0].passed);

    let mut wrong = inputs(&same, &same, serde_json::json!({}));
    wrong.ask.from = "prod".into();
    let plan = super::plan(&wrong).unwrap();
    assert_eq!(refused(&plan), [(Gate::PromotesFrom, None)]);
}

#[test]
fn the_soak_gate_refuses_pins_too_new_in_the_source() {
    let mut inputs = inputs(
        &[("web", "1.1.0"), ("api", "2.0.0")],
        &[("web", "1.0.0"), ("api", "1.0.0")],
        serde_json::json!({"soak": "1h"}),
    );
    inputs.since = [("web".into(), NOW - 600), ("api".into(), NOW - 7_200)].into();
    let plan = plan(&inputs).unwrap();
    assert_eq!(refused(&plan), [(Gate::Soak, Some("web"))]);
    let soak = plan.refused()[0];
    assert_eq!(soak.passes_at, Some(NOW - 600 + 3_600));
    assert!(plan.texts.is_none(), "nothing is written past a refusal");

    inputs.now = NOW + 3_000;
    assert!(super::plan(&inputs).unwrap().refused().is_empty());
}

#[test]
fn required_checks_must_be_green_on_the_source() {
    let mut inputs = inputs(
        &[("web", "1.1.0")],
        &[("web", "1.0.0")],
        serde_json::json!({"required_checks": ["ci/test", "ferry/deploy/dev"]}),
    );
    inputs.checks = [("ci/test".into(), "success".into())].into();
    let plan = plan(&inputs).unwrap();
    assert_eq!(refused(&plan), [(Gate::RequiredChecks, None)]);
    assert_eq!(
        plan.refused()[0].message,
        "`ferry/deploy/dev` has not reported on the promoted `dev` commit"
    );
    inputs
        .checks
        .insert("ferry/deploy/dev".into(), "success".into());
    let plan = super::plan(&inputs).unwrap();
    assert!(plan.refused().is_empty());
    assert!(plan.texts.unwrap().body.contains(
        "- ✅ `required_checks`: `ferry/deploy/dev` succeeded on the promoted `dev` commit\n"
    ));
}

#[test]
fn versions_go_down_only_as_a_rollback_and_prereleases_only_where_allowed() {
    let mut inputs = inputs(
        &[("web", "0.9.0"), ("api", "2.0.0-rc.1")],
        &[("web", "1.0.0"), ("api", "1.0.0")],
        serde_json::json!({"allow_prerelease": false}),
    );
    let plan = plan(&inputs).unwrap();
    let kinds: Vec<Kind> = plan.moves.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [Kind::Prerelease, Kind::Rollback]);
    assert_eq!(
        refused(&plan),
        [
            (Gate::Rollback, Some("web")),
            (Gate::Prerelease, Some("api"))
        ]
    );

    inputs.ask.rollback = true;
    inputs.ask.apps = Some(vec!["web".into()]);
    let plan = super::plan(&inputs).unwrap();
    assert!(plan.refused().is_empty(), "{:?}", plan.gates);
    let texts = plan.texts.unwrap();
    assert_eq!(texts.title, "Roll back dev → staging: web 0.9.0");
    assert!(texts.body.starts_with("**Rollback.** Promotes 1 app from"));
    assert!(texts.body.contains("\"rollback\": true"));
    assert!(texts.message.contains("Ferry-Moves: web 1.0.0 -> 0.9.0\n"));
}

#[test]
fn a_dry_run_plans_without_texts_and_unknown_apps_are_refused() {
    let mut inputs = inputs(
        &[("web", "1.1.0")],
        &[("web", "1.0.0")],
        serde_json::json!({}),
    );
    inputs.ask.write = false;
    let plan = plan(&inputs).unwrap();
    assert_eq!(plan.moves.len(), 1);
    assert!(plan.texts.is_none());

    inputs.ask.apps = Some(vec!["nope".into()]);
    assert!(matches!(
        super::plan(&inputs),
        Err(PromotionError::Plan(PlanError::UnknownApp(app))) if app == "nope"
    ));
}

#[test]
fn a_repositorys_own_templates_render_the_texts() {
    let mut inputs = inputs(
        &[("web", "1.1.0")],
        &[("web", "1.0.0")],
        serde_json::json!({}),
    );
    inputs.templates = Templates {
        title: Some(Override {
            text: "Ship {{#each moves}}{{app}}@{{version}}{{/each}} to {{to}}".into(),
            origin: "staging:templates/promotion-title.hbs".into(),
        }),
        body: Some(Override {
            text: "{{count}} app(s) <{{from}}>\n{{{machine}}}".into(),
            origin: "staging:templates/promotion-body.hbs".into(),
        }),
    };
    let texts = plan(&inputs).unwrap().texts.unwrap();
    assert_eq!(texts.title, "Ship web@1.1.0 to staging");
    assert!(
        texts.body.starts_with("1 app(s) <dev>\n{"),
        "{}",
        texts.body
    );

    inputs.templates.body = Some(Override {
        text: "{{nope}}".into(),
        origin: "staging:templates/promotion-body.hbs".into(),
    });
    let error = super::plan(&inputs).unwrap_err().to_string();
    assert!(
        error.starts_with("template `staging:templates/promotion-body.hbs`"),
        "{error}"
    );
}

#[test]
fn a_plan_applies_through_a_forge_and_updates_its_request_in_place() {
    let forge = MemoryForge::new();
    let inputs = inputs(
        &[("web", "1.1.0")],
        &[("web", "1.0.0")],
        serde_json::json!({}),
    );
    let plan = plan(&inputs).unwrap();
    let texts = plan.texts.as_ref().unwrap();
    let application = Application::new(&inputs, texts);
    let publish = |open: Option<&crate::forge::OpenRequest>| {
        forge.publish(
            &proposal_of(&application, "alice", NOW, Oid::ZERO_SHA1, false),
            open,
        )
    };
    let opened = publish(None).unwrap();
    assert!(!opened.updated);
    let request = forge.request(opened.id).unwrap().value;
    assert_eq!(request.state, RequestState::Open);
    assert_eq!(request.branch, "ferry/promote/dev-to-staging");
    assert_eq!(request.labels, ["promotion", "env:staging"]);
    assert_eq!(request.base, BASE);
    assert_eq!(request.source, SOURCE);
    assert_eq!(request.moves, texts.requested);
    let written = &forge.commits()[0];
    assert_eq!(
        written.files,
        [("manifest.json".to_owned(), texts.manifest.clone())]
    );
    assert_eq!(written.message, texts.message);
    assert_eq!(written.parent, inputs.target.tip);

    let open = forge.open_request("dev", "staging", "staging").unwrap();
    let updated = publish(open.as_ref()).unwrap();
    assert_eq!((updated.id, updated.updated), (opened.id, true));
    assert_eq!(forge.requests().unwrap().len(), 1);
}
