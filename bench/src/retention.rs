//! Retention: how fast the data plane's sweep deletes expired messages, and what sends feel
//! while it runs.
//!
//! Expired messages are written straight into the database (as the owner, spread over the
//! conversations, 400 days old); a few members send sealed messages through the API at a fixed
//! rate, first with no retention set (the "before" latency), then with the organization's
//! retention set to 30 days, which the data plane's sweep (under its lease, in its batches)
//! picks up at its next pass (the "during" latency). The deletion rate is the expired rows over
//! the time from the first deleted batch to the last, read from the data plane's `/metrics`.

use crate::messages::histogram;
use crate::provision::{Conversation, Member};
use crate::results::{Latency, RetentionFigures};
use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct Settings {
    pub messages: u64,
    pub batch: u32,
    pub send_rate: f64,
    pub before: Duration,
}

/// Writes `count` messages 400 days old, round-robin over the conversations, in chunks.
pub async fn seed_expired(
    owner: &PgPool,
    organization_id: Uuid,
    conversations: &[Conversation],
    count: u64,
) -> Result<()> {
    let ids: Vec<Uuid> = conversations.iter().map(|c| c.id).collect();
    let n = ids.len() as i64;
    let chunk: i64 = 100_000;
    let mut start = 0i64;
    while (start as u64) < count {
        let end = (start + chunk).min(count as i64);
        sqlx::query(
            "INSERT INTO messages (organization_id, conversation_id, seq, client_message_id, key_generation,
                                   ciphertext, created_at)
             SELECT $1, ($2::uuid[])[1 + g % $3], 1 + g / $3, gen_random_uuid(), 1, decode(repeat('ab', 160), 'hex'),
                    now() - interval '400 days' + g * interval '1 millisecond'
               FROM generate_series($4::bigint, $5::bigint - 1) AS g",
        )
        .bind(organization_id)
        .bind(&ids)
        .bind(n)
        .bind(start)
        .bind(end)
        .execute(owner)
        .await?;
        eprintln!("[bench] {end} expired messages written");
        start = end;
    }
    sqlx::query(
        "UPDATE conversations c SET last_seq = m.top
           FROM (SELECT conversation_id, max(seq) AS top FROM messages GROUP BY 1) m WHERE m.conversation_id = c.id",
    )
    .execute(owner)
    .await?;
    sqlx::query("VACUUM ANALYZE messages").execute(owner).await?;
    Ok(())
}

async fn deleted_so_far(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("conclave_dataplane_retention_messages_deleted_total "))
        .and_then(|v| v.trim().parse().ok())
}

struct Senders {
    during: AtomicBool,
    stop: AtomicBool,
    errors: AtomicU64,
    before: Mutex<Histogram<u64>>,
    while_deleting: Mutex<Histogram<u64>>,
}

async fn send_one(organization_id: Uuid, member: &Member, conversation: &Conversation) -> Result<()> {
    let body = crate::messages::send_body(conversation, Uuid::new_v4(), "retention bench".len());
    member.client.send_message(organization_id, conversation.id, &body).await?;
    Ok(())
}

/// Runs the measurement on a data plane started with the retention sweep on.
pub async fn run(
    owner: &PgPool,
    base: &str,
    organization_id: Uuid,
    members: Vec<Member>,
    conversations: Vec<Conversation>,
    settings: &Settings,
) -> Result<RetentionFigures> {
    let shared = Arc::new(Senders {
        during: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
        before: Mutex::new(histogram()),
        while_deleting: Mutex::new(histogram()),
    });
    // One sender per conversation's first member, paced so the total is `send_rate`.
    let senders = conversations.len().max(1);
    let interval = Duration::from_secs_f64(senders as f64 / settings.send_rate.max(0.1));
    let members = Arc::new(members);
    let conversations = Arc::new(conversations);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..senders {
        let (shared, members, conversations) = (shared.clone(), members.clone(), conversations.clone());
        tasks.spawn(async move {
            let conversation = &conversations[index];
            let member = &members[conversation.members[0]];
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !shared.stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let during = shared.during.load(Ordering::Relaxed);
                let started = Instant::now();
                match send_one(organization_id, member, conversation).await {
                    Ok(()) => {
                        let micros = started.elapsed().as_micros() as u64;
                        let histogram = if during { &shared.while_deleting } else { &shared.before };
                        let _ = histogram.lock().unwrap_or_else(|p| p.into_inner()).record(micros.max(1));
                    }
                    Err(e) => {
                        if shared.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("[bench] send failed: {e:#}");
                        }
                    }
                }
            }
        });
    }

    tokio::time::sleep(settings.before).await;
    let http = reqwest::Client::new();
    sqlx::query("UPDATE organizations SET message_retention_days = 30 WHERE id = $1")
        .bind(organization_id)
        .execute(owner)
        .await?;
    let set_at = Instant::now();
    let (mut first, mut last) = (None, None);
    let mut last_seen = 0u64;
    let deadline = set_at + Duration::from_secs(3600);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(deleted) = deleted_so_far(&http, base).await else { continue };
        if deleted > 0 && first.is_none() {
            first = Some(Instant::now());
            shared.during.store(true, Ordering::Relaxed);
        }
        if deleted != last_seen {
            last_seen = deleted;
            last = Some(Instant::now());
            if deleted % 100_000 < u64::from(settings.batch) {
                eprintln!("[bench] {deleted} deleted");
            }
        }
        if deleted >= settings.messages {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let (Some(first), Some(last)) = (first, last) else { bail!("the sweep deleted nothing within the hour") };
    if last_seen < settings.messages {
        bail!("the sweep deleted {last_seen} of {} messages within the hour", settings.messages);
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE created_at < now() - interval '30 days'")
        .fetch_one(owner)
        .await?;
    if left != 0 {
        bail!("{left} expired messages are left");
    }
    // The first poll that saw deletions is up to one poll after the first batch committed.
    let secs = last.duration_since(first).as_secs_f64() + 0.05;
    let before = Latency::from_micros(&shared.before.lock().unwrap_or_else(|p| p.into_inner()));
    let during = Latency::from_micros(&shared.while_deleting.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(RetentionFigures {
        messages: settings.messages,
        conversations: conversations.len(),
        batch: settings.batch,
        delete_secs: secs,
        rows_per_sec: settings.messages as f64 / secs,
        first_batch_after_secs: first.duration_since(set_at).as_secs_f64(),
        send_rate: settings.send_rate,
        sends_before: before,
        sends_during: during,
        send_errors: shared.errors.load(Ordering::Relaxed),
    })
}
