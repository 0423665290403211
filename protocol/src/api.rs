//! JSON bodies of the conversations and messages API (`docs/protocol.md`, "HTTP API").
//!
//! Requests reject unknown fields, so a client typo is an error rather than a silently ignored
//! option. Every byte field is base64url without padding ([`crate::b64`]).
//!
//! With the `utoipa` feature (the data plane's OpenAPI document) every type also derives
//! `utoipa::ToSchema`; byte fields are documented as strings with `format: byte` and
//! `contentEncoding: base64url`. The client builds without it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Direct (two people), group (invited members) or channel (named, joinable in its workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
    Channel,
}

/// `POST /v1/organizations/{org}/workspaces/{ws}/conversations`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    pub kind: ConversationKind,
    /// Channels only: a slug unique in the workspace.
    #[serde(default)]
    pub name: Option<String>,
    /// Other members besides the creator (exactly one for a direct conversation).
    #[serde(default)]
    pub member_user_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: Uuid,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    pub kind: ConversationKind,
    pub name: Option<String>,
    /// The generation new messages must use; 0 until the first key is uploaded.
    pub current_key_generation: i32,
    /// A member left or a device was revoked (or a member joined): the next sender must upload a
    /// new generation before sending.
    pub rotation_required: bool,
    /// The sequence number of the newest message.
    pub last_seq: i64,
    /// Retention removed the messages below this sequence number (a message under a legal hold
    /// may remain); 0 when nothing was removed. Clients delete their local copies below it too.
    #[serde(default)]
    pub history_removed_before_seq: i64,
    pub members: Vec<Member>,
    pub created_at: DateTime<Utc>,
}

/// An active device of a member, which the conversation's MLS group must hold a leaf for:
/// `GET .../conversations/{id}/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct MemberDevice {
    pub user_id: Uuid,
    pub device_id: Uuid,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url", min_length = 43, max_length = 43))]
    pub ed25519_public_key: [u8; 32],
    /// The device's credential under its user's identity key (protocol v2, 133 bytes; see
    /// [`crate::identity`]), once the device published it: what a client verifies the device with.
    #[serde(with = "crate::b64::option", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = Byte, content_encoding = "base64url", min_length = 178, max_length = 178))]
    pub credential: Option<[u8; crate::identity::CREDENTIAL_LEN]>,
}

/// `POST .../conversations/{id}/messages`. Retrying with the same `client_message_id` returns
/// the stored message (200) instead of storing it twice.
///
/// `ciphertext` is one MLS `PrivateMessage` (RFC 9420 section 6.3, TLS-encoded `MLSMessage`) of
/// content type `application`, for the conversation's group (group id = the conversation id's 16
/// bytes) in epoch `key_generation`, the conversation's current one. The server reads that framing
/// and nothing else (`invalid_mls_message` when it does not match); MLS authenticates the sender
/// to the group's members.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub client_message_id: Uuid,
    /// The MLS epoch the message is encrypted in.
    pub key_generation: i32,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url"))]
    pub ciphertext: Vec<u8>,
    #[serde(default)]
    pub reply_to_id: Option<Uuid>,
    /// Attachments this device uploaded to the conversation that the message carries (their
    /// keys are inside the encrypted content). Each becomes `attached` to the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_ids: Vec<Uuid>,
}

/// `PATCH .../messages/{id}`: the sender replaces the ciphertext with a new MLS application
/// message (in the current epoch) carrying the edited content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The MLS epoch the new ciphertext is encrypted in.
    pub key_generation: i32,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url"))]
    pub ciphertext: Vec<u8>,
}

/// A stored message. A deleted one keeps its place in the sequence with no content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub sender_user_id: Option<Uuid>,
    pub sender_device_id: Option<Uuid>,
    pub client_message_id: Uuid,
    pub key_generation: i32,
    /// The MLS `PrivateMessage`; absent once the message is deleted.
    #[serde(with = "crate::b64::option", default)]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = Byte, content_encoding = "base64url"))]
    pub ciphertext: Option<Vec<u8>>,
    pub reply_to_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// `GET .../messages?after_seq=N&limit=L` (ascending) or `?before_seq=N&limit=L` (descending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// More messages exist beyond this page in the direction asked.
    pub has_more: bool,
}

/// `POST .../conversations/{id}/receipts`: moves the caller's cursors forward (never back).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateReceipts {
    #[serde(default)]
    pub delivered_seq: Option<i64>,
    #[serde(default)]
    pub read_seq: Option<i64>,
}

/// `POST .../conversations/{id}/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: Uuid,
}

/// `POST .../conversations/{id}/invites`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// `None`: unlimited uses until it expires.
    #[serde(default)]
    pub max_uses: Option<i32>,
    /// Lifetime in seconds (at most 30 days).
    pub expires_in_seconds: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Invite {
    pub id: Uuid,
    /// Shown once; the server keeps its digest.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub max_uses: Option<i32>,
}

/// `POST /v1/organizations/{org}/conversation-invites/accept`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptInvite {
    pub token: String,
}
