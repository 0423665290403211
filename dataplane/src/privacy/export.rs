//! Export: everything stored about the requester, as a tar archive of JSON files (the format is
//! in docs/compliance.md). Rows are exported whole (`to_jsonb`), minus the columns that hold
//! secrets (password hash, token digests, sealed TOTP secret, push `auth` secret), so a column
//! added later is exported without anyone remembering to. Bytes are `\x`-prefixed hex strings;
//! messages, reactions and attachments are the ciphertext the server holds, which only the
//! person's devices can open.

use super::{Row, Step, closed, complete, fetch, read_blob};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use conclave_protocol::compliance::PrivacyRequestStatus;
use conclave_schema::TenantContext;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

/// How long a completed export waits for its download.
const KEEP_DAYS: i32 = 7;
/// Bumped when a file's shape changes.
const FORMAT_VERSION: u32 = 1;

/// The JSON files (name and content), in the order of the archive.
const FILES: &[&str] = &[
    "account.json",
    "security.json",
    "devices.json",
    "memberships.json",
    "contacts.json",
    "preferences.json",
    "audit.json",
    "messages.json",
    "activity.json",
    "privacy_requests.json",
];

/// Every JSON file, read in one statement (one snapshot) acting for the organization and the
/// person: an object keyed by the names in [`FILES`].
async fn documents(conn: &mut PgConnection, organization_id: Uuid, user_id: Uuid) -> ApiResult<Value> {
    Ok(sqlx::query_scalar!(
        r#"WITH mine AS (SELECT pseudonym FROM audit_pseudonyms WHERE user_id = $1)
           SELECT jsonb_build_object(
            'account.json', jsonb_build_object(
                'account', (SELECT to_jsonb(u) - 'password_hash' FROM user_accounts u WHERE u.id = $1),
                'profile', (SELECT to_jsonb(p) FROM user_profiles p WHERE p.user_id = $1)),
            'security.json', jsonb_build_object(
                'state', (SELECT to_jsonb(s) FROM user_security_states s WHERE s.user_id = $1),
                'totp', (SELECT to_jsonb(t) - 'secret_sealed' FROM totp_secrets t WHERE t.user_id = $1),
                'recovery_codes', (SELECT coalesce(jsonb_agg(to_jsonb(r) - 'code_hash' ORDER BY r.created_at), '[]')
                                     FROM totp_recovery_codes r WHERE r.user_id = $1),
                'identity_keys', (SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.created_at), '[]')
                                    FROM identity_keys k WHERE k.user_id = $1)),
            'devices.json', jsonb_build_object(
                'devices', (SELECT coalesce(jsonb_agg(to_jsonb(d) ORDER BY d.created_at), '[]') FROM devices d WHERE d.user_id = $1),
                'sessions', (SELECT coalesce(jsonb_agg(to_jsonb(s) - 'token_hash' - 'bot_token_hash' ORDER BY s.created_at), '[]')
                               FROM session_tokens s WHERE s.user_id = $1),
                'refresh_tokens', (SELECT coalesce(jsonb_agg(to_jsonb(r) - 'token_hash' ORDER BY r.created_at), '[]')
                                     FROM refresh_tokens r WHERE r.user_id = $1),
                'push_subscriptions', (SELECT coalesce(jsonb_agg(to_jsonb(p) - 'auth' ORDER BY p.created_at), '[]')
                                         FROM push_subscriptions p WHERE p.user_id = $1)),
            -- Row-level security limits the workspace and conversation rows to this organization.
            'memberships.json', jsonb_build_object(
                'organizations', (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.created_at), '[]')
                                    FROM organization_memberships m WHERE m.user_id = $1),
                'workspaces', (SELECT coalesce(jsonb_agg(to_jsonb(w) ORDER BY w.created_at), '[]')
                                 FROM workspace_memberships w WHERE w.user_id = $1),
                'conversations', (SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY c.joined_at), '[]')
                                    FROM conversation_members c WHERE c.user_id = $1)),
            'contacts.json', jsonb_build_object(
                'links', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.created_at), '[]')
                            FROM contact_links l WHERE l.user_id = $1 OR l.contact_user_id = $1),
                'invitations', (SELECT coalesce(jsonb_agg(to_jsonb(i) - 'code_hash' ORDER BY i.created_at), '[]')
                                  FROM contact_invitations i, user_accounts u
                                 WHERE u.id = $1 AND (i.inviter_user_id = $1 OR i.invitee_user_id = $1 OR i.invitee_email = u.email))),
            'preferences.json', (SELECT coalesce(jsonb_agg(to_jsonb(n) ORDER BY n.updated_at), '[]')
                                   FROM notification_preferences n WHERE n.user_id = $1),
            -- Entries of this organization's chain and of the account-level chain that name them.
            'audit.json', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.organization_id NULLS FIRST, a.chain_seq), '[]')
                             FROM audit_logs a
                            WHERE (a.organization_id = $2 OR a.organization_id IS NULL)
                              AND (a.actor_user_id IN (SELECT pseudonym FROM mine) OR a.target_id IN (SELECT pseudonym FROM mine)
                                   OR a.details ->> 'user_id' IN (SELECT pseudonym::text FROM mine)
                                   OR a.details ->> 'target_id' IN (SELECT pseudonym::text FROM mine))),
            'messages.json', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'id', m.id, 'conversation_id', m.conversation_id, 'seq', m.seq, 'sender_device_id', m.sender_device_id,
                    'client_message_id', m.client_message_id, 'key_generation', m.key_generation,
                    'ciphertext', m.ciphertext, 'reply_to_id', m.reply_to_id, 'created_at', m.created_at,
                    'edited_at', m.edited_at, 'deleted_at', m.deleted_at) ORDER BY m.conversation_id, m.seq), '[]')
                FROM messages m WHERE m.organization_id = $2 AND m.sender_user_id = $1),
            'activity.json', jsonb_build_object(
                'reactions', (SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.created_at), '[]')
                                FROM message_reactions r WHERE r.user_id = $1),
                'receipts', (SELECT coalesce(jsonb_agg(to_jsonb(d) ORDER BY d.message_id), '[]')
                               FROM message_deliveries d WHERE d.recipient_user_id = $1),
                'pins', (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.pinned_at), '[]')
                           FROM message_pins p WHERE p.pinned_by = $1),
                'mentions', (SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]') FROM message_mentions x WHERE x.mentioned_user_id = $1)),
            'privacy_requests.json', (SELECT coalesce(jsonb_agg(to_jsonb(r) - 'download_token_hash' - 'result_location'
                                                                 ORDER BY r.requested_at), '[]')
                                        FROM privacy_requests r WHERE r.user_id = $1)) AS "docs!""#,
        user_id,
        organization_id
    )
    .fetch_one(conn)
    .await?)
}

