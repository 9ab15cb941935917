//! `ferry validate`: every rule, both layouts, bad input, output formats, exit codes.

use insta::assert_snapshot;
use serde_json::json;

use crate::common::{DIGEST, Repo, crate_path, ferry};

#[test]
fn example_repository_is_valid() {
    let repo = Repo::example();
    let run = repo.validate(&[]);
    assert_snapshot!(run.render(), @r"
    exit: 0
    ----- stdout -----
    ----- stderr -----
    `.` is valid: 3 artifacts, 3 environments (dev → staging → prod)
    ");
}

#[test]
fn the_crate_itself_is_the_example_and_validates_clean() {
    let run = ferry(&["validate", "--format", "json"])
        .current_dir(&crate_path(""))
        .run();
    run.assert_code(0);
    assert_eq!(
        run.json(),
        json!({"valid": true, "errors": [], "warnings": []})
    );
}

#[test]
fn schema_violations_in_the_manifest() {
    let repo = Repo::example();
    repo.write(
        "manifest.json",
        format!(
            r#"{{
  "version": "2.1",
  "descripton": "typo",
  "artifacts": {{
    "web": {{ "version": "2.1.0.0", "url": "ftp://example.com/web.tgz", "sha256": "ABC" }},
    "api": {{ "version": "v1.4.2", "url": "https://example.com/api.tgz", "sha256": "{upper}" }},
    "worker": {{ "version": "0.9.3", "url": "https://example.com/w.tgz", "sha256": "{bad_hex}", "size": 3 }},
    "bad name": {{ "version": "1.0.0", "url": "https://example.com/x", "sha256": "{DIGEST}" }},
    "db": {{ "version": 1 }},
    "cache": 42
  }}
}}
"#,
            upper = DIGEST.to_uppercase(),
            bad_hex = DIGEST[..62].to_owned() + "zz",
        ),
    );
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn url_rules_beyond_the_scheme() {
    let repo = Repo::example();
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["web"]["url"] = json!("https:///web.tgz");
        m["artifacts"]["api"]["url"] = json!("file://fileserver/srv/api.tgz");
        m["artifacts"]["worker"]["url"] =
            json!("https://deploy:hunter2@artifacts.example.com/w.tgz");
    });
    let run = repo.validate(&[]);
    // A password in a URL is reported, never echoed.
    assert!(
        !run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"),
        "{}",
        run.render()
    );
    assert_snapshot!(run.render());
}

#[test]
fn oci_and_file_urls_are_accepted() {
    let repo = Repo::example();
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["web"]["url"] = json!("oci://registry.example.com:5000/team/web:2.1.0");
        m["artifacts"]["api"]["url"] =
            json!(format!("oci://registry.example.com/api@sha256:{DIGEST}"));
        m["artifacts"]["api"]["sha256"] = json!(DIGEST);
        m["artifacts"]["worker"]["url"] = json!("file:///srv/artifacts/worker-0.9.3.tar.gz");
    });
    repo.validate(&[]).assert_code(0);
    // An `oci://…@sha256:` URL must name the digest `sha256` pins (its manifest digest).
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["api"]["sha256"] = json!("ab".repeat(32));
    });
    let run = repo.validate(&[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("`url` names manifest digest sha256:"),
        "{}",
        run.render()
    );
}

