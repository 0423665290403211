//! The cross-tenant sweep, driven by the OpenAPI document: every operation with an id in its path
//! is called by a signed-in owner of one organization with the real ids of another
//! organization's rows (organization, workspace, conversation, message, attachment, invitation,
//! member, device, push subscription, legal hold, privacy request), one path parameter at a time, and must answer exactly as
//! it does for an id that does not exist (status and body, the id itself aside). The other
//! organization's rows, and its people's, are compared before and after: nothing may change.
//!
//! Ids in request bodies are swept the same way: every uuid property the document declares for a
//! body (a message's `reply_to_id`, a pin's `message_id`, a member's `user_id`, ...) is set to
//! the other organization's row and to an unknown id in turn, the rest of the request being ours.
//!
//! The operations come from the document, so a new endpoint is swept without anyone listing it.
//! A request body that gets past validation to the id check is a sample in [`sample_body`] for
//! the operations known here; any other gets one made from its schema ([`from_schema`]: required
//! fields, sizes and formats), which may stop at validation before the id is looked at. A sweep
//! whose unknown ids mostly never got a 404 would prove nothing: it fails.

use crate::conversations::Chat;
use crate::reactions::ready_chat;
use crate::support::{Person, TestApp, b64, exchange};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

/// What one tenant has, by the path parameter name that addresses it.
struct Tenant<'a> {
    chat: Chat<'a>,
    ids: BTreeMap<&'static str, String>,
}

