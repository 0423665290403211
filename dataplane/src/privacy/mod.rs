//! Privacy requests (GDPR articles 15, 17 and 20): a person files an export or an erasure with
//! one of their organizations; its admins and owners approve or reject it. A request moves
//! `received` → `in_progress` (approved) → `completed`, or `received` → `rejected`, is due 30
//! days after filing, and every step is audited. Approving runs the work at once: an export
//! becomes a tar archive of JSON files in the object store ([`export`]), downloaded once through
//! a short-lived link the requester asks for; an erasure deletes the account ([`erasure`]). Work
//! that fails leaves the request `in_progress`; approving it again resumes. Archives nobody
//! downloads in time are deleted by the retention sweep ([`delete_expired_exports`]).

mod erasure;
mod export;

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::context::{Role, admin_tx, member_tx};
use crate::db;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientIp};
use crate::outbox::events::{self, Event};
use crate::tokens::{self, Kind};
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use conclave_protocol::compliance::{
    DecidePrivacyRequest, ExportLink, FilePrivacyRequest, PrivacyRequest, PrivacyRequestKind, PrivacyRequestStatus,
};
use conclave_schema::TenantContext;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How long a download link works once asked for.
const LINK_MINUTES: i32 = 15;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, file))
        .routes(routes!(get_one))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_mine))
        .routes(routes!(download_link))
        .routes(routes!(download))
}

struct Row {
    id: Uuid,
    organization_id: Uuid,
    user_id: Option<Uuid>,
    kind: String,
    status: String,
    requested_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    decided_by: Option<Uuid>,
    reason: Option<String>,
    completed_at: Option<DateTime<Utc>>,
    result_expires_at: Option<DateTime<Utc>>,
    downloaded_at: Option<DateTime<Utc>>,
    details: serde_json::Value,
}

impl Row {
    fn kind(&self) -> ApiResult<PrivacyRequestKind> {
        PrivacyRequestKind::parse(&self.kind).ok_or_else(ApiError::internal)
    }

    fn status(&self) -> ApiResult<PrivacyRequestStatus> {
        PrivacyRequestStatus::parse(&self.status).ok_or_else(ApiError::internal)
    }

    fn into_request(self) -> ApiResult<PrivacyRequest> {
        Ok(PrivacyRequest {
            kind: self.kind()?,
            status: self.status()?,
            id: self.id,
            organization_id: self.organization_id,
            user_id: self.user_id,
            requested_at: self.requested_at,
            due_at: self.due_at,
            decided_at: self.decided_at,
            decided_by: self.decided_by,
            reason: self.reason,
            completed_at: self.completed_at,
            export_expires_at: self.result_expires_at,
            downloaded_at: self.downloaded_at,
            details: self.details,
        })
    }
}

/// The request, locked; `None` when it is not in this organization.
async fn fetch(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> ApiResult<Option<Row>> {
    Ok(sqlx::query_as!(
        Row,
        "SELECT id, organization_id, user_id, kind, status, requested_at, due_at, decided_at, decided_by, reason,
                completed_at, result_expires_at, downloaded_at, details
           FROM privacy_requests WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?)
}

/// Requests of an organization, or of a person (row-level security shows them their own), newest
/// first.
async fn list_rows(
    conn: &mut PgConnection,
    organization_id: Option<Uuid>,
    user_id: Option<Uuid>,
) -> ApiResult<Vec<PrivacyRequest>> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, organization_id, user_id, kind, status, requested_at, due_at, decided_at, decided_by, reason,
                completed_at, result_expires_at, downloaded_at, details
           FROM privacy_requests
          WHERE ($1::uuid IS NULL OR organization_id = $1) AND ($2::uuid IS NULL OR user_id = $2)
          ORDER BY requested_at DESC, id DESC",
        organization_id,
        user_id
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Row::into_request).collect()
}

