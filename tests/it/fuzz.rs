//! Property tests: random mutations of a valid deployment repository's files, and of the
//! embedded forge's records, never make ferry panic; the binary exits 0 (valid) or 1
//! (refused), nothing else. Each run draws a new seed (`FERRY_FUZZ_SEED` replays one), and a
//! failure names it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::{EXAMPLE_FILES, Sandbox, crate_path};

/// xorshift64*: small, seedable, enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("FERRY_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        (Rng(seed | 1), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that have broken parsers and printers before: empty, short, multi-byte, huge,
/// path tricks, control characters, out-of-range numbers, wrong types.
fn hostile_value(rng: &mut Rng) -> Value {
    let long = "x".repeat(300);
    let choices = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(u64::MAX),
        json!(""),
        json!("a"),
        json!("é"),
        json!("ééééééééééééé"),
        json!(".."),
        json!("/"),
        json!("/../../outside"),
        json!("line\nbreak"),
        json!("\u{0}"),
        json!(long),
        json!("1ms"),
        json!("999999999999999999999d"),
        json!("1.0.0-rc.1+build"),
        json!("https://user:pass@h/x"),
        json!("oci://r/x@sha256:abc"),
        json!([]),
        json!([[[[[]]]]]),
        json!({}),
        json!({"apps": {}, "branch": "ferry/x", "promotes_from": "prod"}),
        json!({"version": "1.0.0", "url": "https://h/x", "sha256": "abc"}),
    ];
    choices[rng.below(choices.len())].clone()
}

/// Every JSON pointer in `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One mutation of `text`: structural (a node replaced, a key renamed or removed) when it
/// parses, else at the level of bytes (a range deleted, duplicated, or a token inserted).
fn mutate(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    if rng.below(3) > 0
        && let Ok(mut value) = serde_json::from_slice::<Value>(text)
    {
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let target = all[rng.below(all.len())].clone();
        match rng.below(3) {
            0 => {
                if let Some(node) = value.pointer_mut(&target) {
                    *node = hostile_value(rng);
                }
            }
            1 => {
                // Rename or remove a key of the object holding the target.
                if let Some((parent, key)) = target.rsplit_once('/')
                    && let Some(Value::Object(map)) = value.pointer_mut(parent)
                    && let Some(old) = map.remove(key)
                    && rng.below(2) == 0
                {
                    let renamed = ["apps", "host", "sha256", "branch", "Version", "", "é"];
                    map.insert(renamed[rng.below(renamed.len())].to_owned(), old);
                }
            }
            _ => {
                if let Some(Value::Object(map)) = value.pointer_mut(&target) {
                    let keys = [
                        "apps",
                        "policy",
                        "protection",
                        "agent",
                        "required_checks",
                        "interval",
                        "deployment_path",
                        "healthcheck_url",
                        "reporters",
                        "allowed_mergers",
                    ];
                    map.insert(keys[rng.below(keys.len())].to_owned(), hostile_value(rng));
                }
            }
        }
        return serde_json::to_vec_pretty(&value).expect("serializes");
    }
    let mut bytes = text.to_vec();
    let at = rng.below(bytes.len() + 1);
    match rng.below(4) {
        0 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at..end);
        }
        1 => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            let slice = bytes[at..end].to_vec();
            bytes.splice(at..at, slice);
        }
        2 => {
            let tokens: [&[u8]; 12] = [
                b"\"",
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b"null",
                b"\xff",
                b"\\u0000",
                "é".as_bytes(),
                b"1e999",
            ];
            let token = tokens[rng.below(tokens.len())];
            bytes.splice(at..at, token.iter().copied());
        }
        _ => {
            if at < bytes.len() {
                bytes[at] = (rng.next() & 0xff) as u8;
            }
        }
    }
    bytes
}

/// The crate's example repository, mutated in one to three places across its files.
fn mutated_example(rng: &mut Rng) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = EXAMPLE_FILES
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                std::fs::read(crate_path(f)).expect("example"),
            )
        })
        .collect();
    for _ in 0..1 + rng.below(3) {
        let name = EXAMPLE_FILES[rng.below(EXAMPLE_FILES.len())];
        let text = files[name].clone();
        files.insert(name.to_owned(), mutate(&text, rng));
    }
    files
}

