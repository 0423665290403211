//! Sends written in batches: group commit in the data plane.
//!
//! A send handler checks what needs no database (sizes, the access token's signature, the
//! ciphertext's MLS framing), then queues the send here and waits. Each writer has a queue
//! of its own and serves a fixed share of the conversations (by id): it takes everything that
//! has gathered in its queue (up to [`MAX_BATCH`]) and stores it with one call to
//! `conclave_send_messages` (migrations 11, 14 and 50), one statement and one commit for the whole batch,
//! which applies every check a single send had and answers each entry on its own. There is no
//! timer: a send that finds its writer idle is written at once, alone; batches only grow while
//! the writer is busy, which is exactly when round trips and commits are the bottleneck.
//!
//! One writer per conversation is what keeps a conversation's messages published in sequence
//! order: each writer hands its stored batches, in the order it stored them, to a task of its
//! own that publishes one batch after the other and answers each batch's handlers after its
//! publish. (Shared between writers, two batches of one conversation would commit in lock order
//! but could publish in either order, and every member's socket would then fill the apparent gap
//! from the database. It also keeps writers from waiting on each other's conversation locks.)
//! The writer meanwhile stores the next batch: Redis's round trip is not part of its cycle.
//!
//! A writer keeps its pooled connection while sends keep coming (given back after
//! `KEEP_CONNECTION`, 2 s, with nothing to write). Taking a connection from the pool for each batch
//! cost two health-check round trips and, with the pool handing out its connections in turn, a
//! backend whose caches had gone cold: under load that doubled what PostgreSQL spent on a batch
//! (docs/benchmarks.md, "One busy conversation").
//!
//! When a batch fails as a whole (a deadlock with another transaction, a lost connection), each
//! of its sends is retried on its own, so one send's failure is never another's.
//!
//! A batch has a deadline (`--database-send-deadline-ms`): a connection that a partition left
//! silent would otherwise hold its writer, and every send of that writer's conversations, for
//! ever. Past it the connection is abandoned (closed, not returned to the pool) and each send of
//! the batch is answered 503 `database_busy` with `Retry-After`, without the one-by-one retries:
//! they would meet the same database. The batch may have been committed all the same (only its
//! answer was lost); a retry with the same `client_message_id` then answers 200 with what was
//! stored, so nothing is lost or stored twice.

use crate::context::session::{AuthUser, session_revoked};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::realtime::{LiveEvent, Publisher};
use conclave_protocol::api::Message;
use conclave_protocol::events::ServerFrame;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// The database as a writer reaches it: the pool, and the connection it keeps between batches
/// while sends keep coming.
pub struct Link {
    pool: PgPool,
    held: Option<PoolConnection<Postgres>>,
    /// When the kept connection was taken from the pool.
    taken: Instant,
}

impl Link {
    /// No connection kept yet: the first batch takes one from `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, held: None, taken: Instant::now() }
    }

    /// The connection for the next batch: the one kept, unless it has served for
    /// [`RENEW_CONNECTION`] (then it goes back to the pool, whose lifetime and health rules
    /// apply to it as to any other), or one from the pool within `deadline`.
    async fn connection(&mut self, deadline: Duration) -> Result<&mut PoolConnection<Postgres>, sqlx::Error> {
        let conn = match self.held.take().filter(|_| self.taken.elapsed() < RENEW_CONNECTION) {
            Some(conn) => conn,
            None => {
                let conn = match tokio::time::timeout(deadline, self.pool.acquire()).await {
                    Ok(conn) => conn?,
                    Err(_) => return Err(sqlx::Error::PoolTimedOut),
                };
                self.taken = Instant::now();
                conn
            }
        };
        Ok(self.held.insert(conn))
    }

    /// The connection kept from the last batch, if it was kept.
    pub fn kept(&mut self) -> Option<&mut PgConnection> {
        self.held.as_deref_mut()
    }
}

/// How long a writer keeps its connection with nothing to write. While it has one, a batch is
/// one round trip; taking one from the pool (and giving it back) costs two health checks, one
/// backend's warm caches for another's, and, under load, more than the batch itself.
const KEEP_CONNECTION: Duration = Duration::from_secs(2);

/// How long a writer keeps one connection however busy it is, so that a connection it never
/// stops using still goes back to the pool now and then (which closes it once it is older than
/// the pool's lifetime, as it closes idle ones).
const RENEW_CONNECTION: Duration = Duration::from_secs(60);

/// Stored batches waiting to be published; past this the writer waits for Redis.
const ANNOUNCE_DEPTH: usize = 16;

/// Most sends written by one call.
pub const MAX_BATCH: usize = 128;

