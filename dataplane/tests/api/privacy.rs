//! Privacy requests (docs/compliance.md): filing, the admins' decision, the state machine and
//! its audit entries; an export downloaded once as a tar of JSON files holding everything about
//! the person; an erasure after which nothing in any table or blob names the person, a standing
//! legal hold refusing it, and the audit chain still verifying.

use crate::support::{Person, TestApp, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

async fn app_with_blobs() -> (TestApp, PathBuf) {
    crate::support::app_with_blobs("privacy").await
}

/// The members of a ustar archive by name.
fn untar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at] != 0 {
        let header = &bytes[at..at + 512];
        let name = String::from_utf8(header[..100].iter().take_while(|&&b| b != 0).copied().collect()).expect("name");
        let size_text = std::str::from_utf8(&header[124..135]).expect("size");
        let size = usize::from_str_radix(size_text, 8).expect("octal size");
        let start = at + 512;
        files.insert(name, bytes[start..start + size].to_vec());
        at = start + size.div_ceil(512) * 512;
    }
    files
}

fn json_of(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(files.get(name).unwrap_or_else(|| panic!("{name} in {:?}", files.keys()))).expect("json")
}

async fn file_request(app: &TestApp, org: Uuid, who: &Person, kind: &str) -> Value {
    let (status, request) = app
        .post(&format!("/v1/organizations/{org}/privacy-requests"), json!({ "kind": kind }), Some(&who.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    assert_eq!(request["status"], "received");
    request
}

fn request_path(org: Uuid, request: &Value, rest: &str) -> String {
    format!("/v1/organizations/{org}/privacy-requests/{}{rest}", request["id"].as_str().expect("id"))
}

/// Uploads an attachment and sends a message carrying it.
async fn send_with_attachment(app: &TestApp, chat: &crate::conversations::Chat<'_>, by: &Person, data: &[u8]) -> Value {
    let hash = hex::encode(Sha256::digest(data));
    let url = app.url(&chat.path(&format!("/attachments?size={}&sha256={hash}", data.len())));
    let (status, attachment) =
        crate::support::exchange(app.http.post(url).bearer_auth(&by.access).body(data.to_vec())).await;
    assert_eq!(status, StatusCode::CREATED, "{attachment}");
    let mut body = chat.message(by, 1, Uuid::now_v7(), &[1u8; 40]);
    body["attachment_ids"] = json!([attachment["id"]]);
    let (status, message) = app.post(&chat.path("/messages"), body, Some(&by.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    attachment
}

async fn upload_avatar(app: &TestApp, who: &Person) {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(crate::support::rand32());
    let request = app.http.put(app.url("/v1/profile/avatar")).bearer_auth(&who.access);
    let (status, profile) = crate::support::exchange(request.header("content-type", "image/png").body(png)).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
}

#[tokio::test]
async fn an_export_is_approved_by_an_admin_and_downloaded_once_with_everything_about_the_person() {
    let (app, dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    let org = chat.org;
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')")
        .bind(org)
        .bind(carol.user_id)
        .execute(&app.db.owner)
        .await
        .expect("carol joins");
    let _ = app.organization("globex", &[&mallory]).await;
    let data = b"encrypted attachment bytes, as the client uploaded them".repeat(20);
    let attachment = send_with_attachment(&app, &chat, &bob, &data).await;
    let (status, _) = chat.send(&bob, 1, &[9u8; 48]).await;
    assert_eq!(status, StatusCode::CREATED);
    upload_avatar(&app, &bob).await;
    let phone = app.another_device(&bob, "bob@example.org").await;

    let request = file_request(&app, org, &bob, "export").await;
    let requested: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(request["requested_at"].clone()).expect("time");
    let due: chrono::DateTime<chrono::Utc> = serde_json::from_value(request["due_at"].clone()).expect("time");
    assert_eq!((due - requested).num_days(), 30);
    let (status, err) = app
        .post(&format!("/v1/organizations/{org}/privacy-requests"), json!({ "kind": "export" }), Some(&bob.access))
        .await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "duplicate"), "one open request per kind");

    // Who may see and decide it.
    let approve = request_path(org, &request, "/approve");
    let (status, err) = app.post(&approve, json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, err) = app.post(&approve, json!({}), Some(&mallory.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, err) = app.get(&request_path(org, &request, ""), Some(&carol.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"), "not someone else's request");
    let (status, err) = app.get(&format!("/v1/organizations/{org}/privacy-requests"), Some(&carol.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, own) = app.get(&request_path(org, &request, ""), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let (status, listed) = app.get(&format!("/v1/organizations/{org}/privacy-requests"), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let (status, done) = app.post(&approve, json!({ "reason": "identity checked" }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["decided_by"], json!(alice.user_id));
    assert!(done["export_expires_at"].is_string());
    let (status, err) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "privacy_request_closed"));

    // Only the requester gets the link; it works once, without credentials.
    let link_path = format!("/v1/privacy-requests/{}/download-link", request["id"].as_str().expect("id"));
    let (status, err) = app.post(&link_path, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, link) = app.post(&link_path, json!({}), Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let url = app.url(link["path"].as_str().expect("path"));
    let wrong = url.replace(&org.to_string(), &Uuid::new_v4().to_string());
    assert_eq!(app.http.get(&wrong).send().await.expect("get").status(), StatusCode::NOT_FOUND);
    let response = app.http.get(&url).send().await.expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let files = untar(&response.bytes().await.expect("bytes"));
    assert_eq!(app.http.get(&url).send().await.expect("again").status(), StatusCode::NOT_FOUND, "once only");
    let (status, err) = app.post(&link_path, json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::GONE, "export_unavailable"));
    let blobs = std::fs::read_dir(dir.join("blobs")).expect("blobs").count();
    assert_eq!(blobs, 2, "the archive is deleted once downloaded (the attachment and the avatar stay)");

    // What is in it.
    let manifest = json_of(&files, "manifest.json");
    assert_eq!(manifest["format"], "conclave-privacy-export");
    assert_eq!(manifest["user_id"], json!(bob.user_id));
    let account = json_of(&files, "account.json");
    assert_eq!(account["account"]["email"], "bob@example.org");
    assert!(account["account"].get("password_hash").is_none(), "no secrets");
    assert!(account["profile"]["avatar_key"].is_string());
    let devices = json_of(&files, "devices.json");
    let ids: Vec<&str> =
        devices["devices"].as_array().expect("devices").iter().filter_map(|d| d["id"].as_str()).collect();
    assert!(ids.contains(&bob.device_id.to_string().as_str()) && ids.contains(&phone.device_id.to_string().as_str()));
    assert_eq!(devices["sessions"].as_array().map(Vec::len), Some(2));
    let text =
        String::from_utf8_lossy(&files["devices.json"]).to_string() + &String::from_utf8_lossy(&files["security.json"]);
    assert!(!text.contains("token_hash") && !text.contains("secret_sealed"), "no token digests or sealed secrets");
    let memberships = json_of(&files, "memberships.json");
    assert_eq!(memberships["organizations"].as_array().map(Vec::len), Some(1));
    assert_eq!(memberships["conversations"].as_array().map(Vec::len), Some(1));
    let messages = json_of(&files, "messages.json");
    assert_eq!(messages.as_array().map(Vec::len), Some(2));
    assert_eq!(messages[1]["ciphertext"], json!(format!("\\x{}", hex::encode(chat.application(1, &[9u8; 48])))));
    let audit = json_of(&files, "audit.json");
    let actions: Vec<&str> = audit.as_array().expect("audit").iter().filter_map(|a| a["action"].as_str()).collect();
    assert!(actions.contains(&"auth.login") && actions.contains(&"privacy_request.received"), "{actions:?}");
    let attachment_id = attachment["id"].as_str().expect("id");
    assert_eq!(files[&format!("attachments/{attachment_id}.bin")], data);
    assert!(files.contains_key("avatar"));
    for name in ["contacts.json", "preferences.json", "activity.json", "privacy_requests.json", "attachments.json"] {
        json_of(&files, name);
    }

    let steps: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_logs WHERE target_type = 'privacy_request' AND organization_id = $1 ORDER BY chain_seq",
    )
    .bind(org)
    .fetch_all(&app.db.owner)
    .await
    .expect("steps");
    assert_eq!(steps, ["privacy_request.received", "privacy_request.approved", "privacy_request.completed"]);
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_closes_the_request_and_the_last_owner_is_not_erased() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, _) = app.organization("acme", &[&alice, &bob]).await;
    let request = file_request(&app, org, &bob, "erasure").await;
    let reject = request_path(org, &request, "/reject");
    let (status, err) = app.post(&reject, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    // The only owner cannot be erased (the organization would have nobody to manage it).
    let own = file_request(&app, org, &alice, "erasure").await;
    let (status, err) = app.post(&request_path(org, &own, "/approve"), json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "last_owner"));
    let (_, still) = app.get(&request_path(org, &own, ""), Some(&alice.access)).await;
    assert_eq!(still["status"], "received");
    let (status, err) = app.post(&reject, json!({ "reason": "not you" }), Some(&bob.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"));
    let (status, rejected) = app
        .post(&reject, json!({ "reason": "a contract requires the account until March" }), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(
        (rejected["status"].as_str(), rejected["reason"].as_str()),
        (Some("rejected"), Some("a contract requires the account until March"))
    );
    let (status, err) = app.post(&request_path(org, &request, "/approve"), json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "privacy_request_closed"));
    let (status, mine) = app.get("/v1/privacy-requests", Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine[0]["status"], "rejected");
    assert_eq!(app.count("SELECT count(*) FROM audit_logs WHERE action = 'privacy_request.rejected'").await, 1);
}

/// Where the needles are found: `table.column` for the database, `blob:<name>` for the store.
async fn scan(app: &TestApp, dir: &Path, texts: &[String], bytes: &[Vec<u8>]) -> Vec<String> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.udt_name::text
           FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
          WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name <> '_sqlx_migrations'
            AND c.udt_name IN ('text', 'varchar', 'citext', 'jsonb', 'json', 'uuid', 'bytea', 'inet')",
    )
    .fetch_all(&app.db.owner)
    .await
    .expect("columns");
    let mut found = Vec::new();
    for (table, column, kind) in columns {
        let hits: i64 = if kind == "bytea" {
            let sql = format!(
                "SELECT count(*) FROM \"{table}\" WHERE EXISTS (SELECT 1 FROM unnest($1::bytea[]) n WHERE position(n IN \"{column}\") > 0)
                    OR EXISTS (SELECT 1 FROM unnest($2::text[]) n WHERE position(convert_to(n, 'UTF8') IN \"{column}\") > 0)"
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(bytes).bind(texts).fetch_one(&app.db.owner).await
        } else {
            let sql = format!(
                "SELECT count(*) FROM \"{table}\" WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) n WHERE position(lower(n) IN lower(\"{column}\"::text)) > 0)"
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(texts).fetch_one(&app.db.owner).await
        }
        .unwrap_or_else(|e| panic!("scanning {table}.{column}: {e}"));
        if hits > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    for sub in ["blobs", "staging"] {
        for entry in std::fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
            let content = std::fs::read(entry.path()).expect("blob");
            let name = entry.file_name().to_string_lossy().to_string();
            let hit = bytes.iter().any(|n| content.windows(n.len()).any(|w| w == n.as_slice()))
                || texts
                    .iter()
                    .any(|n| name.contains(n.as_str()) || content.windows(n.len()).any(|w| w == n.as_bytes()));
            if hit {
                found.push(format!("blob:{name}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn after_an_erasure_nothing_stored_names_the_person_and_the_audit_chain_still_verifies() {
    let (app, dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob.erasable@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    let org = chat.org;
    let bob_phone = app.another_device(&bob, "bob.erasable@example.org").await;
    let display_name = "Bob Quillfeather-Erasable";
    let (status, body) = app.patch("/v1/profile", json!({ "display_name": display_name }), &bob.access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    upload_avatar(&app, &bob).await;
    send_with_attachment(&app, &chat, &bob, &[7u8; 2000]).await;
    let (status, alices) = chat.send(&alice, 1, &[2u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED);
    let reaction = json!({ "key_generation": 1, "nonce": crate::support::b64(&[3u8; 12]),
                           "ciphertext": crate::support::b64(&[5u8; 20]), "value_tag": crate::support::b64(&[6u8; 32]) });
    let path = chat.path(&format!("/messages/{}/reactions", alices["id"].as_str().expect("id")));
    let (status, body) = app.post(&path, reaction, Some(&bob.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        app.post("/v1/contacts/invitations", json!({ "email": "bob.erasable@example.org" }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .patch("/v1/notification-preferences", json!({ "level": "mentions", "email_enabled": false }), &bob.access)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let holds = format!("/v1/organizations/{org}/legal-holds");
    let (status, hold) = app
        .post(&holds, json!({ "scope": "user", "target_id": bob.user_id, "reason": "matter 1" }), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // What names Bob: his email, display name, ids and device keys.
    let keys: Vec<Vec<u8>> = sqlx::query_scalar("SELECT ed25519_public_key FROM devices WHERE user_id = $1")
        .bind(bob.user_id)
        .fetch_all(&app.db.owner)
        .await
        .expect("keys");
    let mut bytes: Vec<Vec<u8>> = vec![
        bob.user_id.as_bytes().to_vec(),
        bob.device_id.as_bytes().to_vec(),
        bob_phone.device_id.as_bytes().to_vec(),
    ];
    let mut texts: Vec<String> = vec![
        "bob.erasable@example.org".into(),
        display_name.into(),
        bob.user_id.to_string(),
        bob.device_id.to_string(),
        bob_phone.device_id.to_string(),
    ];
    for key in keys {
        texts.push(crate::support::b64(&key));
        texts.push(hex::encode(&key));
        bytes.push(key);
    }
    let before = scan(&app, &dir, &texts, &bytes).await;
    for expected in [
        "user_accounts.email",
        "user_profiles.display_name",
        "devices.id",
        "devices.ed25519_public_key",
        "messages.sender_user_id",
        "contact_invitations.invitee_email",
        "legal_holds.target_id",
    ] {
        assert!(before.contains(&expected.to_owned()), "positive control: {expected} in {before:?}");
    }
    assert!(before.iter().any(|f| f.starts_with("audit_pseudonyms")), "{before:?}");

    // A standing hold on him refuses the erasure, with a clear code; lifted, it goes ahead.
    let request = file_request(&app, org, &bob, "erasure").await;
    let approve = request_path(org, &request, "/approve");
    let (status, err) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "legal_hold_active"));
    let (_, still) = app.get(&request_path(org, &request, ""), Some(&alice.access)).await;
    assert_eq!(still["status"], "received");
    let (status, _) =
        app.post(&format!("{holds}/{}/lift", hold["id"].as_str().expect("id")), json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert!(done["user_id"].is_null(), "the record of the erasure names nobody");
    assert_eq!(done["details"]["messages_deleted"], 1);
    assert_eq!(done["details"]["attachments_deleted"], 1);

    // Nothing names him any more: not a row, not a blob.
    let after = scan(&app, &dir, &texts, &bytes).await;
    assert!(after.is_empty(), "still naming the erased person: {after:?}");
    let (status, _) = app.get("/v1/profile", Some(&bob.access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "his sessions are gone");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 1, "Alice's message stays");
    assert_eq!(app.count("SELECT count(*) FROM message_reactions").await, 0);
    for chain in [Some(org), None] {
        let broken: Option<i64> = sqlx::query_scalar("SELECT chain_seq FROM conclave_audit_verify($1)")
            .bind(chain)
            .fetch_optional(&app.db.owner)
            .await
            .expect("verify");
        assert_eq!(broken, None, "the audit chain {chain:?} verifies after the erasure");
    }
    let (_, verdict) = app.get(&format!("/v1/organizations/{org}/audit/verify"), Some(&alice.access)).await;
    assert_eq!(verdict["intact"], true, "{verdict}");
    // The trail still shows what he did, under a pseudonym no longer linked to anyone.
    let (_, page) =
        app.get(&format!("/v1/organizations/{org}/audit?action=privacy_request.received"), Some(&alice.access)).await;
    let actor = &page["entries"][0]["actor"];
    assert!(actor["pseudonym"].is_string() && actor["id"].is_null(), "{page}");
}

#[tokio::test]
async fn an_organization_may_keep_an_erased_persons_messages_anonymized() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    sqlx::query("UPDATE organizations SET erasure_messages = 'anonymize' WHERE id = $1")
        .bind(chat.org)
        .execute(&app.db.owner)
        .await
        .expect("policy");
    let (status, _) = chat.send(&bob, 1, &[4u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED);
    let request = file_request(&app, chat.org, &bob, "erasure").await;
    let (status, done) = app.post(&request_path(chat.org, &request, "/approve"), json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["details"]["messages_deleted"], 0);
    let kept: Vec<(Option<Uuid>, Option<Uuid>)> =
        sqlx::query_as("SELECT sender_user_id, sender_device_id FROM messages WHERE conversation_id = $1")
            .bind(chat.conversation)
            .fetch_all(&app.db.owner)
            .await
            .expect("messages");
    assert_eq!(kept, vec![(None, None)], "the ciphertext stays, naming no sender");
}

#[tokio::test]
async fn an_export_nobody_downloads_in_time_is_deleted_by_the_sweep() {
    let (app, dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, _) = app.organization("acme", &[&alice, &bob]).await;
    let request = file_request(&app, org, &bob, "export").await;
    let (status, done) = app.post(&request_path(org, &request, "/approve"), json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let blobs = || std::fs::read_dir(dir.join("blobs")).map(|e| e.count()).unwrap_or(0);
    assert_eq!(blobs(), 1, "the archive");
    conclave_dataplane::retention::run_pass(&app.state).await.expect("a pass");
    assert_eq!(blobs(), 1, "kept while it can still be downloaded");
    sqlx::query("UPDATE privacy_requests SET result_expires_at = now() - interval '1 minute' WHERE id = $1")
        .bind(request["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
        .execute(&app.db.owner)
        .await
        .expect("expire");
    conclave_dataplane::retention::run_pass(&app.state).await.expect("a pass");
    assert_eq!(blobs(), 0, "deleted once expired");
    let link = format!("/v1/privacy-requests/{}/download-link", request["id"].as_str().expect("id"));
    let (status, err) = app.post(&link, json!({}), Some(&bob.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::GONE, "export_unavailable"));
}

/// The stored archive of a completed export: its blob key, and the end of its download grace.
async fn archive_of(app: &TestApp, request: &Value) -> (Option<String>, Option<chrono::DateTime<chrono::Utc>>) {
    sqlx::query_as("SELECT result_location, result_expires_at FROM privacy_requests WHERE id = $1")
        .bind(request["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
        .fetch_one(&app.db.owner)
        .await
        .expect("request")
}

/// Attachments go into the archive from the blob store a chunk at a time, and the archive goes
/// out the same way: an export several times larger than what a download can buffer is written
/// and served whole. A download cut short uses up its link, and the archive it leaves is due
/// for the sweep within the hour.
#[tokio::test]
async fn a_large_export_is_streamed_and_a_download_cut_short_is_swept_within_the_hour() {
    let (app, dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    let org = chat.org;
    let data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let attachment = send_with_attachment(&app, &chat, &bob, &data).await;
    let blobs = || std::fs::read_dir(dir.join("blobs")).map(|e| e.count()).unwrap_or(0);

    let link = |request: &Value| format!("/v1/privacy-requests/{}/download-link", request["id"].as_str().expect("id"));
    let export = async |request: &Value| {
        let (status, done) = app.post(&request_path(org, request, "/approve"), json!({}), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        let (status, link) = app.post(&link(request), json!({}), Some(&bob.access)).await;
        assert_eq!(status, StatusCode::OK, "{link}");
        app.url(link["path"].as_str().expect("path"))
    };

    // Served whole: the 64 MiB attachment byte for byte.
    let request = file_request(&app, org, &bob, "export").await;
    let url = export(&request).await;
    let response = app.http.get(&url).send().await.expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    let files = untar(&response.bytes().await.expect("bytes"));
    assert!(files[&format!("attachments/{}.bin", attachment["id"].as_str().expect("id"))] == data);
    assert_eq!(blobs(), 1, "the archive is gone, the attachment stays");
    assert_eq!(archive_of(&app, &request).await.0, None, "and it is no longer listed");

    // Cut short after the first chunk: the link is used up, the archive waits for the sweep.
    let request = file_request(&app, org, &bob, "export").await;
    let url = export(&request).await;
    let mut response = app.http.get(&url).send().await.expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.chunk().await.expect("a chunk").is_some());
    drop(response);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.http.get(&url).send().await.expect("again").status(), StatusCode::NOT_FOUND, "once only");
    let (key, due) = archive_of(&app, &request).await;
    assert!(key.is_some(), "still listed, so the sweep finds it");
    let due = due.expect("an expiry");
    assert!(due <= chrono::Utc::now() + chrono::Duration::hours(1), "due within the hour, not the week: {due}");
    assert_eq!(blobs(), 2);
    conclave_dataplane::retention::run_pass(&app.state).await.expect("a pass");
    assert_eq!(blobs(), 2, "not before it is due");
    sqlx::query("UPDATE privacy_requests SET result_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(request["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
        .execute(&app.db.owner)
        .await
        .expect("an hour later");
    conclave_dataplane::retention::run_pass(&app.state).await.expect("a pass");
    assert_eq!(blobs(), 1, "swept");
    assert_eq!(archive_of(&app, &request).await.0, None);
}

/// A blob that is not the size recorded when it was uploaded fails the export instead of
/// making an archive whose header lies: nothing is stored or left staged, the request stays
/// `in_progress`, and approving it again once the blob is whole completes it.
#[tokio::test]
async fn an_export_meeting_a_damaged_attachment_fails_whole_and_can_be_carried_out_again() {
    let (app, dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = crate::reactions::ready_chat(&app, &alice, &bob).await;
    let data = b"ciphertext of a file".repeat(100);
    let attachment = send_with_attachment(&app, &chat, &bob, &data).await;
    let key: String = sqlx::query_scalar("SELECT storage_key FROM message_attachments WHERE id = $1")
        .bind(attachment["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
        .fetch_one(&app.db.owner)
        .await
        .expect("key");
    let blob = dir.join("blobs").join(&key);
    std::fs::write(&blob, &data[..data.len() - 1]).expect("cut the blob short");

    let request = file_request(&app, chat.org, &bob, "export").await;
    let approve = request_path(chat.org, &request, "/approve");
    let (status, err) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"));
    let (_, pending) = app.get(&request_path(chat.org, &request, ""), Some(&alice.access)).await;
    assert_eq!(pending["status"], "in_progress");
    assert_eq!(std::fs::read_dir(dir.join("blobs")).expect("blobs").count(), 1, "no archive stored");
    assert_eq!(std::fs::read_dir(dir.join("staging")).expect("staging").count(), 0, "nothing left staged");

    std::fs::write(&blob, &data).expect("whole again");
    let (status, done) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
}

#[tokio::test]
async fn an_erasure_reaches_every_organization_of_the_person_and_their_holds_stop_it() {
    let (app, _dir) = app_with_blobs().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let (ours, _) = app.organization("acme", &[&alice, &bob]).await;
    // Bob also talks in Carol's organization.
    let theirs = crate::reactions::ready_chat(&app, &carol, &bob).await;
    let (status, _) = theirs.send(&bob, 1, &[8u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED);
    let holds = format!("/v1/organizations/{}/legal-holds", theirs.org);
    let (status, hold) = app
        .post(&holds, json!({ "scope": "user", "target_id": bob.user_id, "reason": "matter 3" }), Some(&carol.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Filed with Acme; Carol's hold in the other organization stops it when the work runs.
    let request = file_request(&app, ours, &bob, "erasure").await;
    let approve = request_path(ours, &request, "/approve");
    let (status, err) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "legal_hold_active"));
    let (_, pending) = app.get(&request_path(ours, &request, ""), Some(&alice.access)).await;
    assert_eq!(pending["status"], "in_progress", "approved, waiting for the hold");
    assert_eq!(app.count("SELECT count(*) FROM user_accounts WHERE email = 'bob@example.org'").await, 1);

    let (status, _) =
        app.post(&format!("{holds}/{}/lift", hold["id"].as_str().expect("id")), json!({}), Some(&carol.access)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = app.post(&approve, json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["details"]["organizations"], 2);
    assert_eq!(done["details"]["messages_deleted"], 1, "his message in the other organization");
    assert_eq!(app.count("SELECT count(*) FROM user_accounts WHERE email = 'bob@example.org'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
}
