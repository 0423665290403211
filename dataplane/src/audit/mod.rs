//! Writing the audit trail. Entries are appended inside the transaction of the action they
//! record, so an action and its audit entry commit or vanish together.

use serde_json::Value;
use sqlx::PgConnection;
use std::net::IpAddr;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub enum Actor {
    User {
        user_id: Uuid,
        device_id: Option<Uuid>,
    },
    /// The data plane itself, on nobody's request (the retention sweep).
    System,
}

impl Actor {
    /// The signed-in user acting from their session's device.
    pub fn of(auth: crate::context::session::AuthUser) -> Self {
        Self::User { user_id: auth.user_id, device_id: Some(auth.device_id) }
    }
}

pub struct Entry<'a> {
    /// `None` for account-level events (logins, password changes).
    pub organization_id: Option<Uuid>,
    pub actor: Actor,
    /// `domain.verb`, e.g. `auth.login_failed`.
    pub action: &'a str,
    pub target: Option<(&'a str, Uuid)>,
    pub ip: Option<IpAddr>,
    pub details: Value,
}

#[tracing::instrument(skip_all, fields(action = entry.action))]
pub async fn record(conn: &mut PgConnection, entry: Entry<'_>) -> Result<(), sqlx::Error> {
    let (kind, user, device) = match entry.actor {
        Actor::User { user_id, device_id } => ("user", Some(user_id), device_id),
        Actor::System => ("system", None, None),
    };
    sqlx::query!(
        "INSERT INTO audit_logs (organization_id, actor_kind, actor_user_id, actor_device_id, action, target_type, target_id, ip_address, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::inet, $9)",
        entry.organization_id,
        kind,
        user,
        device,
        entry.action,
        entry.target.map(|(t, _)| t),
        entry.target.map(|(_, id)| id),
        entry.ip.map(|ip| ip.to_string()),
        entry.details,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub mod trail;