/// Sends queued beyond this wait for room (back-pressure on the handlers).
const QUEUE_DEPTH: usize = 4096;

/// The default time a batch has, from asking for a connection to its commit.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// A send that passed every check needing no database.
#[derive(Debug, Clone)]
pub struct Pending {
    pub organization_id: Uuid,
    pub auth: AuthUser,
    pub conversation_id: Uuid,
    pub client_message_id: Uuid,
    pub key_generation: i32,
    pub ciphertext: Vec<u8>,
    pub reply_to_id: Option<Uuid>,
    /// Distinct, at most `attachments::MAX_PER_MESSAGE`.
    pub attachment_ids: Vec<Uuid>,
}

/// What happened to a stored send.
#[derive(Debug)]
pub enum Stored {
    /// Written now, and published by the writer.
    Created(Message),
    /// A retry: this device had already sent this client message id; here is what was stored.
    Existing(Message),
}

struct Job {
    send: Pending,
    reply: oneshot::Sender<ApiResult<Stored>>,
}

/// The writers' queues, which the send handlers share.
#[derive(Clone)]
pub struct SendQueue {
    writers: Arc<[mpsc::Sender<Job>]>,
    pub stats: Arc<BatchStats>,
}

/// Counted for `/metrics`: their ratio is the mean batch size.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Calls to `conclave_send_messages` (retries of a failed batch's sends included).
    pub batches: AtomicU64,
    /// Sends those calls carried.
    pub sends: AtomicU64,
}

impl SendQueue {
    /// Starts `writers` writer tasks on `db`; they stop when the last handle is dropped. Each
    /// publishes what its batch stored through `publisher` before answering the handlers.
    /// A batch not stored within `deadline` is abandoned (see the module's documentation).
    pub fn start(db: PgPool, publisher: Publisher, writers: usize, deadline: Duration) -> Self {
        let stats = Arc::new(BatchStats::default());
        let writers = (0..writers.max(1))
            .map(|_| {
                let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(writer(db.clone(), publisher.clone(), queue, stats.clone(), deadline));
                jobs
            })
            .collect();
        Self { writers, stats }
    }

    /// Queues a send with its conversation's writer and waits until it is stored or refused.
    pub async fn submit(&self, send: Pending) -> ApiResult<Stored> {
        let (reply, answer) = oneshot::channel();
        let writer = &self.writers[writer_for(send.conversation_id, self.writers.len())];
        writer.send(Job { send, reply }).await.map_err(|_| shutting_down())?;
        answer.await.map_err(|_| ApiError::internal())?
    }
}

/// The writer serving a conversation: always the same one for a given number of writers.
fn writer_for(conversation_id: Uuid, writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    // UUIDv7 bytes are a timestamp and a counter as much as randomness: hash them all.
    let mut hasher = std::hash::DefaultHasher::new();
    conversation_id.hash(&mut hasher);
    (hasher.finish() % writers.max(1) as u64) as usize
}

async fn writer(
    db: PgPool,
    publisher: Publisher,
    mut queue: mpsc::Receiver<Job>,
    stats: Arc<BatchStats>,
    deadline: Duration,
) {
    // Batches are published and answered by a task of their own, in the order they were stored,
    // so that the writer takes the next batch while Redis takes the last one.
    let (announce, announcements) = mpsc::channel(ANNOUNCE_DEPTH);
    tokio::spawn(announcer(publisher, announcements));
    let mut link = Link::new(db);
    loop {
        let next = match link.held {
            // Kept while sends keep coming; given back to the pool once the queue has been
            // empty for `KEEP_CONNECTION`.
            Some(_) => match tokio::time::timeout(KEEP_CONNECTION, queue.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    link.held = None;
                    continue;
                }
            },
            None => queue.recv().await,
        };
        let Some(first) = next else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (sends, replies): (Vec<Pending>, Vec<_>) = batch.into_iter().map(|job| (job.send, job.reply)).unzip();
        let answers = write_batch(&mut link, &sends, &stats, deadline).await;
        if announce.send(Announcement { sends, replies, answers }).await.is_err() {
            break;
        }
    }
}

/// A stored batch on its way to Redis and to its handlers.
struct Announcement {
    sends: Vec<Pending>,
    replies: Vec<oneshot::Sender<ApiResult<Stored>>>,
    answers: Vec<ApiResult<Stored>>,
}

