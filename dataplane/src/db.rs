//! Transactions that carry the tenant context (the organization and user that row-level security
//! filters by). Handlers that read or write tenant rows open them here, most through
//! [`crate::context::member_tx`], so row-level security sees the organization the handler
//! checked. The exceptions set the context themselves, inside SECURITY DEFINER functions
//! documented in their migrations (the send batch, outbox claims, bot token lookup).

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