/// The request as it is now (after a change in the same transaction).
async fn reread(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> ApiResult<Row> {
    fetch(conn, organization_id, id).await?.ok_or_else(ApiError::internal)
}

/// Completes an `in_progress` request with what the work did (`details`, also audited), and for
/// an export where its archive is and for how many days.
async fn complete(
    conn: &mut PgConnection,
    step: Step,
    details: serde_json::Value,
    archive: Option<(&str, i32)>,
) -> ApiResult<Row> {
    sqlx::query!(
        "UPDATE privacy_requests
            SET status = 'completed', completed_at = now(), details = $3, result_location = $4,
                result_expires_at = now() + make_interval(days => $5)
          WHERE organization_id = $1 AND id = $2",
        step.organization_id,
        step.id,
        details.clone(),
        archive.map(|(key, _)| key),
        archive.map(|(_, days)| days)
    )
    .execute(&mut *conn)
    .await?;
    record_step(&mut *conn, step, "privacy_request.completed", details).await?;
    reread(conn, step.organization_id, step.id).await
}

/// Who acts on which request: what each audited step needs.
#[derive(Debug, Clone, Copy)]
struct Step {
    auth: AuthUser,
    ip: Option<std::net::IpAddr>,
    organization_id: Uuid,
    id: Uuid,
}

/// Appends a step of a request to the organization's trail.
async fn record_step(conn: &mut PgConnection, step: Step, action: &str, details: serde_json::Value) -> ApiResult<()> {
    audit::record(
        conn,
        audit::Entry {
            organization_id: Some(step.organization_id),
            actor: Actor::of(step.auth),
            action,
            target: Some(("privacy_request", step.id)),
            ip: step.ip,
            details,
        },
    )
    .await?;
    Ok(())
}

fn checked_reason(reason: Option<&str>) -> ApiResult<Option<String>> {
    reason.map(|text| crate::retention::holds::checked_reason(text).map(str::to_owned)).transpose()
}

fn closed() -> ApiError {
    ApiError::new(ErrorCode::PrivacyRequestClosed, "this privacy request was decided already")
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/privacy-requests",
    tag = "compliance",
    operation_id = "file_privacy_request",
    request_body = FilePrivacyRequest,
    responses(
        (status = 201, description = "Received: due 30 days from now", body = PrivacyRequest),
        (status = 409, description = "`duplicate`: a request of this kind is open already", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(user_id = %auth.user_id))]
async fn file(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<FilePrivacyRequest>,
) -> ApiResult<(StatusCode, axum::Json<PrivacyRequest>)> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO privacy_requests (organization_id, user_id, kind) VALUES ($1, $2, $3) RETURNING id",
        organization_id,
        auth.user_id,
        body.kind.as_str()
    )
    .fetch_one(&mut *tx)
    .await?;
    let step = Step { auth, ip: ip.0, organization_id, id };
    record_step(&mut tx, step, "privacy_request.received", json!({ "kind": body.kind.as_str() })).await?;
    let filed = json!({"privacy_request_id": id, "kind": body.kind.as_str(), "user_id": auth.user_id});
    events::in_organization(&mut tx, organization_id, Event::PrivacyRequestFiled, filed).await?;
    let row = reread(&mut tx, organization_id, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(row.into_request()?)))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/privacy-requests",
    tag = "compliance",
    operation_id = "list_privacy_requests",
    responses(
        (status = 200, description = "Every request filed with the organization, newest first", body = Vec<PrivacyRequest>),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<PrivacyRequest>>> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let requests = list_rows(&mut tx, Some(organization_id), None).await?;
    tx.commit().await?;
    Ok(axum::Json(requests))
}