fn pretty(value: &Value) -> ApiResult<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|_| ApiError::internal())
}

/// Builds the archive, stores it, and completes the (`in_progress`) request.
pub(super) async fn run(state: &AppState, step: Step, user_id: Uuid) -> ApiResult<Row> {
    let organization_id = step.organization_id;
    let mut tx = state.db.begin().await?;
    TenantContext::organization(organization_id).with_user(user_id).apply(&mut tx).await?;
    let docs = documents(&mut tx, organization_id, user_id).await?;
    let attachments = sqlx::query!(
        "SELECT id, storage_key, size_bytes, to_jsonb(a) AS \"row!\" FROM message_attachments a
          WHERE organization_id = $1 AND uploader_user_id = $2 AND status IN ('stored', 'attached') ORDER BY created_at",
        organization_id,
        user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let avatar = sqlx::query_scalar!("SELECT avatar_key FROM user_profiles WHERE user_id = $1", user_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
    tx.commit().await?;

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in FILES {
        files.push(((*name).to_owned(), pretty(&docs[*name])?));
    }
    files.push((
        "attachments.json".to_owned(),
        pretty(&Value::Array(attachments.iter().map(|a| a.row.clone()).collect()))?,
    ));
    // The avatar is small (its upload is bounded); attachments are streamed into the archive.
    if let Some(key) = &avatar {
        files.push(("avatar".to_owned(), read_blob(state, key).await?));
    }
    let streamed: Vec<(String, &str, u64)> = attachments
        .iter()
        .map(|a| (format!("attachments/{}.bin", a.id), a.storage_key.as_str(), a.size_bytes.max(0) as u64))
        .collect();
    let names: Vec<&str> =
        files.iter().map(|(name, _)| name.as_str()).chain(streamed.iter().map(|(name, _, _)| name.as_str())).collect();
    let manifest = json!({
        "format": "conclave-privacy-export",
        "version": FORMAT_VERSION,
        "organization_id": organization_id,
        "user_id": user_id,
        "generated_at": chrono::Utc::now(),
        "files": names,
        "bytes": "byte columns are hex strings prefixed with \\x",
        "encryption": "messages, reactions and attachments are end-to-end encrypted: the server holds only ciphertext, which the person's devices can open",
    });
    let details = json!({
        "kind": "export",
        "files": names.len() + 1,
        "messages": docs["messages.json"].as_array().map_or(0, Vec::len),
        "attachments": attachments.len(),
    });
    files.insert(0, ("manifest.json".to_owned(), pretty(&manifest)?));
    drop(docs);

    // Written to the staging directory member by member, so the archive is never whole in
    // memory however many attachments the person has; stored under a name that says nothing
    // about whose it is.
    let key = format!("export-{}", Uuid::new_v4());
    let staged = state.blobs.staging_dir().join(format!("{key}.part"));
    let mtime = chrono::Utc::now().timestamp().max(0) as u64;
    let stored = async {
        write_archive(state, &staged, &files, &streamed, mtime).await?;
        state.blobs.put(&key, &staged).await
    }
    .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "a privacy export could not be stored");
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(ApiError::internal());
    }

    let mut tx = state.db.begin().await?;
    TenantContext::organization(organization_id).apply(&mut tx).await?;
    let request =
        fetch(&mut tx, organization_id, step.id).await?.ok_or_else(|| ApiError::not_found("privacy request"))?;
    if request.status()? != PrivacyRequestStatus::InProgress {
        drop(tx);
        let _ = state.blobs.delete(&key).await;
        return Err(closed());
    }
    let row = complete(&mut tx, step, details, Some((&key, KEEP_DAYS))).await?;
    tx.commit().await?;
    Ok(row)
}