/// Publishes each batch, then answers its handlers, one batch after the other.
async fn announcer(publisher: Publisher, mut batches: mpsc::Receiver<Announcement>) {
    while let Some(Announcement { sends, replies, answers }) = batches.recv().await {
        // Published in queue order (which is each conversation's sequence order), rather than
        // by each handler in whatever order they wake up: out of order, every member's socket
        // would see a gap and fill it from the database. A send found stored already is
        // published again: it may be one whose batch committed just after its deadline
        // (answered 503, never published), and a listener drops a message at or below its cursor.
        let created: Vec<LiveEvent> = sends
            .iter()
            .zip(&answers)
            .filter_map(|(send, answer)| match answer {
                Ok(Stored::Created(message) | Stored::Existing(message)) => Some(LiveEvent::message(
                    send.organization_id,
                    message.conversation_id,
                    message.seq,
                    ServerFrame::MessageCreated { message: message.clone() },
                )),
                _ => None,
            })
            .collect();
        publisher.publish(&created).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// Stores `sends` as one batch (or a few: see `parts`), or, when a batch fails as a whole,
/// each of its sends on its own; one answer per send, in order. Each call to the database has
/// `deadline`.
pub async fn write_batch(
    link: &mut Link,
    sends: &[Pending],
    stats: &BatchStats,
    deadline: Duration,
) -> Vec<ApiResult<Stored>> {
    let mut answers = Vec::with_capacity(sends.len());
    for part in parts(sends) {
        answers.extend(write_part(link, &sends[part], stats, deadline).await);
    }
    answers
}

/// Consecutive parts of a batch in which no two sends name the same attachment. Within one call
/// the database gives a contested attachment to the first send naming it whatever that send's
/// outcome, where sent one after the other the first would claim it only if it was stored; the
/// second send therefore starts the next part, which is written after the first.
fn parts(sends: &[Pending]) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut named = std::collections::HashSet::new();
    for (i, send) in sends.iter().enumerate() {
        if send.attachment_ids.iter().any(|id| named.contains(id)) {
            parts.push(start..i);
            start = i;
            named.clear();
        }
        named.extend(send.attachment_ids.iter().copied());
    }
    parts.push(start..sends.len());
    parts
}

async fn write_part(
    link: &mut Link,
    sends: &[Pending],
    stats: &BatchStats,
    deadline: Duration,
) -> Vec<ApiResult<Stored>> {
    let counted = |n: usize| {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.sends.fetch_add(n as u64, Ordering::Relaxed);
    };
    counted(sends.len());
    match store(link, sends, deadline).await {
        Ok(answers) => answers,
        // The database did not answer in time, or no connection was to be had: one by one
        // would wait as long again for each send.
        Err(error) if timed_out(&error) => sends.iter().map(|_| Err(unanswered(&error))).collect(),
        Err(error) if sends.len() > 1 => {
            tracing::warn!(%error, sends = sends.len(), "a send batch failed as a whole; retrying its sends one by one");
            // The retries share one more deadline: each its own would let a database that stops
            // answering hold the writer for a deadline per send.
            let until = Instant::now() + deadline;
            let mut answers = Vec::with_capacity(sends.len());
            for send in sends {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    answers.push(Err(busy()));
                    continue;
                }
                counted(1);
                answers.push(match store(link, std::slice::from_ref(send), left).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(ApiError::internal())),
                    Err(error) if timed_out(&error) => Err(unanswered(&error)),
                    Err(error) => Err(ApiError::from(error)),
                });
            }
            answers
        }
        Err(error) => vec![Err(ApiError::from(error))],
    }
}

/// Whether a batch failed for want of an answer in time (rather than with one).
fn timed_out(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
        _ => false,
    }
}

/// The answer to each send of a batch that timed out: retryable, and perhaps stored already.
fn unanswered(error: &sqlx::Error) -> ApiError {
    tracing::warn!(%error, "a send batch got no answer in time");
    busy()
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::DatabaseBusy,
        "the database did not answer in time; retry with the same client_message_id shortly",
    )
    .retry_after(1)
}