#[utoipa::path(
    get,
    path = "/v1/privacy-requests",
    tag = "compliance",
    operation_id = "list_own_privacy_requests",
    responses((status = 200, description = "The caller's own requests in every organization, newest first", body = Vec<PrivacyRequest>))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list_mine(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Vec<PrivacyRequest>>> {
    let mut tx = db::user_tx(&state, auth.user_id).await?;
    let requests = list_rows(&mut tx, None, Some(auth.user_id)).await?;
    tx.commit().await?;
    Ok(axum::Json(requests))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/privacy-requests/{request_id}",
    tag = "compliance",
    operation_id = "get_privacy_request",
    responses((status = 200, description = "The request (admins: any of the organization's; members: their own)", body = PrivacyRequest))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn get_one(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<PrivacyRequest>> {
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    let row = fetch(&mut tx, organization_id, id)
        .await?
        // Someone else's request answers like an unknown id to a member who is not an admin.
        .filter(|row| me.role >= Role::Admin || row.user_id == Some(auth.user_id))
        .ok_or_else(|| ApiError::not_found("privacy request"))?;
    tx.commit().await?;
    Ok(axum::Json(row.into_request()?))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/privacy-requests/{request_id}/approve",
    tag = "compliance",
    operation_id = "approve_privacy_request",
    request_body = DecidePrivacyRequest,
    responses(
        (status = 200, description = "Approved and carried out: `completed` (an export waits for its download link; an erasure is done)", body = PrivacyRequest),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 409, description = "`privacy_request_closed`; `legal_hold_active`: a standing hold names the person, so it cannot be erased; `last_owner`: the person is the organization's only owner", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(actor = %auth.user_id))]
async fn approve(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<DecidePrivacyRequest>,
) -> ApiResult<axum::Json<PrivacyRequest>> {
    let reason = checked_reason(body.reason.as_deref())?;
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let row = fetch(&mut tx, organization_id, id).await?.ok_or_else(|| ApiError::not_found("privacy request"))?;
    let kind = row.kind()?;
    let step = Step { auth, ip: ip.0, organization_id, id };
    // The account is gone only after a completed erasure, which is closed below anyway.
    let subject = row.user_id.ok_or_else(closed)?;
    match row.status()? {
        PrivacyRequestStatus::Received => {
            if kind == PrivacyRequestKind::Erasure {
                erasure::refuse_if_held(&mut tx, organization_id, subject).await?;
                erasure::refuse_if_last_owner(&mut tx, organization_id, subject).await?;
            }
            sqlx::query!(
                "UPDATE privacy_requests SET status = 'in_progress', decided_at = now(), decided_by = $3, reason = $4
                  WHERE organization_id = $1 AND id = $2",
                organization_id,
                id,
                auth.user_id,
                reason
            )
            .execute(&mut *tx)
            .await?;
            record_step(&mut tx, step, "privacy_request.approved", json!({ "kind": kind.as_str() })).await?;
            tx.commit().await?;
        }
        // A previous approval's work failed part way: carry it out again.
        PrivacyRequestStatus::InProgress => tx.commit().await?,
        PrivacyRequestStatus::Completed | PrivacyRequestStatus::Rejected => return Err(closed()),
    }
    let done = match kind {
        PrivacyRequestKind::Export => export::run(&state, step, subject).await?,
        PrivacyRequestKind::Erasure => erasure::run(&state, step, subject).await?,
    };
    Ok(axum::Json(done.into_request()?))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/privacy-requests/{request_id}/reject",
    tag = "compliance",
    operation_id = "reject_privacy_request",
    request_body = DecidePrivacyRequest,
    responses(
        (status = 200, description = "Rejected, with the reason the requester sees", body = PrivacyRequest),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 409, description = "`privacy_request_closed`", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`: a reason is required", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, body), fields(actor = %auth.user_id))]
async fn reject(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath((organization_id, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<DecidePrivacyRequest>,
) -> ApiResult<axum::Json<PrivacyRequest>> {
    let reason = checked_reason(body.reason.as_deref())?
        .ok_or_else(|| ApiError::validation("reason", "is required to reject a request"))?;
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let row = fetch(&mut tx, organization_id, id).await?.ok_or_else(|| ApiError::not_found("privacy request"))?;
    // An approved request whose work could not finish (a hold placed meanwhile) may still be
    // rejected; a finished one may not.
    if !matches!(row.status()?, PrivacyRequestStatus::Received | PrivacyRequestStatus::InProgress) {
        return Err(closed());
    }
    sqlx::query!(
        "UPDATE privacy_requests
            SET status = 'rejected', reason = $4, completed_at = now(),
                decided_at = coalesce(decided_at, now()), decided_by = coalesce(decided_by, $3)
          WHERE organization_id = $1 AND id = $2",
        organization_id,
        id,
        auth.user_id,
        reason
    )
    .execute(&mut *tx)
    .await?;
    let step = Step { auth, ip: ip.0, organization_id, id };
    record_step(&mut tx, step, "privacy_request.rejected", json!({ "kind": row.kind })).await?;
    let row = reread(&mut tx, organization_id, id).await?;
    tx.commit().await?;
    Ok(axum::Json(row.into_request()?))
}

#[utoipa::path(
    post,
    path = "/v1/privacy-requests/{request_id}/download-link",
    tag = "compliance",
    operation_id = "privacy_export_link",
    responses(
        (status = 200, description = "A link that works once, for 15 minutes (asking again replaces it)", body = ExportLink),
        (status = 410, description = "`export_unavailable`: downloaded already, or expired", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn download_link(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<ExportLink>> {
    let mut tx = db::user_tx(&state, auth.user_id).await?;
    // Only the requester's own completed exports (row-level security shows them their own).
    let organization_id = sqlx::query_scalar!(
        "SELECT organization_id FROM privacy_requests
          WHERE id = $1 AND user_id = $2 AND kind = 'export' AND status = 'completed'",
        id,
        auth.user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("privacy export"))?;
    TenantContext::organization(organization_id).with_user(auth.user_id).apply(&mut tx).await?;
    let token = tokens::generate(Kind::PrivacyExport);
    let expires_at = sqlx::query_scalar!(
        "UPDATE privacy_requests
            SET download_token_hash = $3, download_expires_at = now() + make_interval(mins => $4)
          WHERE organization_id = $1 AND id = $2 AND downloaded_at IS NULL AND result_expires_at > now()
         RETURNING download_expires_at",
        organization_id,
        id,
        tokens::digest(&token),
        LINK_MINUTES
    )
    .fetch_optional(&mut *tx)
    .await?
    .flatten()
    .ok_or_else(unavailable)?;
    tx.commit().await?;
    Ok(axum::Json(ExportLink {
        path: format!("/v1/organizations/{organization_id}/privacy-exports/{token}"),
        expires_at,
    }))
}

/// How many expired export archives one call of [`delete_expired_exports`] deletes at most.
const EXPIRED_BATCH: i32 = 100;

/// Deletes the archives of exports nobody downloaded before they expired (the row stays, without
/// its archive: `result_location` null). Run by the retention sweep; returns how many went.
pub async fn delete_expired_exports(state: &AppState) -> Result<usize, sqlx::Error> {
    let expired = sqlx::query!(
        r#"SELECT organization_id AS "organization_id!", id AS "id!" FROM conclave_expired_privacy_exports($1)"#,
        EXPIRED_BATCH
    )
    .fetch_all(&state.db)
    .await?;
    let mut deleted = 0;
    for export in expired {
        let mut tx = state.db.begin().await?;
        TenantContext::organization(export.organization_id).apply(&mut tx).await?;
        let key = sqlx::query_scalar!(
            "UPDATE privacy_requests r SET result_location = NULL, download_token_hash = NULL, download_expires_at = NULL
               FROM (SELECT id, result_location FROM privacy_requests
                      WHERE organization_id = $1 AND id = $2 AND result_location IS NOT NULL FOR UPDATE) stored
              WHERE r.id = stored.id
             RETURNING stored.result_location",
            export.organization_id,
            export.id
        )
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        tx.commit().await?;
        if let Some(key) = key {
            if let Err(e) = state.blobs.delete(&key).await {
                tracing::warn!(error = %e, "an expired privacy export could not be deleted; it is no longer listed");
            }
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// How long a claimed export may take to download before the expiry sweep may delete it.
const DOWNLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes a downloaded archive and unlists it. When either fails, the expiry sweep deletes it
/// once `DOWNLOAD_GRACE` has passed.
async fn forget_downloaded(state: &AppState, organization_id: Uuid, id: Uuid, key: &str) {
    if let Err(e) = state.blobs.delete(key).await {
        tracing::warn!(error = %e, "a downloaded privacy export could not be deleted; the sweep will");
        return;
    }
    let unlisted = async {
        let mut tx = state.db.begin().await?;
        TenantContext::organization(organization_id).apply(&mut tx).await?;
        sqlx::query!(
            "UPDATE privacy_requests SET result_location = NULL WHERE organization_id = $1 AND id = $2",
            organization_id,
            id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    };
    if let Err(e) = unlisted.await {
        tracing::warn!(error = %e, "a deleted privacy export is still listed; the sweep will unlist it");
    }
}

/// A whole blob in memory (an avatar in an export).
async fn read_blob(state: &AppState, key: &str) -> ApiResult<Vec<u8>> {
    let stream = state.blobs.get(key).await.map_err(|e| {
        tracing::error!(error = %e, "a blob a privacy request needs could not be read");
        ApiError::internal()
    })?;
    stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading a blob a privacy request needs failed");
            ApiError::internal()
        })
}

fn unavailable() -> ApiError {
    ApiError::new(ErrorCode::ExportUnavailable, "this export was downloaded already or has expired")
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/privacy-exports/{token}",
    tag = "compliance",
    operation_id = "download_privacy_export",
    security(()),
    responses(
        (status = 200, description = "The export: a tar archive of JSON files (docs/compliance.md). The link then stops working and the archive is deleted", content_type = "application/x-tar", body = Vec<u8>),
        (status = 404, description = "`not_found`: unknown, used or expired link", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, token))]
async fn download(
    State(state): State<AppState>,
    ApiPath((organization_id, token)): ApiPath<(Uuid, String)>,
) -> ApiResult<Response> {
    if !tokens::looks_like(Kind::PrivacyExport, &token) {
        return Err(ApiError::not_found("privacy export"));
    }
    let mut tx = state.db.begin().await?;
    TenantContext::organization(organization_id).apply(&mut tx).await?;
    // Claimed in one statement: a second download of the same link finds nothing. The archive
    // stays listed, due for the expiry sweep within `DOWNLOAD_GRACE`, until it has been sent
    // whole and deleted: a download cut short leaves nothing behind for longer than that.
    let claimed = sqlx::query!(
        r#"UPDATE privacy_requests r
              SET downloaded_at = now(), download_token_hash = NULL, download_expires_at = NULL,
                  result_expires_at = LEAST(r.result_expires_at, now() + make_interval(secs => $3))
             FROM (SELECT id, result_location FROM privacy_requests
                    WHERE organization_id = $1 AND download_token_hash = $2 AND download_expires_at > now()
                      AND downloaded_at IS NULL
                    FOR UPDATE) claimed
            WHERE r.id = claimed.id
           RETURNING r.id, claimed.result_location AS "key?""#,
        organization_id,
        tokens::digest(&token),
        DOWNLOAD_GRACE.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, Some(key))) = claimed.map(|c| (c.id, c.key)) else {
        return Err(ApiError::not_found("privacy export"));
    };
    // Opened before the claim commits: an archive that cannot be read leaves the link working.
    let archive = state.blobs.get(&key).await.map_err(|e| {
        tracing::error!(error = %e, "a privacy export could not be read");
        ApiError::internal()
    })?;
    tx.commit().await?;
    // Streamed, never whole in memory; once the last byte is handed over, the archive is
    // deleted and unlisted before the response ends.
    let done = futures::stream::once(async move {
        forget_downloaded(&state, organization_id, id, &key).await;
        Ok(axum::body::Bytes::new())
    });
    let mut response = Body::from_stream(archive.chain(done)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/x-tar"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"conclave-export.tar\""),
    );
    Ok(response)
}
