//! The webhook event catalogue, and the JSON bodies of the webhook delivery log
//! (`/v1/organizations/{org}/webhooks/{endpoint}/deliveries`, docs/webhooks.md): what
//! organization admins see of each delivery, never its payload's meaning beyond ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The webhook event catalogue (docs/webhooks.md has each payload's JSON schema): what the data
/// plane delivers and what a WebhookEndpoint's `eventTypes` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    ConversationCreated,
    MemberJoined,
    MemberLeft,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    PrivacyRequestFiled,
    CallStarted,
    CallEnded,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 9] = [
        Self::ConversationCreated,
        Self::MemberJoined,
        Self::MemberLeft,
        Self::MessageCreated,
        Self::MessageEdited,
        Self::MessageDeleted,
        Self::PrivacyRequestFiled,
        Self::CallStarted,
        Self::CallEnded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConversationCreated => "conversation.created",
            Self::MemberJoined => "member.joined",
            Self::MemberLeft => "member.left",
            Self::MessageCreated => "message.created",
            Self::MessageEdited => "message.edited",
            Self::MessageDeleted => "message.deleted",
            Self::PrivacyRequestFiled => "privacy_request.filed",
            Self::CallStarted => "call.started",
            Self::CallEnded => "call.ended",
        }
    }

    /// Every type's name, in [`Self::ALL`]'s order.
    pub const NAMES: [&'static str; 9] = {
        let mut names = [""; 9];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].as_str();
            i += 1;
        }
        names
    };
}

/// One delivery (an event for one endpoint) and how its attempts went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    /// Also the `webhook-id` header the receiver got.
    pub id: Uuid,
    pub event_type: String,
    /// `pending`, `sending`, `delivered`, `failed` (will be retried) or `dead` (given up).
    pub status: String,
    pub attempts: i32,
    /// The HTTP status of the last attempt, if the receiver answered.
    pub last_status_code: Option<i32>,
    /// How long the last attempt took, in milliseconds.
    pub last_latency_ms: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct WebhookAttempt {
    pub attempted_at: DateTime<Utc>,
    /// `succeeded` (a 2xx), `failed` (another status, or no answer) or `refused` (the address
    /// guard stopped it before any connection).
    pub status: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// How long the attempt took, in milliseconds (none when no call was made).
    pub latency_ms: Option<i32>,
    pub error: Option<String>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct WebhookDeliveryPage {
    pub deliveries: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}
