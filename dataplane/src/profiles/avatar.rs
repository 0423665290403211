//! Uploaded avatars: a PNG, JPEG or WebP picture of at most [`MAX_BYTES`], stored as a blob in
//! the attachment store (`avatar-<uuid>`), served to the people who share an organization with
//! its owner. Not end-to-end encrypted: like the display name, it is what the organization sees.
//!
//! The bytes must be the image the `Content-Type` names (its signature is checked), and it is
//! served back with that type, `nosniff` and a CSP that allows nothing, so an upload can never
//! become a page or a script in a browser. Replacing or removing a picture deletes the old blob
//! once the profile row no longer names it.

use super::{fan_out, load};
use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::ApiPath;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use conclave_protocol::notifications::Profile;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The largest picture accepted: a 512×512 photograph as JPEG or WebP fits with room to spare.
pub const MAX_BYTES: usize = 256 * 1024;

/// The media types accepted, each with the signature its bytes start with.
const TYPES: [(&str, &[u8]); 3] =
    [("image/png", b"\x89PNG\r\n\x1a\n"), ("image/jpeg", b"\xff\xd8\xff"), ("image/webp", b"RIFF")];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_own, delete_own, get_own)).routes(routes!(get_member))
}

/// The declared media type, when it is one of [`TYPES`] and the bytes are that image.
fn checked_type(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<&'static str> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(&(media_type, signature)) = TYPES.iter().find(|(t, _)| *t == declared) else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "an avatar is image/png, image/jpeg or image/webp (the Content-Type header)",
        ));
    };
    let webp = media_type != "image/webp" || bytes.get(8..12) == Some(b"WEBP");
    if !bytes.starts_with(signature) || !webp {
        return Err(ApiError::new(ErrorCode::InvalidImage, format!("the body is not an image of type {media_type}")));
    }
    Ok(media_type)
}

/// Deletes a blob no profile names any more; a failure leaves an orphan, logged, never an error.
async fn forget(state: &AppState, key: Option<String>) {
    if let Some(key) = key
        && let Err(e) = state.blobs.delete(&key).await
    {
        tracing::warn!(error = %e, "an old avatar's blob could not be deleted");
    }
}

#[utoipa::path(
    put,
    path = "/v1/profile/avatar",
    tag = "profiles",
    operation_id = "upload_avatar",
    request_body(
        description = "The picture: PNG, JPEG or WebP (the `Content-Type` says which), at most 256 KiB",
        content((Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"))
    ),
    responses(
        (status = 200, description = "The profile with its new picture; the members of the caller's conversations receive `profile_updated`", body = Profile),
        (status = 400, description = "`upload_interrupted`", body = crate::error::ErrorBody),
        (status = 413, description = "`avatar_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_image`: the bytes are not the declared type", body = crate::error::ErrorBody),
    )
)]
async fn put_own(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<axum::Json<Profile>> {
    // Read here with the avatar's own limit (not an extractor's, whose refusal is not this
    // endpoint's JSON error).
    let body = axum::body::to_bytes(body, MAX_BYTES).await.map_err(|e| {
        if e.into_inner().downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::new(ErrorCode::AvatarTooLarge, format!("an avatar is at most {MAX_BYTES} bytes"))
        } else {
            ApiError::new(ErrorCode::UploadInterrupted, "the upload ended early")
        }
    })?;
    let media_type = checked_type(&headers, &body)?;
    if body.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidImage, "the body is empty"));
    }
    let key = format!("avatar-{}", Uuid::now_v7());
    let staged = state.blobs.staging_dir().join(format!("{key}.part"));
    tokio::fs::write(&staged, &body).await.map_err(|e| {
        tracing::error!(error = %e, "cannot write a staging file");
        ApiError::internal()
    })?;
    if let Err(e) = state.blobs.put(&key, &staged).await {
        let _ = tokio::fs::remove_file(&staged).await;
        tracing::error!(error = %e, "cannot store an avatar");
        return Err(ApiError::internal());
    }
    let stored = async {
        let mut tx = state.db.begin().await?;
        let old = sqlx::query_scalar!("SELECT avatar_key FROM user_profiles WHERE user_id = $1 FOR UPDATE", auth.user_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("profile"))?;
        sqlx::query!(
            "UPDATE user_profiles SET avatar_key = $2, avatar_media_type = $3, avatar_size_bytes = $4 WHERE user_id = $1",
            auth.user_id,
            key,
            media_type,
            body.len() as i32
        )
        .execute(&mut *tx)
        .await?;
        let profile = load(&mut tx, auth.user_id).await?;
        tx.commit().await?;
        Ok::<_, ApiError>((old, profile))
    }
    .await;
    let (old, profile) = match stored {
        Ok(stored) => stored,
        Err(e) => {
            // Nothing names the new blob: remove it rather than leave an orphan.
            forget(&state, Some(key)).await;
            return Err(e);
        }
    };
    forget(&state, old).await;
    fan_out(&state, &profile).await;
    Ok(axum::Json(profile))
}

