//! `webhooks`: the outbox's webhook deliveries, end to end, to a receiver of our own on loopback
//! that verifies every delivery's Standard Webhooks signature with the `standardwebhooks` crate
//! (the reference library, as a receiver in that ecosystem would), not with our code.
//!
//! * The send cost: closed-loop senders post `--messages` messages with no webhook endpoint in the
//!   organization, then `--endpoints` endpoints subscribed to `message.created` are added and as
//!   many messages again are posted. The replica taking the sends runs no outbox worker, so the
//!   difference is what the send does for webhooks itself: one outbox row per subscribed endpoint,
//!   written in the send's transaction.
//! * [`Receiver`] and [`drain`]: deliveries per second. A second replica, with the outbox worker
//!   on and loopback allowed (`--webhook-allowed-targets 127.0.0.0/8`, as the data plane's own
//!   tests allow it), starts once the rows wait; timed from the first delivery received to the
//!   last, each one claimed, its secret unsealed, signed (HMAC-SHA256), POSTed, its answer
//!   recorded with its attempt in the delivery log.

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The at-rest key both replicas read (`--at-rest-key-file`); the endpoints' secrets are sealed
/// with it here, as the operator seals them.
pub struct AtRestKey {
    key: [u8; 32],
    pub path: std::path::PathBuf,
}

impl AtRestKey {
    pub fn create(dir: &std::path::Path) -> Result<Self> {
        use base64::Engine as _;
        let key = conclave_credentials::random_bytes::<32>().map_err(|_| anyhow::anyhow!("no randomness"))?;
        let path = dir.join("at-rest-key");
        std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key))?;
        Ok(Self { key, path })
    }

    /// The `serve` arguments of a replica that reads this key and may deliver to loopback.
    pub fn serve_args(&self) -> Vec<String> {
        ["--at-rest-key-file", &self.path.to_string_lossy(), "--webhook-allowed-targets", "127.0.0.0/8"]
            .map(str::to_owned)
            .to_vec()
    }
}

#[derive(Default)]
struct Seen {
    verified: AtomicUsize,
    refused: AtomicUsize,
    first_refusal: Mutex<Option<String>>,
    /// When the first and the last delivery arrived.
    window: Mutex<Option<(Instant, Instant)>>,
}

/// The loopback receiver: `POST /hook/{i}` is endpoint `i`, verified with its secret.
pub struct Receiver {
    pub base: String,
    secrets: Arc<Vec<String>>,
    seen: Arc<Seen>,
}

impl Receiver {
    /// Starts a receiver for `endpoints` endpoints, each with a fresh `whsec_` secret.
    pub async fn start(endpoints: usize) -> Result<Self> {
        let secrets: Vec<String> = (0..endpoints)
            .map(|_| conclave_credentials::webhook_secret::generate().map_err(|_| anyhow::anyhow!("no randomness")))
            .collect::<Result<_>>()?;
        let secrets = Arc::new(secrets);
        let seen = Arc::new(Seen::default());
        let state = (secrets.clone(), seen.clone());
        let router = axum::Router::new().route("/hook/{i}", axum::routing::post(receive)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self { base, secrets, seen })
    }

    pub fn received(&self) -> usize {
        self.seen.verified.load(Ordering::Relaxed) + self.seen.refused.load(Ordering::Relaxed)
    }

    /// Adds the endpoints to `organization`, subscribed to `message.created`, as the operator
    /// writes a WebhookEndpoint's row (the secret sealed under the at-rest key).
    pub async fn subscribe(&self, owner: &PgPool, organization: Uuid, key: &AtRestKey) -> Result<()> {
        for (i, secret) in self.secrets.iter().enumerate() {
            let id = Uuid::now_v7();
            let sealed = conclave_credentials::seal::seal(
                &key.key,
                &conclave_credentials::seal::webhook_context(id),
                secret.as_bytes(),
            )
            .map_err(|e| anyhow::anyhow!("sealing: {e:?}"))?;
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, organization_id, url, event_types, signing_secret_sealed)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(organization)
            .bind(format!("{}/hook/{i}", self.base))
            .bind(["message.created"])
            .bind(sealed)
            .execute(owner)
            .await
            .context("adding a webhook endpoint")?;
        }
        Ok(())
    }
}

type ReceiverState = (Arc<Vec<String>>, Arc<Seen>);

async fn receive(
    State((secrets, seen)): State<ReceiverState>,
    Path(i): Path<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    {
        let mut window = seen.window.lock().unwrap_or_else(|e| e.into_inner());
        *window = Some(window.map_or((now, now), |(first, _)| (first, now)));
    }
    let verdict = secrets
        .get(i)
        .ok_or_else(|| format!("no endpoint {i}"))
        .and_then(|secret| standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string()))
        .and_then(|hook| hook.verify(&body, &headers).map_err(|e| e.to_string()));
    match verdict {
        Ok(()) => {
            seen.verified.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            seen.refused.fetch_add(1, Ordering::Relaxed);
            seen.first_refusal.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            StatusCode::BAD_REQUEST
        }
    }
}

/// What the receiver got while the worker drained the rows.
pub struct Drained {
    pub verified: usize,
    /// From the first delivery received to the last.
    pub secs: f64,
}

/// Waits until the receiver has `expected` deliveries, at most `limit`.
pub async fn drain(receiver: &Receiver, expected: usize, limit: Duration) -> Result<Drained> {
    let deadline = Instant::now() + limit;
    while receiver.received() < expected {
        if Instant::now() >= deadline {
            eprintln!("[bench] {} of {expected} deliveries within {} s", receiver.received(), limit.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = &receiver.seen;
    let refused = seen.refused.load(Ordering::Relaxed);
    if refused > 0 {
        let first = seen.first_refusal.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        bail!("{refused} deliveries failed the standardwebhooks verification, the first: {first}");
    }
    let window = *seen.window.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Drained {
        verified: seen.verified.load(Ordering::Relaxed),
        secs: window.map_or(0.0, |(first, last)| (last - first).as_secs_f64()),
    })
}
