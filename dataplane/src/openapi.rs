//! The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`;
//! `docs/openapi.json` is the same document, written by `cargo xtask openapi` and checked
//! against the code by a test.
//!
//! There is no second list of routes: every feature registers its handlers with utoipa-axum's
//! `routes!`, which takes the path, the method and the documentation from the handler's
//! `#[utoipa::path]`, so a route cannot exist undocumented and its path is written once.
//! [`crate::router`] merges the features; this module gives the document its frame ([`base`])
//! and fills in what every operation shares ([`complete`]), so handler annotations name only
//! what is particular to them:
//!
//! - path parameters (every one is a UUID) are declared from the path template;
//! - the error answers every operation of a kind can give (a malformed body, a missing token, an
//!   unknown id, an overloaded database) are added as explicit statuses, each an [`ErrorBody`];
//! - `bearer` (an access token) is required unless the operation says `security(())`.
//!
//! - the 403 a bot's session gets (`bot_scope_missing`, `bot_not_allowed`) where the bot scope
//!   table (`crate::bots::scopes`, the one declaration of what a bot may call) says so.
//!
//! This module depends on no feature but that table; features depend on it only through
//! `crate::error`.

use crate::AppState;
use crate::error::{ErrorBody, ErrorCode};
use axum::Extension;
use axum::http::{Method, header};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
stable `code` (each code always comes with the same HTTP status), show `message` to people. \
Rate limits and lockouts send `Retry-After`. A path that does not exist answers 404 \
`not_found`, a method a path does not have 405 `method_not_allowed`, both as `ErrorBody`.\n\n\
Real-time delivery is a WebSocket at `GET /v1/ws`; its frames are described in docs/protocol.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
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
        (name = "calls", description = "Calls: their lifecycle and records, signalling, TURN credentials (docs/calls.md)"),
        (name = "attachments", description = "Encrypted attachments: streamed upload and download"),
        (name = "presence", description = "Who is online, idle or offline (typing travels on the WebSocket)"),
        (name = "profiles", description = "People's profiles and the exact-email member lookup"),
        (name = "notifications", description = "Notification preferences and unread counts (docs/notifications.md)"),
        (name = "compliance", description = "Legal holds (retention: docs/compliance.md)"),
        (name = "webhooks", description = "Webhook delivery logs and replay (docs/webhooks.md)"),
        (name = "realtime", description = "The WebSocket (frames: docs/protocol.md)"),
        (name = "health", description = "Kubernetes probes"),
        (name = "operations", description = "Metrics and this document"),
    )
)]
struct ApiDoc;

/// The document's frame (info, tags, the error schemas) that the features' routes are merged into.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served and committed: pretty-printed, keys in a stable order (utoipa keeps
/// paths, schemas and properties in sorted maps), with a final newline.
pub fn to_pretty_json(doc: &utoipa::openapi::OpenApi) -> String {
    let mut text = doc.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// The served document, handed to [`router`]'s handler as an extension.
#[derive(Clone)]
pub struct Served(pub Arc<str>);

/// `GET /openapi.json`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
async fn openapi_json(Extension(Served(json)): Extension<Served>) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json.to_string())
}

/// Operations that touch no database, Redis or anything that can be busy.
const STATIC_OPERATIONS: [&str; 3] = ["healthz", "metrics", "openapi"];

/// Which error statuses an operation answers by its shape alone, each with the codes it carries.
fn shared_errors(operation: &Operation, route: (&Method, &str), has_path_ids: bool) -> BTreeMap<u16, Vec<ErrorCode>> {
    use ErrorCode as E;
    let mut errors: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    let mut add = |codes: &[ErrorCode]| {
        for code in codes {
            errors.entry(code.status().as_u16()).or_default().push(*code);
        }
    };
    let id = operation.operation_id.as_deref().unwrap_or_default();
    // `security(())` (an empty requirement) marks an operation that needs no access token.
    let public = operation.security.as_ref().is_some_and(|requirements| {
        requirements.iter().any(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
    });
    if !public {
        add(&[E::MissingToken, E::InvalidToken, E::SessionRevoked]);
        // The bot-token operations (`/v1/bot...`) take no session, so no scope applies to them.
        let (method, path) = route;
        if let Some(refusal) = crate::bots::scopes::refusal(method, path).filter(|_| !path.starts_with("/v1/bot")) {
            add(&[refusal]);
        }
    }
    if has_path_ids || !public {
        add(&[E::NotFound]);
    }
    if has_path_ids {
        add(&[E::InvalidPath]);
    }
    if operation_in_organization(operation) {
        // `member_tx`: the organization's session lifetime and TOTP requirement.
        add(&[E::SessionExpiredByOrganization, E::TotpRequiredByOrganization]);
    }
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| matches!(body, RefOr::T(body) if body.content.contains_key("application/json")));
    if json_body {
        add(&[
            E::MalformedJson,
            E::InvalidRequest,
            E::InvalidBody,
            E::ValidationFailed,
            E::UnsupportedMediaType,
            E::PayloadTooLarge,
            E::RequestTimeout,
        ]);
    }
    let query = operation
        .parameters
        .as_ref()
        .is_some_and(|ps| ps.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query)));
    if query {
        add(&[E::InvalidQuery]);
    }
    if !STATIC_OPERATIONS.contains(&id) {
        add(&[E::InternalError, E::DatabaseBusy, E::DeadlineExceeded, E::RealtimeUnavailable]);
    }
    errors
}

/// Whether the operation acts inside one organization (its path names `{organization_id}`).
fn operation_in_organization(operation: &Operation) -> bool {
    operation.parameters.as_ref().is_some_and(|ps| {
        ps.iter()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path && p.name == "organization_id"))
    })
}

/// Fills in what every operation shares (see the module docs).
pub fn complete(doc: &mut utoipa::openapi::OpenApi) {
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
    for (path, item) in doc.paths.paths.iter_mut() {
        let names = template_names(path);
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            add_path_parameters(operation, &names);
            for (status, codes) in shared_errors(operation, (&method, path), !names.is_empty()) {
                let words: Vec<String> = codes.iter().map(|c| format!("`{}`", c.as_str())).collect();
                match operation.responses.responses.entry(status.to_string()) {
                    // The handler names its own codes for this status; the shared ones join them.
                    std::collections::btree_map::Entry::Occupied(mut declared) => {
                        if let RefOr::T(response) = declared.get_mut() {
                            let missing: Vec<&String> =
                                words.iter().filter(|w| !response.description.contains(w.as_str())).collect();
                            for word in missing {
                                response.description.push_str(", ");
                                response.description.push_str(word);
                            }
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(vacant) => {
                        vacant.insert(RefOr::T(
                            ResponseBuilder::new()
                                .description(words.join(", "))
                                .content(
                                    "application/json",
                                    Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
                                )
                                .build(),
                        ));
                    }
                }
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
