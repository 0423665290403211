//! The caller's notification preferences: account-wide defaults, and overrides per
//! organization, workspace and conversation (`notification_preferences`, one row per scope).

use super::policy::{format_hhmm, parse_hhmm};
use crate::AppState;
use crate::context::session::AuthUser;
use crate::context::{member_tx, seat};
use crate::db::user_tx;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use conclave_protocol::notifications::{
    DigestFrequency, NotificationLevel, NotificationOverride, NotificationPreferences, QuietHours,
    SetNotificationOverride, UpdateNotificationPreferences,
};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_account, update_account))
        .routes(routes!(list_overrides, set_organization, clear_organization))
        .routes(routes!(set_workspace, clear_workspace))
        .routes(routes!(set_conversation, clear_conversation))
}

/// A mute must end in the future and within a year.
fn check_mute(until: Option<DateTime<Utc>>) -> ApiResult<()> {
    let now = Utc::now();
    match until {
        Some(t) if t <= now || t > now + Duration::days(366) => Err(ApiError::new(
            ErrorCode::InvalidMuteUntil,
            "muted_until must be in the future and at most a year ahead",
        )),
        _ => Ok(()),
    }
}

fn quiet_minutes(quiet: &QuietHours) -> ApiResult<(i16, i16)> {
    let invalid =
        || ApiError::new(ErrorCode::InvalidQuietHours, "quiet_hours needs start and end as different HH:MM times");
    let start = parse_hhmm(&quiet.start).ok_or_else(invalid)?;
    let end = parse_hhmm(&quiet.end).ok_or_else(invalid)?;
    if start == end {
        return Err(invalid());
    }
    Ok((start as i16, end as i16))
}

