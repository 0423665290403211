//! Every answer the suite observes is checked against the OpenAPI document the server serves:
//! the operation exists for that method and path, the status is listed for it explicitly (and
//! an error's `code` is named under that status), and a JSON body matches the schema documented
//! for that status (JSON Schema 2020-12, which
//! OpenAPI 3.1 schemas are). A test whose request gets an undocumented answer fails on the spot,
//! so the description cannot fall behind what the server does.
//!
//! With `CONCLAVE_CONTRACT_REPORT=<file>` a mismatch is appended to that file instead of failing
//! the test, to collect every mismatch of a whole run at once while updating annotations.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(conclave_dataplane::openapi_document()).expect("the document is JSON"))
}

/// The documented path template that `path` (a concrete path, no query) is an instance of.
/// Literal segments win over `{parameters}`, as in the router.
pub fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for template in document()["paths"].as_object().expect("paths").keys() {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literals = 0;
        let fits = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') {
                !segment.is_empty()
            } else {
                literals += 1;
                part == segment
            }
        });
        if fits && best.is_none_or(|(_, n)| literals > n) {
            best = Some((template.as_str(), literals));
        }
    }
    best.map(|(template, _)| template)
}

fn validate(schema: &Value, body: &Value) -> Result<(), String> {
    // The response's schema with the document's components beside it, so `#/components/...`
    // references resolve against this root.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root).map_err(|e| format!("the documented schema is invalid: {e}"))?;
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

/// Panics (failing the test) when the answer is not what the document says.
pub fn check(method: &Method, path: &str, status: StatusCode, content_type: Option<&str>, body: &Value) {
    let Ok(report) = std::env::var("CONCLAVE_CONTRACT_REPORT") else {
        return conform(method, path, status, content_type, body);
    };
    let outcome = std::panic::catch_unwind(|| conform(method, path, status, content_type, body));
    if let Err(panic) = outcome {
        let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(report).expect("report file");
        writeln!(file, "{}", text.replace('\n', " ")).expect("report");
    }
}

fn conform(method: &Method, path: &str, status: StatusCode, content_type: Option<&str>, body: &Value) {
    let method_key = method.as_str().to_ascii_lowercase();
    let Some(template) = template_of(path) else {
        // Paths the API does not have answer 404 as an ErrorBody.
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: not in the document, answered {status}: {body}");
        let schema = json!({ "$ref": "#/components/schemas/ErrorBody" });
        if let Err(e) = validate(&schema, body) {
            panic!("{method} {path} answered {status} with a body that is not an ErrorBody: {e}\n{body}");
        }
        return;
    };
    let Some(operation) = document()["paths"][template].get(&method_key) else {
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {template}: undocumented method answered {status}"
        );
        return;
    };
    let responses = &operation["responses"];
    let Some(response) = responses.get(status.as_str()) else {
        let listed: Vec<&String> = responses.as_object().map(|r| r.keys().collect()).unwrap_or_default();
        panic!(
            "{method} {template} answered {status}, which its operation does not list (it lists {listed:?}): {body}"
        );
    };
    let response = match response["$ref"].as_str() {
        Some(reference) => document().pointer(reference.trim_start_matches('#')).expect("response reference"),
        None => response,
    };
    // An error's code is named in the description of the status it is listed under.
    if let Some(code) = body["error"]["code"].as_str() {
        let description = response["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&format!("`{code}`")),
            "{method} {template} answered {status} with `{code}`, which its {status} response does not name \
             (\"{description}\"): {body}"
        );
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            body.is_null(),
            "{method} {template} answered {status} with a body, but the document says it has none: {body}"
        );
        return;
    };
    let essence = |media: &str| media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let media = essence(content_type.unwrap_or_default());
    let Some(documented) = content.iter().find(|(listed, _)| essence(listed) == media).map(|(_, d)| d) else {
        panic!("{method} {template} answered {status} as {media:?}; the document lists {:?}", content.keys());
    };
    if media == "application/json"
        && let Some(schema) = documented.get("schema")
        && let Err(e) = validate(schema, body)
    {
        panic!("{method} {template} answered {status} with a body its schema refuses: {e}\n{body}");
    }
}
