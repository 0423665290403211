//! Key packages (protocol v2, MLS): each device publishes one-time key packages and one last-resort
//! package; a member adding devices to a conversation's group claims one per device. A one-time
//! package is handed out at most once: the claim deletes the row it returns, so two concurrent
//! claims can never get the same one. The server stores them as opaque bytes; the claiming client
//! verifies them.

use std::collections::BTreeSet;

use crate::AppState;
use crate::context::member_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use axum::extract::State;
use conclave_protocol::keypackages::{
    ClaimKeyPackages, ClaimedKeyPackage, ClaimedKeyPackages, DeviceRef, KEY_PACKAGE_BYTES, KeyPackageBytes,
    KeyPackageStock, MAX_CLAIMED_USERS, MAX_STORED_KEY_PACKAGES, UploadKeyPackages,
};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stock, upload)).routes(routes!(claim))
}

async fn stock_of(conn: &mut PgConnection, device_id: Uuid) -> ApiResult<KeyPackageStock> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE NOT last_resort) AS "available!", bool_or(last_resort) AS last_resort
             FROM device_key_packages WHERE device_id = $1"#,
        device_id
    )
    .fetch_one(conn)
    .await?;
    Ok(KeyPackageStock {
        available: u32::try_from(row.available).map_err(|_| ApiError::internal())?,
        last_resort: row.last_resort.unwrap_or(false),
    })
}

