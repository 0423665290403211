//! Encrypted attachments: upload, download, attach to a message, collect.
//!
//! The client encrypts a file with a fresh key (which travels inside the encrypted message) and
//! uploads only ciphertext: `POST .../conversations/{c}/attachments?size=N&sha256=HEX` with the
//! raw bytes as the body. The server streams the body to a staging file while hashing and
//! counting it (never holding the file in memory), refuses it when it exceeds the size limit,
//! the declared size or hash, or the organization's storage quota, then reserves the quota,
//! records the row and moves the blob into the store in one step. A message send lists the
//! attachments it carries (`SendMessage.attachment_ids`), which become `attached`.
//!
//! A member of the conversation downloads an attached blob by id (streamed from the store);
//! an unattached one only its uploader. The collector ([`gc`]) deletes blobs whose message was
//! deleted or that were never sent within the grace period, and gives their bytes back.

pub mod gc;
pub mod storage;

use crate::AppState;
use crate::context::member_tx;
use crate::context::seat;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiPath, ApiQuery};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conclave_protocol::rich::Attachment;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use storage::{BlobStore, FsStore};

/// Most attachments one message may carry.
pub const MAX_PER_MESSAGE: usize = 32;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The body is streamed to disk, never buffered: the JSON body limit does not apply (the
        // handler enforces `--attachment-max-bytes` while it reads).
        .routes(routes!(upload))
        .routes(routes!(download))
        .layer(DefaultBodyLimit::disable())
}

/// The configured store: the filesystem under `--attachments-dir`, or S3 (`s3` feature).
pub fn open_store(config: &crate::config::Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    let root = config.attachments_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("conclave-attachments"));
    match &config.attachments_s3_bucket {
        None => Ok(Arc::new(FsStore::open(&root)?)),
        #[cfg(feature = "s3")]
        Some(bucket) => Ok(Arc::new(storage::S3Store::open(
            bucket,
            config.attachments_s3_endpoint.as_deref(),
            &config.attachments_s3_prefix,
            &root.join("staging"),
        )?)),
        #[cfg(not(feature = "s3"))]
        Some(_) => anyhow::bail!("--attachments-s3-bucket needs a data plane built with the `s3` feature"),
    }
}

fn quota_exceeded(quota: i64, used: i64) -> ApiError {
    ApiError::new(
        ErrorCode::AttachmentQuotaExceeded,
        "the organization's attachment storage quota is used up: delete messages with attachments or ask for more",
    )
    .with_details(crate::error::ErrorDetails::Quota { quota_bytes: quota, used_bytes: used })
}

fn parse_sha256(hex_text: &str) -> ApiResult<[u8; 32]> {
    let bytes = hex::decode(hex_text).map_err(|_| ApiError::validation("sha256", "must be 64 hexadecimal digits"))?;
    bytes.try_into().map_err(|_| ApiError::validation("sha256", "must be 64 hexadecimal digits"))
}

