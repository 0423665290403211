//! The MLS delivery service's ordering (protocol v2): one commit per epoch, the first to arrive;
//! the commits kept so a device that was away catches up in order; a Welcome handed only to the
//! devices it names; the latest group info for a device that rejoins by external commit. The
//! server cannot read any of them: it checks the epoch, who may commit, and which devices may be
//! welcomed (active devices of current members).

use std::collections::BTreeSet;

use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::conversations::keys::{
    RotationReason, keep_required, make_current, member_devices, require_next, required_reason,
};
use crate::conversations::removals;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::realtime::{self, LiveEvent};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::events::ServerFrame;
use conclave_protocol::handshake::{
    CommitAccepted, CommitsQuery, MAX_HANDSHAKE_BYTES, MlsBytes, StoredCommit, StoredGroupInfo, StoredWelcome,
    UploadCommit,
};
use conclave_protocol::mls_wire;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The most delivery-service proposals one commit includes (the schema's limit too).
const MAX_PROPOSALS: usize = 1000;

/// The most commits one catch-up page returns.
const PAGE: i64 = 100;

/// The largest commit upload: a commit, a group info and a Welcome of up to 1 MiB each, base64 in
/// JSON. A Welcome or group info carries the whole ratchet tree (about 300 bytes per device), so
/// the data plane's general 512 KiB body limit would refuse adding a device to a group of about
/// 570 devices or more.
pub const MAX_COMMIT_UPLOAD_BYTES: usize = 5 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, commit))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COMMIT_UPLOAD_BYTES))
        .routes(routes!(welcome))
        .routes(routes!(group_info))
}

/// Checks what the server can read of a commit upload without any key: the commit is a commit of
/// this conversation's group made in `epoch`, the group info is this group's at `epoch + 1`, the
/// Welcome is a Welcome of the protocol's suite.
fn check_framing(conversation_id: Uuid, body: &UploadCommit) -> ApiResult<()> {
    let group = conversation_id.as_bytes();
    let framed = mls_wire::framing(&body.commit.0).map_err(|e| ApiError::invalid_mls("commit", e.to_string()))?;
    if framed.content_type != mls_wire::content_type::COMMIT {
        return Err(ApiError::invalid_mls("commit", "is not a commit"));
    }
    if framed.group_id != group || framed.epoch != body.epoch as u64 {
        return Err(ApiError::invalid_mls("commit", "belongs to another group or epoch than the upload says"));
    }
    let (info_group, info_epoch) =
        mls_wire::group_info(&body.group_info.0).map_err(|e| ApiError::invalid_mls("group_info", e.to_string()))?;
    if info_group != group || info_epoch != body.epoch as u64 + 1 {
        return Err(ApiError::invalid_mls("group_info", "is not this group's at the epoch the commit opens"));
    }
    if let Some(welcome) = &body.welcome {
        mls_wire::welcome(&welcome.0).map_err(|e| ApiError::invalid_mls("welcome", e.to_string()))?;
    }
    for proposal in &body.proposals {
        let framed = mls_wire::framing(&proposal.0).map_err(|e| ApiError::invalid_mls("proposals", e.to_string()))?;
        if framed.wire_format != mls_wire::wire_format::PUBLIC_MESSAGE
            || framed.content_type != mls_wire::content_type::PROPOSAL
            || framed.group_id != group
            || framed.epoch != body.epoch as u64
        {
            return Err(ApiError::invalid_mls(
                "proposals",
                "are not public proposals of this group in the commit's epoch",
            ));
        }
    }
    Ok(())
}