/// An organization with a conversation and one of everything a path can name, made by `owner`
/// with `member` beside them.
async fn tenant<'a>(app: &'a TestApp, owner: &Person, member: &Person, invitee: &str) -> Tenant<'a> {
    let chat = ready_chat(app, owner, member).await;
    let id = |v: &Value| v["id"].as_str().expect("an id").to_owned();
    let (status, workspaces) =
        app.get(&format!("/v1/organizations/{}/workspaces", chat.org), Some(&owner.access)).await;
    assert_eq!(status, StatusCode::OK, "{workspaces}");
    let workspace = id(&workspaces[0]);
    let (status, message) = chat.send(owner, 1, &[1u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let tag = [4u8; 32];
    let reaction =
        json!({ "key_generation": 1, "nonce": b64(&[3u8; 12]), "ciphertext": b64(&[5u8; 20]), "value_tag": b64(&tag) });
    let (status, body) =
        app.post(&chat.path(&format!("/messages/{}/reactions", id(&message))), reaction, Some(&owner.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        app.post(&chat.path("/pins"), json!({ "message_id": id(&message) }), Some(&owner.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, call) = app.post(&chat.path("/calls"), json!({ "kind": "audio" }), Some(&owner.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let data = b"attachment bytes";
    let url =
        app.url(&chat.path(&format!("/attachments?size={}&sha256={}", data.len(), hex::encode(Sha256::digest(data)))));
    let (status, attachment) = exchange(app.http.post(url).bearer_auth(&owner.access).body(data.to_vec())).await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    let (status, invitation) = app
        .post(
            &format!("/v1/organizations/{}/invitations", chat.org),
            json!({ "email": invitee, "role": "member" }),
            Some(&owner.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let (status, contact_invitation) = app
        .post("/v1/contacts/invitations", json!({ "email": format!("contact-{invitee}") }), Some(&owner.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{contact_invitation}");
    let (status, subscription) = app
        .post(&format!("/v1/devices/{}/push-subscriptions", owner.device_id), push_subscription(), Some(&owner.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    let (status, hold) = app
        .post(
            &format!("/v1/organizations/{}/legal-holds", chat.org),
            json!({ "scope": "conversation", "target_id": chat.conversation, "reason": "sweep" }),
            Some(&owner.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, request) = app
        .post(
            &format!("/v1/organizations/{}/privacy-requests", chat.org),
            json!({ "kind": "export" }),
            Some(&member.access),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    // A webhook endpoint (the operator makes them) and a delivery in its log. Disabled, so the
    // outbox never calls it.
    let (endpoint, delivery) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, organization_id, url, event_types, signing_secret_sealed, enabled)
         VALUES ($1, $2, 'https://hooks.example/sweep', '{message.created}', $3, false)",
    )
    .bind(endpoint)
    .bind(chat.org)
    .bind([0u8; 32].as_slice())
    .execute(&app.db.owner)
    .await
    .expect("a webhook endpoint");
    sqlx::query(
        "INSERT INTO outbound_notifications (id, organization_id, channel, event_type, webhook_endpoint_id, status, delivered_at)
         VALUES ($1, $2, 'webhook', 'message.created', $3, 'delivered', now())",
    )
    .bind(delivery)
    .bind(chat.org)
    .bind(endpoint)
    .execute(&app.db.owner)
    .await
    .expect("a delivery");
    let ids = BTreeMap::from([
        ("endpoint_id", endpoint.to_string()),
        ("delivery_id", delivery.to_string()),
        ("hold_id", id(&hold)),
        ("request_id", id(&request)),
        // No export link exists: any token answers 404, whichever organization it names.
        ("token", format!("cvx_{}", "A".repeat(43))),
        ("organization_id", chat.org.to_string()),
        ("workspace_id", workspace),
        ("conversation_id", chat.conversation.to_string()),
        ("message_id", id(&message)),
        ("call_id", id(&call)),
        ("attachment_id", attachment["id"].as_str().or(attachment["attachment_id"].as_str()).expect("id").to_owned()),
        ("invitation_id", id(&invitation)),
        ("contact_invitation_id", id(&contact_invitation)),
        ("user_id", member.user_id.to_string()),
        ("device_id", owner.device_id.to_string()),
        ("subscription_id", id(&subscription)),
        ("value_tag", b64(&tag)),
    ]);
    Tenant { chat, ids }
}

fn push_subscription() -> Value {
    json!({ "endpoint": "https://push.example/sweep", "p256dh": b64(&[4u8; 65]), "auth": b64(&[6u8; 16]) })
}

/// A body that passes validation for `operation` as `caller` in its own organization `own`, so
/// that the answer depends on the ids alone. `None`: the operation has no JSON body.
fn sample_body(operation: &str, caller: &Person, own: &Tenant<'_>) -> Option<Value> {
    let message = |generation: i32| own.chat.message(caller, generation, Uuid::now_v7(), &[2u8; 32]);
    Some(match operation {
        "subscribe_push" => push_subscription(),
        "accept_conversation_invite" => json!({ "token": format!("cvj_{}", "A".repeat(43)) }),
        "create_conversation_invite" => json!({ "expires_in_seconds": 3600 }),
        "add_conversation_member" => json!({ "user_id": own.ids["user_id"] }),
        "send_message" => message(1),
        "edit_message" => {
            let mut edit = message(1);
            edit.as_object_mut().expect("an object").remove("client_message_id");
            edit
        }
        "add_reaction" => {
            json!({ "key_generation": 1, "nonce": b64(&[3u8; 12]), "ciphertext": b64(&[5u8; 20]), "value_tag": b64(&[8u8; 32]) })
        }
        "start_call" => json!({ "kind": "audio" }),
        "pin_message" => json!({ "message_id": own.ids["message_id"] }),
        "update_receipts" => json!({ "read_seq": 1 }),
        "create_invitation" => json!({ "email": "sweep-invitee@example.org", "role": "member" }),
        "accept_invitation" => json!({ "token": format!("cvi_{}", "A".repeat(43)) }),
        "claim_key_packages" => json!({ "user_ids": [own.ids["user_id"]] }),
        "change_member_role" => json!({ "role": "admin" }),
        "create_conversation" => json!({ "kind": "group", "member_user_ids": [own.ids["user_id"]] }),
        "reject_privacy_request" => json!({ "reason": "sweep" }),
        "place_legal_hold" => {
            json!({ "scope": "conversation", "target_id": own.ids["conversation_id"], "reason": "sweep" })
        }
        _ => return None,
    })
}

/// The rows of `organization` and of `people`, one digest per table, read as the schema owner.
async fn rows_of(app: &TestApp, organization: Uuid, people: &[Uuid]) -> BTreeMap<String, String> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
          WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            AND c.column_name IN ('organization_id', 'user_id')",
    )
    .fetch_all(&app.db.owner)
    .await
    .expect("columns");
    let mut rows = BTreeMap::new();
    for (table, column) in columns {
        // Table and column names come from the catalogue, not from input.
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '')
               FROM {table} r WHERE {column}::text = ANY($1)"
        );
        let keys: Vec<String> = if column == "organization_id" {
            vec![organization.to_string()]
        } else {
            people.iter().map(Uuid::to_string).collect()
        };
        let digest: String =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&keys).fetch_one(&app.db.owner).await.expect("rows");
        rows.insert(format!("{table}.{column}"), digest);
    }
    rows
}

async fn call(app: &TestApp, method: &Method, path: &str, body: Option<&Value>, token: &str) -> (StatusCode, Value) {
    let mut request = app.http.request(method.clone(), app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    exchange(request).await
}

#[tokio::test]
async fn another_organizations_ids_answer_exactly_like_unknown_ids_on_every_operation() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let carol = app.person("carol@example.org").await;
    let bob = app.person("bob@example.org").await;
    let dave = app.person("dave@example.org").await;
    let ours = tenant(&app, &alice, &carol, "ours@example.org").await;
    let theirs = tenant(&app, &bob, &dave, "theirs@example.org").await;
    let people = [bob.user_id, dave.user_id];
    let before = rows_of(&app, theirs.chat.org, &people).await;
    assert!(before.get("messages.organization_id").is_some_and(|d| !d.starts_with("0:")), "the owner reads their rows");

    let document = serde_json::to_value(conclave_dataplane::openapi_document()).expect("the document");
    let mut swept = 0;
    let mut reached = 0;
    let mut generated = Vec::new();
    let mut differences = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        let names = conclave_dataplane::openapi::template_names(template);
        if names.is_empty() {
            continue;
        }
        for (method, operation) in item.as_object().expect("an item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let id = operation["operationId"].as_str().unwrap_or_default();
            let content = &operation["requestBody"]["content"];
            if content.get("application/octet-stream").is_some() {
                // Uploads are swept below with a body of their own.
                continue;
            }
            let schema = &content["application/json"]["schema"];
            let body = match sample_body(id, &alice, &ours) {
                Some(body) => Some(body),
                None if !schema.is_null() => {
                    generated.push(id.to_owned());
                    Some(from_schema(&document, schema))
                }
                None => None,
            };
            for (position, name) in names.iter().enumerate() {
                if *name == "value_tag" {
                    continue;
                }
                let key = if template.starts_with("/v1/contacts/invitations") { "contact_invitation_id" } else { name };
                let unknown = Uuid::new_v4().to_string();
                let path_with = |value: &str| {
                    let mut path = template.clone();
                    for (i, other) in names.iter().enumerate() {
                        let other_key = if template.starts_with("/v1/contacts/invitations") {
                            "contact_invitation_id"
                        } else {
                            other
                        };
                        let v = if i == position { value } else { ours.ids[other_key].as_str() };
                        path = path.replace(&format!("{{{other}}}"), v);
                    }
                    path
                };
                let (theirs_status, theirs_body) =
                    call(&app, &method, &path_with(&theirs.ids[key]), body.as_ref(), &alice.access).await;
                let (unknown_status, unknown_body) =
                    call(&app, &method, &path_with(&unknown), body.as_ref(), &alice.access).await;
                let theirs_text = theirs_body.to_string().replace(&theirs.ids[key], "<id>");
                let unknown_text = unknown_body.to_string().replace(&unknown, "<id>");
                swept += 1;
                if unknown_status == StatusCode::NOT_FOUND {
                    reached += 1;
                }
                if (theirs_status, &theirs_text) != (unknown_status, &unknown_text) {
                    differences.push(format!(
                        "{method} {template} with their {name}: {theirs_status} {theirs_text}, unknown: {unknown_status} {unknown_text}"
                    ));
                }
            }
        }
    }
    // Ids in request bodies: every uuid property of every JSON body the document declares, set
    // to their row's id and to an unknown one, one field at a time, in a request that is
    // otherwise ours. A new property fails the sweep until `body_field_kind` says what it names.
    let mut body_swept = 0;
    let mut body_reached = 0;
    let mut body_unreached = Vec::new();
    let mut unnamed = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        // Sign-in routes: a device id there must be proven by that device's key, which
        // auth::forged_or_stale_device_proofs_* and bots::a_bot_opens_sessions_* attack.
        if template.starts_with("/v1/auth/") || template == "/v1/bot/sessions" {
            continue;
        }
        let names = conclave_dataplane::openapi::template_names(template);
        let path = names.iter().fold(template.clone(), |path, name| {
            let key = if template.starts_with("/v1/contacts/invitations") { "contact_invitation_id" } else { name };
            path.replace(&format!("{{{name}}}"), &ours.ids[key])
        });
        for (method, operation) in item.as_object().expect("an item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let id = operation["operationId"].as_str().unwrap_or_default();
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            if schema.is_null() {
                continue;
            }
            for (field, many) in uuid_fields(&document, schema) {
                let key = match body_field_kind(&field) {
                    Some(Some(key)) => key,
                    // Chosen by the client (an idempotency key): it names no row.
                    Some(None) => continue,
                    None => {
                        unnamed.push(format!("{id}: {field}"));
                        continue;
                    }
                };
                let with = |value: &str| {
                    let mut body = sample_body(id, &alice, &ours).unwrap_or_else(|| from_schema(&document, schema));
                    body[field.as_str()] = if many { json!([value]) } else { json!(value) };
                    body
                };
                let unknown = Uuid::new_v4().to_string();
                let (theirs_status, theirs_body) =
                    call(&app, &method, &path, Some(&with(&theirs.ids[key])), &alice.access).await;
                let (unknown_status, unknown_body) =
                    call(&app, &method, &path, Some(&with(&unknown)), &alice.access).await;
                let theirs_text = theirs_body.to_string().replace(&theirs.ids[key], "<id>");
                let unknown_text = unknown_body.to_string().replace(&unknown, "<id>");
                body_swept += 1;
                // Reached: refused for what the id names, not for the body's shape before it.
                let shape = ["invalid_body", "validation_failed", "invalid_mls_message"];
                if !unknown_status.is_success()
                    && !shape.contains(&unknown_body["error"]["code"].as_str().unwrap_or(""))
                {
                    body_reached += 1;
                } else {
                    body_unreached.push((
                        format!("{id}: {field}"),
                        format!("{unknown_status} {}", unknown_body["error"]["code"]),
                    ));
                }
                if (theirs_status, &theirs_text) != (unknown_status, &unknown_text) {
                    differences.push(format!(
                        "{method} {template} with their {field} in the body: {theirs_status} {theirs_text}, unknown: {unknown_status} {unknown_text}"
                    ));
                }
            }
        }
    }
    println!(
        "swept {body_swept} ids in bodies, {body_reached} unknown ones refused for the id; not reached: {body_unreached:?}"
    );
    assert!(unnamed.is_empty(), "uuid properties of request bodies that body_field_kind does not name: {unnamed:?}");
    assert!(body_swept >= 11, "only {body_swept} ids in bodies swept");
    let unexplained: Vec<_> =
        body_unreached.iter().filter(|(field, _)| !BODY_IDS_NOT_REACHED.contains(&field.as_str())).collect();
    assert!(
        unexplained.is_empty(),
        "unknown ids in bodies that nothing refused (reach them, or say why not): {unexplained:?}"
    );

    // The upload names the conversation; their conversation and an unknown one answer alike.
    let data = b"sweep";
    let query = format!("?size={}&sha256={}", data.len(), hex::encode(Sha256::digest(data)));
    for conversation in [theirs.ids["conversation_id"].clone(), Uuid::new_v4().to_string()] {
        let path = format!("/v1/organizations/{}/conversations/{conversation}/attachments{query}", ours.chat.org);
        let (status, body) =
            exchange(app.http.post(app.url(&path)).bearer_auth(&alice.access).body(data.to_vec())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}");
    }

    println!("swept {swept} calls, {reached} unknown ids answered 404");
    if !generated.is_empty() {
        println!("bodies made from the schema (a sample in sweep.rs would reach further): {generated:?}");
    }
    assert!(
        differences.is_empty(),
        "answers that tell another organization's ids from unknown ones:\n{}",
        differences.join("\n")
    );
    assert!(swept >= 60, "only {swept} calls swept");
    assert!(reached * 10 >= swept * 8, "only {reached} of {swept} unknown ids reached the id check (404)");
    assert_eq!(rows_of(&app, theirs.chat.org, &people).await, before, "their rows changed");
}

/// Body ids whose unknown value the sweep does not see refused, and why that is expected: the
/// body must be a valid MLS message before the id in it is looked at (a sample here would need an
/// MLS group; the calls and commits tests cover those ids), or the id only filters (devices not
/// of the users named are left out, for theirs as for an unknown id).
const BODY_IDS_NOT_REACHED: [&str; 3] =
    ["send_call_signal: to_device_id", "upload_commit: welcomed_devices", "claim_key_packages: device_ids"];

/// The row kind (a key of [`Tenant::ids`]) that a uuid property of a request body names:
/// `Some(None)` for one the client chooses, `None` for one not known here.
fn body_field_kind(field: &str) -> Option<Option<&'static str>> {
    Some(Some(match field {
        "user_id" | "user_ids" | "member_user_ids" => "user_id",
        "message_id" | "reply_to_id" => "message_id",
        "device_ids" | "to_device_id" | "welcomed_devices" => "device_id",
        "attachment_ids" => "attachment_id",
        // A legal hold's target; the sample's scope is a conversation.
        "target_id" => "conversation_id",
        "client_message_id" => return Some(None),
        _ => return None,
    }))
}

/// The uuid properties of a request body's `schema` (resolving `$ref`s and nullable
/// alternatives in `document`), each with whether it is an array of them. A uuid nested deeper
/// than the body's own properties is reported as a property named by its path, which
/// [`body_field_kind`] does not know, so that the sweep learns to reach it.
fn uuid_fields(document: &Value, schema: &Value) -> Vec<(String, bool)> {
    fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            return resolve(document, &document["components"]["schemas"][name]);
        }
        match schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            Some(alternatives) => {
                alternatives.iter().find(|a| a["type"] != "null").map_or(schema, |a| resolve(document, a))
            }
            None => schema,
        }
    }
    fn walk(document: &Value, schema: &Value, path: &str, depth: usize, out: &mut Vec<(String, bool)>) {
        let schema = resolve(document, schema);
        if depth > 4 {
            return;
        }
        if schema["format"] == "uuid" {
            out.push((path.to_owned(), false));
            return;
        }
        let items = resolve(document, &schema["items"]);
        if items["format"] == "uuid" {
            out.push((path.to_owned(), true));
            return;
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            walk(document, property, &path, depth + 1, out);
        }
        if items.is_object() {
            walk(document, items, &format!("{path}[]"), depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(document, schema, "", 0, &mut out);
    out
}

/// A value of `schema` (resolving `$ref`s in `document`): required properties only, strings of
/// their least length (base64url ones decodable), the least number, the fewest items.
fn from_schema(document: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return from_schema(document, &document["components"]["schemas"][name]);
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()).and_then(|e| e.first()) {
        return from_schema(document, first);
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().find(|k| *k != "null").cloned().unwrap_or(Value::Null),
        kind => kind.clone(),
    };
    let least = |key: &str| schema[key].as_u64().unwrap_or(0) as usize;
    match kind.as_str().unwrap_or(if schema["properties"].is_object() { "object" } else { "" }) {
        "object" => {
            let mut object = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                object.insert(name.to_owned(), from_schema(document, &schema["properties"][name]));
            }
            Value::Object(object)
        }
        "array" => Value::Array((0..least("minItems")).map(|_| from_schema(document, &schema["items"])).collect()),
        "integer" | "number" => json!(schema["minimum"].as_f64().map_or(1, |m| m.max(1.0) as i64)),
        "boolean" => json!(false),
        "string" => match schema["format"].as_str() {
            Some("uuid") => json!(Uuid::new_v4()),
            Some("email") => json!("sweep@example.org"),
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            Some("byte") => json!(b64(&vec![0u8; least("minLength").max(1) * 3 / 4])),
            _ => json!("x".repeat(least("minLength").max(1))),
        },
        _ => Value::Null,
    }
}
