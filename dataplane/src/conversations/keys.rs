//! Key generations. The server never holds a conversation key: it stores each generation's
//! HPKE wraps, one per member device, and hands each device only its own.

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::context::{Seat, seat};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails};
use crate::extract::{ApiJson, ApiPath};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::api::{DeviceWrap, MemberDevice, UploadGeneration};
use conclave_protocol::events::ServerFrame;
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::BTreeSet;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(devices)).routes(routes!(my_wraps, upload))
}

/// The active devices of the current members: exactly what a new generation is wrapped for.
pub async fn member_devices(conn: &mut PgConnection, conversation_id: Uuid) -> ApiResult<Vec<MemberDevice>> {
    let rows = sqlx::query!(
        "SELECT d.user_id, d.id, d.x25519_public_key, d.ed25519_public_key, d.credential
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
                x25519_public_key: r.x25519_public_key.try_into().map_err(|_| ApiError::internal())?,
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

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/keys",
    tag = "conversations",
    operation_id = "upload_key_generation",
    request_body = UploadGeneration,
    responses(
        (status = 201, description = "The generation is current", body = GenerationUploaded),
        (status = 409, description = "`stale_generation`: someone else rotated first", body = crate::error::ErrorBody),
        (status = 422, description = "`wrap_set_mismatch` (naming the devices), `not_next_generation`", body = crate::error::ErrorBody),
    )
)]
async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<UploadGeneration>,
) -> ApiResult<(StatusCode, axum::Json<GenerationUploaded>)> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, true).await?;
    require_next(&seat, body.generation)?;
    let expected: BTreeSet<Uuid> =
        member_devices(&mut tx, conversation_id).await?.iter().map(|d| d.device_id).collect();
    let given: BTreeSet<Uuid> = body.wraps.iter().map(|w| w.device_id).collect();
    if given.len() != body.wraps.len() || given != expected {
        let missing = expected.difference(&given).copied().collect();
        let unexpected = given.difference(&expected).copied().collect();
        return Err(ApiError::new(
            ErrorCode::WrapSetMismatch,
            "a generation must be wrapped once for every active device of the current members, and no other",
        )
        .with_details(ErrorDetails::WrapSet {
            missing,
            unexpected,
            duplicates: given.len() != body.wraps.len(),
        }));
    }
    let reason = required_reason(&mut tx, conversation_id).await?;
    sqlx::query!(
        "INSERT INTO conversation_encryption_keys (organization_id, conversation_id, generation, created_by_device_id, reason)
         VALUES ($1, $2, $3, $4, $5)",
        organization_id,
        conversation_id,
        body.generation,
        auth.device_id,
        reason.as_str()
    )
    .execute(&mut *tx)
    .await?;
    let devices: Vec<Uuid> = body.wraps.iter().map(|w| w.device_id).collect();
    let encapsulated: Vec<Vec<u8>> = body.wraps.iter().map(|w| w.encapsulated_key.to_vec()).collect();
    let wrapped: Vec<Vec<u8>> = body.wraps.iter().map(|w| w.wrapped_key.to_vec()).collect();
    sqlx::query!(
        "INSERT INTO member_key_wraps (organization_id, conversation_id, generation, recipient_user_id, recipient_device_id, encapsulated_key, wrapped_key)
         SELECT $1, $2, $3, d.user_id, w.device_id, w.enc, w.wrapped
           FROM unnest($4::uuid[], $5::bytea[], $6::bytea[]) AS w(device_id, enc, wrapped)
           JOIN devices d ON d.id = w.device_id",
        organization_id,
        conversation_id,
        body.generation,
        &devices,
        &encapsulated,
        &wrapped
    )
    .execute(&mut *tx)
    .await?;
    make_current(&mut tx, conversation_id, body.generation).await?;
    tx.commit().await?;
    realtime::publish(
        &state,
        LiveEvent::frame(
            organization_id,
            conversation_id,
            ServerFrame::KeyRotated { conversation_id, generation: body.generation },
        ),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(GenerationUploaded { generation: body.generation, reason })))
}

/// Refuses a new generation (v1) or epoch (v2) unless it is the conversation's next one. At or
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

/// `POST .../conversations/{conversation_id}/keys`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GenerationUploaded {
    generation: i32,
    reason: RotationReason,
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

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/keys",
    tag = "conversations",
    operation_id = "list_key_wraps",
    responses((status = 200, description = "This device's wraps, oldest generation first", body = Vec<DeviceWrap>))
)]
async fn my_wraps(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Vec<DeviceWrap>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let rows = sqlx::query!(
        r#"SELECT generation, encapsulated_key AS "encapsulated_key!", wrapped_key AS "wrapped_key!" FROM member_key_wraps
          WHERE conversation_id = $1 AND recipient_device_id = $2 AND wrapped_key IS NOT NULL ORDER BY generation"#,
        conversation_id,
        auth.device_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let wraps = rows
        .into_iter()
        .map(|r| {
            Ok(DeviceWrap {
                generation: r.generation,
                encapsulated_key: r.encapsulated_key.try_into().map_err(|_| ApiError::internal())?,
                wrapped_key: r.wrapped_key.try_into().map_err(|_| ApiError::internal())?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(wraps))
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