/// Writes the archive to `path`: `files` from memory, then each of `streamed` (member name, blob
/// key, size recorded at upload) from the blob store. A blob whose length is not the size
/// recorded fails the export rather than make an archive that lies about it.
async fn write_archive(
    state: &AppState,
    path: &std::path::Path,
    files: &[(String, Vec<u8>)],
    streamed: &[(String, &str, u64)],
    mtime: u64,
) -> std::io::Result<()> {
    use conclave_protocol::archive::{END, header, padding};
    use futures::TryStreamExt;
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(path).await?);
    for (name, data) in files {
        out.write_all(&header(name, data.len() as u64, mtime)).await?;
        out.write_all(data).await?;
        out.write_all(&END[..padding(data.len() as u64)]).await?;
    }
    for (name, key, size) in streamed {
        out.write_all(&header(name, *size, mtime)).await?;
        let mut blob = state.blobs.get(key).await?;
        let mut written = 0u64;
        while let Some(chunk) = blob.try_next().await? {
            written += chunk.len() as u64;
            if written > *size {
                break;
            }
            out.write_all(&chunk).await?;
        }
        if written != *size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the blob of {name} holds {written} bytes or more, not the {size} recorded"),
            ));
        }
        out.write_all(&END[..padding(*size)]).await?;
    }
    out.write_all(&END).await?;
    out.flush().await?;
    out.into_inner().sync_all().await
}
