//! Accounts, an organization, a workspace and conversations, written directly as the owner role
//! (thousands of rows in a few statements), and one login per user through the API with the SDK.
//!
//! Passwords are stored as argon2id with the smallest parameters argon2 allows (8 KiB, one
//! pass): the data plane verifies with the parameters recorded in the hash, so logging in ten
//! thousand users takes seconds instead of the minutes OWASP-strength hashing would (which is
//! the point of it). Login itself is not what is measured.

use anyhow::{Context, Result, bail};
use argon2::password_hash::PasswordHasher as _;
use argon2::{Algorithm, Argon2, Params, Version};
use conclave_client::crypto::DeviceKeys;
use conclave_protocol::auth::LoginRequest;
use conclave_protocol::devices::Platform;
use futures::StreamExt as _;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use uuid::Uuid;

pub const PASSWORD: &str = "benchmark password 0123456789";

/// A user signed in on a device of their own.
pub struct Member {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub keys: DeviceKeys,
    pub access_token: String,
    /// The SDK client holding this session.
    pub client: conclave_client::Client,
}

pub struct Tenant {
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    /// (user id, email), in creation order.
    pub users: Vec<(Uuid, String)>,
}

fn cheap_hash() -> Result<String> {
    let params = Params::new(8, 1, 1, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))
}

/// `count` confirmed users, members of one organization and its workspace.
pub async fn tenant(owner: &PgPool, count: usize) -> Result<Tenant> {
    let hash = cheap_hash()?;
    let mut tx = owner.begin().await?;
    let users: Vec<(Uuid, String)> = sqlx::query_as(
        "INSERT INTO user_accounts (email, password_hash, email_confirmed_at)
         SELECT 'user' || i || '@bench.example', $1, now() FROM generate_series(1, $2::int) AS i
         RETURNING id, email::text",
    )
    .bind(&hash)
    .bind(count as i32)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO user_profiles (user_id, display_name) SELECT id, 'Bench user' FROM user_accounts")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO user_security_states (user_id) SELECT id FROM user_accounts").execute(&mut *tx).await?;
    let organization_id: Uuid =
        sqlx::query_scalar("INSERT INTO organizations (slug, display_name) VALUES ('bench', 'Benchmark') RETURNING id")
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO organization_memberships (organization_id, user_id, role) SELECT $1, id, 'member' FROM user_accounts",
    )
    .bind(organization_id)
    .execute(&mut *tx)
    .await?;
    let workspace_id: Uuid = sqlx::query_scalar(
        "INSERT INTO workspaces (organization_id, slug, display_name) VALUES ($1, 'general', 'General') RETURNING id",
    )
    .bind(organization_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workspace_memberships (organization_id, workspace_id, user_id) SELECT $1, $2, id FROM user_accounts",
    )
    .bind(organization_id)
    .bind(workspace_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Tenant { organization_id, workspace_id, users })
}

