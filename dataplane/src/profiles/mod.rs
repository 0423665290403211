//! Profiles (`user_profiles`): a person reads and changes their own; the people who share an
//! organization with them read it; a change reaches the members of every conversation they are
//! in as a `profile_updated` frame (like presence).
//!
//! The exact-email lookup finds a member of an organization by address, for members who are not
//! admins (they do not see emails). It answers only for members of that organization, and
//! exactly like an unknown address otherwise, so it reveals nothing about anyone outside; it is
//! rate-limited per caller so the organization's addresses cannot be guessed in bulk.

use crate::AppState;
use crate::auth::credentials::Email;
use crate::context::session::AuthUser;
use crate::context::{Role, member_tx};
use crate::db::{tenant_tx, user_tx};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::ratelimit;
use crate::realtime::LiveEvent;
use axum::extract::State;
use conclave_protocol::events::ServerFrame;
use conclave_protocol::notifications::{LookupMember, Profile, UpdateProfile};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod avatar;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_own, update_own))
        .routes(routes!(get_member))
        .routes(routes!(lookup))
        .merge(avatar::router())
}

async fn load(conn: &mut PgConnection, user_id: Uuid) -> ApiResult<Profile> {
    sqlx::query_as!(
        Profile,
        "SELECT user_id, display_name, status_text, time_zone, locale, avatar_url, avatar_media_type, avatar_size_bytes, updated_at
           FROM user_profiles WHERE user_id = $1",
        user_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("profile"))
}

/// `fr`, `pt-BR`, `zh-Hant-TW`: a BCP 47 tag as the schema admits it.
fn valid_locale(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Checks and normalises an update (trimmed text; empty optional text clears it).
fn check(update: &mut UpdateProfile) -> ApiResult<()> {
    if let Some(name) = &mut update.display_name {
        *name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::validation("display_name", "must be 1 to 100 characters"));
        }
    }
    if let Some(Some(text)) = &update.status_text {
        let text = text.trim().to_owned();
        if text.chars().count() > 140 {
            return Err(ApiError::validation("status_text", "must be at most 140 characters"));
        }
        update.status_text = Some((!text.is_empty()).then_some(text));
    }
    if let Some(Some(zone)) = &update.time_zone
        && zone.parse::<chrono_tz::Tz>().is_err()
    {
        return Err(ApiError::new(
            ErrorCode::InvalidTimeZone,
            "time_zone must be an IANA time zone such as Europe/Paris",
        ));
    }
    if let Some(Some(locale)) = &update.locale
        && !valid_locale(locale)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidLocale,
            "locale must be a BCP 47 language tag such as fr or pt-BR",
        ));
    }
    if let Some(Some(url)) = &update.avatar_url
        && (!url.starts_with("https://") || url.len() > 2048 || url.chars().any(char::is_whitespace))
    {
        return Err(ApiError::validation("avatar_url", "must be an https URL of at most 2048 characters"));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/v1/profile",
    tag = "profiles",
    operation_id = "get_own_profile",
    responses((status = 200, description = "The caller's profile", body = Profile))
)]
async fn get_own(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Profile>> {
    let mut conn = state.db.acquire().await?;
    Ok(axum::Json(load(&mut conn, auth.user_id).await?))
}

#[utoipa::path(
    patch,
    path = "/v1/profile",
    tag = "profiles",
    operation_id = "update_own_profile",
    request_body = UpdateProfile,
    responses(
        (status = 200, description = "The profile after the change; the members of the caller's conversations receive `profile_updated`", body = Profile),
        (status = 422, description = "`invalid_time_zone`, `invalid_locale`", body = crate::error::ErrorBody),
    )
)]
async fn update_own(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(mut body): ApiJson<UpdateProfile>,
) -> ApiResult<axum::Json<Profile>> {
    check(&mut body)?;
    let mut tx = state.db.begin().await?;
    let profile = sqlx::query_as!(
        Profile,
        "UPDATE user_profiles
            SET display_name = coalesce($2, display_name),
                status_text = CASE WHEN $3 THEN $4 ELSE status_text END,
                time_zone = CASE WHEN $5 THEN $6 ELSE time_zone END,
                locale = CASE WHEN $7 THEN $8 ELSE locale END,
                avatar_url = CASE WHEN $9 THEN $10 ELSE avatar_url END
          WHERE user_id = $1
          RETURNING user_id, display_name, status_text, time_zone, locale, avatar_url, avatar_media_type, avatar_size_bytes, updated_at",
        auth.user_id,
        body.display_name,
        body.status_text.is_some(),
        body.status_text.clone().flatten(),
        body.time_zone.is_some(),
        body.time_zone.clone().flatten(),
        body.locale.is_some(),
        body.locale.clone().flatten(),
        body.avatar_url.is_some(),
        body.avatar_url.clone().flatten(),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("profile"))?;
    tx.commit().await?;
    fan_out(&state, &profile).await;
    Ok(axum::Json(profile))
}

