//! WebSocket frames (`GET /v1/ws`, `docs/protocol.md`, "WebSocket protocol").
//!
//! Every frame is a JSON object `{"type": "...", ...}` tagged by `type`. Clients must ignore
//! frame types they do not know: new kinds (reactions, pins, typing, presence, call signalling)
//! are added without a version bump; a breaking change would be `/v2/ws`.

use crate::api::{Member, Message};
use crate::notifications::Profile;
use crate::rich::{Pin, Presence, PresenceStatus, Reaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Sent by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// First frame, optional: the last sequence number seen per conversation. The server sends
    /// every newer message from the database (in order, without duplicates) before live ones.
    Resume { cursors: BTreeMap<Uuid, i64> },
    /// Application-level heartbeat (WebSocket pings also work).
    Ping,
    /// The user is typing in a conversation; members see `typing` for a few seconds. Send it
    /// again every few seconds while typing continues.
    Typing { conversation_id: Uuid },
    /// The client's own view of its user: `online` (active) or `idle`. A socket starts online.
    Presence { status: PresenceStatus },
}

/// Sent by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The socket is authenticated and subscribed.
    Ready {
        user_id: Uuid,
        device_id: Uuid,
        protocol_version: u32,
    },
    /// A resume has been answered: everything up to now was sent.
    Resumed {
        conversations: usize,
    },
    MessageCreated {
        message: Message,
    },
    MessageEdited {
        message: Message,
    },
    MessageDeleted {
        conversation_id: Uuid,
        message_id: Uuid,
        seq: i64,
    },
    ReceiptUpdated {
        conversation_id: Uuid,
        member: Member,
    },
    MemberAdded {
        conversation_id: Uuid,
        user_id: Uuid,
    },
    MemberRemoved {
        conversation_id: Uuid,
        user_id: Uuid,
    },
    /// A new key generation exists; fetch this device's wrap.
    KeyRotated {
        conversation_id: Uuid,
        generation: i32,
    },
    /// Sends are refused until someone uploads a new generation.
    RotationRequired {
        conversation_id: Uuid,
    },
    /// Retention removed the conversation's messages below `before_seq` (the conversation's
    /// `history_removed_before_seq`): delete the local copies too.
    HistoryRemoved {
        conversation_id: Uuid,
        before_seq: i64,
    },
    Pong,
    /// A frame the server could not accept.
    Error {
        code: String,
        message: String,
    },
    /// A member reacted to a message (the value is encrypted).
    ReactionAdded {
        reaction: Reaction,
    },
    /// A member took a reaction back.
    ReactionRemoved {
        conversation_id: Uuid,
        message_id: Uuid,
        user_id: Uuid,
        #[serde(with = "crate::b64")]
        value_tag: [u8; 32],
    },
    MessagePinned {
        pin: Pin,
    },
    MessageUnpinned {
        conversation_id: Uuid,
        message_id: Uuid,
    },
    /// A call of the conversation started or changed (docs/calls.md): the whole call, every
    /// participant's state included. A device rings while `call.status` is `ringing` and its
    /// user's participant is `invited`, and stops when that changes: `joined` on another
    /// `device_id` is "answered elsewhere".
    CallUpdated {
        call: crate::calls::Call,
    },
    /// To one device in a call only: a signalling payload another participant device sent it
    /// (docs/calls.md). Open it with the conversation's MLS group and accept it only if the MLS
    /// sender is `from_device_id`.
    CallSignal {
        conversation_id: Uuid,
        call_id: Uuid,
        from_user_id: Uuid,
        from_device_id: Uuid,
        key_generation: i32,
        #[serde(with = "crate::b64")]
        ciphertext: Vec<u8>,
    },
    /// A member is typing; forget it after `expires_in_ms` unless another arrives.
    Typing {
        conversation_id: Uuid,
        user_id: Uuid,
        expires_in_ms: u32,
    },
    /// A member of a conversation this socket receives changed presence. A user sharing several
    /// conversations with the reader may arrive once per conversation: the latest wins.
    Presence {
        conversation_id: Uuid,
        presence: Presence,
    },
    /// A member of a conversation this socket receives changed their profile. Like presence, it
    /// may arrive once per shared conversation.
    ProfileUpdated {
        conversation_id: Uuid,
        profile: Profile,
    },
    /// Sent to the user's own sockets only: their unread count of a conversation changed because
    /// their read cursor moved (on any of their devices). Messages from others arriving as
    /// `message_created` add one each without this frame.
    UnreadChanged {
        organization_id: Uuid,
        conversation_id: Uuid,
        unread: i64,
        organization_unread: i64,
    },
}

/// WebSocket close codes the server uses (4000-4999 are the application's).
pub mod close {
    /// The device was revoked or the session ended.
    pub const REVOKED: u16 = 4001;
    /// The client did not keep up; reconnect and resume from its last cursor.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// No heartbeat within the timeout.
    pub const TIMEOUT: u16 = 4009;
    /// The server is shutting down; reconnect (to another replica).
    pub const GOING_AWAY: u16 = 1001;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_tagged_by_type() {
        let frame: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).expect("ping");
        assert_eq!(frame, ClientFrame::Ping);
        let id = Uuid::nil();
        let json = serde_json::to_value(ServerFrame::RotationRequired { conversation_id: id }).expect("json");
        assert_eq!(json["type"], "rotation_required");
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"dance"}"#).is_err());
    }
}
