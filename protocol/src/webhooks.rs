//! JSON bodies of the webhook delivery log (`/v1/organizations/{org}/webhooks/{endpoint}/deliveries`,
//! docs/webhooks.md): what organization admins see of each delivery, never its payload's meaning
//! beyond ids.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct WebhookDeliveryPage {
    pub deliveries: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}
