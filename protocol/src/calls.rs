//! Calls: their records and states, and the TURN credentials a device fetches before it
//! gathers ICE candidates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Short-lived credentials for the deployment's TURN servers, in the TURN REST API scheme that
/// coturn's `use-auth-secret` checks: `username` is `<expiry, unix seconds>:<user id>` and
/// `credential` is base64(HMAC-SHA1(shared secret, username)). Hand them to the WebRTC stack as
/// an `RTCIceServer` (`urls`, `username`, `credential`); fetch new ones before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TurnCredentials {
    /// `turn:` / `turns:` URIs (RFC 7065), as configured on the `DataPlane` resource.
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
    /// Seconds the credentials were issued for.
    pub ttl_seconds: i64,
    /// When the TURN server starts refusing them (the expiry in `username`).
    pub expires_at: DateTime<Utc>,
}

/// What a call carries. The server stores it and shows it in the ring; the media itself is
/// negotiated between the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Audio,
    Video,
    Screen,
}

/// `ringing` until a callee accepts, `active` while anyone is in it, then `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Ringing,
    Active,
    Ended,
}

/// How a call ended: `hangup` (it was answered, everyone left), `cancelled` (the caller gave up
/// before an answer), `declined` (every callee refused), `missed` (nobody answered in time),
/// `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Hangup,
    Cancelled,
    Declined,
    Missed,
    Failed,
}

/// A member's part in a call: `invited` (their devices ring), `joined` (on `device_id`), `left`,
/// `declined`, `missed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "text", rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    Invited,
    Joined,
    Left,
    Declined,
    Missed,
}

/// One member of the conversation in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CallParticipant {
    pub user_id: Uuid,
    /// The device they joined on (the last one, once they left); null while invited.
    pub device_id: Option<Uuid>,
    pub state: ParticipantState,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

/// A call and everyone in it: the record listed per conversation and the body of every
/// `call_updated` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Call {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub kind: CallKind,
    pub status: CallStatus,
    pub started_by: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    /// When the first callee accepted; null if nobody did.
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<EndReason>,
    pub participants: Vec<CallParticipant>,
}

/// `POST /v1/organizations/{org}/conversations/{conversation}/calls`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartCall {
    pub kind: CallKind,
}

/// Most bytes of one signalling payload (an SDP offer or answer is a few KiB, a candidate a few
/// hundred bytes; MLS adds about a hundred).
pub const MAX_SIGNAL_LEN: usize = 16 * 1024;

/// `POST .../calls/{call}/signal`: an opaque signalling payload (SDP offer or answer, ICE
/// candidates) for exactly one other device in the call. `ciphertext` is an MLS application
/// message of the conversation's group in epoch `key_generation`, like a message's: the server
/// checks that framing only, and relays it to `to_device_id` alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CallSignal {
    pub to_device_id: Uuid,
    pub key_generation: i32,
    #[serde(with = "crate::b64")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = Byte, content_encoding = "base64url"))]
    pub ciphertext: Vec<u8>,
}
