//! Erasure: the account and everything that belongs to it go, in one transaction, in every
//! organization the person belongs to (an account is one person everywhere). What each
//! organization does with the person's messages is its `erasure_messages` policy: `delete`
//! (the default) or `anonymize` (the ciphertext stays, naming no sender). Messages a legal hold
//! covers are never deleted (they stay, anonymized), and a standing hold on the person refuses
//! the erasure. The audit trail is not touched: it names the person only by pseudonyms, and the
//! links from those to the person go with the account.

use super::{Row, Step, closed, complete, fetch};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use conclave_protocol::compliance::PrivacyRequestStatus;
use conclave_schema::TenantContext;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Refuses (409 `legal_hold_active`) while a standing hold of the organization set on the
/// transaction names the person.
pub(super) async fn refuse_if_held(conn: &mut PgConnection, organization_id: Uuid, user_id: Uuid) -> ApiResult<()> {
    let held = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM legal_holds
                           WHERE organization_id = $1 AND scope = 'user' AND target_id = $2 AND lifted_at IS NULL) AS "held!""#,
        organization_id,
        user_id
    )
    .fetch_one(conn)
    .await?;
    if held {
        return Err(ApiError::new(
            ErrorCode::LegalHoldActive,
            "a legal hold names this person: they cannot be erased until it is lifted",
        ));
    }
    Ok(())
}

/// Refuses (409 `last_owner`) to erase the only owner of the organization set on the
/// transaction: it would be left with nobody who can manage it.
pub(super) async fn refuse_if_last_owner(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
) -> ApiResult<()> {
    let last = sqlx::query_scalar!(
        r#"SELECT bool_and(m.user_id = $2) AS "last!" FROM organization_memberships m
            WHERE m.organization_id = $1 AND m.role = 'owner'"#,
        organization_id,
        user_id
    )
    .fetch_one(conn)
    .await?;
    if last {
        return Err(ApiError::new(
            ErrorCode::LastOwner,
            "this person is the organization's last owner: make someone else an owner before erasing them",
        ));
    }
    Ok(())
}

/// What the erasure did in one organization.
#[derive(Default)]
struct Erased {
    messages_deleted: i64,
    attachments_deleted: usize,
    blobs: Vec<String>,
}

