//! Transactions that carry the tenant context. Every handler that touches tenant rows opens its
//! transaction here, so row-level security sees the same organization the handler checked.

use crate::AppState;
use crate::error::ApiResult;
use conclave_schema::TenantContext;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// A transaction acting for `user_id` inside `organization_id`.
pub async fn tenant_tx(
    state: &AppState,
    organization_id: Uuid,
    user_id: Uuid,
) -> ApiResult<Transaction<'static, Postgres>> {
    let mut tx = state.db.begin().await?;
    TenantContext::organization(organization_id).with_user(user_id).apply(&mut tx).await?;
    Ok(tx)
}

/// A transaction acting for `user_id` with no organization: only their own memberships (and
/// through them, their organizations) are visible.
pub async fn user_tx(state: &AppState, user_id: Uuid) -> ApiResult<Transaction<'static, Postgres>> {
    let mut tx = state.db.begin().await?;
    TenantContext::default().with_user(user_id).apply(&mut tx).await?;
    Ok(tx)
}
