//! The OpenAPI 3.1 description of the HTTP API, generated from the code and served at
//! `GET /openapi.json`; `docs/openapi.json` is the same document, written by `cargo xtask
//! openapi` and checked against the code by a test.
//!
//! Each feature owns its part (an `ApiDoc` beside its `router()`, listing its `#[utoipa::path]`
//! handlers); [`openapi`] merges them and fills in what is the same everywhere, so handler
//! annotations stay small:
//!
//! - path parameters (every one is a UUID) are declared from the path template;
//! - every operation answers errors as [`ErrorBody`] (`4XX`, `5XX`), besides the ones it names;
//! - `bearer` (an access token) is required unless the operation says `security(())`.

use crate::AppState;
use axum::Router;
use axum::http::header;
use axum::routing::get;
use std::borrow::Cow;
use std::sync::Arc;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder, Schema};
use utoipa::{OpenApi, PartialSchema, ToSchema};

/// The name of the security scheme of access tokens.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conclave data plane",
        description = "Accounts, devices, organizations, contacts, end-to-end encrypted conversations and \
messages. The server never sees plaintext: message bodies and keys are opaque bytes.\n\n\
Byte fields are strings holding base64url without padding (RFC 4648 §5), marked \
`format: byte` and `contentEncoding: base64url`.\n\n\
Errors are `{\"error\": {\"code\", \"message\", \"details\"}}` (`ErrorBody`): branch on the \
stable `code`, show `message` to people. Rate limits and lockouts send `Retry-After`.\n\n\
Real-time delivery is a WebSocket at `GET /v1/ws`; its frames are described in docs/protocol.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(openapi_json),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    security(("bearer" = [])),
    tags(
        (name = "auth", description = "Accounts, sign-in, tokens, password and TOTP"),
        (name = "bots", description = "Bots authenticating with the token from their Secret"),
        (name = "devices", description = "A user's devices, their keys and push subscriptions"),
        (name = "organizations", description = "Organizations, their members and invitations"),
        (name = "workspaces", description = "Workspaces inside an organization"),
        (name = "contacts", description = "Contacts between accounts, across organizations"),
        (name = "conversations", description = "Conversations, members, key generations and invites"),
        (name = "messages", description = "Encrypted messages and read receipts"),
        (name = "reactions", description = "Encrypted reactions to messages"),
        (name = "pins", description = "Pinned messages of a conversation"),
        (name = "attachments", description = "Encrypted attachments: streamed upload and download"),
        (name = "presence", description = "Who is online, idle or offline (typing travels on the WebSocket)"),
        (name = "realtime", description = "The WebSocket (frames: docs/protocol.md)"),
        (name = "health", description = "Kubernetes probes"),
        (name = "operations", description = "Metrics and this document"),
    )
)]
struct ApiDoc;

/// The whole document: every feature's operations, completed (see the module docs).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        crate::health::ApiDoc::openapi(),
        crate::auth::ApiDoc::openapi(),
        crate::bots::ApiDoc::openapi(),
        crate::devices::ApiDoc::openapi(),
        crate::tenancy::ApiDoc::openapi(),
        crate::contacts::ApiDoc::openapi(),
        crate::conversations::ApiDoc::openapi(),
        crate::messages::ApiDoc::openapi(),
        crate::realtime::ApiDoc::openapi(),
        crate::reactions::ApiDoc::openapi(),
        crate::pins::ApiDoc::openapi(),
        crate::attachments::ApiDoc::openapi(),
        crate::presence::ApiDoc::openapi(),
        crate::metrics::ApiDoc::openapi(),
    ] {
        doc.merge(part);
    }
    complete(&mut doc);
    doc
}

