//! Rows written directly as the owner role: an organization as the operator creates it, and a
//! realistic tenant with one row in every table.

use anyhow::Result;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The ids of what [`seed_organization`] created.
#[derive(Debug, Clone, Copy)]
pub struct Organization {
    pub id: Uuid,
    /// Its one workspace, `general`.
    pub workspace_id: Uuid,
}

/// An organization named `slug` (as the operator would create it) with one workspace,
/// `general`, and these users as members; the first is its owner.
pub async fn seed_organization(owner: &PgPool, slug: &str, members: &[Uuid]) -> Result<Organization> {
    let mut tx = owner.begin().await?;
    let id: Uuid = sqlx::query_scalar("INSERT INTO organizations (slug, display_name) VALUES ($1, $1) RETURNING id")
        .bind(slug)
        .fetch_one(&mut *tx)
        .await?;
    let workspace_id: Uuid = sqlx::query_scalar(
        "INSERT INTO workspaces (organization_id, slug, display_name) VALUES ($1, 'general', 'General') RETURNING id",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    for (i, user) in members.iter().enumerate() {
        sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(user)
            .bind(if i == 0 { "owner" } else { "member" })
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Organization { id, workspace_id })
}

/// The ids of what [`seed_tenant`] created.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
}

fn digest(seed: &str) -> Vec<u8> {
    Sha256::digest(seed.as_bytes()).to_vec()
}

fn bytes(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

async fn insert_id(conn: &mut PgConnection, sql: &'static str, binds: &[Bind<'_>]) -> Result<Uuid> {
    let mut query = sqlx::query_scalar::<_, Uuid>(sql);
    for bind in binds {
        query = match bind {
            Bind::Uuid(v) => query.bind(*v),
            Bind::Text(v) => query.bind(*v),
            Bind::Bytes(v) => query.bind(v.clone()),
        };
    }
    Ok(query.fetch_one(conn).await?)
}

enum Bind<'a> {
    Uuid(Uuid),
    Text(&'a str),
    Bytes(Vec<u8>),
}
use Bind::{Bytes, Text, Uuid as Id};

