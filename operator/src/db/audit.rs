//! The operator's entries in the audit trail (`actor_kind = 'operator'`).

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Appends an entry to the organization's chain (or the account-level chain for `None`). The
/// chain position and hash are set by the database's trigger.
pub async fn record(
    conn: &mut PgConnection,
    organization_id: Option<Uuid>,
    action: &str,
    target_type: &str,
    target_id: Uuid,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_logs (organization_id, actor_kind, action, target_type, target_id, details)
         VALUES ($1, 'operator', $2, $3, $4, $5)",
        organization_id,
        action,
        target_type,
        target_id,
        details
    )
    .execute(conn)
    .await?;
    Ok(())
}