/// The document as committed in `docs/openapi.json`: pretty-printed, keys in a stable order
/// (utoipa keeps paths, schemas and properties in sorted maps), with a final newline.
pub fn to_pretty_json() -> String {
    let mut text = openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /openapi.json` (built once per router).
pub fn router() -> Router<AppState> {
    let json: Arc<str> = to_pretty_json().into();
    Router::new().route("/openapi.json", get(move || openapi_json(json.clone())))
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
async fn openapi_json(json: Arc<str>) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json.to_string())
}

/// Every error answer: `{"error": {"code": "...", "message": "...", "details": ...}}`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the JSON that crate::error::ApiError renders")]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the JSON that crate::error::ApiError renders")]
pub struct ErrorDetail {
    #[schema(value_type = ErrorCode)]
    code: String,
    /// For people; never carries internal detail.
    message: String,
    /// More about some errors (`validation_failed`: `field` and `reason`;
    /// `wrap_set_mismatch`: the devices), else null.
    #[schema(required = true)]
    details: Option<serde_json::Value>,
}

/// Every error `code` this version answers with (a stable `snake_case` word; new versions may
/// add codes, so a client treats an unknown one by its HTTP status).
pub const ERROR_CODES: &[&str] = &[
    "account_disabled",
    "account_locked",
    "already_contacts",
    "already_member",
    "already_pinned",
    "attachment_quota_exceeded",
    "attachment_too_large",
    "channel_name_taken",
    "contact_blocked",
    "contact_refused",
    "database_busy",
    "direct_conversation",
    "duplicate",
    "email_disabled",
    "email_domain_not_allowed",
    "email_not_confirmed",
    "email_taken",
    "guest_access_disabled",
    "hash_mismatch",
    "insufficient_role",
    "internal_error",
    "invalid_body",
    "invalid_bot_token",
    "invalid_credentials",
    "invalid_path",
    "invalid_query",
    "invalid_reference",
    "invalid_refresh_token",
    "invalid_request",
    "invalid_signature",
    "invalid_token",
    "invalid_totp",
    "invalid_value",
    "invitation_declined",
    "invitation_email_mismatch",
    "invitation_exists",
    "invitation_expired",
    "invitation_revoked",
    "invitation_used",
    "last_owner",
    "malformed_json",
    "member_limit_reached",
    "message_deleted",
    "message_too_large",
    "missing_token",
    "missing_value",
    "not_a_workspace_member",
    "not_found",
    "not_the_sender",
    "own_invitation",
    "payload_too_large",
    "rate_limited",
    "reaction_exists",
    "reaction_too_large",
    "realtime_unavailable",
    "refresh_token_reused",
    "rotation_required",
    "session_expired_by_organization",
    "session_revoked",
    "size_mismatch",
    "stale_generation",
    "totp_already_enabled",
    "totp_not_enabled",
    "totp_not_enrolled",
    "totp_required",
    "totp_required_by_organization",
    "unknown_attachment",
    "unknown_generation",
    "unsupported_media_type",
    "upload_interrupted",
    "validation_failed",
    "wrap_set_mismatch",
];

/// The `code` of an error (its values: [`ERROR_CODES`]).
pub struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A stable snake_case word clients branch on. New versions may add codes: treat an unknown \
                 one by the HTTP status.",
            ))
            .enum_values(Some(ERROR_CODES.iter().copied()))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// Documentation-only shapes of the answers built with `json!` in handlers.
#[allow(dead_code, reason = "documents JSON that handlers build with json!")]
mod shapes {
    use utoipa::ToSchema;
    use uuid::Uuid;

    /// `POST /v1/auth/confirm-email`.
    #[derive(ToSchema)]
    pub struct EmailConfirmed {
        confirmed: bool,
        user_id: Uuid,
    }

    /// `POST .../conversations/{conversation_id}/keys`.
    #[derive(ToSchema)]
    pub struct GenerationUploaded {
        generation: i32,
        /// Why the rotation was required (`member_added`, `member_removed`, `device_revoked`, ...),
        /// null for a rotation nobody asked for.
        reason: Option<String>,
    }

    /// A JSON Web Key Set (RFC 7517): the Ed25519 keys access tokens are signed with.
    #[derive(ToSchema)]
    pub struct Jwks {
        keys: Vec<serde_json::Value>,
    }

    /// `GET /healthz`.
    #[derive(ToSchema)]
    pub struct Health {
        /// `ok`.
        status: String,
    }

    /// `GET /readyz`: `ok` or `unavailable`, overall and per dependency.
    #[derive(ToSchema)]
    pub struct Readiness {
        status: String,
        checks: ReadinessChecks,
    }

    #[derive(ToSchema)]
    pub struct ReadinessChecks {
        postgres: String,
        redis: String,
    }
}

pub use shapes::{EmailConfirmed, GenerationUploaded, Health, Jwks, Readiness};

/// Fills in what every operation shares (see the module docs).
fn complete(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("An access token from `POST /v1/auth/login` or `POST /v1/auth/refresh`"))
                .build(),
        ),
    );
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))))
            .build()
    };
    components.responses.insert("ClientError".to_owned(), RefOr::T(error("The request was refused: see `error.code`")));
    components.responses.insert("ServerError".to_owned(), RefOr::T(error("The server failed or is overloaded")));

    for (path, item) in doc.paths.paths.iter_mut() {
        let names = template_names(path);
        for operation in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            add_path_parameters(operation, &names);
            for (status, name) in [("4XX", "ClientError"), ("5XX", "ServerError")] {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
}

/// `{organization_id}`, ... in a path template, in order.
pub fn template_names(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

fn add_path_parameters(operation: &mut Operation, names: &[&str]) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let declared = |name: &str, parameters: &[RefOr<Parameter>]| {
        parameters.iter().any(|p| matches!(p, RefOr::T(p) if p.name == name && p.parameter_in == ParameterIn::Path))
    };
    let mut missing: Vec<RefOr<Parameter>> = names
        .iter()
        .filter(|name| !declared(name, parameters))
        .map(|name| {
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(format!("The {} (a UUID)", name.trim_end_matches("_id").replace('_', " "))))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
                ))
                .build()
                .into()
        })
        .collect();
    missing.append(parameters);
    operation.parameters = (!missing.is_empty()).then_some(missing);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn document() -> Value {
        serde_json::from_str(&to_pretty_json()).expect("the document is JSON")
    }

    fn sources() -> Vec<(PathBuf, String)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
            for entry in std::fs::read_dir(dir).expect("read src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("src/openapi.rs") {
                    out.push((path.clone(), std::fs::read_to_string(&path).expect("read source")));
                }
            }
        }
        // This file is left out: its scanners' own patterns are not routes or codes.
        let mut out = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
        out
    }

    /// `(method, path)` of every `.route("path", get(..).post(..))` in the data plane's source.
    fn routes_in_code() -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for (_, text) in sources() {
            let mut rest = text.as_str();
            while let Some(start) = rest.find(".route(") {
                rest = &rest[start + ".route(".len()..];
                // The call's arguments, up to its closing parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let call = &rest[..end];
                let Some(path) = call.trim_start().strip_prefix('"').and_then(|c| c.split('"').next()) else {
                    continue;
                };
                let handlers = &call[call.find(',').unwrap_or(0)..];
                for method in METHODS {
                    let used = handlers
                        .match_indices(&format!("{method}("))
                        .any(|(i, _)| i == 0 || !handlers[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                    if used {
                        routes.insert((method.to_owned(), path.to_owned()));
                    }
                }
            }
        }
        routes
    }

    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                ops.insert((method.clone(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn the_committed_document_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == to_pretty_json(), "docs/openapi.json is stale: run `cargo xtask openapi` and commit it");
    }

    #[test]
    fn every_route_in_the_code_is_documented_and_nothing_else() {
        let mut routes = routes_in_code();
        // This file's own route (the scanner leaves the file out).
        routes.insert(("get".to_owned(), "/openapi.json".to_owned()));
        assert!(routes.len() > 60, "the route scanner found only {}: {routes:?}", routes.len());
        let documented = operations(&document());
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes without #[utoipa::path] (or not in a feature's ApiDoc): {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&routes).collect();
        assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
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
        for (path, item) in doc["paths"].as_object().expect("paths") {
            assert!(path.starts_with('/'), "{path}");
            for (method, operation) in item.as_object().expect("path item") {
                assert!(METHODS.contains(&method.as_str()), "{method} {path}");
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(operation_ids.insert(id.to_owned()), "operationId {id} is used twice");
                let responses = operation["responses"].as_object().expect("responses");
                assert!(responses.keys().any(|s| s.starts_with(['1', '2'])), "{method} {path}: no success");
                for response in responses.values() {
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
                if let Some(security) = operation["security"].as_array() {
                    for requirement in security {
                        for scheme in requirement.as_object().expect("requirement").keys() {
                            assert!(schemes.contains_key(scheme), "{method} {path}: unknown scheme {scheme}");
                        }
                    }
                }
            }
        }
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
        assert_eq!(doc["security"], serde_json::json!([{ BEARER: [] }]));
        let login = &doc["paths"]["/v1/auth/login"]["post"];
        assert_eq!(login["security"], serde_json::json!([{}]));
        assert!(doc["paths"]["/v1/devices"]["get"].get("security").is_none(), "inherits the bearer requirement");
    }

    #[test]
    fn byte_fields_are_base64url_strings() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in
            [("Device", "x25519_public_key"), ("SendMessage", "ciphertext"), ("KeyWrap", "wrapped_key")]
        {
            let property = &schemas[schema]["properties"][field];
            assert_eq!(property["type"], "string", "{schema}.{field}: {property}");
            assert_eq!(property["format"], "byte", "{schema}.{field}");
            assert_eq!(property["contentEncoding"], "base64url", "{schema}.{field}");
        }
        let nonce = &schemas["Message"]["properties"]["nonce"];
        assert_eq!(nonce["contentEncoding"], "base64url", "{nonce}");
    }

    /// Every code the source answers with (`ApiError::forbidden("code", ...)`, `gone("code",
    /// ...)`, database violations) is listed in the `ErrorCode` schema.
    #[test]
    fn every_error_code_in_the_code_is_documented() {
        let constructors =
            ["::new(", "bad_request(", "unauthorized(", "forbidden(", "conflict(", "unavailable(", "gone("];
        let mut codes = BTreeSet::new();
        for (_, text) in sources() {
            for constructor in constructors {
                for (i, _) in text.match_indices(constructor) {
                    let args = &text[i + constructor.len()..];
                    let args = args
                        .trim_start()
                        .strip_prefix("StatusCode::")
                        .map_or(args, |rest| rest.split_once(',').map_or(rest, |(_, after)| after));
                    let Some(literal) = args.trim_start().strip_prefix('"') else { continue };
                    let Some((code, _)) = literal.split_once('"') else { continue };
                    if !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                        codes.insert(code.to_owned());
                    }
                }
            }
        }
        for kind in [
            conclave_schema::ViolationKind::Duplicate,
            conclave_schema::ViolationKind::Reference,
            conclave_schema::ViolationKind::Invalid,
            // (`Forbidden` is answered as `not_found`.)
            conclave_schema::ViolationKind::Missing,
        ] {
            codes.insert(kind.code().to_owned());
        }
        assert!(codes.len() > 40, "the scanner found only {codes:?}");
        let missing: Vec<_> = codes.iter().filter(|c| !ERROR_CODES.contains(&c.as_str())).collect();
        assert!(missing.is_empty(), "add these to openapi::ERROR_CODES: {missing:?}");
        let schema = &document()["components"]["schemas"]["ErrorCode"];
        assert_eq!(schema["enum"].as_array().map(Vec::len), Some(ERROR_CODES.len()));
    }
}