#[test]
fn schema_violations_in_an_environment() {
    let repo = Repo::example();
    repo.edit_json("environments/staging.json", |e| {
        e["promote_from"] = json!("dev");
        e["policy"]["soak"] = json!("1 hour");
        e["policy"]["required_checks"] = json!(["ci/test", "ci/test"]);
        e["protection"]["required_approvals"] = json!(7);
        e["protection"]["allowed_mergers"] = json!(["release managers"]);
        e["agent"]["interval"] = json!(30);
        e["apps"]["web"]["deployment_path"] = json!("srv/web");
        e["apps"]["web"]["healthcheck_url"] = json!("tcp://10.0.1.5:8080");
        e["apps"]["api"]["activate"] = json!("systemctl restart api");
        e["apps"]["worker"]
            .as_object_mut()
            .unwrap()
            .remove("deployment_path");
    });
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn bare_file_name_artifacts_are_accepted_with_a_warning() {
    let repo = Repo::example();
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["api"] = json!("my-api-1.0.4.zip")
    });
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn duplicate_keys_are_errors_at_any_depth() {
    let repo = Repo::example();
    let text = std::fs::read_to_string(repo.path().join("manifest.json")).unwrap();
    let text = text
        .replacen(
            "\"version\": \"2.1.0\",",
            "\"version\": \"2.1.0\",\n  \"version\": \"2.2.0\",",
            1,
        )
        .replacen("\"api\": {", "\"api\": {\n      \"version\": \"0.0.1\",", 1);
    repo.write("manifest.json", text);
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn promotes_from_must_name_an_environment() {
    let repo = Repo::example();
    repo.edit_json("environments/prod.json", |e| {
        e["promotes_from"] = json!("stagin")
    });
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn promotion_cycles_are_reported_once() {
    let repo = Repo::example();
    repo.edit_json("environments/staging.json", |e| {
        e["promotes_from"] = json!("prod")
    });
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn exactly_one_environment_is_first() {
    let repo = Repo::example();
    repo.edit_json("environments/staging.json", |e| {
        e.as_object_mut().unwrap().remove("promotes_from");
    });
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn every_environment_promoting_from_another_has_no_first() {
    let repo = Repo::example();
    repo.edit_json("environments/dev.json", |e| {
        e["promotes_from"] = json!("dev")
    });
    let run = repo.validate(&[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains("promotion cycle: dev → dev"),
        "{}",
        run.stdout
    );
}

#[test]
fn branches_are_unique_and_valid_git_names() {
    let repo = Repo::example();
    repo.edit_json("environments/staging.json", |e| e["branch"] = json!("dev"));
    repo.edit_json("environments/prod.json", |e| {
        e["branch"] = json!("release..prod")
    });
    repo.write(
        "environments/hotfix.json",
        r#"{"name": "hotfix", "promotes_from": "prod", "branch": "ferry/promote/x"}"#,
    );
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn name_must_match_the_file() {
    let repo = Repo::example();
    repo.edit_json("environments/prod.json", |e| {
        e["name"] = json!("production")
    });
    assert_snapshot!(repo.validate(&[]).render());
}

#[test]
fn manifest_and_apps_name_the_same_applications() {
    let repo = Repo::example();
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["search"] =
            json!({"version": "1.0.0", "url": "https://example.com/s.tgz", "sha256": DIGEST});
    });
    repo.edit_json("environments/prod.json", |e| {
        e["apps"]["wroker"] = json!({"deployment_path": "/srv/wroker"});
    });
    assert_snapshot!(repo.validate(&[]).render());
}

/// Two apps of a host cannot share a directory, nest one in the other, or sit in the
/// directory the agent keeps beside another's (`.NAME.releases`): one app's releases would
/// land inside the other's. Apps on different hosts may use the same path.
#[test]
fn deployment_paths_of_a_host_do_not_overlap() {
    let repo = Repo::example();
    repo.edit_json("environments/dev.json", |e| {
        e["apps"]["web"]["deployment_path"] = json!("/srv/web");
        e["apps"]["inner"] = json!({"deployment_path": "/srv/web/inner"});
        e["apps"]["twin"] = json!({"deployment_path": "/srv/web/"});
        e["apps"]["hidden"] = json!({"deployment_path": "/srv/.web.releases/x"});
        e["apps"]["web2"] = json!({"deployment_path": "/srv/web2"});
        e["apps"]["elsewhere"] = json!({"host": "other-host", "deployment_path": "/srv/x"});
        e["apps"]["there"] = json!({"host": "third-host", "deployment_path": "/srv/x"});
    });
    let run = repo.validate(&[]);
    run.assert_code(1);
    // web, inner, twin and hidden each overlap another: one error each; web2 and the apps of
    // other hosts none.
    assert_eq!(
        run.stdout.matches("overlaps").count(),
        4,
        "{}",
        run.render()
    );
    for app in ["web", "inner", "twin", "hidden"] {
        assert!(
            run.stdout.contains(&format!("of `{app}` overlaps")),
            "{}",
            run.render()
        );
    }
    for app in ["web2", "elsewhere", "there"] {
        assert!(
            !run.stdout.contains(&format!("of `{app}` overlaps")),
            "{}",
            run.render()
        );
    }
}

/// Fleets: `hosts` and `rollout` are checked where they are written, with what was expected.
#[test]
fn fleets_declare_hosts_in_rollout_order_and_waves_that_make_sense() {
    let repo = Repo::example();
    repo.edit_json("environments/prod.json", |e| {
        e["rollout"] = json!({"waves": [1, "50%", "100%"], "pause": "5m", "max_failures": 1});
        e["apps"]["web"]["hosts"] = json!(["web-1", "web-2", "web-3"]);
        e["apps"]["web"].as_object_mut().unwrap().remove("host");
        e["apps"]["web"]["healthcheck_url"] = json!("http://{host}:8080/health");
        e["apps"]["web"]["rollout"] = json!({"max_failures": 0});
    });
    repo.validate(&[]).assert_code(0);

    let refused = |edit: &dyn Fn(&mut serde_json::Value), said: &str| {
        let repo = Repo::example();
        repo.edit_json("environments/prod.json", |e| edit(e));
        let run = repo.validate(&[]);
        run.assert_code(1);
        assert!(run.stdout.contains(said), "{said}\n{}", run.render());
    };
    refused(
        &|e| e["apps"]["web"]["host"] = json!("web-1"),
        "`web` sets `host` and `hosts` together: they exclude each other",
    );
    refused(
        &|e| {
            e["apps"]["web"].as_object_mut().unwrap().remove("host");
            e["apps"]["web"]["hosts"] = json!(["web-1", "web-1"]);
        },
        "`hosts` lists the same entry more than once",
    );
    refused(
        &|e| {
            e["apps"]["web"].as_object_mut().unwrap().remove("host");
            e["apps"]["web"]["hosts"] = json!(["web 1"]);
        },
        "/apps/web/hosts/0",
    );
    refused(
        &|e| e["rollout"] = json!({"waves": [0]}),
        "`0` is not a valid entry of `waves`",
    );
    refused(
        &|e| e["rollout"] = json!({"waves": ["150%"]}),
        "hint: How many hosts the rollout has reached once each wave opens",
    );
    refused(
        &|e| e["rollout"] = json!({"pause": "soon"}),
        "/rollout/pause",
    );
    refused(
        &|e| e["apps"]["api"]["host"] = json!("h".repeat(101)),
        "/apps/api/host",
    );
}

/// An agent's interval has one floor, the same as `ferry agent --interval`'s.
#[test]
fn an_agent_interval_under_a_second_is_an_error() {
    let repo = Repo::example();
    repo.edit_json("environments/dev.json", |e| {
        e["agent"] = json!({"interval": "1ms"});
    });
    let run = repo.validate(&[]);
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "`agent.interval` 1ms is under a second: the agents would poll without a pause"
        ),
        "{}",
        run.render()
    );
}

/// An app declared before it is pinned is a warning whose hint fits the environment: the
/// first one gets its pins from `ferry bump`, the others from promotions.
#[test]
fn an_app_declared_before_its_pin_gets_a_hint_that_fits_the_environment() {
    let repo = Repo::example();
    for env in ["dev", "staging"] {
        repo.edit_json(&format!("environments/{env}.json"), |e| {
            e["apps"]["search"] = json!({"deployment_path": "/srv/search"});
        });
    }
    let run = repo.validate(&[]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(
            "hint: it deploys once it is pinned here: `ferry bump search VERSION --env dev --add --url URL --artifact FILE`"
        ),
        "{}",
        run.render()
    );
    assert!(
        run.stdout
            .contains("hint: it deploys once it is pinned here (by a promotion)"),
        "{}",
        run.render()
    );
}

#[test]
fn environments_without_apps_need_no_entries() {
    let repo = Repo::example();
    repo.edit_json("environments/dev.json", |e| {
        e.as_object_mut().unwrap().remove("apps");
    });
    repo.validate(&[]).assert_code(0);
}

#[test]
fn json_output_lists_errors_and_warnings_with_positions() {
    let repo = Repo::example();
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["api"] = json!("api.zip");
        m["artifacts"]["web"]["sha256"] = json!("abc");
    });
    let run = repo.validate(&["--format", "json"]);
    run.assert_code(1);
    assert_snapshot!(serde_json::to_string_pretty(&run.json()).unwrap());
}

