//! The sockets this replica holds, indexed by conversation and by user, and the routing of
//! events to them. A socket that cannot keep up is cut off (it reconnects and resumes) rather
//! than letting its queue grow without bound.

use super::Delivery;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use uuid::Uuid;

/// Live events a socket may have queued before it counts as a slow consumer.
pub const QUEUE: usize = 1024;

#[derive(Debug)]
pub enum Control {
    /// Send `code`/`reason` as a close frame and end the socket.
    Close(u16, &'static str),
    /// Redis was reconnected: back-fill every conversation from the database.
    Resync,
    /// The client has not been heard from for a heartbeat period: send it a ping.
    Ping,
    /// This socket's presence entry was missing or expired when the heartbeat renewed it: the
    /// user's status may have changed, tell the members if it has.
    PresenceRestored,
}

/// Monotonic milliseconds since the first call in this process.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// What the heartbeat (`crate::presence::spawn_heartbeat`) renews for one socket.
pub struct Beat {
    pub user_id: Uuid,
    /// The socket's presence connection id, and whether it says idle.
    pub connection: Uuid,
    pub idle: bool,
    pub mailbox: Arc<Mailbox>,
}

struct Entry {
    user_id: Uuid,
    device_id: Uuid,
    mailbox: Arc<Mailbox>,
}

/// A socket's inbox: its queue of live events (at most `capacity`) and at most one control
/// order, a close winning over a resync. One small allocation (about 150 bytes, the queue's
/// storage only once an event arrives) where a bounded and an unbounded tokio channel took about
/// 2 KiB per socket, most of it held while the socket is idle (docs/benchmarks.md).
pub struct Mailbox {
    capacity: usize,
    queue: Mutex<Queue>,
    live_ready: Notify,
    control_ready: Notify,
    /// When the client was last heard from (`now_ms`).
    heard_ms: AtomicU64,
}

#[derive(Default)]
struct Queue {
    live: VecDeque<Arc<Delivery>>,
    /// Pending orders, taken in this order: a close, a resync, a ping, a presence check.
    close: Option<(u16, &'static str)>,
    resync: bool,
    ping: bool,
    presence_restored: bool,
    /// The socket's presence connection (id, idle), once it has recorded itself.
    presence: Option<(Uuid, bool)>,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            queue: Mutex::default(),
            live_ready: Notify::new(),
            control_ready: Notify::new(),
            heard_ms: AtomicU64::new(now_ms()),
        }
    }