fn check_size(field: &'static str, bytes: &MlsBytes) -> ApiResult<()> {
    if (2..=MAX_HANDSHAKE_BYTES).contains(&bytes.0.len()) {
        Ok(())
    } else {
        Err(ApiError::validation(field, "an MLS message has 2 bytes to 1 MiB"))
    }
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/commits",
    tag = "conversations",
    operation_id = "upload_commit",
    request_body = UploadCommit,
    responses(
        (status = 201, description = "The commit opened the next epoch", body = CommitAccepted),
        (status = 409, description = "`stale_generation`: another commit won this epoch (details: the current one); process it and commit again", body = crate::error::ErrorBody),
        (status = 422, description = "`not_next_generation`: the epoch is ahead of the conversation's; `wrap_set_mismatch`: a welcomed device is not an active device of a member (details name them); `invalid_mls_message`: the commit, group info, Welcome or a proposal is not what it is said to be (another group, epoch, kind or suite)", body = crate::error::ErrorBody),
    )
)]
async fn commit(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<UploadCommit>,
) -> ApiResult<(StatusCode, axum::Json<CommitAccepted>)> {
    check_size("commit", &body.commit)?;
    check_size("group_info", &body.group_info)?;
    if let Some(welcome) = &body.welcome {
        check_size("welcome", welcome)?;
    }
    if body.proposals.len() > MAX_PROPOSALS {
        return Err(ApiError::validation("proposals", "a commit includes at most 1,000 proposals"));
    }
    for proposal in &body.proposals {
        check_size("proposals", proposal)?;
    }
    if body.welcome.is_some() == body.welcomed_devices.is_empty() {
        return Err(ApiError::validation("welcome", "a Welcome comes with the devices it is for, and only then"));
    }
    if body.epoch < 0 {
        return Err(ApiError::validation("epoch", "is 0 or more"));
    }
    check_framing(conversation_id, &body)?;
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    // The conversation row lock orders commits: the first in an epoch wins, the others see it.
    let seat = seat(&mut tx, auth.user_id, conversation_id, true).await?;
    // The commit opens the epoch after the one it was made in.
    require_next(&seat, body.epoch.saturating_add(1))?;
    let welcomed: BTreeSet<Uuid> = body.welcomed_devices.iter().copied().collect();
    if !welcomed.is_empty() {
        let allowed: BTreeSet<Uuid> =
            member_devices(&mut tx, conversation_id).await?.iter().map(|d| d.device_id).collect();
        let unexpected: Vec<Uuid> = welcomed.difference(&allowed).copied().collect();
        if !unexpected.is_empty() || welcomed.len() != body.welcomed_devices.len() {
            return Err(ApiError::new(
                ErrorCode::WrapSetMismatch,
                "a Welcome is for active devices of the conversation's members, each named once",
            )
            .with_details(ErrorDetails::WrapSet {
                missing: Vec::new(),
                unexpected,
                duplicates: welcomed.len() != body.welcomed_devices.len(),
            }));
        }
    }
    let epoch = seat.current_key_generation + 1;
    let group_info = body.group_info.0;
    let proposals: Vec<Vec<u8>> = body.proposals.into_iter().map(|p| p.0).collect();
    let reason = if seat.rotation_required {
        required_reason(&mut tx, conversation_id).await?
    } else if body.welcome.is_some() {
        if seat.current_key_generation == 0 { RotationReason::Initial } else { RotationReason::MemberAdded }
    } else {
        RotationReason::Manual
    };
    sqlx::query!(
        "INSERT INTO conversation_encryption_keys
             (organization_id, conversation_id, generation, created_by_device_id, reason, commit_message, group_info, welcome, proposals)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        organization_id,
        conversation_id,
        epoch,
        auth.device_id,
        reason.as_str(),
        body.commit.0,
        &group_info,
        body.welcome.map(|w| w.0),
        &proposals[..]
    )
    .execute(&mut *tx)
    .await?;
    let welcomed: Vec<Uuid> = welcomed.into_iter().collect();
    sqlx::query!(
        "INSERT INTO member_key_wraps (organization_id, conversation_id, generation, recipient_user_id, recipient_device_id)
         SELECT $1, $2, $3, d.user_id, d.id FROM devices d WHERE d.id = ANY($4)",
        organization_id,
        conversation_id,
        epoch,
        &welcomed[..]
    )
    .execute(&mut *tx)
    .await?;
    make_current(&mut tx, conversation_id, epoch).await?;
    if removals::still_required(&mut tx, conversation_id, &group_info).await? {
        // The commit left a departed device's leaf in the tree: the removal is still due.
        keep_required(&mut tx, conversation_id, reason).await?;
    }
    tx.commit().await?;
    realtime::publish(
        &state,
        LiveEvent::frame(
            organization_id,
            conversation_id,
            ServerFrame::KeyRotated { conversation_id, generation: epoch },
        ),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(CommitAccepted { epoch })))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/commits",
    tag = "conversations",
    operation_id = "list_commits",
    params(CommitsQuery),
    responses((status = 200, description = "The commits that opened the epochs after `after`, oldest first, at most 100", body = Vec<StoredCommit>))
)]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<CommitsQuery>,
) -> ApiResult<axum::Json<Vec<StoredCommit>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let rows = sqlx::query!(
        r#"SELECT generation, commit_message AS "commit_message!", created_by_device_id, created_at, proposals
             FROM conversation_encryption_keys
            WHERE conversation_id = $1 AND generation > $2 AND commit_message IS NOT NULL
            ORDER BY generation LIMIT $3"#,
        conversation_id,
        query.after,
        PAGE
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| StoredCommit {
                epoch: r.generation,
                commit: MlsBytes(r.commit_message),
                committed_by_device_id: r.created_by_device_id,
                created_at: r.created_at,
                proposals: r.proposals.into_iter().map(MlsBytes).collect(),
            })
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/welcome",
    tag = "conversations",
    operation_id = "get_welcome",
    responses(
        (status = 200, description = "The latest Welcome addressed to the calling device", body = StoredWelcome),
        (status = 404, description = "`not_found`: no Welcome names this device", body = crate::error::ErrorBody),
    )
)]
async fn welcome(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<StoredWelcome>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let row = sqlx::query!(
        r#"SELECT k.generation, k.welcome AS "welcome!"
             FROM member_key_wraps w
             JOIN conversation_encryption_keys k ON k.conversation_id = w.conversation_id AND k.generation = w.generation
            WHERE w.conversation_id = $1 AND w.recipient_device_id = $2 AND k.welcome IS NOT NULL
            ORDER BY k.generation DESC LIMIT 1"#,
        conversation_id,
        auth.device_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("welcome"))?;
    tx.commit().await?;
    Ok(axum::Json(StoredWelcome { epoch: row.generation, welcome: MlsBytes(row.welcome) }))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/group-info",
    tag = "conversations",
    operation_id = "get_group_info",
    responses(
        (status = 200, description = "The group info of the current epoch", body = StoredGroupInfo),
        (status = 404, description = "`not_found`: the group has no commit yet", body = crate::error::ErrorBody),
    )
)]
async fn group_info(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<StoredGroupInfo>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let seat = seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let info = stored_group_info(&mut tx, conversation_id, seat.current_key_generation)
        .await?
        .ok_or_else(|| ApiError::not_found("group info"))?;
    tx.commit().await?;
    Ok(axum::Json(StoredGroupInfo { epoch: seat.current_key_generation, group_info: MlsBytes(info) }))
}

/// The group info the commit that opened `epoch` came with (none for epoch 0).
pub(crate) async fn stored_group_info(
    conn: &mut PgConnection,
    conversation_id: Uuid,
    epoch: i32,
) -> ApiResult<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT group_info AS "group_info!" FROM conversation_encryption_keys
            WHERE conversation_id = $1 AND generation = $2 AND group_info IS NOT NULL"#,
        conversation_id,
        epoch
    )
    .fetch_optional(conn)
    .await?)
}