/// Creates an organization named `slug` with a user, a device, a workspace, a channel with a
/// message, and one row in every other table, all belonging to that organization.
pub async fn seed_tenant(owner: &PgPool, slug: &str) -> Result<Tenant> {
    let mut tx = owner.begin().await?;
    let c = &mut *tx;
    let email = format!("owner@{slug}.example");

    let user_id = insert_id(
        c,
        "INSERT INTO user_accounts (email, password_hash, email_confirmed_at)
         VALUES ($1, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo', now()) RETURNING id",
        &[Text(&email)],
    )
    .await?;
    sqlx::query("INSERT INTO user_profiles (user_id, display_name) VALUES ($1, $2)")
        .bind(user_id)
        .bind(format!("Owner of {slug}"))
        .execute(&mut *c)
        .await?;
    sqlx::query("INSERT INTO user_security_states (user_id) VALUES ($1)").bind(user_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO email_confirmation_tokens (user_id, email, token_hash, expires_at) VALUES ($1, $2, $3, now() + interval '1 day')")
        .bind(user_id).bind(&email).bind(digest(&format!("{slug}-confirm"))).execute(&mut *c).await?;
    sqlx::query("INSERT INTO password_reset_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, now() + interval '1 hour')")
        .bind(user_id).bind(digest(&format!("{slug}-reset"))).execute(&mut *c).await?;
    sqlx::query("INSERT INTO totp_secrets (user_id, secret_sealed) VALUES ($1, $2)")
        .bind(user_id)
        .bind(bytes(48, 7))
        .execute(&mut *c)
        .await?;
    sqlx::query("INSERT INTO totp_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
        .bind(user_id)
        .bind(digest(&format!("{slug}-recovery")))
        .execute(&mut *c)
        .await?;

    let device_id = insert_id(
        c,
        "INSERT INTO devices (user_id, name, platform, ed25519_public_key, key_signature)
         VALUES ($1, 'laptop', 'desktop', $2, $3) RETURNING id",
        &[Id(user_id), Bytes(digest(&format!("{slug}-ed25519"))), Bytes(bytes(64, 3))],
    )
    .await?;
    let session_id = insert_id(
        c,
        "INSERT INTO session_tokens (user_id, device_id, token_hash, expires_at) VALUES ($1, $2, $3, now() + interval '1 day') RETURNING id",
        &[Id(user_id), Id(device_id), Bytes(digest(&format!("{slug}-session")))],
    )
    .await?;
    sqlx::query("INSERT INTO refresh_tokens (user_id, session_id, family_id, token_hash, expires_at) VALUES ($1, $2, gen_random_uuid(), $3, now() + interval '30 days')")
        .bind(user_id).bind(session_id).bind(digest(&format!("{slug}-refresh"))).execute(&mut *c).await?;
    sqlx::query("INSERT INTO push_subscriptions (user_id, device_id, endpoint, p256dh, auth) VALUES ($1, $2, 'https://push.example/abc', $3, $4)")
        .bind(user_id).bind(device_id).bind(bytes(65, 4)).bind(bytes(16, 5)).execute(&mut *c).await?;

    let organization_id = insert_id(
        c,
        "INSERT INTO organizations (slug, display_name) VALUES ($1, $2) RETURNING id",
        &[Text(slug), Text(slug)],
    )
    .await?;
    let org = organization_id;
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(org)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    sqlx::query("INSERT INTO organization_invitations (organization_id, email, role, token_hash, invited_by, expires_at) VALUES ($1, $2, 'member', $3, $4, now() + interval '7 days')")
        .bind(org).bind(format!("guest@{slug}.example")).bind(digest(&format!("{slug}-invite"))).bind(user_id).execute(&mut *c).await?;
    let workspace_id = insert_id(
        c,
        "INSERT INTO workspaces (organization_id, slug, display_name) VALUES ($1, 'general', 'General') RETURNING id",
        &[Id(org)],
    )
    .await?;
    sqlx::query("INSERT INTO workspace_memberships (organization_id, workspace_id, user_id) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(workspace_id)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    let conversation_id = insert_id(
        c,
        "INSERT INTO conversations (organization_id, workspace_id, kind, name, created_by, current_key_generation, last_seq)
         VALUES ($1, $2, 'channel', 'announcements', $3, 1, 1) RETURNING id",
        &[Id(org), Id(workspace_id), Id(user_id)],
    )
    .await?;
    let conv = conversation_id;
    sqlx::query("INSERT INTO conversation_members (organization_id, conversation_id, user_id, role) VALUES ($1, $2, $3, 'owner')")
        .bind(org).bind(conv).bind(user_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO conversation_encryption_keys (organization_id, conversation_id, generation, created_by_device_id, reason) VALUES ($1, $2, 1, $3, 'initial')")
        .bind(org).bind(conv).bind(device_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO member_key_wraps (organization_id, conversation_id, generation, recipient_user_id, recipient_device_id) VALUES ($1, $2, 1, $3, $4)")
        .bind(org).bind(conv).bind(user_id).bind(device_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO conversation_invites (organization_id, conversation_id, created_by, token_hash, max_uses, expires_at) VALUES ($1, $2, $3, $4, 5, now() + interval '1 day')")
        .bind(org).bind(conv).bind(user_id).bind(digest(&format!("{slug}-conv-invite"))).execute(&mut *c).await?;
    let message_id = insert_id(
        c,
        "INSERT INTO messages (organization_id, conversation_id, seq, sender_user_id, sender_device_id, client_message_id, key_generation, ciphertext)
         VALUES ($1, $2, 1, $3, $4, gen_random_uuid(), 1, $5) RETURNING id",
        &[Id(org), Id(conv), Id(user_id), Id(device_id), Bytes(bytes(40, 11))],
    )
    .await?;
    sqlx::query("INSERT INTO message_deliveries (organization_id, message_id, recipient_user_id, delivered_at) VALUES ($1, $2, $3, now())")
        .bind(org).bind(message_id).bind(user_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO message_attachments (organization_id, conversation_id, message_id, uploader_user_id, size_bytes, content_sha256, storage_key, status) VALUES ($1, $2, $3, $4, 1024, $5, $6, 'attached')")
        .bind(org).bind(conv).bind(message_id).bind(user_id).bind(digest("blob")).bind(format!("{slug}/blob-1")).execute(&mut *c).await?;
    sqlx::query("INSERT INTO message_reactions (organization_id, message_id, user_id, key_generation, nonce, ciphertext, value_tag) VALUES ($1, $2, $3, 1, $4, $5, $6)")
        .bind(org).bind(message_id).bind(user_id).bind(bytes(12, 13)).bind(bytes(20, 14)).bind(digest("thumbs-up")).execute(&mut *c).await?;
    sqlx::query("INSERT INTO message_mentions (organization_id, message_id, mentioned_user_id) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(message_id)
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "INSERT INTO message_pins (organization_id, conversation_id, message_id, pinned_by) VALUES ($1, $2, $3, $4)",
    )
    .bind(org)
    .bind(conv)
    .bind(message_id)
    .bind(user_id)
    .execute(&mut *c)
    .await?;
    let call_id = insert_id(
        c,
        "INSERT INTO call_sessions (organization_id, conversation_id, started_by, media) VALUES ($1, $2, $3, 'audio') RETURNING id",
        &[Id(org), Id(conv), Id(user_id)],
    )
    .await?;
    sqlx::query("INSERT INTO call_participants (organization_id, call_id, user_id, device_id, state, joined_at, last_seen_at) VALUES ($1, $2, $3, $4, 'joined', now(), now())")
        .bind(org).bind(call_id).bind(user_id).bind(device_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO notification_preferences (user_id, organization_id, conversation_id, level) VALUES ($1, $2, $3, 'mentions')")
        .bind(user_id).bind(org).bind(conv).execute(&mut *c).await?;
    let webhook_id = insert_id(
        c,
        "INSERT INTO webhook_endpoints (organization_id, workspace_id, url, event_types, signing_secret_sealed) VALUES ($1, $2, 'https://hooks.example/in', ARRAY['message.created'], $3) RETURNING id",
        &[Id(org), Id(workspace_id), Bytes(bytes(60, 15))],
    )
    .await?;
    sqlx::query("INSERT INTO bot_agents (organization_id, workspace_id, display_name, scopes, token_hash) VALUES ($1, $2, 'Helper', ARRAY['messages:read'], $3)")
        .bind(org).bind(workspace_id).bind(digest(&format!("{slug}-bot"))).execute(&mut *c).await?;
    let delivery_id = insert_id(
        c,
        "INSERT INTO outbound_notifications (organization_id, channel, event_type, webhook_endpoint_id, payload) VALUES ($1, 'webhook', 'message.created', $2, jsonb_build_object('message_id', $3::text)) RETURNING id",
        &[Id(org), Id(webhook_id), Id(message_id)],
    )
    .await?;
    sqlx::query("INSERT INTO webhook_delivery_attempts (organization_id, delivery_id, status, status_code, latency_ms, error) VALUES ($1, $2, 'failed', 503, 12, 'receiver answered 503')")
        .bind(org).bind(delivery_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO audit_logs (organization_id, actor_kind, actor_user_id, action, target_type, target_id) VALUES ($1, 'user', $2, 'organization.member_added', 'user', $2)")
        .bind(org).bind(user_id).execute(&mut *c).await?;
    sqlx::query("INSERT INTO legal_holds (organization_id, scope, target_id, reason, placed_by) VALUES ($1, 'conversation', $2, 'matter 1', $3)")
        .bind(org).bind(conversation_id).bind(user_id).execute(&mut *c).await?;

    // Global rows that reference this tenant's user.
    let other = insert_id(
        c,
        "INSERT INTO user_accounts (email, password_hash) VALUES ($1, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo') RETURNING id",
        &[Text(&format!("friend@{slug}.example"))],
    )
    .await?;
    sqlx::query("INSERT INTO contact_links (user_id, contact_user_id, status) VALUES ($1, $2, 'accepted'), ($2, $1, 'accepted')")
        .bind(user_id).bind(other).execute(&mut *c).await?;
    sqlx::query("INSERT INTO contact_invitations (inviter_user_id, invitee_email, expires_at) VALUES ($1, $2, now() + interval '7 days')")
        .bind(user_id).bind(format!("pal@{slug}.example")).execute(&mut *c).await?;
    sqlx::query("INSERT INTO privacy_requests (organization_id, user_id, kind) VALUES ($1, $2, 'export')")
        .bind(org)
        .bind(user_id)
        .execute(&mut *c)
        .await?;

    tx.commit().await?;
    Ok(Tenant { organization_id, workspace_id, user_id, device_id, conversation_id, message_id })
}

/// A BotAgent row of `workspace` (as the operator would write it): `scopes`, and only the
/// SHA-256 of `token`. Returns the bot's id.
pub async fn seed_bot_agent(
    owner: &PgPool,
    organization: Uuid,
    workspace: Uuid,
    display_name: &str,
    scopes: &[&str],
    token: &str,
) -> Result<Uuid> {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let id = sqlx::query_scalar(
        "INSERT INTO bot_agents (organization_id, workspace_id, display_name, scopes, token_hash)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(organization)
    .bind(workspace)
    .bind(display_name)
    .bind(scopes)
    .bind(Sha256::digest(token.as_bytes()).to_vec())
    .fetch_one(owner)
    .await?;
    Ok(id)
}

/// Rotates a bot's token as the operator does: `new_token`'s digest becomes current, the current
/// one previous until `overlap_seconds` from now (negative: an overlap that has already ended).
pub async fn rotate_bot_token(owner: &PgPool, bot_id: Uuid, new_token: &str, overlap_seconds: f64) -> Result<()> {
    sqlx::query(
        "UPDATE bot_agents SET previous_token_hash = token_hash, token_hash = $2,
                previous_token_expires_at = now() + make_interval(secs => $3) WHERE id = $1",
    )
    .bind(bot_id)
    .bind(Sha256::digest(new_token.as_bytes()).to_vec())
    .bind(overlap_seconds)
    .execute(owner)
    .await?;
    Ok(())
}

/// Ends the overlap of a bot's token rotation now: the previous token stops working.
pub async fn end_bot_token_overlap(owner: &PgPool, bot_id: Uuid) -> Result<()> {
    sqlx::query("UPDATE bot_agents SET previous_token_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(bot_id)
        .execute(owner)
        .await?;
    Ok(())
}