#[utoipa::path(
    get,
    path = "/v1/key-packages",
    tag = "devices",
    operation_id = "key_package_stock",
    responses((status = 200, description = "The calling device's key packages left on the server", body = KeyPackageStock))
)]
async fn stock(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<KeyPackageStock>> {
    let mut conn = state.db.acquire().await?;
    Ok(axum::Json(stock_of(&mut conn, auth.device_id).await?))
}

/// A key package's size, and its framing: an MLS 1.0 key package of the protocol's suite.
fn check_package(field: &'static str, package: &KeyPackageBytes) -> ApiResult<()> {
    if !KEY_PACKAGE_BYTES.contains(&package.0.len()) {
        return Err(ApiError::validation(field, "a key package has 64 to 8192 bytes"));
    }
    conclave_protocol::mls_wire::key_package(&package.0).map_err(|e| ApiError::invalid_mls(field, e.to_string()))
}

#[utoipa::path(
    post,
    path = "/v1/key-packages",
    tag = "devices",
    operation_id = "upload_key_packages",
    request_body = UploadKeyPackages,
    responses(
        (status = 200, description = "Stored; the calling device's stock now", body = KeyPackageStock),
        (status = 422, description = "`validation_failed`: a size or the stock limit; `invalid_mls_message`: not an MLS 1.0 key package of the protocol's suite", body = crate::error::ErrorBody),
    )
)]
async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<UploadKeyPackages>,
) -> ApiResult<axum::Json<KeyPackageStock>> {
    for package in &body.key_packages {
        check_package("key_packages", package)?;
    }
    if let Some(package) = &body.last_resort {
        check_package("last_resort", package)?;
    }
    let mut tx = state.db.begin().await?;
    // The device row is locked so that two uploads of one device cannot both pass the cap.
    sqlx::query!("SELECT id FROM devices WHERE id = $1 FOR UPDATE", auth.device_id).fetch_one(&mut *tx).await?;
    let before = stock_of(&mut tx, auth.device_id).await?;
    if before.available as usize + body.key_packages.len() > MAX_STORED_KEY_PACKAGES {
        return Err(ApiError::validation(
            "key_packages",
            format!(
                "a device holds at most {MAX_STORED_KEY_PACKAGES} unclaimed key packages ({} are stored)",
                before.available
            ),
        ));
    }
    let packages: Vec<Vec<u8>> = body.key_packages.into_iter().map(|p| p.0).collect();
    sqlx::query!(
        "INSERT INTO device_key_packages (device_id, key_package)
         SELECT $1, package FROM unnest($2::bytea[]) WITH ORDINALITY AS t(package, n) ORDER BY n",
        auth.device_id,
        &packages[..]
    )
    .execute(&mut *tx)
    .await?;
    if let Some(last_resort) = body.last_resort {
        sqlx::query!("DELETE FROM device_key_packages WHERE device_id = $1 AND last_resort", auth.device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "INSERT INTO device_key_packages (device_id, key_package, last_resort) VALUES ($1, $2, true)",
            auth.device_id,
            last_resort.0
        )
        .execute(&mut *tx)
        .await?;
    }
    let after = stock_of(&mut tx, auth.device_id).await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/key-packages/claim",
    tag = "devices",
    operation_id = "claim_key_packages",
    request_body = ClaimKeyPackages,
    responses(
        (status = 200, description = "One key package per active device of the users named", body = ClaimedKeyPackages),
        (status = 404, description = "`not_found`: a user named is not a member of the organization", body = crate::error::ErrorBody),
    )
)]
async fn claim(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ClaimKeyPackages>,
) -> ApiResult<axum::Json<ClaimedKeyPackages>> {
    let users: BTreeSet<Uuid> = body.user_ids.iter().copied().collect();
    if users.is_empty() || users.len() > MAX_CLAIMED_USERS {
        return Err(ApiError::validation("user_ids", "name 1 to 100 users"));
    }
    if body.device_ids.len() > 1000 {
        return Err(ApiError::validation("device_ids", "name at most 1,000 devices"));
    }
    let users: Vec<Uuid> = users.into_iter().collect();
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    // Someone outside the organization is answered exactly like an unknown id.
    let members = sqlx::query_scalar!(
        "SELECT count(*) AS \"count!\" FROM organization_memberships WHERE organization_id = $1 AND user_id = ANY($2)",
        organization_id,
        &users[..]
    )
    .fetch_one(&mut *tx)
    .await?;
    if members != users.len() as i64 {
        return Err(ApiError::not_found("user"));
    }
    // One-time packages first: per device the oldest, locked and deleted in the same statement
    // (SKIP LOCKED: a concurrent claim takes the next one instead of waiting for this one).
    let claimed = sqlx::query!(
        r#"WITH targets AS (
               SELECT d.id, d.user_id FROM devices d
                WHERE d.user_id = ANY($1) AND d.revoked_at IS NULL AND (cardinality($2::uuid[]) = 0 OR d.id = ANY($2))
           ), picked AS (
               SELECT k.id FROM targets t CROSS JOIN LATERAL (
                   SELECT id FROM device_key_packages
                    WHERE device_id = t.id AND NOT last_resort
                    ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) k
           )
           DELETE FROM device_key_packages p USING picked, devices d
            WHERE p.id = picked.id AND d.id = p.device_id
        RETURNING d.user_id, p.device_id, p.key_package"#,
        &users[..],
        &body.device_ids[..]
    )
    .fetch_all(&mut *tx)
    .await?;
    let served: Vec<Uuid> = claimed.iter().map(|r| r.device_id).collect();
    let fallback = sqlx::query!(
        r#"SELECT d.user_id, d.id AS device_id, p.key_package AS "key_package?"
             FROM devices d
             LEFT JOIN device_key_packages p ON p.device_id = d.id AND p.last_resort
            WHERE d.user_id = ANY($1) AND d.revoked_at IS NULL AND d.id <> ALL($2)
              AND (cardinality($3::uuid[]) = 0 OR d.id = ANY($3))"#,
        &users[..],
        &served[..],
        &body.device_ids[..]
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut key_packages: Vec<ClaimedKeyPackage> = claimed
        .into_iter()
        .map(|r| ClaimedKeyPackage {
            user_id: r.user_id,
            device_id: r.device_id,
            key_package: KeyPackageBytes(r.key_package),
            last_resort: false,
        })
        .collect();
    let mut exhausted = Vec::new();
    for row in fallback {
        match row.key_package {
            Some(package) => key_packages.push(ClaimedKeyPackage {
                user_id: row.user_id,
                device_id: row.device_id,
                key_package: KeyPackageBytes(package),
                last_resort: true,
            }),
            None => exhausted.push(DeviceRef { user_id: row.user_id, device_id: row.device_id }),
        }
    }
    key_packages.sort_by_key(|p| (p.user_id, p.device_id));
    exhausted.sort();
    Ok(axum::Json(ClaimedKeyPackages { key_packages, exhausted }))
}
