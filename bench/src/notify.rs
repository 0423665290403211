//! `notifications`: the Web Push pipeline, end to end, against the test push service of our own
//! (`conclave_testkit::webpush`: it checks each request's VAPID token and decrypts its RFC 8291
//! payload, as a browser's push service and the browser would).
//!
//! * [`send_cost`]: what notifications add to a send. Closed-loop senders post `--messages`
//!   messages to a member whose device holds `--subscriptions` push subscriptions, then as many to
//!   a member with none. The data plane taking the sends runs no outbox worker, so the difference is
//!   what the send does for notifications itself: the push rows it writes in its transaction.
//! * [`drain`]: pushes per second. A second data plane, with the outbox worker on, starts once
//!   those rows wait; timed from its start to the last push the service received, each one claimed,
//!   checked against the recipient's preferences, encrypted (`aes128gcm`), signed (VAPID ES256),
//!   sent over HTTP and its row updated.

use crate::messages::histogram;
use crate::provision::{Conversation, Member};
use crate::results::Latency;
use anyhow::{Result, bail};
use conclave_testkit::webpush::PushService;
use futures::StreamExt as _;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Registers `count` subscriptions of the push service for `member`'s device.
pub async fn subscribe(base: &str, member: &Member, push: &PushService, count: usize) -> Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..count {
        let subscription = push.subscribe()?;
        let response = http
            .post(format!("{base}/v1/devices/{}/push-subscriptions", member.device_id))
            .bearer_auth(&member.access_token)
            .json(&serde_json::json!({
                "endpoint": subscription.endpoint,
                "p256dh": conclave_protocol::b64::encode(&subscription.p256dh),
                "auth": conclave_protocol::b64::encode(&subscription.auth),
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("subscribing: HTTP {} {}", response.status(), response.text().await.unwrap_or_default());
        }
    }
    Ok(())
}

/// Sends `messages` sealed texts as `sender` to `conversation`, `concurrency` in flight, and returns
/// the send latencies (request to answer) and how many failed.
pub async fn send_cost(
    organization_id: Uuid,
    sender: &Member,
    conversation: &Conversation,
    messages: usize,
    concurrency: usize,
) -> Result<(Latency, u64)> {
    let mut latencies = histogram();
    let mut errors = 0u64;
    let mut results = futures::stream::iter(0..messages)
        .map(|i| async move {
            let client_message_id = Uuid::now_v7();
            let body =
                crate::messages::send_body(conversation, client_message_id, format!("bench notification {i}").len());
            let started = Instant::now();
            sender.client.send_message(organization_id, conversation.id, &body).await?;
            anyhow::Ok(started.elapsed().as_micros() as u64)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        match result {
            Ok(micros) => {
                let _ = latencies.record(micros.max(1));
            }
            Err(e) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("[bench] first send error: {e:#}");
                }
            }
        }
    }
    Ok((Latency::from_micros(&latencies), errors))
}

/// What the push service received while the worker drained the rows.
pub struct Drained {
    pub received: usize,
    /// Seconds from `since` to the first and to the last push seen (polled every 20 ms).
    pub first_secs: f64,
    pub last_secs: f64,
}

/// Waits until the push service has received `expected` requests, at most `limit` after `since`.
pub async fn drain(push: &PushService, expected: usize, since: Instant, limit: Duration) -> Result<Drained> {
    let deadline = since + limit;
    let mut last = Drained { received: 0, first_secs: 0.0, last_secs: 0.0 };
    loop {
        let received = push.received();
        if received.len() != last.received {
            let now = since.elapsed().as_secs_f64();
            if last.received == 0 {
                last.first_secs = now;
            }
            last.received = received.len();
            last.last_secs = now;
        }
        if received.len() >= expected {
            let refused = received.iter().filter(|r| r.error.is_some()).count();
            if refused > 0 {
                let first = received.iter().find_map(|r| r.error.clone()).unwrap_or_default();
                bail!("{refused} pushes failed the push service's checks, the first: {first}");
            }
            return Ok(last);
        }
        if Instant::now() >= deadline {
            eprintln!("[bench] {} of {expected} pushes within {} s", last.received, limit.as_secs());
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
