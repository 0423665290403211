//! Retention: messages older than their workspace's `message_retention_days` (the
//! organization's when the workspace sets none) are deleted for real, unless a legal hold
//! covers them ([`holds`], docs/compliance.md).
//!
//! The sweep runs on every replica, but only the one holding the `retention` row of
//! `worker_leases` works; it renews the lease between batches, and a replica that dies simply
//! stops renewing, so another takes over once the lease expires. Work is done in batches of at
//! most `--retention-batch` messages, each one short transaction acting for the organization:
//! pick the oldest expired messages that nothing holds (`SKIP LOCKED`), delete them (receipts,
//! reactions and pins go with them through their foreign keys; attachments are detached and the
//! collector deletes blob and row), delete the key generations no retained message needs, move
//! the conversations' `history_removed_before_seq`, and append an audit entry with the counts.
//! A batch commits whole or not at all, and what is left to do is only ever read from the data,
//! so a crash anywhere is resumed by the next pass. A batch locks conversation rows before
//! message rows, in the order sends do, so the two never deadlock; it renews the lease and keeps
//! its row locked while it runs; and it shares the organization's holds lock with nothing but
//! other deleters, so a hold placed meanwhile waits for the batch and binds every later one.

pub mod holds;

use crate::AppState;
use crate::audit::{self, Actor};
use crate::realtime::{self, LiveEvent};
use chrono::{DateTime, Utc};
use conclave_protocol::events::ServerFrame;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

pub use holds::router;

/// The `worker_leases` row of the sweep.
pub const LEASE: &str = "retention";
/// How long a lease lasts unless renewed; a batch renews it, so this only bounds how long a
/// dead replica's lease keeps the others waiting.
const LEASE_SECONDS: f64 = 120.0;
/// At most this many members are told their new unread count after a batch (each costs a
/// count); the others see it at their next read.
const UNREAD_ANNOUNCEMENTS: i64 = 500;
/// The attachment collector claims this many at a time (see `attachments::gc`).
const GC_BATCH: usize = 64;

/// This replica's side of the sweep: who it is when it holds the lease, and what it has done
/// (read by `/metrics`).
#[derive(Debug)]
pub struct Retention {
    /// Names this replica in `worker_leases`.
    pub holder: Uuid,
    pub passes: AtomicU64,
    pub batches: AtomicU64,
    pub messages: AtomicU64,
    pub attachments: AtomicU64,
    pub key_generations: AtomicU64,
    /// 1 while this replica holds the lease.
    pub lease_held: AtomicI64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            holder: Uuid::new_v4(),
            passes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            attachments: AtomicU64::new(0),
            key_generations: AtomicU64::new(0),
            lease_held: AtomicI64::new(0),
        }
    }
}

/// What a batch or a pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub batches: u64,
    pub messages: u64,
    pub attachments: u64,
    pub reactions: u64,
    pub pins: u64,
    pub key_generations: u64,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, other: Self) {
        self.batches += other.batches;
        self.messages += other.messages;
        self.attachments += other.attachments;
        self.reactions += other.reactions;
        self.pins += other.pins;
        self.key_generations += other.key_generations;
    }
}

/// A workspace with a retention period and no hold on it or its organization.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    pub retention_days: i32,
}

pub fn spawn(state: AppState) {
    if state.config.retention_interval_ms == 0 {
        tracing::info!("retention sweep disabled");
        return;
    }
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        let pause = Duration::from_millis(state.config.retention_interval_ms);
        loop {
            match run_pass(&state).await {
                Ok(Some(swept)) if swept.messages > 0 => {
                    tracing::info!(
                        messages = swept.messages,
                        batches = swept.batches,
                        "retention pass deleted messages"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed; the next one resumes"),
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(e) = release_lease(&state).await {
            tracing::debug!(error = %e, "could not release the retention lease; it expires");
        }
    });
}

/// Takes or renews the lease; false when another live replica holds it.
pub async fn take_lease(state: &AppState) -> Result<bool, sqlx::Error> {
    let held = sqlx::query_scalar!(
        "INSERT INTO worker_leases (name, holder, acquired_at, expires_at)
         VALUES ($1, $2, now(), now() + make_interval(secs => $3))
         ON CONFLICT (name) DO UPDATE
            SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
                acquired_at = CASE WHEN worker_leases.holder = EXCLUDED.holder THEN worker_leases.acquired_at
                                   ELSE EXCLUDED.acquired_at END
          WHERE worker_leases.holder = EXCLUDED.holder OR worker_leases.expires_at < now()
         RETURNING holder",
        LEASE,
        state.retention.holder,
        LEASE_SECONDS
    )
    .fetch_optional(&state.db)
    .await?
    .is_some();
    state.retention.lease_held.store(i64::from(held), Ordering::Relaxed);
    Ok(held)
}

async fn release_lease(state: &AppState) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM worker_leases WHERE name = $1 AND holder = $2", LEASE, state.retention.holder)
        .execute(&state.db)
        .await?;
    state.retention.lease_held.store(0, Ordering::Relaxed);
    Ok(())
}

/// The workspaces with work, across tenants.
pub async fn targets(state: &AppState) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as!(
        Target,
        r#"SELECT organization_id AS "organization_id!", workspace_id AS "workspace_id!", retention_days AS "retention_days!"
             FROM conclave_retention_targets()"#
    )
    .fetch_all(&state.db)
    .await
}