/// A staged upload, removed from disk when dropped unless the store took it.
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// Size of the (encrypted) body in bytes.
    #[param(minimum = 1)]
    size: i64,
    /// SHA-256 of the (encrypted) body, hexadecimal.
    #[param(pattern = "^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    sha256: String,
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/attachments",
    tag = "attachments",
    operation_id = "upload_attachment",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The encrypted file (docs/protocol.md, \"Attachments\")"),
    responses(
        (status = 201, description = "Stored; list its id in `SendMessage.attachment_ids`", body = Attachment),
        (status = 413, description = "`attachment_too_large` (the size limit), `attachment_quota_exceeded` (the organization's quota)", body = crate::error::ErrorBody),
        (status = 422, description = "`size_mismatch`, `hash_mismatch`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(%conversation_id))]
async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Attachment>)> {
    let expected_hash = parse_sha256(&query.sha256)?;
    let max = state.config.attachment_max_bytes;
    if query.size <= 0 {
        return Err(ApiError::validation("size", "must be positive"));
    }
    if query.size as u64 > max {
        return Err(ApiError::new(ErrorCode::AttachmentTooLarge, format!("an attachment is at most {max} bytes")));
    }
    // Refuse early what cannot fit, before reading a byte; the reservation below is the rule.
    {
        let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
        seat(&mut tx, auth.user_id, conversation_id, false).await?;
        let org = sqlx::query!(
            "SELECT attachment_quota_bytes, attachment_bytes_used FROM organizations WHERE id = $1",
            organization_id
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(quota) = org.attachment_quota_bytes
            && org.attachment_bytes_used + query.size > quota
        {
            return Err(quota_exceeded(quota, org.attachment_bytes_used));
        }
    }

    let id = Uuid::now_v7();
    let staged = Staged(state.blobs.staging_dir().join(format!("{id}.part")));
    let mut file = tokio::fs::File::create(&staged.0).await.map_err(|e| {
        tracing::error!(error = %e, "cannot create a staging file");
        ApiError::internal()
    })?;
    let mut hasher = Sha256::new();
    let mut received: i64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::new(ErrorCode::UploadInterrupted, "the upload ended early"))?;
        received += chunk.len() as i64;
        if received > query.size {
            return Err(ApiError::new(ErrorCode::SizeMismatch, "the body is longer than the declared size"));
        }
        // SHA-256 runs at hundreds of MB/s: a 64 KiB chunk costs well under a millisecond.
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write a staging file");
            ApiError::internal()
        })?;
    }
    file.flush().await.map_err(|_| ApiError::internal())?;
    drop(file);
    if received != query.size {
        return Err(ApiError::new(ErrorCode::SizeMismatch, "the body is shorter than the declared size"));
    }
    let hash: [u8; 32] = hasher.finalize().into();
    if hash != expected_hash {
        return Err(ApiError::new(ErrorCode::HashMismatch, "the body's SHA-256 is not the declared one"));
    }

    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let reserved = sqlx::query_scalar!(
        "UPDATE organizations SET attachment_bytes_used = attachment_bytes_used + $2
          WHERE id = $1 AND (attachment_quota_bytes IS NULL OR attachment_bytes_used + $2 <= attachment_quota_bytes)
          RETURNING id",
        organization_id,
        received
    )
    .fetch_optional(&mut *tx)
    .await?;
    if reserved.is_none() {
        let org = sqlx::query!(
            "SELECT attachment_quota_bytes, attachment_bytes_used FROM organizations WHERE id = $1",
            organization_id
        )
        .fetch_one(&mut *tx)
        .await?;
        return Err(quota_exceeded(org.attachment_quota_bytes.unwrap_or(0), org.attachment_bytes_used));
    }
    let key = id.to_string();
    let attachment = sqlx::query_as!(
        Attachment,
        r#"INSERT INTO message_attachments (id, organization_id, conversation_id, uploader_user_id, size_bytes, content_sha256, storage_key, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'stored')
           RETURNING id, conversation_id, message_id, uploader_user_id, size_bytes, encode(content_sha256, 'hex') AS "content_sha256!", status, created_at"#,
        id,
        organization_id,
        conversation_id,
        auth.user_id,
        received,
        &hash[..],
        key
    )
    .fetch_one(&mut *tx)
    .await?;
    state.blobs.put(&key, &staged.0).await.map_err(|e| {
        tracing::error!(error = %e, "cannot store an attachment blob");
        ApiError::internal()
    })?;
    if let Err(e) = tx.commit().await {
        let _ = state.blobs.delete(&key).await;
        return Err(e.into());
    }
    Ok((StatusCode::CREATED, axum::Json(attachment)))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/attachments/{attachment_id}",
    tag = "attachments",
    operation_id = "download_attachment",
    responses(
        (status = 200, description = "The encrypted file, streamed; `X-Content-SHA256` carries its hash", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "Not a member, unknown, not yet attached (for others than the uploader), or its message was deleted", body = crate::error::ErrorBody),
    )
)]
async fn download(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id, attachment_id)): ApiPath<(Uuid, Uuid, Uuid)>,
) -> ApiResult<Response> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    seat(&mut tx, auth.user_id, conversation_id, false).await?;
    let row = sqlx::query!(
        r#"SELECT a.storage_key, a.size_bytes, encode(a.content_sha256, 'hex') AS "sha256!", a.status, a.uploader_user_id,
                  m.deleted_at IS NOT NULL AS "message_deleted!"
             FROM message_attachments a LEFT JOIN messages m ON m.id = a.message_id
            WHERE a.id = $1 AND a.conversation_id = $2"#,
        attachment_id,
        conversation_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("attachment"))?;
    tx.commit().await?;
    let visible = match row.status.as_str() {
        "attached" => !row.message_deleted,
        "stored" => row.uploader_user_id == Some(auth.user_id),
        _ => false,
    };
    if !visible {
        return Err(ApiError::not_found("attachment"));
    }
    let stream = state.blobs.get(&row.storage_key).await.map_err(|e| {
        tracing::error!(error = %e, %attachment_id, "an attachment's blob cannot be read");
        ApiError::not_found("attachment")
    })?;
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(row.size_bytes as u64));
    if let Ok(value) = HeaderValue::from_str(&row.sha256) {
        headers.insert("x-content-sha256", value);
    }
    Ok(response)
}

/// A message's attachment ids without repeats, at most [`MAX_PER_MESSAGE`] of them.
pub fn distinct(ids: &[Uuid]) -> ApiResult<Vec<Uuid>> {
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() > MAX_PER_MESSAGE {
        return Err(ApiError::validation("attachment_ids", "a message carries at most 32 attachments"));
    }
    Ok(unique)
}

/// The answer when an attachment id is not the sender's stored, unsent upload to this
/// conversation.
pub fn unknown_attachment() -> ApiError {
    ApiError::new(
        ErrorCode::UnknownAttachment,
        "every attachment must be one you uploaded to this conversation and not yet sent",
    )
}
