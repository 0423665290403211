//! The OpenAPI document: generated from the routes, served as generated, committed as served,
//! well-formed, and complete (every error code, every documented operation routed). That each
//! answer matches it is checked on every request the suite makes (`crate::contract`).

use crate::support::TestApp;
use conclave_dataplane::error::ErrorCode;
use conclave_dataplane::openapi::{BEARER, template_names, to_pretty_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use uuid::Uuid;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn generated() -> String {
    to_pretty_json(&conclave_dataplane::openapi_document())
}

fn document() -> Value {
    serde_json::from_str(&generated()).expect("the document is JSON")
}

#[test]
fn the_committed_document_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated(), "docs/openapi.json is stale: run `cargo xtask openapi` and commit it");
}

/// The `ErrorCode` schema is the enum itself: every code the server can send is listed
/// (`weak_password` was once missing from a hand-kept list), and nothing else.
#[test]
fn the_document_lists_exactly_the_error_codes_of_the_enum() {
    let doc = document();
    let listed: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, codes);
    assert!(listed.contains("weak_password"));
}

/// Each error status an operation lists names codes that really come with that status.
#[test]
fn documented_error_statuses_agree_with_their_codes() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let Ok(status) = status.parse::<u16>() else { continue };
                if status < 400 {
                    continue;
                }
                let description = response["description"].as_str().unwrap_or_default();
                for code in ErrorCode::ALL {
                    if description.contains(&format!("`{}`", code.as_str())) {
                        assert_eq!(
                            code.status().as_u16(),
                            status,
                            "{method} {path}: `{}` is listed under {status}",
                            code.as_str()
                        );
                    }
                }
            }
        }
    }
}

/// A structural check of what OpenAPI 3.1 requires, and of the references inside.
#[test]
fn the_document_is_well_formed_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert_eq!(schemes[BEARER]["type"], "http");
    assert_eq!(schemes[BEARER]["scheme"], "bearer");
    let tags: BTreeSet<&str> =
        doc["tags"].as_array().expect("tags").iter().filter_map(|t| t["name"].as_str()).collect();
    let mut operation_ids = BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is used twice");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(responses.keys().any(|s| s.starts_with(['1', '2'])), "{method} {path}: no success");
            for (status, response) in responses {
                assert!(status.parse::<u16>().is_ok(), "{method} {path}: {status} is not an explicit status");
                assert!(response["description"].is_string() || response["$ref"].is_string());
            }
            let op_tags = operation["tags"].as_array().expect("tags");
            assert!(op_tags.iter().all(|t| tags.contains(t.as_str().unwrap_or_default())), "{method} {path}");
            for name in template_names(path) {
                let declared = operation["parameters"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
                });
                assert!(declared, "{method} {path}: {{{name}}} is not a required path parameter");
            }
            let public = operation["security"] == json!([{}]);
            if !public {
                assert!(responses.contains_key("401"), "{method} {path} needs a token but lists no 401");
            }
        }
    }
    assert!(operations > 60, "only {operations} operations");
    // Every reference points at a component that exists.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
    }
}

#[test]
fn public_operations_say_so_and_the_rest_need_a_bearer_token() {
    let doc = document();
    assert_eq!(doc["security"], json!([{ BEARER: [] }]));
    let login = &doc["paths"]["/v1/auth/login"]["post"];
    assert_eq!(login["security"], json!([{}]));
    assert!(doc["paths"]["/v1/devices"]["get"].get("security").is_none(), "inherits the bearer requirement");
}

#[test]
fn byte_fields_are_base64url_strings() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in
        [("Device", "ed25519_public_key"), ("SendMessage", "ciphertext"), ("AddReaction", "ciphertext")]
    {
        let property = &schemas[schema]["properties"][field];
        assert_eq!(property["type"], "string", "{schema}.{field}: {property}");
        assert_eq!(property["format"], "byte", "{schema}.{field}");
        assert_eq!(property["contentEncoding"], "base64url", "{schema}.{field}");
    }
    let ciphertext = &schemas["Message"]["properties"]["ciphertext"];
    assert_eq!(ciphertext["contentEncoding"], "base64url", "{ciphertext}");
}

#[tokio::test]
async fn the_openapi_document_is_served_as_generated() {
    let app = TestApp::start().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.expect("json");
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.1.0");
}

/// Each documented operation reaches a handler (any answer but the fallback's 404 or a 405),
/// and what it answers to a request without token or body is itself documented.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::start().await;
    let doc = document();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { Uuid::now_v7().to_string() } else { s.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            if template == "/v1/ws" {
                continue; // a WebSocket handshake, tested with real sockets in `realtime`
            }
            let (status, body) = crate::support::exchange(app.http.request(method.clone(), app.url(&path))).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {template}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "route not found"),
                "{method} {template} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} operations");
}

/// Paths and methods the API does not have answer with the JSON error body too.
#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let app = TestApp::start().await;
    let (status, body) = crate::support::exchange(app.http.get(app.url("/v1/nothing-here"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let response = app.http.put(app.url("/v1/auth/login")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
