//! Typing indicators and presence, kept in Redis with expiry (never in PostgreSQL).
//!
//! Presence is one Redis hash per user, `<ns>:presence:<user>`: a field `c:<connection>` per
//! open socket holding `<online|idle>:<expiry>` (refreshed by the socket's heartbeat, so a
//! replica that dies stops counting within a minute), and `last_seen` (unix seconds). The key
//! expires a week after the user's last activity. A user is online if any live connection says
//! online, idle if live connections all say idle, offline otherwise. A change is published as a
//! `presence` frame to every conversation the user is in, so it reaches members only.
//!
//! Typing is a `typing` frame published to the conversation (members only), rate-limited per
//! socket; clients forget it after `expires_in_ms`.
//!
//! `GET /v1/organizations/{org}/presence?user_ids=a,b` answers for the users the caller may see:
//! members of that organization and the caller's accepted contacts; others are left out.

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use chrono::{DateTime, Utc};
use conclave_protocol::events::ServerFrame;
use conclave_protocol::rich::{Presence, PresenceStatus};
use serde::Deserialize;
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// A connection's entry lives this long without a heartbeat (the socket beats every 20 s).
pub const CONNECTION_TTL_SECS: i64 = 60;
/// How long `last_seen` is kept after the last activity.
const LAST_SEEN_TTL_SECS: i64 = 7 * 24 * 3600;
/// How long a typing indicator lasts on the receiving side.
pub const TYPING_EXPIRES_MS: u32 = 6000;
/// At most one typing frame per socket and conversation in this time.
pub const TYPING_EVERY_MS: u128 = 2000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(lookup))
}

fn key(state: &AppState, user: Uuid) -> String {
    format!("{}:presence:{user}", state.config.redis_namespace)
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn status_of(fields: &HashMap<String, String>, at: i64) -> (PresenceStatus, Option<DateTime<Utc>>) {
    let mut status = PresenceStatus::Offline;
    for (field, value) in fields {
        if !field.starts_with("c:") {
            continue;
        }
        let Some((kind, expiry)) = value.split_once(':') else { continue };
        if expiry.parse::<i64>().map_or(true, |e| e < at) {
            continue;
        }
        match kind {
            "online" => status = PresenceStatus::Online,
            "idle" if status == PresenceStatus::Offline => status = PresenceStatus::Idle,
            _ => {}
        }
    }
    let last_seen =
        fields.get("last_seen").and_then(|s| s.parse::<i64>().ok()).and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    (status, last_seen)
}

/// Reads a user's presence; Redis trouble reads as offline.
pub async fn read(state: &AppState, user: Uuid) -> Presence {
    let mut redis = state.redis.clone();
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(key(state, user)).query_async(&mut redis).await.unwrap_or_default();
    let (status, last_seen_at) = status_of(&fields, now());
    Presence { user_id: user, status, last_seen_at }
}

/// One socket's contribution to its user's presence.
pub struct Connection {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: PresenceStatus,
}

impl Connection {
    pub fn new(user_id: Uuid) -> Self {
        Self { id: Uuid::now_v7(), user_id, status: PresenceStatus::Online }
    }

    /// Records this connection as `self.status` (or gone, when `None`) and returns the user's
    /// presence before and after.
    async fn write(&self, state: &AppState, alive: bool) -> redis::RedisResult<(Presence, Presence)> {
        let before = read(state, self.user_id).await;
        let mut redis = state.redis.clone();
        let key = key(state, self.user_id);
        let field = format!("c:{}", self.id);
        let at = now();
        let mut pipe = redis::pipe();
        if alive {
            let kind = if self.status == PresenceStatus::Idle { "idle" } else { "online" };
            pipe.cmd("HSET").arg(&key).arg(&field).arg(format!("{kind}:{}", at + CONNECTION_TTL_SECS)).ignore();
        } else {
            pipe.cmd("HDEL").arg(&key).arg(&field).ignore();
        }
        pipe.cmd("HSET").arg(&key).arg("last_seen").arg(at).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(LAST_SEEN_TTL_SECS).ignore();
        pipe.query_async::<()>(&mut redis).await?;
        let after = read(state, self.user_id).await;
        Ok((before, after))
    }

    /// After the heartbeat found this connection's entry missing or expired (Redis lost it, or
    /// the socket missed its beats) and wrote it again: the status is what the other entries
    /// say without it, before, and with it, after; when they differ the members are told.
    pub async fn restored(&self, state: &AppState, conversations: &HashMap<Uuid, Uuid>) {
        let mut redis = state.redis.clone();
        let mut fields: HashMap<String, String> =
            redis::cmd("HGETALL").arg(key(state, self.user_id)).query_async(&mut redis).await.unwrap_or_default();
        let at = now();
        let (after, last_seen_at) = status_of(&fields, at);
        fields.remove(&format!("c:{}", self.id));
        let (before, _) = status_of(&fields, at);
        if before != after {
            broadcast(state, conversations, Presence { user_id: self.user_id, status: after, last_seen_at }).await;
        }
    }

    /// Writes and, when the user's status changed, tells the members of `conversations`.
    pub async fn update(&self, state: &AppState, alive: bool, conversations: &HashMap<Uuid, Uuid>) {
        match self.write(state, alive).await {
            Ok((before, after)) if before.status != after.status => {
                broadcast(state, conversations, after).await;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot record presence"),
        }
    }
}

/// Most presence entries renewed by one Redis call.
const BEATS_PER_CALL: usize = 256;

/// The replica's heartbeat: every `every`, one pass over its sockets (`Hub::sweep`: pings for
/// silent clients, closes for clients gone quiet past `timeout`) and their presence entries
/// renewed in pipelined calls, each entry's previous value read in the same call. A socket whose
/// entry was missing or expired is told to check whether its user's status changed. Before,
/// each socket did this on a timer of its own with its own Redis round trips: at 19,900 idle
/// sockets that was most of the idle CPU (docs/benchmarks.md).
pub fn spawn_heartbeat(state: AppState, every: std::time::Duration, timeout: std::time::Duration) {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let beats = state.hub.sweep(every, timeout);
            for chunk in beats.chunks(BEATS_PER_CALL) {
                renew(&state, chunk).await;
            }
        }
    });
}

