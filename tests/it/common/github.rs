//! GitHub's recorded responses (tests/fixtures/github, from `@octokit/fixtures`), for the
//! wiremock doubles of the GitHub tests.

use serde_json::Value;
use wiremock::ResponseTemplate;

/// A fixture file, parsed.
pub fn fixture(name: &str) -> Value {
    let path = super::crate_path(&format!("tests/fixtures/github/{name}"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// A recorded response, replayed with its status, body and GitHub's own headers.
pub fn recorded(name: &str) -> ResponseTemplate {
    let record = fixture(name);
    let mut response = ResponseTemplate::new(record["status"].as_u64().expect("status") as u16)
        .set_body_json(record["body"].clone());
    for (key, value) in record["headers"].as_object().expect("headers") {
        if !matches!(
            key.as_str(),
            "content-length" | "connection" | "transfer-encoding" | "link"
        ) {
            response = response.insert_header(key.as_str(), value.as_str().unwrap_or_default());
        }
    }
    response
}