/// 3,000 mutated repositories through the validator itself: none panics.
#[test]
fn the_validator_never_panics_on_mutated_repositories() {
    let (mut rng, seed) = Rng::seeded();
    for case in 0..3000 {
        let files = mutated_example(&mut rng);
        let result = std::panic::catch_unwind(|| {
            let source = ferry::store::TreeSource::from_files("fuzz", files.clone());
            ferry::validate::check(&source).report.errors.len()
        });
        assert!(
            result.is_ok(),
            "seed {seed}, case {case}: the validator panicked on:\n{:#?}",
            files
                .iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
        );
    }
}

/// Mutated repositories through the binary: `ferry validate` exits 0 or 1, never anything
/// else (a panic is 101).
#[test]
fn validate_exits_0_or_1_on_mutated_repositories() {
    let (mut rng, seed) = Rng::seeded();
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("repo");
    for case in 0..150 {
        let _ = std::fs::remove_dir_all(&dir);
        for (name, bytes) in mutated_example(&mut rng) {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let run = crate::common::ferry(&["validate"]).arg(&dir).run();
        assert!(
            matches!(run.code, Some(0 | 1)),
            "seed {seed}, case {case}: {}",
            run.render()
        );
    }
}

/// Mutated request and status records (as a push past the hook could leave them) are read
/// by `requests`, `audit` and `status` without a panic: exit 0 or 1.
#[test]
fn the_record_readers_never_panic_on_mutated_records() {
    let (mut rng, seed) = Rng::seeded();
    let sandbox = Sandbox::new();
    let remote = sandbox.init("dev,staging");
    sandbox
        .ferry(&[
            "bump",
            "web",
            "1.0.0",
            "--env",
            "dev",
            "--add",
            "--sha256",
            crate::common::DIGEST,
            "--url",
            "https://a.example/web-1.0.0.tgz",
            "--remote",
            &remote,
        ])
        .run()
        .assert_code(0);
    sandbox
        .ferry(&["promote", "dev", "staging", "--remote", &remote])
        .run()
        .assert_code(0);
    sandbox
        .ferry(&[
            "status", "set", "dev", "ci/test", "success", "--remote", &remote,
        ])
        .run()
        .assert_code(0);
    let record = |refname: &str, file: &str| -> Vec<u8> {
        sandbox
            .git("deploy.git", &["show", &format!("{refname}:{file}")])
            .into_bytes()
    };
    let request_ref = "refs/ferry/requests/1";
    let statuses_ref = sandbox
        .git(
            "deploy.git",
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/ferry/statuses/",
            ],
        )
        .lines()
        .next()
        .expect("a statuses record")
        .to_owned();
    let request = record(request_ref, "request.json");
    let statuses = record(&statuses_ref, "statuses.json");
    for case in 0..40 {
        let (refname, file, bytes) = if case % 2 == 0 {
            (request_ref, "request.json", mutate(&request, &mut rng))
        } else {
            (
                statuses_ref.as_str(),
                "statuses.json",
                mutate(&statuses, &mut rng),
            )
        };
        write_record(&sandbox, refname, file, &bytes);
        for args in [
            &["requests"][..],
            &["requests", "1"],
            &["requests", "--state", "all", "--format", "json"],
            &["audit", "staging"],
            &["status"],
        ] {
            let run = sandbox.ferry(args).args(["--remote", &remote]).run();
            assert!(
                matches!(run.code, Some(0 | 1)),
                "seed {seed}, case {case}, {args:?} on {}:\n{}\n{}",
                String::from_utf8_lossy(&bytes),
                run.render(),
                ""
            );
        }
    }
}

/// Appends a commit holding `bytes` as `file` to the record `refname`, past the hook (as a
/// forge without ferry's hook, or a hook with a hole, would let it land).
fn write_record(sandbox: &Sandbox, refname: &str, file: &str, bytes: &[u8]) {
    let repo = sandbox.path().join("deploy.git");
    let git = |args: &[&str], input: Option<&[u8]>| -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "fuzz")
            .env("GIT_AUTHOR_EMAIL", "fuzz@example.com")
            .env("GIT_COMMITTER_NAME", "fuzz")
            .env("GIT_COMMITTER_EMAIL", "fuzz@example.com")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git");
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let out = child.wait_with_output().expect("git");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let blob = git(&["hash-object", "-w", "--stdin"], Some(bytes));
    let tree = git(
        &["mktree"],
        Some(format!("100644 blob {blob}\t{file}\n").as_bytes()),
    );
    let parent = git(&["rev-parse", refname], None);
    let commit = git(
        &["commit-tree", &tree, "-p", &parent, "-m", "mutated"],
        None,
    );
    git(&["update-ref", refname, &commit], None);
}