    /// The client sent something (any frame, a pong included).
    pub fn heard(&self) {
        self.heard_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The socket's presence connection, renewed by the heartbeat from now on (`None`: no longer).
    pub fn set_presence(&self, presence: Option<(Uuid, bool)>) {
        self.lock().presence = presence;
    }

    /// The socket's presence connection id, while the heartbeat should renew it.
    pub fn presence_connection(&self) -> Option<Uuid> {
        self.lock().presence.map(|(connection, _)| connection)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a live event; false when the queue is full.
    fn push_live(&self, delivery: Arc<Delivery>) -> bool {
        let mut queue = self.lock();
        if queue.live.len() >= self.capacity {
            return false;
        }
        queue.live.push_back(delivery);
        drop(queue);
        self.live_ready.notify_one();
        true
    }

    fn push_control(&self, control: Control) {
        let mut queue = self.lock();
        match control {
            Control::Close(code, reason) => {
                queue.close.get_or_insert((code, reason));
            }
            Control::Resync => queue.resync = true,
            Control::Ping => queue.ping = true,
            Control::PresenceRestored => queue.presence_restored = true,
        }
        drop(queue);
        self.control_ready.notify_one();
    }

    /// See [`Control::PresenceRestored`].
    pub fn push_presence_restored(&self) {
        self.push_control(Control::PresenceRestored);
    }

    pub fn try_live(&self) -> Option<Arc<Delivery>> {
        self.lock().live.pop_front()
    }

    pub fn try_control(&self) -> Option<Control> {
        let mut queue = self.lock();
        if let Some((code, reason)) = queue.close.take() {
            Some(Control::Close(code, reason))
        } else if std::mem::take(&mut queue.resync) {
            Some(Control::Resync)
        } else if std::mem::take(&mut queue.ping) {
            Some(Control::Ping)
        } else if std::mem::take(&mut queue.presence_restored) {
            Some(Control::PresenceRestored)
        } else {
            None
        }
    }

    /// The next live event (cancel-safe: nothing is taken until it is returned).
    pub async fn live(&self) -> Arc<Delivery> {
        loop {
            if let Some(delivery) = self.try_live() {
                return delivery;
            }
            self.live_ready.notified().await;
        }
    }

    /// The next control order (cancel-safe).
    pub async fn control(&self) -> Control {
        loop {
            if let Some(control) = self.try_control() {
                return control;
            }
            self.control_ready.notified().await;
        }
    }
}

#[derive(Default)]
struct Inner {
    sockets: HashMap<u64, Entry>,
    by_conversation: HashMap<Uuid, HashSet<u64>>,
    by_user: HashMap<Uuid, HashSet<u64>>,
}

#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// When the heartbeat's previous pass ran, plus one ([`now_ms`]; 0 before the first).
    previous_sweep_ms: AtomicU64,
    /// Running counts, read by the metrics endpoint.
    pub stats: HubStats,
}

/// Events and slow consumers since the process started (`crate::metrics` exports them).
#[derive(Debug, Default)]
pub struct HubStats {
    /// Events this replica published to Redis.
    pub published: AtomicU64,
    /// Events queued to a local socket (one per socket reached).
    pub delivered: AtomicU64,
    /// Sockets cut off for falling too far behind.
    pub slow_consumers: AtomicU64,
}

/// Unregisters its socket when dropped, however the socket task ends.
pub struct Registration {
    hub: Arc<Hub>,
    pub id: u64,
    /// Where the hub puts the socket's events and orders.
    pub mailbox: Arc<Mailbox>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(
        self: &Arc<Self>,
        user_id: Uuid,
        device_id: Uuid,
        conversations: impl IntoIterator<Item = Uuid>,
        capacity: usize,
    ) -> Registration {
        let mailbox = Arc::new(Mailbox::new(capacity));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        for conversation in conversations {
            inner.by_conversation.entry(conversation).or_default().insert(id);
        }
        inner.by_user.entry(user_id).or_default().insert(id);
        inner.sockets.insert(id, Entry { user_id, device_id, mailbox: mailbox.clone() });
        Registration { hub: self.clone(), id, mailbox }
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.sockets.remove(&id)
            && let Some(set) = inner.by_user.get_mut(&entry.user_id)
        {
            set.remove(&id);
            if set.is_empty() {
                inner.by_user.remove(&entry.user_id);
            }
        }
        inner.by_conversation.retain(|_, set| {
            set.remove(&id);
            !set.is_empty()
        });
    }

    /// Routes one event to every local socket of its conversation.
    pub fn dispatch(&self, delivery: Arc<Delivery>) {
        let mut inner = self.lock();
        let conversation = delivery.conversation_id;
        if let Some((true, user)) = delivery.membership {
            let sockets: Vec<u64> = inner.by_user.get(&user).map(|s| s.iter().copied().collect()).unwrap_or_default();
            inner.by_conversation.entry(conversation).or_default().extend(sockets);
        }
        let targets: Vec<u64> = match delivery.user {
            // The user's sockets; each forwards it only if it receives the conversation.
            Some(user) => inner.by_user.get(&user).map(|s| s.iter().copied().collect()).unwrap_or_default(),
            None => inner.by_conversation.get(&conversation).map(|s| s.iter().copied().collect()).unwrap_or_default(),
        };
        let mut slow = Vec::new();
        for id in targets {
            let Some(entry) = inner.sockets.get(&id) else { continue };
            if delivery.device.is_some_and(|device| device != entry.device_id) {
                continue;
            }
            if entry.mailbox.push_live(delivery.clone()) {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                entry.mailbox.push_control(Control::Close(
                    conclave_protocol::events::close::SLOW_CONSUMER,
                    "too far behind; reconnect and resume",
                ));
                self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                slow.push(id);
            }
        }
        if let Some((false, user)) = delivery.membership {
            let sockets: Vec<u64> = inner.by_user.get(&user).map(|s| s.iter().copied().collect()).unwrap_or_default();
            if let Some(set) = inner.by_conversation.get_mut(&conversation) {
                for id in sockets {
                    set.remove(&id);
                }
            }
        }
        for id in slow {
            if let Some(set) = inner.by_conversation.get_mut(&conversation) {
                set.remove(&id);
            }
        }
    }