/// Logs every user in once through `POST /v1/auth/login` (the SDK), registering a new device
/// with fresh keys, `parallel` at a time; users are spread over the replicas round-robin.
pub async fn login_all(users: &[(Uuid, String)], bases: &[String], parallel: usize) -> Result<Vec<Member>> {
    let done = Arc::new(AtomicUsize::new(0));
    let total = users.len();
    let started = std::time::Instant::now();
    let results: Vec<Result<Member>> = futures::stream::iter(users.iter().enumerate())
        .map(|(i, (user_id, email))| {
            let base = bases[i % bases.len()].clone();
            let done = done.clone();
            async move {
                let keys = tokio::task::spawn_blocking(DeviceKeys::generate).await??;
                let client = conclave_client::Client::new(&base)?;
                let login =
                    LoginRequest::with_new_device(email.clone(), PASSWORD, keys.registration("bench", Platform::Cli));
                let pair = client.login(&login).await.with_context(|| format!("logging in {email}"))?;
                if pair.user_id != *user_id {
                    bail!("logged in as the wrong user");
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(1000) || n == total {
                    eprintln!(
                        "[bench] logged in {n}/{total} users ({:.0}/s)",
                        n as f64 / started.elapsed().as_secs_f64()
                    );
                }
                Ok(Member {
                    user_id: pair.user_id,
                    device_id: pair.device_id,
                    keys,
                    access_token: pair.access_token,
                    client,
                })
            }
        })
        .buffered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A conversation of the run: its members (indexes into the member list) and its key.
pub struct Conversation {
    pub id: Uuid,
    pub members: Vec<usize>,
    /// The MLS epoch messages are sent in.
    pub epoch: i32,
}

/// Groups consecutive members into conversations of `size` (the last one may be smaller, and is
/// dropped when it would have a single member), each at MLS epoch 1 with every member device
/// listed as in it: the epoch of the group `mls::conversation_groups` makes for it (other modes
/// frame their messages for that epoch with `messages::send_body`).
pub async fn conversations(
    owner: &PgPool,
    tenant: &Tenant,
    members: &[Member],
    size: usize,
) -> Result<Vec<Conversation>> {
    let kind = match size {
        2 => "direct",
        s if s < 100 => "group",
        _ => "channel",
    };
    let mut out = Vec::new();
    for (index, chunk) in (0..members.len()).collect::<Vec<_>>().chunks(size).enumerate() {
        if chunk.len() < 2 {
            continue;
        }
        let id = Uuid::now_v7();
        out.push((index, id, chunk.to_vec()));
    }
    let mut tx = owner.begin().await?;
    for batch in out.chunks(500) {
        let ids: Vec<Uuid> = batch.iter().map(|c| c.1).collect();
        let names: Vec<Option<String>> =
            batch.iter().map(|c| (kind == "channel").then(|| format!("bench-{}", c.0))).collect();
        let creators: Vec<Uuid> = batch.iter().map(|c| members[c.2[0]].user_id).collect();
        let creator_devices: Vec<Uuid> = batch.iter().map(|c| members[c.2[0]].device_id).collect();
        sqlx::query(
            "INSERT INTO conversations (id, organization_id, workspace_id, kind, name, created_by, current_key_generation)
             SELECT id, $1, $2, $3, name, creator, 1 FROM unnest($4::uuid[], $5::text[], $6::uuid[]) AS t(id, name, creator)",
        )
        .bind(tenant.organization_id)
        .bind(tenant.workspace_id)
        .bind(kind)
        .bind(&ids)
        .bind(&names)
        .bind(&creators)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO conversation_encryption_keys (organization_id, conversation_id, generation, created_by_device_id, reason)
             SELECT $1, c, 1, d, 'initial' FROM unnest($2::uuid[], $3::uuid[]) AS t(c, d)",
        )
        .bind(tenant.organization_id)
        .bind(&ids)
        .bind(&creator_devices)
        .execute(&mut *tx)
        .await?;
        let (mut conv, mut user, mut device, mut role) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (_, id, chunk) in batch {
            for (position, &m) in chunk.iter().enumerate() {
                conv.push(*id);
                user.push(members[m].user_id);
                device.push(members[m].device_id);
                role.push(if position == 0 { "owner" } else { "member" });
            }
        }
        sqlx::query(
            "INSERT INTO conversation_members (organization_id, conversation_id, user_id, role)
             SELECT $1, c, u, r FROM unnest($2::uuid[], $3::uuid[], $4::text[]) AS t(c, u, r)",
        )
        .bind(tenant.organization_id)
        .bind(&conv)
        .bind(&user)
        .bind(&role)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO member_key_wraps (organization_id, conversation_id, generation, recipient_user_id, recipient_device_id)
             SELECT $1, c, 1, u, d FROM unnest($2::uuid[], $3::uuid[], $4::uuid[]) AS t(c, u, d)",
        )
        .bind(tenant.organization_id)
        .bind(&conv)
        .bind(&user)
        .bind(&device)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(out.into_iter().map(|(_, id, members)| Conversation { id, members, epoch: 1 }).collect())
}
