//! Epochs (what protocol v1 called key generations): the member devices a commit must account
//! for, the rule that a commit opens the next epoch, why an epoch was opened, and the commit a
//! removal or revocation makes due. The server never holds a key: MLS commits are opaque to it
//! (`commits.rs`).

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::context::{Seat, seat};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails};
use crate::extract::ApiPath;
use axum::extract::State;
use conclave_protocol::api::MemberDevice;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(devices))
}

/// The active devices of the current members: exactly the leaves the conversation's group must hold.
pub async fn member_devices(conn: &mut PgConnection, conversation_id: Uuid) -> ApiResult<Vec<MemberDevice>> {
    let rows = sqlx::query!(
        "SELECT d.user_id, d.id, d.ed25519_public_key, d.credential
           FROM conversation_members m JOIN devices d ON d.user_id = m.user_id AND d.revoked_at IS NULL
          WHERE m.conversation_id = $1
          ORDER BY d.user_id, d.id",
        conversation_id
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(MemberDevice {
                user_id: r.user_id,
                device_id: r.id,
                ed25519_public_key: r.ed25519_public_key.try_into().map_err(|_| ApiError::internal())?,
                credential: r.credential.map(|c| c.try_into().map_err(|_| ApiError::internal())).transpose()?,
            })
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/devices",
    tag = "conversations",
    operation_id = "list_conversation_devices",
    responses((status = 200, description = "The devices a new generation must be wrapped for", body = Vec<MemberDevice>))
)]
async fn devices(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Vec<MemberDevice>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let devices = member_devices(&mut tx, conversation_id).await?;
    tx.commit().await?;
    Ok(axum::Json(devices))
}

/// Refuses a new epoch unless it is the conversation's next one. At or
/// below the current one: someone else rotated or committed first (a race the client resolves by
/// catching up). Beyond the next one: the client skipped one.
pub(crate) fn require_next(seat: &Seat, next: i32) -> ApiResult<()> {
    let current = seat.current_key_generation;
    if next == current.saturating_add(1) {
        return Ok(());
    }
    let code = if next <= current { ErrorCode::StaleGeneration } else { ErrorCode::NotNextGeneration };
    Err(ApiError::new(code, format!("the next generation is {}", current.saturating_add(1)))
        .with_details(ErrorDetails::KeyGeneration { current_key_generation: current }))
}

/// Why the next generation is made: the rotation the conversation requires, `manual` when none.
pub(crate) async fn required_reason(conn: &mut PgConnection, conversation_id: Uuid) -> ApiResult<RotationReason> {
    let stored = sqlx::query_scalar!("SELECT rotation_reason FROM conversations WHERE id = $1", conversation_id)
        .fetch_one(conn)
        .await?
        .unwrap_or_else(|| "manual".to_owned());
    RotationReason::parse(&stored).ok_or_else(ApiError::internal)
}

/// Makes `generation` the conversation's current one and clears any rotation it required.
pub(crate) async fn make_current(conn: &mut PgConnection, conversation_id: Uuid, generation: i32) -> ApiResult<()> {
    sqlx::query!(
        "UPDATE conversations SET current_key_generation = $2, rotation_required = false, rotation_reason = NULL WHERE id = $1",
        conversation_id,
        generation
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the conversation requiring a rotation for `reason` after a commit that did not make it.
pub(crate) async fn keep_required(
    conn: &mut PgConnection,
    conversation_id: Uuid,
    reason: RotationReason,
) -> ApiResult<()> {
    sqlx::query!(
        "UPDATE conversations SET rotation_required = true, rotation_reason = $2 WHERE id = $1",
        conversation_id,
        reason.as_str()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Why a key generation was made: the rotation that was required, or `manual` when a member
/// rotated without being asked (`initial` for a conversation's first generation).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    Initial,
    MemberAdded,
    MemberLeft,
    MemberRemoved,
    DeviceRevoked,
    Scheduled,
    Manual,
}

impl RotationReason {
    const ALL: [Self; 7] = [
        Self::Initial,
        Self::MemberAdded,
        Self::MemberLeft,
        Self::MemberRemoved,
        Self::DeviceRevoked,
        Self::Scheduled,
        Self::Manual,
    ];

    /// The word stored in `conversations.rotation_reason` and `conversation_encryption_keys.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::MemberAdded => "member_added",
            Self::MemberLeft => "member_left",
            Self::MemberRemoved => "member_removed",
            Self::DeviceRevoked => "device_revoked",
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

/// After a device is revoked: every conversation whose current generation that device holds
/// needs a new one. Runs inside the revocation's transaction; returns the conversations.
pub async fn require_rotation(conn: &mut PgConnection, device_id: Uuid) -> ApiResult<Vec<(Uuid, Uuid)>> {
    let rows = sqlx::query!(
        r#"SELECT organization_id AS "organization_id!", conversation_id AS "conversation_id!"
             FROM conclave_require_rotation_for_device($1)"#,
        device_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.organization_id, r.conversation_id)).collect())
}