/// Renews the presence entries of `beats` (one heartbeat's chunk). A socket that closed since
/// the beats were collected has already deleted its entry (and told the members it went
/// offline), which this would write again: such entries are deleted once more, so a closed socket
/// never shows its user online for another [`CONNECTION_TTL_SECS`].
pub async fn renew(state: &AppState, beats: &[realtime::hub::Beat]) {
    let at = now();
    let mut pipe = redis::pipe();
    for beat in beats {
        let key = key(state, beat.user_id);
        let field = format!("c:{}", beat.connection);
        let kind = if beat.idle { "idle" } else { "online" };
        pipe.cmd("HGET").arg(&key).arg(&field);
        pipe.cmd("HSET").arg(&key).arg(&field).arg(format!("{kind}:{}", at + CONNECTION_TTL_SECS)).ignore();
        pipe.cmd("HSET").arg(&key).arg("last_seen").arg(at).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(LAST_SEEN_TTL_SECS).ignore();
    }
    let mut redis = state.redis.clone();
    let previous: Vec<Option<String>> = match pipe.query_async(&mut redis).await {
        Ok(previous) => previous,
        Err(e) => {
            tracing::debug!(error = %e, "cannot renew presence");
            return;
        }
    };
    // A socket clears its presence connection before it deletes its entry: seen cleared now
    // (after writing), its deletion may have come before this renewal.
    let closed: Vec<&realtime::hub::Beat> =
        beats.iter().filter(|beat| beat.mailbox.presence_connection() != Some(beat.connection)).collect();
    if !closed.is_empty() {
        let mut pipe = redis::pipe();
        for beat in &closed {
            pipe.cmd("HDEL").arg(key(state, beat.user_id)).arg(format!("c:{}", beat.connection)).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut redis).await {
            tracing::debug!(error = %e, "cannot delete the presence of closed sockets");
        }
    }
    for (beat, previous) in beats.iter().zip(previous) {
        if closed.iter().any(|c| c.connection == beat.connection) {
            continue;
        }
        let kind = if beat.idle { "idle" } else { "online" };
        let counted = previous
            .as_deref()
            .and_then(|p| p.split_once(':'))
            .is_some_and(|(was, expiry)| was == kind && expiry.parse::<i64>().is_ok_and(|e| e >= at));
        if !counted {
            beat.mailbox.push_presence_restored();
        }
    }
}

async fn broadcast(state: &AppState, conversations: &HashMap<Uuid, Uuid>, presence: Presence) {
    for (&conversation_id, &organization_id) in conversations {
        let frame = ServerFrame::Presence { conversation_id, presence: presence.clone() };
        realtime::publish(state, LiveEvent::frame(organization_id, conversation_id, frame)).await;
    }
}

/// Tells the members of a conversation that `user` is typing.
pub async fn typing(state: &AppState, organization_id: Uuid, conversation_id: Uuid, user_id: Uuid) {
    let frame = ServerFrame::Typing { conversation_id, user_id, expires_in_ms: TYPING_EXPIRES_MS };
    realtime::publish(state, LiveEvent::frame(organization_id, conversation_id, frame)).await;
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    /// Comma-separated user ids (at most 200).
    user_ids: String,
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/presence",
    tag = "presence",
    operation_id = "get_presence",
    params(LookupQuery),
    responses((status = 200, description = "The presence of the asked users the caller may see (members of this organization, the caller's contacts); others are left out", body = Vec<Presence>))
)]
async fn lookup(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> ApiResult<axum::Json<Vec<Presence>>> {
    let ids = query
        .user_ids
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse::<Uuid>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::validation("user_ids", "must be comma-separated user ids"))?;
    if ids.len() > crate::limits::MAX_PAGE as usize {
        return Err(ApiError::validation("user_ids", "at most 200 users at a time"));
    }
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let visible = sqlx::query_scalar!(
        r#"SELECT user_id AS "user_id!" FROM organization_memberships WHERE organization_id = $1 AND user_id = ANY($2)
           UNION
           SELECT contact_user_id FROM contact_links WHERE user_id = $3 AND status = 'accepted' AND contact_user_id = ANY($2)"#,
        organization_id,
        &ids,
        auth.user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut answer = Vec::with_capacity(visible.len());
    for user in ids.into_iter().filter(|id| visible.contains(id)) {
        answer.push(read(&state, user).await);
    }
    Ok(axum::Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_wins_over_idle_and_expired_connections_do_not_count() {
        let at = 1_000;
        let fields = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(status_of(&fields(&[]), at).0, PresenceStatus::Offline);
        assert_eq!(status_of(&fields(&[("c:a", "idle:2000")]), at).0, PresenceStatus::Idle);
        assert_eq!(status_of(&fields(&[("c:a", "idle:2000"), ("c:b", "online:2000")]), at).0, PresenceStatus::Online);
        assert_eq!(status_of(&fields(&[("c:a", "online:999")]), at).0, PresenceStatus::Offline);
        let (_, seen) = status_of(&fields(&[("last_seen", "900")]), at);
        assert_eq!(seen.map(|s| s.timestamp()), Some(900));
    }
}