/// Publishes the profile to every conversation its owner is in, in every organization.
async fn fan_out(state: &AppState, profile: &Profile) {
    let user = profile.user_id;
    let listed = async {
        let mut tx = user_tx(state, user).await?;
        let organizations =
            sqlx::query_scalar!("SELECT organization_id FROM organization_memberships WHERE user_id = $1", user)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut events = Vec::new();
        for organization_id in organizations {
            let mut tx = tenant_tx(state, organization_id, user).await?;
            let conversations = sqlx::query_scalar!(
                "SELECT conversation_id FROM conversation_members WHERE organization_id = $1 AND user_id = $2",
                organization_id,
                user
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            events.extend(conversations.into_iter().map(|conversation_id| {
                let frame = ServerFrame::ProfileUpdated { conversation_id, profile: profile.clone() };
                LiveEvent::frame(organization_id, conversation_id, frame)
            }));
        }
        Ok::<_, ApiError>(events)
    }
    .await;
    match listed {
        Ok(events) => state.publisher.publish(&events).await,
        Err(e) => tracing::warn!(error = %e, "cannot list the conversations to tell about a profile change"),
    }
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/members/{user_id}/profile",
    tag = "profiles",
    operation_id = "get_member_profile",
    responses((status = 200, description = "A member's profile", body = Profile))
)]
async fn get_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<Profile>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    sqlx::query_scalar!(
        "SELECT user_id FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
        organization_id,
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("member"))?;
    let profile = load(&mut tx, user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(profile))
}

#[utoipa::path(
    post,
    path = "/v1/organizations/{organization_id}/members/lookup",
    tag = "profiles",
    operation_id = "lookup_member_by_email",
    request_body = LookupMember,
    responses(
        (status = 200, description = "The member with exactly this address; any other address (unknown, or someone outside the organization) is 404 `not_found`", body = Profile),
        (status = 403, description = "`insufficient_role` (guests)", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
async fn lookup(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<LookupMember>,
) -> ApiResult<axum::Json<Profile>> {
    let email = Email::parse(&body.email)?;
    ratelimit::check(&state, ratelimit::MEMBER_LOOKUP, &auth.user_id.to_string()).await?;
    let (mut tx, me) = member_tx(&state, auth, organization_id).await?;
    me.require(Role::Member)?;
    let found = sqlx::query_scalar!(
        "SELECT u.id FROM user_accounts u
           JOIN organization_memberships m ON m.user_id = u.id AND m.organization_id = $1
          WHERE u.email = $2 AND u.status = 'active'",
        organization_id,
        email.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("member"))?;
    let profile = load(&mut tx, found).await?;
    tx.commit().await?;
    Ok(axum::Json(profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_are_bcp47_tags_as_the_schema_admits() {
        for ok in ["fr", "pt-BR", "zh-Hant-TW", "gsw"] {
            assert!(valid_locale(ok), "{ok}");
        }
        for bad in ["", "F", "FR", "french", "pt_BR", "pt-", "en-a"] {
            assert!(!valid_locale(bad), "{bad}");
        }
    }

    #[test]
    fn updates_are_trimmed_and_empty_status_clears() {
        let mut update = UpdateProfile {
            display_name: Some("  Ada  ".into()),
            status_text: Some(Some("   ".into())),
            ..Default::default()
        };
        check(&mut update).expect("valid");
        assert_eq!(update.display_name.as_deref(), Some("Ada"));
        assert_eq!(update.status_text, Some(None));
        let mut zone = UpdateProfile { time_zone: Some(Some("Mars/Olympus".into())), ..Default::default() };
        assert_eq!(check(&mut zone).map_err(|e| e.code), Err(ErrorCode::InvalidTimeZone));
    }
}
