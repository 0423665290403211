//! The collector: deletes the blobs of attachments whose message was deleted, or that were
//! uploaded and never sent within `--attachment-grace-secs`, and gives their bytes back to the
//! organization's quota. Claiming is one cross-tenant step done by the schema's
//! `conclave_claim_collectable_attachments` (it marks rows `deleted`); each row is then removed
//! in a transaction acting for its organization. Replicas collect side by side (`SKIP LOCKED`).

use crate::AppState;
use std::time::Duration;

const BATCH: i32 = 64;

pub fn spawn(state: AppState) {
    if state.config.attachment_gc_ms == 0 {
        tracing::info!("attachment collector disabled");
        return;
    }
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        let pause = Duration::from_millis(state.config.attachment_gc_ms);
        loop {
            let collected = match run_once(&state).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "attachment collection failed");
                    0
                }
            };
            if collected as i32 == BATCH {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}

/// One pass: claims a batch and collects it; returns how many were claimed.
pub async fn run_once(state: &AppState) -> anyhow::Result<usize> {
    let grace = i32::try_from(state.config.attachment_grace_secs).unwrap_or(i32::MAX);
    let claimed = sqlx::query!(
        r#"SELECT id AS "id!", organization_id AS "organization_id!", storage_key AS "storage_key!", size_bytes AS "size_bytes!"
             FROM conclave_claim_collectable_attachments($1, $2)"#,
        grace,
        BATCH
    )
    .fetch_all(&state.db)
    .await?;
    let count = claimed.len();
    for row in claimed {
        if let Err(e) = state.blobs.delete(&row.storage_key).await {
            // The row stays `deleted` and is claimed again next time.
            tracing::warn!(error = %e, attachment_id = %row.id, "cannot delete an attachment blob");
            continue;
        }
        let mut tx = crate::outbox::system_tx(state, row.organization_id).await?;
        let removed = sqlx::query_scalar!("DELETE FROM message_attachments WHERE id = $1 RETURNING size_bytes", row.id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(size) = removed {
            sqlx::query!(
                "UPDATE organizations SET attachment_bytes_used = GREATEST(0, attachment_bytes_used - $2) WHERE id = $1",
                row.organization_id,
                size
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::debug!(attachment_id = %row.id, bytes = row.size_bytes, "collected an attachment");
    }
    Ok(count)
}
