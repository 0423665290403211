//! The sockets this replica holds, indexed by conversation and by user, and the routing of
//! events to them. A socket that cannot keep up is cut off (it reconnects and resumes) rather
//! than letting its queue grow without bound.

use super::Delivery;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Live events a socket may have queued before it counts as a slow consumer.
pub const QUEUE: usize = 1024;

#[derive(Debug)]
pub enum Control {
    /// Send `code`/`reason` as a close frame and end the socket.
    Close(u16, &'static str),
    /// Redis was reconnected: back-fill every conversation from the database.
    Resync,
}

struct Entry {
    user_id: Uuid,
    device_id: Uuid,
    live: mpsc::Sender<Arc<Delivery>>,
    control: mpsc::UnboundedSender<Control>,
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
        live: mpsc::Sender<Arc<Delivery>>,
        control: mpsc::UnboundedSender<Control>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        for conversation in conversations {
            inner.by_conversation.entry(conversation).or_default().insert(id);
        }
        inner.by_user.entry(user_id).or_default().insert(id);
        inner.sockets.insert(id, Entry { user_id, device_id, live, control });
        Registration { hub: self.clone(), id }
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
            match entry.live.try_send(delivery.clone()) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = entry.control.send(Control::Close(
                        conclave_protocol::events::close::SLOW_CONSUMER,
                        "too far behind; reconnect and resume",
                    ));
                    self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    slow.push(id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
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
            let _ = entry.control.send(Control::Close(conclave_protocol::events::close::REVOKED, "device revoked"));
            closed += 1;
        }
        closed
    }

    pub fn broadcast_control(&self, make: impl Fn() -> Control) {
        let inner = self.lock();
        for entry in inner.sockets.values() {
            let _ = entry.control.send(make());
        }
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
            text: "{}".into(),
        })
    }

    #[tokio::test]
    async fn an_event_for_one_user_reaches_that_users_sockets_only() {
        let hub = Arc::new(Hub::default());
        let conversation = Uuid::now_v7();
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (c1, _) = mpsc::unbounded_channel();
        let (c2, _) = mpsc::unbounded_channel();
        let _r1 = hub.register(me, Uuid::now_v7(), [conversation], tx1, c1);
        let _r2 = hub.register(other, Uuid::now_v7(), [conversation], tx2, c2);
        hub.dispatch(Arc::new(Delivery {
            organization_id: Uuid::nil(),
            conversation_id: conversation,
            seq: None,
            membership: None,
            user: Some(me),
            text: "{}".into(),
        }));
        assert!(rx1.try_recv().is_ok());
        assert!(rx2.try_recv().is_err());
    }

    #[tokio::test]
    async fn events_reach_the_sockets_of_their_conversation_only() {
        let hub = Arc::new(Hub::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (c1, _) = mpsc::unbounded_channel();
        let (c2, _) = mpsc::unbounded_channel();
        let _r1 = hub.register(Uuid::now_v7(), Uuid::now_v7(), [a], tx1, c1);
        let _r2 = hub.register(Uuid::now_v7(), Uuid::now_v7(), [b], tx2, c2);
        hub.dispatch(delivery(a, None));
        assert!(rx1.try_recv().is_ok());
        assert!(rx2.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_new_member_starts_receiving_and_a_removed_one_stops() {
        let hub = Arc::new(Hub::default());
        let (conversation, user) = (Uuid::now_v7(), Uuid::now_v7());
        let (tx, mut rx) = mpsc::channel(8);
        let (c, _) = mpsc::unbounded_channel();
        let _r = hub.register(user, Uuid::now_v7(), [], tx, c);
        hub.dispatch(delivery(conversation, None));
        assert!(rx.try_recv().is_err());
        hub.dispatch(delivery(conversation, Some((true, user))));
        assert!(rx.try_recv().is_ok(), "the member-added event itself");
        hub.dispatch(delivery(conversation, Some((false, user))));
        assert!(rx.try_recv().is_ok(), "the member-removed event itself");
        hub.dispatch(delivery(conversation, None));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_consumer_is_cut_off_instead_of_buffering_forever() {
        let hub = Arc::new(Hub::default());
        let conversation = Uuid::now_v7();
        let (tx, _rx) = mpsc::channel(2);
        let (c, mut control) = mpsc::unbounded_channel();
        let _r = hub.register(Uuid::now_v7(), Uuid::now_v7(), [conversation], tx, c);
        for _ in 0..3 {
            hub.dispatch(delivery(conversation, None));
        }
        assert!(matches!(control.try_recv(), Ok(Control::Close(4008, _))));
        assert_eq!(hub.stats.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(hub.stats.slow_consumers.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn dropping_a_registration_forgets_the_socket() {
        let hub = Arc::new(Hub::default());
        let (tx, _rx) = mpsc::channel(2);
        let (c, _) = mpsc::unbounded_channel();
        let registration = hub.register(Uuid::now_v7(), Uuid::now_v7(), [Uuid::now_v7()], tx, c);
        assert_eq!(hub.socket_count(), 1);
        drop(registration);
        assert_eq!(hub.socket_count(), 0);
        assert!(hub.lock().by_conversation.is_empty());
    }
}