#[test]
fn github_actions_annotations() {
    let repo = Repo::example();
    repo.edit_json("manifest.json", |m| {
        m["artifacts"]["api"] = json!("api.zip");
        m["artifacts"]["web"]["version"] = json!("2.1");
    });
    let run = ferry(&["validate"])
        .current_dir(repo.path())
        .env("GITHUB_ACTIONS", "true")
        .run();
    assert_snapshot!(run.render());
    // In JSON mode stdout stays pure JSON; the annotations go to stderr.
    let run = ferry(&["validate", "--format", "json"])
        .current_dir(repo.path())
        .env("GITHUB_ACTIONS", "true")
        .run();
    assert_eq!(run.json()["valid"], json!(false));
    assert!(
        run.stderr.contains("::error file=manifest.json,line="),
        "{}",
        run.stderr
    );
}

#[test]
fn a_path_argument_prefixes_the_file_names() {
    let repo = Repo::example();
    repo.edit_json("environments/dev.json", |e| {
        e["agent"]["interval"] = json!("soon")
    });
    let run = ferry(&["validate"])
        .arg(repo.path())
        .redact(repo.path(), "REPO")
        .run();
    assert_snapshot!(run.render());
}

mod seed_layout {
    use super::*;

    fn seed_repo() -> Repo {
        let repo = Repo::empty();
        repo.write(
            "manifest.json",
            r#"{
  "version": "1.0.0",
  "description": "The seed example",
  "artifacts": { "my-app": "my-app-1.0.0.zip", "my-api": "my-api-1.0.4.zip" }
}
"#,
        );
        for (env, octet) in [("dev", 0), ("staging", 1), ("prod", 2)] {
            repo.write(
                &format!("{env}-env.json"),
                format!(
                    r#"{{
  "my-app": {{ "host": "10.0.{octet}.5", "deployment_path": "/opt/my-app", "healthcheck_url": "http://10.0.{octet}.5:8080/health" }},
  "my-api": {{ "host": "10.0.{octet}.6", "deployment_path": "/opt/my-api", "healthcheck_url": "http://10.0.{octet}.6:8080/health" }}
}}
"#
                ),
            );
        }
        repo
    }

    #[test]
    fn is_read_as_it_is() {
        assert_snapshot!(seed_repo().validate(&[]).render());
    }

    #[test]
    fn a_production_file_counts_as_prod() {
        let repo = seed_repo();
        let prod = std::fs::read(repo.path().join("prod-env.json")).unwrap();
        repo.remove("prod-env.json")
            .write("production-env.json", prod);
        let run = repo.validate(&[]);
        run.assert_code(0);
        assert!(
            run.stderr.contains("dev → staging → production"),
            "{}",
            run.stderr
        );
    }

    #[test]
    fn only_dev_and_staging_is_a_shorter_chain() {
        let repo = seed_repo();
        repo.remove("prod-env.json");
        let run = repo.validate(&[]);
        run.assert_code(0);
        assert!(run.stderr.contains("(dev → staging)"), "{}", run.stderr);
    }

    #[test]
    fn its_files_are_checked_like_the_native_ones() {
        let repo = seed_repo();
        repo.write(
            "staging-env.json",
            r#"{ "my-app": { "host": "h", "deployment_path": "opt/my-app", "helthcheck_url": "http://h/" } }"#,
        );
        repo.write("qa-env.json", "{}");
        let prod = std::fs::read(repo.path().join("prod-env.json")).unwrap();
        repo.write("production-env.json", prod);
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn mixing_layouts_is_an_error() {
        let repo = Repo::example();
        repo.write("dev-env.json", "{}");
        assert_snapshot!(repo.validate(&[]).render());
    }
}

