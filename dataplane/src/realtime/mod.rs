//! Real-time fan-out, the plumbing under the WebSocket feature (`crate::websocket`): events
//! published through Redis so that a message sent on any replica reaches sockets on every
//! replica, and the hub that routes them to the sockets this replica holds.
//!
//! PostgreSQL is the record and Redis only the fast path. Each socket remembers the last
//! sequence number it sent per conversation; a gap (a publish that never arrived) is filled from
//! the database before the next message goes out, a reconnect to Redis triggers the same
//! back-fill for every socket, and a client that reconnects sends its cursors and gets
//! everything it missed. So a lost publish, a Redis restart or a replica crash loses nothing.
//!
//! The publish is one `PUBLISH <namespace>:events` per event, whatever the number of members;
//! each replica routes it to the sockets it holds through an in-memory index by conversation.

pub mod hub;
mod subscriber;

pub use hub::Hub;
pub use subscriber::spawn as spawn_subscriber;

use crate::AppState;
use conclave_protocol::events::ServerFrame;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// An event for the members of one conversation, as published to Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveEvent {
    #[serde(rename = "o")]
    pub organization_id: Uuid,
    #[serde(rename = "c")]
    pub conversation_id: Uuid,
    /// For messages: the sequence number, so sockets can drop duplicates and detect gaps.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// A membership change: (added?, user). Sockets of that user start or stop receiving the
    /// conversation's events.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<(bool, Uuid)>,
    /// For one user only (their unread counts): only that user's sockets in the conversation
    /// receive it, not the other members'.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Uuid>,
    /// With `user`: for that one device of theirs only (call signalling).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Uuid>,
    #[serde(rename = "f")]
    pub frame: ServerFrame,
}

impl LiveEvent {
    pub fn frame(organization_id: Uuid, conversation_id: Uuid, frame: ServerFrame) -> Self {
        Self { organization_id, conversation_id, seq: None, membership: None, user: None, device: None, frame }
    }

    pub fn message(organization_id: Uuid, conversation_id: Uuid, seq: i64, frame: ServerFrame) -> Self {
        Self { seq: Some(seq), ..Self::frame(organization_id, conversation_id, frame) }
    }

    /// A frame for `user`'s own sockets that receive the conversation.
    pub fn for_user(organization_id: Uuid, conversation_id: Uuid, user: Uuid, frame: ServerFrame) -> Self {
        Self { user: Some(user), ..Self::frame(organization_id, conversation_id, frame) }
    }

    /// A frame for one device of `user` that receives the conversation.
    pub fn for_device(
        organization_id: Uuid,
        conversation_id: Uuid,
        (user, device): (Uuid, Uuid),
        frame: ServerFrame,
    ) -> Self {
        Self { device: Some(device), ..Self::for_user(organization_id, conversation_id, user, frame) }
    }

    pub fn member_added(organization_id: Uuid, conversation_id: Uuid, user_id: Uuid) -> Self {
        Self {
            membership: Some((true, user_id)),
            ..Self::frame(organization_id, conversation_id, ServerFrame::MemberAdded { conversation_id, user_id })
        }
    }

    pub fn member_removed(organization_id: Uuid, conversation_id: Uuid, user_id: Uuid) -> Self {
        Self {
            membership: Some((false, user_id)),
            ..Self::frame(organization_id, conversation_id, ServerFrame::MemberRemoved { conversation_id, user_id })
        }
    }
}

/// What a socket receives: the event and its frame, serialised once for every socket.
#[derive(Debug)]
pub struct Delivery {
    pub organization_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: Option<i64>,
    pub membership: Option<(bool, Uuid)>,
    pub user: Option<Uuid>,
    pub device: Option<Uuid>,
    /// A call event (`call_updated`, `call_signal`): not for bots without `calls:read`.
    pub call: bool,
    pub text: Arc<str>,
}

/// The channel device revocations are published on (every replica closes the device's sockets).
pub fn revocations_channel(namespace: &str) -> String {
    format!("{namespace}:revocations")
}

pub fn events_channel(namespace: &str) -> String {
    format!("{namespace}:events")
}

/// Publishes after the transaction committed. A failure is logged, not returned: the write is
/// already the record, and sockets recover it (gap detection, resync on reconnect, resume).
pub async fn publish(state: &AppState, event: LiveEvent) {
    state.publisher.publish(std::slice::from_ref(&event)).await;
}

/// The longest a publish may take. A send writer's batches are published one after the other
/// and each is answered only after its publish, so a Redis that is down (its client then waits
/// while it reconnects, seconds) would otherwise hold every send for as long: Redis is a fast path, not the record, and sockets
/// back-fill what was not published (tests/faults.rs measures this).
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// Publishes events to every replica's sockets.
#[derive(Clone)]
pub struct Publisher {
    redis: redis::aio::ConnectionManager,
    channel: Arc<str>,
    hub: Arc<Hub>,
}

impl Publisher {
    pub fn new(redis: redis::aio::ConnectionManager, namespace: &str, hub: Arc<Hub>) -> Self {
        Self { redis, channel: events_channel(namespace).into(), hub }
    }

    /// One pipelined round trip for all of `events`, published in the order given: a batch of
    /// sends publishes each conversation's messages in sequence order, so sockets see no gap
    /// they would have to fill from the database. Failures are logged, not returned (see
    /// [`publish`]).
    pub async fn publish(&self, events: &[LiveEvent]) {
        if events.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for event in events {
            let Ok(payload) = serde_json::to_string(event) else { continue };
            pipe.cmd("PUBLISH").arg(&*self.channel).arg(payload).ignore();
        }
        let mut redis = self.redis.clone();
        match tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut redis)).await {
            Ok(Ok(())) => {
                self.hub.stats.published.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, events = events.len(), "could not publish events; sockets will back-fill")
            }
            Err(_) => {
                tracing::warn!(events = events.len(), "Redis did not take the events in time; sockets will back-fill")
            }
        }
    }
}

/// Published frames are decoded once per replica into a [`Delivery`] shared by its sockets.
pub fn delivery_from(event: LiveEvent) -> Option<Delivery> {
    let text: Arc<str> = serde_json::to_string(&event.frame).ok()?.into();
    Some(Delivery {
        organization_id: event.organization_id,
        conversation_id: event.conversation_id,
        seq: event.seq,
        membership: event.membership,
        user: event.user,
        device: event.device,
        call: matches!(event.frame, ServerFrame::CallUpdated { .. } | ServerFrame::CallSignal { .. }),
        text,
    })
}
