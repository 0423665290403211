//! The call sweeper: no call stays live because a device vanished. Every
//! `--call-sweep-ms` each replica looks for calls with work (a ring older than
//! `--call-ring-timeout-secs` with someone still invited: `missed`; a joined device silent for
//! `--call-heartbeat-timeout-secs`: it leaves) and applies the state machine's `RingTimeout` and
//! `Leave` to them under the call's row lock, exactly as a device's own request would, then
//! publishes the call. Bounded: at most 100 calls a pass. Replicas may sweep at once; the row lock
//! and the state machine make the second one find nothing left to do.

use super::lifecycle::{load, publish, settle_call, store_participant};
use super::state::{self, Action};
use crate::AppState;
use crate::error::ApiResult;
use crate::outbox::system_tx;
use conclave_protocol::calls::{CallStatus, ParticipantState};
use std::time::Duration;
use uuid::Uuid;

/// Calls looked at in one pass, at most.
const PASS_LIMIT: i32 = 100;

pub fn spawn(state: AppState) {
    if state.config.call_sweep_ms == 0 {
        tracing::info!("call sweeper disabled");
        return;
    }
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        let pause = Duration::from_millis(state.config.call_sweep_ms);
        loop {
            match pass(&state).await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(calls = swept, "call sweeper ended rings or silent participants"),
                Err(e) => tracing::warn!(error = ?e.code, "call sweep failed; the next one retries"),
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}

/// One pass: the number of calls changed.
pub async fn pass(state: &AppState) -> ApiResult<usize> {
    let ring = i32::try_from(state.config.call_ring_timeout_secs).unwrap_or(i32::MAX);
    let heartbeat = i32::try_from(state.config.call_heartbeat_timeout_secs).unwrap_or(i32::MAX);
    let candidates = sqlx::query!(
        r#"SELECT id AS "id!", organization_id AS "organization_id!" FROM conclave_stale_calls($1, $2, $3)"#,
        ring,
        heartbeat,
        PASS_LIMIT
    )
    .fetch_all(&state.db)
    .await?;
    let mut changed = 0;
    for call in candidates {
        if sweep_call(state, call.organization_id, call.id, (ring, heartbeat)).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

async fn sweep_call(
    state: &AppState,
    organization_id: Uuid,
    call_id: Uuid,
    (ring, heartbeat): (i32, i32),
) -> ApiResult<bool> {
    let mut tx = system_tx(state, organization_id).await?;
    let Some(call) = sqlx::query!(
        r#"SELECT status AS "status: CallStatus", started_by,
                  started_at < now() - make_interval(secs => $2) AS "ring_over!"
             FROM call_sessions WHERE id = $1 FOR UPDATE"#,
        call_id,
        f64::from(ring)
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(false);
    };
    let participants = sqlx::query!(
        r#"SELECT user_id, state AS "state: ParticipantState",
                  COALESCE(last_seen_at < now() - make_interval(secs => $2), false) AS "silent!"
             FROM call_participants WHERE call_id = $1"#,
        call_id,
        f64::from(heartbeat)
    )
    .fetch_all(&mut *tx)
    .await?;
    let joined = participants.iter().filter(|p| p.state == ParticipantState::Joined).count();
    let mut all = Vec::with_capacity(participants.len());
    let (mut changed, mut caller_left) = (false, false);
    for p in &participants {
        let action = match p.state {
            ParticipantState::Invited if call.ring_over => Some(Action::RingTimeout),
            ParticipantState::Joined if p.silent => Some(Action::Leave),
            _ => None,
        };
        let next = action.and_then(|a| state::transition(call.status, p.state, a, joined).ok());
        match next {
            Some(next) => {
                store_participant(&mut tx, (organization_id, call_id, p.user_id), None, next).await?;
                caller_left |= next == ParticipantState::Left && call.started_by == Some(p.user_id);
                changed = true;
                all.push(next);
            }
            None => all.push(p.state),
        }
    }
    if !changed {
        return Ok(false);
    }
    let (status, reason) = state::settle(call.status, &all, caller_left);
    if status != call.status {
        settle_call(&mut tx, call_id, status, reason).await?;
    }
    let stored = load(&mut tx, call_id).await?;
    tx.commit().await?;
    publish(state, organization_id, &stored).await;
    Ok(true)
}