mod bad_input {
    use super::*;

    #[test]
    fn not_json() {
        let repo = Repo::example();
        repo.write(
            "manifest.json",
            "{\n  \"artifacts\": {\n    \"web\": 'single quotes'\n  }\n}\n",
        );
        repo.write("environments/dev.json", "{\"name\": \"dev\",}");
        repo.write(
            "environments/prod.json",
            "{\"name\": \"prod\", \"promotes_from\": \"staging\"",
        );
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn not_utf8() {
        let repo = Repo::example();
        repo.write(
            "manifest.json",
            b"{\n  \"description\": \"caf\xe9\",\n  \"artifacts\": {}\n}\n",
        );
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn empty_files() {
        let repo = Repo::example();
        repo.write("manifest.json", "");
        repo.write("environments/dev.json", "   \n");
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn a_50_mb_file_is_refused_before_reading() {
        let repo = Repo::example();
        let file = std::fs::File::create(repo.path().join("manifest.json")).unwrap();
        file.set_len(50 * 1024 * 1024).unwrap();
        assert_snapshot!(repo.validate(&[]).render());
    }

    /// A file that is a link to a device, or a FIFO, is refused at once: never read forever,
    /// never waited on.
    #[test]
    fn devices_and_fifos_are_refused_not_read() {
        let repo = Repo::example();
        std::fs::remove_file(repo.path().join("manifest.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", repo.path().join("manifest.json")).unwrap();
        let fifo = repo.path().join("environments/dev.json");
        std::fs::remove_file(&fifo).unwrap();
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let run = crate::common::ferry(&["validate"])
            .arg(repo.path())
            .run_within(std::time::Duration::from_secs(20));
        assert_ne!(run.code, Some(0), "{}", run.render());
        assert!(
            run.stdout.contains("is a device, not a regular file")
                && run.stdout.contains("is a FIFO, not a regular file"),
            "{}",
            run.render()
        );
    }

    #[test]
    fn a_large_valid_file_under_the_limit_is_read() {
        let repo = Repo::example();
        // 20 MB of description: large, but within the limit and valid.
        repo.edit_json("manifest.json", |m| {
            m["description"] = json!("x".repeat(20 * 1024 * 1024))
        });
        repo.validate(&[]).assert_code(0);
    }

    #[test]
    fn nested_10000_deep() {
        let repo = Repo::example();
        let deep = format!(
            "{{\"artifacts\": {}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        repo.write("manifest.json", deep);
        let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        repo.write("environments/dev.json", deep_object);
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn not_an_object() {
        let repo = Repo::example();
        repo.write("manifest.json", "[1, 2, 3]");
        repo.write("environments/dev.json", "\"dev\"");
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn no_manifest_and_no_environments() {
        let repo = Repo::empty();
        repo.write("README.md", "not a deployment repository");
        assert_snapshot!(repo.validate(&[]).render());
    }

    #[test]
    fn a_directory_where_a_file_should_be() {
        let repo = Repo::example();
        repo.remove("manifest.json");
        std::fs::create_dir(repo.path().join("manifest.json")).unwrap();
        let run = repo.validate(&[]);
        run.assert_code(1);
        assert!(
            run.stdout
                .starts_with("manifest.json: error: cannot read the file"),
            "{}",
            run.stdout
        );
    }

    #[test]
    fn unreadable_path_exits_2() {
        let repo = Repo::empty();
        let missing = repo.path().join("nope");
        let run = ferry(&["validate"])
            .arg(&missing)
            .redact(repo.path(), "TMP")
            .run();
        assert_snapshot!(run.render());
        let file = repo.path().join("file");
        std::fs::write(&file, "x").unwrap();
        ferry(&["validate"]).arg(&file).run().assert_code(2);
    }

    #[test]
    fn bad_command_line_exits_2() {
        let run = ferry(&["validate", "--format", "yaml"]).run();
        run.assert_code(2);
        assert!(
            run.stderr.contains("invalid value 'yaml'"),
            "{}",
            run.stderr
        );
        ferry(&["validate", "a", "b"]).run().assert_code(2);
        ferry(&["frobnicate"]).run().assert_code(2);
    }
}

#[test]
fn help_lists_the_rules_and_examples() {
    assert_snapshot!(ferry(&["validate", "--help"]).run().render());
}

#[test]
fn schema_command_prints_the_embedded_schemas() {
    let run = ferry(&["schema", "manifest"]).run();
    run.assert_code(0);
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate_path("schemas/manifest.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(run.json(), shipped);
    ferry(&["schema", "nope"]).run().assert_code(2);
}
