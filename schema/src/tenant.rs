use sqlx::PgConnection;
use uuid::Uuid;

/// Who a transaction acts for. Row-level security reads these settings, so every data-plane
/// transaction starts by applying one, through [`TenantContext::apply`] and nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantContext {
    /// The organization whose rows the transaction may see and write.
    pub organization_id: Option<Uuid>,
    /// The authenticated user, for the few global-but-personal rows (own memberships, own
    /// account-level audit entries).
    pub user_id: Option<Uuid>,
}

impl TenantContext {
    pub fn organization(organization_id: Uuid) -> Self {
        Self { organization_id: Some(organization_id), user_id: None }
    }

    pub fn with_user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Sets the context for the rest of the current transaction (`set_config(.., true)`), so it
    /// can never leak to the next user of a pooled connection. Outside a transaction it would
    /// last for one statement only, which fails closed.
    pub async fn apply(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let organization = self.organization_id.map(|id| id.to_string()).unwrap_or_default();
        let user = self.user_id.map(|id| id.to_string()).unwrap_or_default();
        sqlx::query(
            "SELECT set_config('conclave.organization_id', $1, true), set_config('conclave.user_id', $2, true)",
        )
        .bind(organization)
        .bind(user)
        .execute(conn)
        .await?;
        Ok(())
    }
}