/// The account row, or the defaults when the caller never changed anything.
pub async fn load_account(conn: &mut PgConnection, user_id: Uuid) -> ApiResult<NotificationPreferences> {
    let row = sqlx::query!(
        "SELECT level, push_enabled, email_enabled, muted_until, quiet_hours_start, quiet_hours_end,
                email_delay_minutes, digest_frequency
           FROM notification_preferences WHERE user_id = $1 AND organization_id IS NULL",
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let time_zone = sqlx::query_scalar!("SELECT time_zone FROM user_profiles WHERE user_id = $1", user_id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    Ok(match row {
        None => NotificationPreferences {
            level: NotificationLevel::All,
            push_enabled: true,
            email_enabled: false,
            muted_until: None,
            quiet_hours: None,
            time_zone,
            email_delay_minutes: 60,
            digest_frequency: DigestFrequency::Daily,
        },
        Some(r) => NotificationPreferences {
            level: r.level.as_deref().and_then(NotificationLevel::parse).unwrap_or(NotificationLevel::All),
            push_enabled: r.push_enabled,
            email_enabled: r.email_enabled,
            muted_until: r.muted_until,
            quiet_hours: r
                .quiet_hours_start
                .zip(r.quiet_hours_end)
                .map(|(s, e)| QuietHours { start: format_hhmm(s), end: format_hhmm(e) }),
            time_zone,
            email_delay_minutes: r.email_delay_minutes,
            digest_frequency: DigestFrequency::parse(&r.digest_frequency).unwrap_or(DigestFrequency::Daily),
        },
    })
}

#[utoipa::path(
    get,
    path = "/v1/notification-preferences",
    tag = "notifications",
    operation_id = "get_notification_preferences",
    responses((status = 200, description = "The caller's account-wide preferences", body = NotificationPreferences))
)]
async fn get_account(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<NotificationPreferences>> {
    let mut tx = user_tx(&state, auth.user_id).await?;
    let prefs = load_account(&mut tx, auth.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(prefs))
}

#[utoipa::path(
    patch,
    path = "/v1/notification-preferences",
    tag = "notifications",
    operation_id = "update_notification_preferences",
    request_body = UpdateNotificationPreferences,
    responses(
        (status = 200, description = "The preferences after the change", body = NotificationPreferences),
        (status = 422, description = "`invalid_mute_until`, `invalid_quiet_hours`, `email_delay_out_of_range`", body = crate::error::ErrorBody),
    )
)]
async fn update_account(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<UpdateNotificationPreferences>,
) -> ApiResult<axum::Json<NotificationPreferences>> {
    if let Some(until) = body.muted_until {
        check_mute(until)?;
    }
    let quiet = match &body.quiet_hours {
        Some(Some(q)) => Some(Some(quiet_minutes(q)?)),
        Some(None) => Some(None),
        None => None,
    };
    if body.email_delay_minutes.is_some_and(|m| !(5..=10080).contains(&m)) {
        return Err(ApiError::new(
            ErrorCode::EmailDelayOutOfRange,
            "email_delay_minutes must be between 5 and 10080 (a week)",
        ));
    }
    let mut tx = user_tx(&state, auth.user_id).await?;
    let mut prefs = load_account(&mut tx, auth.user_id).await?;
    let mut quiet_now = prefs.quiet_hours.as_ref().map(quiet_minutes).transpose()?;
    if let Some(level) = body.level {
        prefs.level = level;
    }
    if let Some(on) = body.push_enabled {
        prefs.push_enabled = on;
    }
    if let Some(on) = body.email_enabled {
        prefs.email_enabled = on;
    }
    if let Some(until) = body.muted_until {
        prefs.muted_until = until;
    }
    if let Some(q) = quiet {
        quiet_now = q;
    }
    if let Some(minutes) = body.email_delay_minutes {
        prefs.email_delay_minutes = minutes;
    }
    if let Some(frequency) = body.digest_frequency {
        prefs.digest_frequency = frequency;
    }
    sqlx::query!(
        "INSERT INTO notification_preferences (user_id, level, push_enabled, email_enabled, muted_until,
                    quiet_hours_start, quiet_hours_end, email_delay_minutes, digest_frequency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT ON CONSTRAINT notification_preferences_scope_key DO UPDATE
            SET level = EXCLUDED.level, push_enabled = EXCLUDED.push_enabled, email_enabled = EXCLUDED.email_enabled,
                muted_until = EXCLUDED.muted_until, quiet_hours_start = EXCLUDED.quiet_hours_start,
                quiet_hours_end = EXCLUDED.quiet_hours_end, email_delay_minutes = EXCLUDED.email_delay_minutes,
                digest_frequency = EXCLUDED.digest_frequency",
        auth.user_id,
        prefs.level.as_str(),
        prefs.push_enabled,
        prefs.email_enabled,
        prefs.muted_until,
        quiet_now.map(|q| q.0),
        quiet_now.map(|q| q.1),
        prefs.email_delay_minutes,
        prefs.digest_frequency.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    let prefs = load_account(&mut tx, auth.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(prefs))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/notification-preferences",
    tag = "notifications",
    operation_id = "list_notification_overrides",
    responses((status = 200, description = "The caller's overrides in this organization: the organization's, then workspaces', then conversations'", body = Vec<NotificationOverride>))
)]
async fn list_overrides(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Vec<NotificationOverride>>> {
    let (mut tx, _) = member_tx(&state, auth, organization_id).await?;
    let rows = sqlx::query!(
        r#"SELECT organization_id AS "organization_id!", workspace_id, conversation_id, level, muted_until
             FROM notification_preferences WHERE user_id = $1 AND organization_id = $2
            ORDER BY conversation_id IS NOT NULL, workspace_id IS NOT NULL, workspace_id, conversation_id"#,
        auth.user_id,
        organization_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| NotificationOverride {
                organization_id: r.organization_id,
                workspace_id: r.workspace_id,
                conversation_id: r.conversation_id,
                level: r.level.as_deref().and_then(NotificationLevel::parse),
                muted_until: r.muted_until,
            })
            .collect(),
    ))
}

/// What an override applies to, inside its organization.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Organization,
    Workspace(Uuid),
    Conversation(Uuid),
}

impl Scope {
    fn workspace(self) -> Option<Uuid> {
        match self {
            Self::Workspace(id) => Some(id),
            _ => None,
        }
    }

    fn conversation(self) -> Option<Uuid> {
        match self {
            Self::Conversation(id) => Some(id),
            _ => None,
        }
    }
}

/// Opens the caller's tenant transaction and checks the scope exists for them: a workspace of
/// the organization, a conversation they are a member of (404 otherwise, like unknown ids).
async fn scoped_tx(
    state: &AppState,
    auth: AuthUser,
    organization_id: Uuid,
    scope: Scope,
) -> ApiResult<sqlx::Transaction<'static, sqlx::Postgres>> {
    let (mut tx, _) = member_tx(state, auth, organization_id).await?;
    match scope {
        Scope::Organization => {}
        Scope::Workspace(id) => {
            sqlx::query_scalar!(
                "SELECT id FROM workspaces WHERE id = $1 AND organization_id = $2",
                id,
                organization_id
            )
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("workspace"))?;
        }
        Scope::Conversation(id) => {
            seat(&mut tx, auth.user_id, id, false).await?;
        }
    }
    Ok(tx)
}