/// Stores `sends` in one call and one transaction; one answer per send, in order. The whole
/// call, a connection included, has `deadline`; past it the connection is closed rather than
/// returned to the pool (it may be one a partition left silent) and the call fails with a
/// `TimedOut` I/O error (or `PoolTimedOut` when no connection came).
pub async fn store(
    link: &mut Link,
    sends: &[Pending],
    deadline: Duration,
) -> Result<Vec<ApiResult<Stored>>, sqlx::Error> {
    let started = Instant::now();
    let conn = link.connection(deadline).await?;
    let column = |f: fn(&Pending) -> Uuid| sends.iter().map(f).collect::<Vec<_>>();
    let (mut attachment_entries, mut attachment_ids) = (Vec::new(), Vec::new());
    for (n, send) in sends.iter().enumerate() {
        for id in &send.attachment_ids {
            attachment_entries.push(n as i32 + 1);
            attachment_ids.push(*id);
        }
    }
    let query = sqlx::query!(
        r#"SELECT entry AS "entry!", outcome AS "outcome!", current_generation, must_rotate, lifetime_seconds,
                  message_id, message_seq, message_sender_user_id, message_key_generation,
                  message_ciphertext, message_reply_to_id, message_created_at, message_edited_at, message_deleted_at
             FROM conclave_send_messages($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#,
        &column(|s| s.organization_id),
        &column(|s| s.auth.user_id),
        &column(|s| s.auth.session_id),
        &column(|s| s.auth.device_id),
        &column(|s| s.conversation_id),
        &column(|s| s.client_message_id),
        &sends.iter().map(|s| s.key_generation).collect::<Vec<_>>(),
        &sends.iter().map(|s| s.ciphertext.clone()).collect::<Vec<_>>(),
        &sends.iter().map(|s| s.reply_to_id).collect::<Vec<_>>() as &[Option<Uuid>],
        &attachment_entries,
        &attachment_ids,
    );
    let rows =
        match tokio::time::timeout(deadline.saturating_sub(started.elapsed()), query.fetch_all(&mut **conn)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                // Back to the pool, whose health check decides whether it is kept.
                link.held = None;
                return Err(error);
            }
            Err(_) => {
                // Closed without a goodbye: on a silent connection even that would wait.
                if let Some(conn) = link.held.take() {
                    drop(conn.detach());
                }
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the database within {} ms", deadline.as_millis()),
                )));
            }
        };
    let mut answers: Vec<Option<ApiResult<Stored>>> = (0..sends.len()).map(|_| None).collect();
    for row in rows {
        let index = usize::try_from(row.entry - 1).ok().filter(|i| *i < sends.len());
        let Some(index) = index else { continue };
        let send = &sends[index];
        let message = || -> ApiResult<Message> {
            Ok(Message {
                id: row.message_id.ok_or_else(ApiError::internal)?,
                conversation_id: send.conversation_id,
                seq: row.message_seq.ok_or_else(ApiError::internal)?,
                sender_user_id: row.message_sender_user_id,
                sender_device_id: Some(send.auth.device_id),
                client_message_id: send.client_message_id,
                key_generation: row.message_key_generation.ok_or_else(ApiError::internal)?,
                ciphertext: row.message_ciphertext.clone(),
                reply_to_id: row.message_reply_to_id,
                created_at: row.message_created_at.ok_or_else(ApiError::internal)?,
                edited_at: row.message_edited_at,
                deleted_at: row.message_deleted_at,
            })
        };
        answers[index] = Some(match row.outcome.as_str() {
            "created" => message().map(Stored::Created),
            "existing" => message().map(Stored::Existing),
            "session_revoked" => Err(session_revoked()),
            "no_organization" => Err(ApiError::not_found("organization")),
            "session_expired_by_organization" => {
                Err(crate::context::session_expired_by_organization(row.lifetime_seconds))
            }
            "totp_required_by_organization" => Err(crate::context::totp_required_by_organization()),
            "no_conversation" => Err(ApiError::not_found("conversation")),
            "generation" => crate::context::check_key_generation(
                row.current_generation.unwrap_or_default(),
                row.must_rotate.unwrap_or_default(),
                send.key_generation,
            )
            .and_then(|()| Err(ApiError::internal())),
            "unknown_attachment" => Err(crate::attachments::unknown_attachment()),
            // Another conversation's message, another organization's, or none: one answer.
            "unknown_reply" => Err(ApiError::not_found("replied-to message")),
            other => {
                tracing::error!(outcome = other, "conclave_send_messages answered an unknown outcome");
                Err(ApiError::internal())
            }
        });
    }
    Ok(answers.into_iter().map(|answer| answer.unwrap_or_else(|| Err(ApiError::internal()))).collect())
}

fn shutting_down() -> ApiError {
    ApiError::new(ErrorCode::DatabaseBusy, "the server is shutting down, try again shortly").retry_after(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_always_has_the_same_writer_and_conversations_spread_over_all() {
        let ids: Vec<Uuid> = (0..400).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            assert_eq!(writer_for(*id, 4), writer_for(*id, 4));
            assert_eq!(writer_for(*id, 1), 0);
        }
        let mut used = [0usize; 4];
        for id in &ids {
            used[writer_for(*id, 4)] += 1;
        }
        assert!(used.iter().all(|n| *n > 40), "{used:?}");
    }
}