#[utoipa::path(
    delete,
    path = "/v1/profile/avatar",
    tag = "profiles",
    operation_id = "delete_avatar",
    responses((status = 200, description = "The profile without an uploaded picture (removing none is not an error)", body = Profile))
)]
async fn delete_own(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Profile>> {
    let mut tx = state.db.begin().await?;
    let old = sqlx::query_scalar!("SELECT avatar_key FROM user_profiles WHERE user_id = $1 FOR UPDATE", auth.user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("profile"))?;
    sqlx::query!(
        "UPDATE user_profiles SET avatar_key = NULL, avatar_media_type = NULL, avatar_size_bytes = NULL
          WHERE user_id = $1 AND avatar_key IS NOT NULL",
        auth.user_id
    )
    .execute(&mut *tx)
    .await?;
    let profile = load(&mut tx, auth.user_id).await?;
    tx.commit().await?;
    if old.is_some() {
        forget(&state, old).await;
        fan_out(&state, &profile).await;
    }
    Ok(axum::Json(profile))
}

/// The picture of `user_id`, read on `conn` (whose caller may see that profile).
async fn serve(state: &AppState, conn: &mut sqlx::PgConnection, user_id: Uuid) -> ApiResult<Response> {
    let row = sqlx::query!(
        r#"SELECT avatar_key AS "key!", avatar_media_type AS "media_type!", avatar_size_bytes AS "size!"
             FROM user_profiles WHERE user_id = $1 AND avatar_key IS NOT NULL"#,
        user_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("avatar"))?;
    let stream = state.blobs.get(&row.key).await.map_err(|e| {
        tracing::error!(error = %e, "an avatar's blob cannot be read");
        ApiError::not_found("avatar")
    })?;
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    let media_type = HeaderValue::from_str(&row.media_type).map_err(|_| ApiError::internal())?;
    headers.insert(header::CONTENT_TYPE, media_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(row.size as u64));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/profile/avatar",
    tag = "profiles",
    operation_id = "get_own_avatar",
    responses(
        (status = 200, description = "The caller's picture, with its media type", content_type = "image/png", body = Vec<u8>),
        (status = 404, description = "No uploaded picture", body = crate::error::ErrorBody),
    )
)]
async fn get_own(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Response> {
    let mut conn = state.db.acquire().await?;
    serve(&state, &mut conn, auth.user_id).await
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/members/{user_id}/avatar",
    tag = "profiles",
    operation_id = "get_member_avatar",
    responses(
        (status = 200, description = "A member's picture, with its media type", content_type = "image/png", body = Vec<u8>),
        (status = 404, description = "Not a member of an organization the caller is in, or no uploaded picture", body = crate::error::ErrorBody),
    )
)]
async fn get_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Response> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    sqlx::query_scalar!(
        "SELECT user_id FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
        organization_id,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("member"))?;
    let response = serve(&state, &mut tx, user_id).await?;
    tx.commit().await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(media_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(media_type).expect("header"));
        headers
    }

    #[test]
    fn the_bytes_must_be_the_declared_image() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let webp = b"RIFF\x10\0\0\0WEBPVP8 ".to_vec();
        assert_eq!(checked_type(&typed("image/png"), &png).ok(), Some("image/png"));
        assert_eq!(checked_type(&typed("IMAGE/PNG; charset=x"), &png).ok(), Some("image/png"));
        assert_eq!(checked_type(&typed("image/webp"), &webp).ok(), Some("image/webp"));
        let code = |h: &str, b: &[u8]| checked_type(&typed(h), b).map_err(|e| e.code);
        assert_eq!(code("image/jpeg", &png), Err(ErrorCode::InvalidImage));
        assert_eq!(code("image/webp", b"RIFF\x10\0\0\0WAVEfmt "), Err(ErrorCode::InvalidImage));
        assert_eq!(code("image/svg+xml", b"<svg/>"), Err(ErrorCode::UnsupportedMediaType));
        assert_eq!(checked_type(&HeaderMap::new(), &png).map_err(|e| e.code), Err(ErrorCode::UnsupportedMediaType));
    }
}
