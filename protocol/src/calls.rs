//! Calls: the TURN credentials a device fetches before it gathers ICE candidates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