    /// Closes every socket of a revoked device.
    pub fn close_device(&self, device_id: Uuid) -> usize {
        let inner = self.lock();
        let mut closed = 0;
        for entry in inner.sockets.values().filter(|e| e.device_id == device_id) {
            entry.mailbox.push_control(Control::Close(conclave_protocol::events::close::REVOKED, "device revoked"));
            closed += 1;
        }
        closed
    }

    pub fn broadcast_control(&self, make: impl Fn() -> Control) {
        let inner = self.lock();
        for entry in inner.sockets.values() {
            entry.mailbox.push_control(make());
        }
    }

    /// The heartbeat's pass over this replica's sockets: a socket whose client has been silent
    /// longer than `timeout` is told to close, one not heard from since the previous pass (or,
    /// at the first, for `ping_every`) to ping it; returns the presence entries to renew. One
    /// pass every `ping_every` replaces a timer per socket, which woke every idle socket once a
    /// period.
    ///
    /// "Since the previous pass" rather than "for `ping_every`": a pong answering this pass's
    /// ping arrives a little after it, so the next pass, a period later give or take the
    /// timer's jitter, finds the client heard from and leaves it alone. An idle client is
    /// therefore pinged every second pass, all of them in the same pass, and a client that sends
    /// anything between two passes is never pinged.
    pub fn sweep(&self, ping_every: std::time::Duration, timeout: std::time::Duration) -> Vec<Beat> {
        let now = now_ms();
        let (ping_every, timeout) = (ping_every.as_millis() as u64, timeout.as_millis() as u64);
        // Stored one past the pass's time, so that 0 means "no pass yet" even at the clock's 0.
        let previous = self.previous_sweep_ms.swap(now + 1, Ordering::Relaxed);
        // At the first pass, silent for `ping_every` (none can be, that early after the start).
        let cutoff = match previous {
            0 => now.checked_sub(ping_every),
            previous => Some(previous - 1),
        };
        let inner = self.lock();
        let mut beats = Vec::with_capacity(inner.sockets.len());
        for entry in inner.sockets.values() {
            let heard = entry.mailbox.heard_ms.load(Ordering::Relaxed);
            if now.saturating_sub(heard) > timeout {
                entry.mailbox.push_control(Control::Close(conclave_protocol::events::close::TIMEOUT, "no heartbeat"));
                continue;
            }
            if cutoff.is_some_and(|cutoff| heard <= cutoff) {
                entry.mailbox.push_control(Control::Ping);
            }
            if let Some((connection, idle)) = entry.mailbox.lock().presence {
                beats.push(Beat { user_id: entry.user_id, connection, idle, mailbox: entry.mailbox.clone() });
            }
        }
        beats
    }

