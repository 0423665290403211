//! JSON bodies of the rich-messaging API: reactions, pins, attachments and presence
//! (`docs/protocol.md`, "Reactions, pins and attachments" and "Typing and presence").
//!
//! Like [`crate::api`], requests reject unknown fields and byte fields are base64url without
//! padding. The reaction value, the attachment's file key and its name never appear here: they
//! travel encrypted (the reaction's ciphertext, the message content of type `file`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST .../conversations/{c}/messages/{m}/reactions`: a reaction sealed under the current
/// generation (`reaction_aad` binds the conversation, generation, message and reacting user).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddReaction {
    pub key_generation: i32,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 16, max_length = 16))]
    pub nonce: [u8; 12],
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url"))]
    pub ciphertext: Vec<u8>,
    /// `HMAC-SHA256(tag key, message_id || user_id || value)`: one reaction per user and value.
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub value_tag: [u8; 32],
}

/// A stored reaction; the server attributes it to `user_id` from the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Reaction {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub user_id: Uuid,
    pub key_generation: i32,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 16, max_length = 16))]
    pub nonce: [u8; 12],
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url"))]
    pub ciphertext: Vec<u8>,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub value_tag: [u8; 32],
    pub created_at: DateTime<Utc>,
}

/// `POST .../conversations/{c}/pins`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PinMessage {
    pub message_id: Uuid,
}

/// A pinned message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Pin {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub pinned_by: Option<Uuid>,
    pub pinned_at: DateTime<Utc>,
}

/// An uploaded (encrypted) attachment. `message_id` is set once a message lists it in
/// `SendMessage.attachment_ids`; until then only its uploader can attach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Attachment {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub message_id: Option<Uuid>,
    pub uploader_user_id: Option<Uuid>,
    /// Size of the encrypted blob as stored, in bytes.
    pub size_bytes: i64,
    /// SHA-256 of the encrypted blob, lowercase hex.
    pub content_sha256: String,
    /// `stored` (uploaded, not yet in a message) or `attached`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Whether a user is reachable now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// A socket is open and its client says the user is active.
    Online,
    /// Sockets are open but every one of them reported `idle`.
    Idle,
    /// No live socket.
    Offline,
}

/// One user's presence: `GET /v1/organizations/{org}/presence?user_ids=...` and `presence`
/// frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Presence {
    pub user_id: Uuid,
    pub status: PresenceStatus,
    /// When a socket of the user last showed activity (kept for 7 days).
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_statuses_are_snake_case_and_requests_refuse_unknown_fields() {
        assert_eq!(serde_json::to_string(&PresenceStatus::Idle).expect("json"), r#""idle""#);
        let pin = serde_json::from_str::<PinMessage>(r#"{"message_id":"00000000-0000-0000-0000-000000000000"}"#);
        assert!(pin.is_ok());
        assert!(
            serde_json::from_str::<PinMessage>(r#"{"message_id":"00000000-0000-0000-0000-000000000000","x":1}"#)
                .is_err()
        );
    }
}