/// One pass over every workspace with a retention period, batch after batch until nothing
/// expired is left. `None` when another replica holds the lease.
pub async fn run_pass(state: &AppState) -> anyhow::Result<Option<Swept>> {
    if !take_lease(state).await? {
        return Ok(None);
    }
    let limit = i64::from(state.config.retention_batch.max(1));
    let pause = Duration::from_millis(state.config.retention_batch_pause_ms);
    let mut total = Swept::default();
    'targets: for target in targets(state).await? {
        let mut from = None;
        loop {
            let (swept, read, last) = sweep_batch_from(state, &target, limit, from).await?;
            total += swept;
            if (read as i64) < limit {
                break;
            }
            from = last;
            // Between batches: give sends the floor, and stop if the lease was lost (a pause
            // longer than the lease, a partition); whoever holds it now carries on.
            tokio::time::sleep(pause).await;
            if !take_lease(state).await? {
                tracing::warn!("retention lease lost mid-pass; stopping");
                break 'targets;
            }
        }
    }
    if total.attachments > 0 {
        // The detached attachments are collectable now: collect them without waiting for the
        // collector's next turn, so blobs go with their messages.
        for _ in 0..(total.attachments as usize / GC_BATCH + 2) {
            if crate::attachments::gc::run_once(state).await? < GC_BATCH {
                break;
            }
        }
    }
    // Privacy exports nobody downloaded in time go too (the archive holds everything about a
    // person; it is only kept for its one download).
    let exports = crate::privacy::delete_expired_exports(state).await?;
    if exports > 0 {
        tracing::info!(exports, "expired privacy exports deleted");
    }
    state.retention.passes.fetch_add(1, Ordering::Relaxed);
    Ok(Some(total))
}

/// Deletes at most `limit` expired messages of one workspace that no hold covers, and what only
/// they needed, in one transaction with its audit entry; then tells the conversations' members.
/// Nothing happens unless this replica holds the lease.
pub async fn sweep_batch(state: &AppState, target: &Target, limit: i64) -> anyhow::Result<Swept> {
    Ok(sweep_batch_from(state, target, limit, None).await?.0)
}

