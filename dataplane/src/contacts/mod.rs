//! Contacts between accounts, across organizations.
//!
//! An accepted contact is two `contact_links` rows, one per direction, written together when an
//! invitation is accepted and removed together. A block is one row, the blocker's, with status
//! `blocked`: blocking removes the other person's accepted row, closes pending invitations both
//! ways, and from then on the blocked person's invitations are refused. Removing the contact
//! (`DELETE /v1/contacts/{user_id}`) is also how a block is lifted; it never touches a block
//! the other person holds. Only people the blocker already knows (a contact either way, a
//! pending invitation either way, a co-member of an organization) can be blocked; any other id
//! answers 404 like one that does not exist, so blocking reveals nothing about other tenants.

mod invitations;

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ClientIp};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(remove))
        .routes(routes!(block))
        .merge(invitations::router())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Contact {
    pub user_id: Uuid,
    /// Shown for accepted contacts only.
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// `accepted`, or `blocked` (by you).
    pub status: String,
    pub since: DateTime<Utc>,
}

/// How two accounts stand towards each other.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Standing {
    /// My row towards them: `accepted` or `blocked`.
    pub mine: Option<&'static str>,
    /// Their row towards me.
    pub theirs: Option<&'static str>,
}

impl Standing {
    /// Either side blocks the other.
    pub fn blocked(&self) -> bool {
        self.mine == Some("blocked") || self.theirs == Some("blocked")
    }
}

fn status(text: &str) -> &'static str {
    if text == "blocked" { "blocked" } else { "accepted" }
}

pub(crate) async fn standing(conn: &mut PgConnection, me: Uuid, them: Uuid) -> ApiResult<Standing> {
    let rows = sqlx::query!(
        "SELECT user_id, status FROM contact_links
          WHERE (user_id = $1 AND contact_user_id = $2) OR (user_id = $2 AND contact_user_id = $1)",
        me,
        them
    )
    .fetch_all(conn)
    .await?;
    let mut standing = Standing::default();
    for row in rows {
        if row.user_id == me {
            standing.mine = Some(status(&row.status));
        } else {
            standing.theirs = Some(status(&row.status));
        }
    }
    Ok(standing)
}

pub(crate) async fn fetch_contact(conn: &mut PgConnection, me: Uuid, them: Uuid) -> ApiResult<Option<Contact>> {
    Ok(sqlx::query_as!(
        Contact,
        r#"SELECT l.contact_user_id AS user_id,
                  CASE WHEN l.status = 'accepted' THEN u.email::text END AS "email?",
                  p.display_name AS "display_name?", l.status, l.created_at AS since
             FROM contact_links l
             JOIN user_accounts u ON u.id = l.contact_user_id
             LEFT JOIN user_profiles p ON p.user_id = l.contact_user_id
            WHERE l.user_id = $1 AND l.contact_user_id = $2"#,
        me,
        them
    )
    .fetch_optional(conn)
    .await?)
}

#[utoipa::path(
    get,
    path = "/v1/contacts",
    tag = "contacts",
    operation_id = "list_contacts",
    responses((status = 200, description = "Accepted contacts and the people the caller blocked", body = Vec<Contact>))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<axum::Json<Vec<Contact>>> {
    let contacts = sqlx::query_as!(
        Contact,
        r#"SELECT l.contact_user_id AS user_id,
                  CASE WHEN l.status = 'accepted' THEN u.email::text END AS "email?",
                  p.display_name AS "display_name?", l.status, l.created_at AS since
             FROM contact_links l
             JOIN user_accounts u ON u.id = l.contact_user_id
             LEFT JOIN user_profiles p ON p.user_id = l.contact_user_id
            WHERE l.user_id = $1
            ORDER BY l.status, p.display_name, l.contact_user_id"#,
        auth.user_id
    )
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(contacts))
}

/// Ends a contact both ways, or lifts my block. Never removes a block the other person holds.
#[utoipa::path(
    delete,
    path = "/v1/contacts/{user_id}",
    tag = "contacts",
    operation_id = "remove_contact",
    responses((status = 204, description = "The contact is gone both ways (or the caller's block lifted)"))
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn remove(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(them): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let removed = sqlx::query!(
        "DELETE FROM contact_links
          WHERE (user_id = $1 AND contact_user_id = $2)
             OR (user_id = $2 AND contact_user_id = $1 AND status = 'accepted')",
        auth.user_id,
        them
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found("contact"));
    }
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "contact.removed",
            target: Some(("user", them)),
            ip: ip.0,
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/contacts/{user_id}/block",
    tag = "contacts",
    operation_id = "block_contact",
    responses(
        (status = 200, description = "Blocked", body = Contact),
        (status = 422, description = "`validation_failed`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn block(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(them): ApiPath<Uuid>,
) -> ApiResult<axum::Json<Contact>> {
    if them == auth.user_id {
        return Err(ApiError::validation("user_id", "you cannot block yourself"));
    }
    let mut tx = state.db.begin().await?;
    // Only someone the caller already knows (a contact, a pending invitation either way, a
    // co-member): any other account answers exactly like an id that does not exist, so the
    // answer cannot be used to probe other organizations' accounts and names (migration 14).
    let visible = sqlx::query_scalar!(r#"SELECT conclave_can_see_user($1, $2) AS "visible!""#, auth.user_id, them)
        .fetch_one(&mut *tx)
        .await?;
    if !visible {
        return Err(ApiError::not_found("user"));
    }
    sqlx::query!(
        "INSERT INTO contact_links (user_id, contact_user_id, status) VALUES ($1, $2, 'blocked')
         ON CONFLICT (user_id, contact_user_id) DO UPDATE SET status = 'blocked'",
        auth.user_id,
        them
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM contact_links WHERE user_id = $2 AND contact_user_id = $1 AND status = 'accepted'",
        auth.user_id,
        them
    )
    .execute(&mut *tx)
    .await?;
    // Pending invitations between the two close: theirs to me are declined, mine to them revoked.
    sqlx::query!(
        "UPDATE contact_invitations i SET status = CASE WHEN i.inviter_user_id = $1 THEN 'revoked' ELSE 'declined' END,
                responded_at = now()
          FROM user_accounts me, user_accounts them
         WHERE me.id = $1 AND them.id = $2 AND i.status = 'pending'
           AND ((i.inviter_user_id = $2 AND (i.invitee_user_id = $1 OR i.invitee_email = me.email))
             OR (i.inviter_user_id = $1 AND (i.invitee_user_id = $2 OR i.invitee_email = them.email)))",
        auth.user_id,
        them
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: None,
            actor: Actor::of(auth),
            action: "contact.blocked",
            target: Some(("user", them)),
            ip: ip.0,
            details: json!({}),
        },
    )
    .await?;
    let contact = fetch_contact(&mut tx, auth.user_id, them).await?.ok_or_else(ApiError::internal)?;
    tx.commit().await?;
    Ok(axum::Json(contact))
}
