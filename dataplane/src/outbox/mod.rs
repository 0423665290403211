//! The outbox worker: delivers what message sends and the operator queued in
//! `outbound_notifications`, at least once, with retries and backoff.
//!
//! Each replica polls; `conclave_claim_outbox` hands out due rows with `FOR UPDATE SKIP LOCKED` and
//! a lease, so replicas never deliver the same row at the same time and a crashed worker's rows
//! come back after the lease. Each row is processed in a transaction acting for its own
//! organization. Channels handled here: `webhook` (signed HTTP POST, see docs/webhooks.md),
//! `email` (owner invitations queued by the operator) and `push` (Web Push, [`push`];
//! docs/notifications.md).

pub mod digests;
pub mod events;
pub mod guard;
pub mod http;
mod invitations;
pub mod log;
pub mod push;
mod webhooks;

pub use guard::AllowedTarget;
pub use http::GuardedHttp;

/// The worker's HTTP clients, both guarded: URLs of push subscriptions and webhook endpoints are
/// chosen by users, and the data plane runs inside the cluster.
#[derive(Clone)]
pub struct Clients {
    pub push: GuardedHttp,
    pub webhooks: GuardedHttp,
}

/// Builds both clients: webhooks with the configured allow-list, Web Push with
/// [`push::allow_list`].
pub fn http_clients(config: &crate::config::Config) -> anyhow::Result<Clients> {
    Ok(Clients {
        push: GuardedHttp::new(push::allow_list(config.push_allow_loopback_http))?,
        webhooks: GuardedHttp::new(guard::AllowList::new(config.webhook_allowed_targets.clone()))?,
    })
}

use crate::AppState;
use conclave_schema::TenantContext;
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// Attempts before a row is given up (`dead`).
pub const MAX_ATTEMPTS: i32 = 8;
const LEASE_SECONDS: i32 = 60;
const BATCH: i32 = 16;

#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub channel: String,
    pub event_type: String,
    pub recipient_user_id: Option<Uuid>,
    pub webhook_endpoint_id: Option<Uuid>,
    pub payload: Value,
    pub attempts: i32,
}

/// How one delivery went.
pub enum Outcome {
    Delivered,
    /// Try again later (network trouble, a 5xx, email not configured yet).
    Retry(String),
    /// Try again after this many seconds (the receiver's `Retry-After`, at most an hour).
    RetryAfter(u64, String),
    /// Never going to work (the invitation closed, the endpoint is gone or disabled).
    Drop(String),
    /// Nothing to deliver, on purpose (the recipient's preferences, already read): `skipped`.
    Skip(String),
}

/// Seconds before attempt `n + 1`: 10 s, 20 s, 40 s, ... at most an hour.
pub fn backoff_seconds(attempts: i32) -> i64 {
    let exponent = attempts.clamp(1, 20) - 1;
    (10i64 << exponent).min(3600)
}

/// A transaction acting for an organization with no user: the workers' context.
pub async fn system_tx(state: &AppState, organization_id: Uuid) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    TenantContext::organization(organization_id).apply(&mut tx).await?;
    Ok(tx)
}

pub fn spawn(state: AppState) {
    if state.config.outbox_poll_ms == 0 {
        tracing::info!("outbox worker disabled");
        return;
    }
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        let http = match http_clients(&state.config) {
            Ok(clients) => clients,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the outbox's HTTP clients; outbox worker not started");
                return;
            }
        };
        let pause = Duration::from_millis(state.config.outbox_poll_ms);
        loop {
            let worked = match run_once(&state, &http).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox poll failed");
                    0
                }
            };
            if worked == 0 {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    });
}

/// Claims one batch and delivers it; returns how many rows were claimed.
pub async fn run_once(state: &AppState, http: &Clients) -> Result<usize, sqlx::Error> {
    let jobs = sqlx::query_as!(
        Job,
        r#"SELECT id AS "id!", organization_id AS "organization_id!", channel AS "channel!", event_type AS "event_type!",
                  recipient_user_id, webhook_endpoint_id, payload AS "payload!", attempts AS "attempts!"
             FROM conclave_claim_outbox(ARRAY['webhook', 'email', 'push'], $1, $2)"#,
        BATCH,
        LEASE_SECONDS
    )
    .fetch_all(&state.db)
    .await?;
    let claimed = jobs.len();
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let state = state.clone();
        let http = http.clone();
        set.spawn(async move {
            let outcome = match job.channel.as_str() {
                "webhook" => webhooks::deliver(&state, &http.webhooks, &job).await,
                "email" => invitations::deliver(&state, &job).await,
                "push" => push::deliver(&state, &http.push, &job).await,
                other => Outcome::Drop(format!("no worker for channel {other}")),
            };
            if let Err(e) = record(&state, &job, outcome).await {
                tracing::warn!(error = %e, job = %job.id, "could not record an outbox outcome; the lease will expire and it is retried");
            }
        });
    }
    while set.join_next().await.is_some() {}
    if let Err(e) = digests::run_once(state).await {
        tracing::warn!(error = %e, "digest run failed");
    }
    if let Err(e) = push::measure_backlog(state).await {
        tracing::debug!(error = %e, "cannot measure the outbox backlog");
    }
    Ok(claimed)
}

async fn record(state: &AppState, job: &Job, outcome: Outcome) -> Result<(), sqlx::Error> {
    let mut tx = system_tx(state, job.organization_id).await?;
    match outcome {
        Outcome::Delivered => {
            sqlx::query!(
                "UPDATE outbound_notifications SET status = 'delivered', delivered_at = now(), last_error = NULL WHERE id = $1",
                job.id
            )
            .execute(&mut *tx)
            .await?;
        }
        Outcome::Skip(reason) => {
            sqlx::query!(
                "UPDATE outbound_notifications SET status = 'skipped', last_error = left($2, 1024) WHERE id = $1",
                job.id,
                reason
            )
            .execute(&mut *tx)
            .await?;
        }
        Outcome::Retry(error) if job.attempts < MAX_ATTEMPTS => {
            retry(&mut tx, job, backoff_seconds(job.attempts), &error).await?;
        }
        Outcome::RetryAfter(seconds, error) if job.attempts < MAX_ATTEMPTS => {
            retry(&mut tx, job, (seconds as i64).clamp(1, 3600), &error).await?;
        }
        Outcome::Retry(error) | Outcome::RetryAfter(_, error) | Outcome::Drop(error) => {
            tracing::warn!(job = %job.id, attempts = job.attempts, %error, "delivery given up");
            sqlx::query!(
                "UPDATE outbound_notifications SET status = 'dead', last_error = left($2, 1024) WHERE id = $1",
                job.id,
                error
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}

async fn retry(
    tx: &mut Transaction<'static, Postgres>,
    job: &Job,
    seconds: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    tracing::info!(job = %job.id, attempts = job.attempts, seconds, %error, "delivery failed; will retry");
    sqlx::query!(
        "UPDATE outbound_notifications SET status = 'failed', last_error = left($2, 1024),
                next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
        job.id,
        error,
        seconds as f64
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_seconds(1), 10);
        assert_eq!(backoff_seconds(2), 20);
        assert_eq!(backoff_seconds(4), 80);
        assert_eq!(backoff_seconds(30), 3600);
    }
}