/// [`sweep_batch`] over the messages created at or after `from` (the previous batch's last
/// candidate: the held messages before it were read once this pass and are not read again).
/// Also returns how many candidates the batch read and the creation time of the last one.
async fn sweep_batch_from(
    state: &AppState,
    target: &Target,
    limit: i64,
    from: Option<DateTime<Utc>>,
) -> anyhow::Result<(Swept, usize, Option<DateTime<Utc>>)> {
    let mut tx = crate::outbox::system_tx(state, target.organization_id).await?;
    // Renews the lease and keeps its row locked until this batch commits: no other replica can
    // take the lease over while a batch runs, however long it takes.
    let leased = sqlx::query_scalar!(
        "UPDATE worker_leases SET expires_at = now() + make_interval(secs => $3)
          WHERE name = $1 AND holder = $2 AND expires_at > now()
         RETURNING holder",
        LEASE,
        state.retention.holder,
        LEASE_SECONDS
    )
    .fetch_optional(&mut *tx)
    .await?;
    if leased.is_none() {
        return Ok((Swept::default(), 0, None));
    }
    // Placing a hold takes this lock exclusively (holds.rs): a hold committed before this point is
    // seen by the select below, and one placed from now on waits for this batch to end.
    holds::lock_holds(&mut tx, target.organization_id, true).await?;
    let candidates = sqlx::query!(
        r#"SELECT m.id, m.conversation_id, m.created_at
             FROM messages m JOIN conversations c ON c.id = m.conversation_id
            WHERE m.organization_id = $1 AND c.workspace_id = $2
              AND m.created_at < now() - make_interval(days => $3)
              AND ($5::timestamptz IS NULL OR m.created_at >= $5)
              AND NOT EXISTS (
                  SELECT 1 FROM legal_holds h
                   WHERE h.organization_id = $1 AND h.lifted_at IS NULL
                     AND (h.scope = 'organization'
                          OR (h.scope = 'workspace' AND h.target_id = c.workspace_id)
                          OR (h.scope = 'conversation' AND h.target_id = c.id)
                          OR (h.scope = 'user' AND (h.target_id = m.sender_user_id
                              OR EXISTS (SELECT 1 FROM conversation_members cm
                                          WHERE cm.conversation_id = c.id AND cm.user_id = h.target_id)))))
            ORDER BY m.created_at
            LIMIT $4"#,
        target.organization_id,
        target.workspace_id,
        target.retention_days,
        limit,
        from
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(last) = candidates.last().map(|m| m.created_at) else {
        return Ok((Swept::default(), 0, None));
    };
    // The conversation rows first, in one order, as sends, edits and deletes lock them before
    // their messages (and a send's reply or key generation reference locks a message or key
    // row after its conversation): locking messages first could deadlock with them.
    let mut touched: Vec<Uuid> = candidates.iter().map(|m| m.conversation_id).collect();
    touched.sort_unstable();
    touched.dedup();
    sqlx::query!("SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE", &touched)
        .fetch_all(&mut *tx)
        .await?;
    let candidate_ids: Vec<Uuid> = candidates.iter().map(|m| m.id).collect();
    let doomed = sqlx::query!(
        "SELECT id, conversation_id, seq FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED",
        &candidate_ids
    )
    .fetch_all(&mut *tx)
    .await?;
    if doomed.is_empty() {
        return Ok((Swept::default(), candidates.len(), Some(last)));
    }
    let ids: Vec<Uuid> = doomed.iter().map(|m| m.id).collect();
    // Per conversation, the highest sequence number removed.
    let mut removed: BTreeMap<Uuid, i64> = BTreeMap::new();
    for m in &doomed {
        let top = removed.entry(m.conversation_id).or_insert(0);
        *top = (*top).max(m.seq);
    }
    let counts = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM message_attachments WHERE message_id = ANY($1)) AS "attachments!",
                  (SELECT count(*) FROM message_reactions WHERE message_id = ANY($1)) AS "reactions!",
                  (SELECT count(*) FROM message_pins WHERE message_id = ANY($1)) AS "pins!""#,
        &ids
    )
    .fetch_one(&mut *tx)
    .await?;
    let messages =
        sqlx::query!("DELETE FROM messages WHERE id = ANY($1)", &ids).execute(&mut *tx).await?.rows_affected();
    let conversations: Vec<Uuid> = removed.keys().copied().collect();
    let before: Vec<i64> = removed.values().map(|top| top + 1).collect();
    // Key generations older than the oldest one a retained message uses, and older than the
    // current one, protect nothing any more (reactions are sealed under the generation current
    // when they were made, never older than their message's). Their wraps go with them.
    let key_generations = sqlx::query!(
        "DELETE FROM conversation_encryption_keys k
          USING conversations c
          WHERE c.id = ANY($1) AND k.conversation_id = c.id
            AND k.generation < c.current_key_generation
            AND k.generation < coalesce((SELECT min(m.key_generation) FROM messages m WHERE m.conversation_id = c.id),
                                        c.current_key_generation)",
        &conversations
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let swept = Swept {
        batches: 1,
        messages,
        attachments: counts.attachments as u64,
        reactions: counts.reactions as u64,
        pins: counts.pins as u64,
        key_generations,
    };
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(target.organization_id),
            actor: Actor::System,
            action: "retention.messages_deleted",
            target: Some(("workspace", target.workspace_id)),
            ip: None,
            details: json!({
                "retention_days": target.retention_days,
                "conversations": conversations.len(),
                "messages": swept.messages,
                "attachments": swept.attachments,
                "reactions": swept.reactions,
                "pins": swept.pins,
                "key_generations": swept.key_generations,
            }),
        },
    )
    .await?;
    // Last, so the conversation rows (which sends also update) stay locked only until commit.
    let marks = sqlx::query!(
        r#"UPDATE conversations c SET history_removed_before_seq = greatest(c.history_removed_before_seq, x.before)
             FROM unnest($1::uuid[], $2::bigint[]) AS x(id, before)
            WHERE c.id = x.id
        RETURNING c.id, c.history_removed_before_seq"#,
        &conversations,
        &before
    )
    .fetch_all(&mut *tx)
    .await?;
    // Members who had not read everything removed: their unread counts went down.
    let readers = sqlx::query!(
        "SELECT cm.conversation_id, cm.user_id FROM conversation_members cm
           JOIN unnest($1::uuid[], $2::bigint[]) AS x(id, before) ON cm.conversation_id = x.id
          WHERE cm.read_seq < x.before - 1
          LIMIT $3",
        &conversations,
        &before,
        UNREAD_ANNOUNCEMENTS
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let stats = &state.retention;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.messages.fetch_add(swept.messages, Ordering::Relaxed);
    stats.attachments.fetch_add(swept.attachments, Ordering::Relaxed);
    stats.key_generations.fetch_add(swept.key_generations, Ordering::Relaxed);
    for mark in marks {
        let frame =
            ServerFrame::HistoryRemoved { conversation_id: mark.id, before_seq: mark.history_removed_before_seq };
        realtime::publish(state, LiveEvent::frame(target.organization_id, mark.id, frame)).await;
    }
    for reader in readers {
        crate::notifications::unread::announce(state, target.organization_id, reader.conversation_id, reader.user_id)
            .await;
    }
    Ok((swept, candidates.len(), Some(last)))
}