    pub fn socket_count(&self) -> usize {
        self.lock().sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(conversation: Uuid, membership: Option<(bool, Uuid)>) -> Arc<Delivery> {
        Arc::new(Delivery {
            organization_id: Uuid::nil(),
            conversation_id: conversation,
            seq: None,
            membership,
            user: None,
            device: None,
            call: false,
            text: "{}".into(),
        })
    }

    #[tokio::test]
    async fn an_event_for_one_user_reaches_that_users_sockets_only() {
        let hub = Arc::new(Hub::default());
        let conversation = Uuid::now_v7();
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let r1 = hub.register(me, Uuid::now_v7(), [conversation], 4);
        let r2 = hub.register(other, Uuid::now_v7(), [conversation], 4);
        hub.dispatch(Arc::new(Delivery {
            organization_id: Uuid::nil(),
            conversation_id: conversation,
            seq: None,
            membership: None,
            user: Some(me),
            device: None,
            call: false,
            text: "{}".into(),
        }));
        assert!(r1.mailbox.try_live().is_some());
        assert!(r2.mailbox.try_live().is_none());
    }

    #[tokio::test]
    async fn events_reach_the_sockets_of_their_conversation_only() {
        let hub = Arc::new(Hub::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let r1 = hub.register(Uuid::now_v7(), Uuid::now_v7(), [a], 4);
        let r2 = hub.register(Uuid::now_v7(), Uuid::now_v7(), [b], 4);
        hub.dispatch(delivery(a, None));
        assert!(r1.mailbox.try_live().is_some());
        assert!(r2.mailbox.try_live().is_none());
    }

    #[tokio::test]
    async fn a_new_member_starts_receiving_and_a_removed_one_stops() {
        let hub = Arc::new(Hub::default());
        let (conversation, user) = (Uuid::now_v7(), Uuid::now_v7());
        let r = hub.register(user, Uuid::now_v7(), [], 8);
        hub.dispatch(delivery(conversation, None));
        assert!(r.mailbox.try_live().is_none());
        hub.dispatch(delivery(conversation, Some((true, user))));
        assert!(r.mailbox.try_live().is_some(), "the member-added event itself");
        hub.dispatch(delivery(conversation, Some((false, user))));
        assert!(r.mailbox.try_live().is_some(), "the member-removed event itself");
        hub.dispatch(delivery(conversation, None));
        assert!(r.mailbox.try_live().is_none());
    }

    #[tokio::test]
    async fn a_slow_consumer_is_cut_off_instead_of_buffering_forever() {
        let hub = Arc::new(Hub::default());
        let conversation = Uuid::now_v7();
        let r = hub.register(Uuid::now_v7(), Uuid::now_v7(), [conversation], 2);
        for _ in 0..3 {
            hub.dispatch(delivery(conversation, None));
        }
        assert!(matches!(r.mailbox.try_control(), Some(Control::Close(4008, _))));
        assert_eq!(hub.stats.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(hub.stats.slow_consumers.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn dropping_a_registration_forgets_the_socket() {
        let hub = Arc::new(Hub::default());
        let registration = hub.register(Uuid::now_v7(), Uuid::now_v7(), [Uuid::now_v7()], 2);
        assert_eq!(hub.socket_count(), 1);
        drop(registration);
        assert_eq!(hub.socket_count(), 0);
        assert!(hub.lock().by_conversation.is_empty());
    }

    #[tokio::test]
    async fn a_close_wins_over_a_resync_and_a_waiting_socket_wakes() {
        let hub = Arc::new(Hub::default());
        let r = hub.register(Uuid::now_v7(), Uuid::now_v7(), [], 2);
        let mailbox = r.mailbox.clone();
        let waiting = tokio::spawn(async move { mailbox.control().await });
        tokio::task::yield_now().await;
        hub.broadcast_control(|| Control::Resync);
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(woke, Ok(Ok(Control::Resync))));
        r.mailbox.push_control(Control::Close(4000, "closing"));
        r.mailbox.push_control(Control::Resync);
        r.mailbox.push_control(Control::Close(4001, "a second close"));
        assert!(matches!(r.mailbox.try_control(), Some(Control::Close(4000, _))), "the first close, first");
        assert!(matches!(r.mailbox.try_control(), Some(Control::Resync)));
        assert!(r.mailbox.try_control().is_none());
    }

    #[tokio::test]
    async fn the_sweep_pings_a_silent_client_and_closes_one_gone_quiet() {
        use std::time::Duration;
        let hub = Arc::new(Hub::default());
        let r = hub.register(Uuid::now_v7(), Uuid::now_v7(), [], 2);
        r.mailbox.set_presence(Some((Uuid::now_v7(), false)));
        // The first pass: just heard from, so no ping; the presence entry renewed.
        assert_eq!(hub.sweep(Duration::from_secs(20), Duration::from_secs(60)).len(), 1);
        assert!(r.mailbox.try_control().is_none());
        // Not heard from since that pass: pinged.
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(hub.sweep(Duration::from_secs(20), Duration::from_secs(60)).len(), 1);
        assert!(matches!(r.mailbox.try_control(), Some(Control::Ping)));
        // The pong comes: the next pass leaves the client alone, the one after pings again.
        tokio::time::sleep(Duration::from_millis(2)).await;
        r.mailbox.heard_ms.store(now_ms(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
        hub.sweep(Duration::from_secs(20), Duration::from_secs(60));
        assert!(r.mailbox.try_control().is_none(), "heard from since the previous pass");
        tokio::time::sleep(Duration::from_millis(2)).await;
        hub.sweep(Duration::from_secs(20), Duration::from_secs(60));
        assert!(matches!(r.mailbox.try_control(), Some(Control::Ping)));
        // Silent past the timeout: closed, and no longer renewed.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(hub.sweep(Duration::ZERO, Duration::from_millis(1)).is_empty());
        assert!(matches!(r.mailbox.try_control(), Some(Control::Close(4009, _))));
    }
}