/// Applies the organization's policy to the person's messages and removes what names them in
/// that organization. The transaction acts for `organization_id` (row-level security).
async fn erase_in(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    email: &str,
    pseudonym: Uuid,
) -> ApiResult<Erased> {
    // A hold placed while this runs waits for it; one placed before is seen below.
    crate::retention::holds::lock_holds(&mut *conn, organization_id, true).await?;
    refuse_if_held(&mut *conn, organization_id, user_id).await?;
    refuse_if_last_owner(&mut *conn, organization_id, user_id).await?;
    let policy = sqlx::query_scalar!("SELECT erasure_messages FROM organizations WHERE id = $1", organization_id)
        .fetch_one(&mut *conn)
        .await?;
    let mut erased = Erased::default();
    if policy == "delete" {
        // Receipts, reactions, pins and mentions go with the rows; held messages stay (and lose
        // their sender with the account).
        erased.messages_deleted = sqlx::query!(
            "DELETE FROM messages m USING conversations c
              WHERE m.organization_id = $1 AND m.sender_user_id = $2 AND c.id = m.conversation_id
                AND NOT EXISTS (
                    SELECT 1 FROM legal_holds h
                     WHERE h.organization_id = $1 AND h.lifted_at IS NULL
                       AND (h.scope = 'organization'
                            OR (h.scope = 'workspace' AND h.target_id = c.workspace_id)
                            OR (h.scope = 'conversation' AND h.target_id = c.id)
                            OR (h.scope = 'user' AND EXISTS (SELECT 1 FROM conversation_members cm
                                                             WHERE cm.conversation_id = c.id AND cm.user_id = h.target_id))))",
            organization_id,
            user_id
        )
        .execute(&mut *conn)
        .await?
        .rows_affected() as i64;
    }
    // Their uploads no remaining message uses: rows now, blobs after the commit.
    let detached = sqlx::query!(
        "DELETE FROM message_attachments WHERE organization_id = $1 AND uploader_user_id = $2 AND message_id IS NULL
         RETURNING storage_key, size_bytes",
        organization_id,
        user_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let freed: i64 = detached.iter().map(|a| a.size_bytes).sum();
    if freed > 0 {
        sqlx::query!(
            "UPDATE organizations SET attachment_bytes_used = greatest(attachment_bytes_used - $2, 0) WHERE id = $1",
            organization_id,
            freed
        )
        .execute(&mut *conn)
        .await?;
    }
    erased.attachments_deleted = detached.len();
    erased.blobs = detached.into_iter().map(|a| a.storage_key).collect();
    sqlx::query!(
        "DELETE FROM organization_invitations WHERE organization_id = $1 AND email = $2",
        organization_id,
        email
    )
    .execute(&mut *conn)
    .await?;
    // A lifted hold keeps its record, naming the person by the pseudonym the trail uses.
    sqlx::query!(
        "UPDATE legal_holds SET target_id = $3 WHERE organization_id = $1 AND scope = 'user' AND target_id = $2",
        organization_id,
        user_id,
        pseudonym
    )
    .execute(&mut *conn)
    .await?;
    Ok(erased)
}

/// Carries out an approved (`in_progress`) erasure and completes the request.
pub(super) async fn run(state: &AppState, step: Step, user_id: Uuid) -> ApiResult<Row> {
    let organization_id = step.organization_id;
    let mut tx = state.db.begin().await?;
    // Acting for the person too: their memberships in other organizations become visible.
    TenantContext::organization(organization_id).with_user(user_id).apply(&mut tx).await?;
    let request =
        fetch(&mut tx, organization_id, step.id).await?.ok_or_else(|| ApiError::not_found("privacy request"))?;
    if request.status()? != PrivacyRequestStatus::InProgress {
        return Err(closed());
    }
    let account = sqlx::query!(
        "SELECT u.email, p.avatar_key FROM user_accounts u LEFT JOIN user_profiles p ON p.user_id = u.id
          WHERE u.id = $1 FOR UPDATE OF u",
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(ApiError::internal)?;
    let mut organizations = sqlx::query_scalar!(
        "SELECT organization_id FROM organization_memberships WHERE user_id = $1 ORDER BY organization_id",
        user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    if !organizations.contains(&organization_id) {
        organizations.push(organization_id);
    }
    let devices = sqlx::query_scalar!("SELECT id FROM devices WHERE user_id = $1", user_id).fetch_all(&mut *tx).await?;
    let pseudonym = sqlx::query_scalar!("SELECT pseudonym FROM audit_pseudonyms WHERE subject_id = $1", user_id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_else(Uuid::new_v4);

    let mut blobs: Vec<String> = account.avatar_key.into_iter().collect();
    let (mut messages_deleted, mut attachments_deleted) = (0, 0);
    for &organization in &organizations {
        TenantContext::organization(organization).with_user(user_id).apply(&mut tx).await?;
        let erased = erase_in(&mut tx, organization, user_id, &account.email, pseudonym).await?;
        messages_deleted += erased.messages_deleted;
        attachments_deleted += erased.attachments_deleted;
        blobs.extend(erased.blobs);
    }
    sqlx::query!("DELETE FROM contact_invitations WHERE invitee_email = $1", account.email).execute(&mut *tx).await?;
    // Everything else that belongs to the account goes with it through its foreign keys:
    // profile, security state, credentials, tokens, devices, sessions, push subscriptions,
    // contacts, memberships, receipts, reactions, preferences and the audit pseudonyms' links;
    // kept messages and the rows that only mention the person lose the reference.
    sqlx::query!("DELETE FROM user_accounts WHERE id = $1", user_id).execute(&mut *tx).await?;

    TenantContext::organization(organization_id).apply(&mut tx).await?;
    let details = json!({
        "kind": "erasure",
        "messages_deleted": messages_deleted,
        "attachments_deleted": attachments_deleted,
        "organizations": organizations.len(),
    });
    let row = complete(&mut tx, step, details, None).await?;
    tx.commit().await?;

    for key in blobs {
        if let Err(e) = state.blobs.delete(&key).await {
            tracing::warn!(error = %e, "an erased person's blob could not be deleted");
        }
    }
    for device in devices {
        crate::devices::publish_revocation(state, user_id, device).await;
    }
    Ok(row)
}