async fn set_override(
    state: &AppState,
    auth: AuthUser,
    organization_id: Uuid,
    scope: Scope,
    body: SetNotificationOverride,
) -> ApiResult<axum::Json<NotificationOverride>> {
    check_mute(body.muted_until)?;
    let mut tx = scoped_tx(state, auth, organization_id, scope).await?;
    sqlx::query!(
        "INSERT INTO notification_preferences (user_id, organization_id, workspace_id, conversation_id, level, muted_until)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT ON CONSTRAINT notification_preferences_scope_key DO UPDATE
            SET level = EXCLUDED.level, muted_until = EXCLUDED.muted_until",
        auth.user_id,
        organization_id,
        scope.workspace(),
        scope.conversation(),
        body.level.map(NotificationLevel::as_str),
        body.muted_until,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(NotificationOverride {
        organization_id,
        workspace_id: scope.workspace(),
        conversation_id: scope.conversation(),
        level: body.level,
        muted_until: body.muted_until,
    }))
}

async fn clear_override(
    state: &AppState,
    auth: AuthUser,
    organization_id: Uuid,
    scope: Scope,
) -> ApiResult<StatusCode> {
    let mut tx = scoped_tx(state, auth, organization_id, scope).await?;
    sqlx::query!(
        "DELETE FROM notification_preferences
          WHERE user_id = $1 AND organization_id = $2
            AND workspace_id IS NOT DISTINCT FROM $3 AND conversation_id IS NOT DISTINCT FROM $4",
        auth.user_id,
        organization_id,
        scope.workspace(),
        scope.conversation(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/v1/organizations/{organization_id}/notification-preferences",
    tag = "notifications",
    operation_id = "set_organization_notification_override",
    request_body = SetNotificationOverride,
    responses(
        (status = 200, description = "The override", body = NotificationOverride),
        (status = 422, description = "`invalid_mute_until`", body = crate::error::ErrorBody),
    )
)]
async fn set_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SetNotificationOverride>,
) -> ApiResult<axum::Json<NotificationOverride>> {
    set_override(&state, auth, organization_id, Scope::Organization, body).await
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/notification-preferences",
    tag = "notifications",
    operation_id = "clear_organization_notification_override",
    responses((status = 204, description = "The organization inherits the account's preferences again"))
)]
async fn clear_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    clear_override(&state, auth, organization_id, Scope::Organization).await
}

#[utoipa::path(
    put,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}/notification-preferences",
    tag = "notifications",
    operation_id = "set_workspace_notification_override",
    request_body = SetNotificationOverride,
    responses(
        (status = 200, description = "The override", body = NotificationOverride),
        (status = 422, description = "`invalid_mute_until`", body = crate::error::ErrorBody),
    )
)]
async fn set_workspace(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<SetNotificationOverride>,
) -> ApiResult<axum::Json<NotificationOverride>> {
    set_override(&state, auth, organization_id, Scope::Workspace(workspace_id), body).await
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/workspaces/{workspace_id}/notification-preferences",
    tag = "notifications",
    operation_id = "clear_workspace_notification_override",
    responses((status = 204, description = "The workspace inherits again"))
)]
async fn clear_workspace(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, workspace_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    clear_override(&state, auth, organization_id, Scope::Workspace(workspace_id)).await
}

#[utoipa::path(
    put,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/notification-preferences",
    tag = "notifications",
    operation_id = "set_conversation_notification_override",
    request_body = SetNotificationOverride,
    responses(
        (status = 200, description = "The override", body = NotificationOverride),
        (status = 422, description = "`invalid_mute_until`", body = crate::error::ErrorBody),
    )
)]
async fn set_conversation(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<SetNotificationOverride>,
) -> ApiResult<axum::Json<NotificationOverride>> {
    set_override(&state, auth, organization_id, Scope::Conversation(conversation_id), body).await
}

#[utoipa::path(
    delete,
    path = "/v1/organizations/{organization_id}/conversations/{conversation_id}/notification-preferences",
    tag = "notifications",
    operation_id = "clear_conversation_notification_override",
    responses((status = 204, description = "The conversation inherits again"))
)]
async fn clear_conversation(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((organization_id, conversation_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    clear_override(&state, auth, organization_id, Scope::Conversation(conversation_id)).await
}
