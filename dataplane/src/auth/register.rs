//! Registration and email confirmation.

use super::credentials::{Email, Password, hash_password};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, ClientIp};
use crate::ratelimit;
use crate::tokens::{self, Kind};
use axum::extract::State;
use axum::http::StatusCode;
use conclave_protocol::auth::{ConfirmEmailRequest, RegisterRequest, Registered};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

const CONFIRMATION_HOURS: f64 = 48.0;

#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    security(()),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "A confirmation email is on its way when this deployment sends email. The same answer when the address already has an account: its owner is emailed instead, and nothing is created", body = Registered),
        (status = 422, description = "`weak_password`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<Registered>)> {
    ratelimit::check(&state, ratelimit::REGISTER, &ip.key()).await?;
    let email = Email::parse(&body.email)?;
    let password = Password::parse(body.password, Some(&email))?;
    let display_name = body.display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(ApiError::validation("display_name", "must have 1 to 100 characters"));
    }
    // Hashed whether or not the address is free, so the answer takes as long either way.
    let hash = hash_password(&password).await?;
    let answer = |sent| {
        let body = Registered { email: email.as_str().to_owned(), confirmation_email_sent: sent };
        Ok((StatusCode::CREATED, axum::Json(body)))
    };
    let mut tx = state.db.begin().await?;
    let created = sqlx::query_scalar!(
        "INSERT INTO user_accounts (email, password_hash) VALUES ($1, $2)
         ON CONFLICT (email) DO NOTHING RETURNING id",
        email.as_str(),
        hash
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(user_id) = created else {
        // Taken: the same answer as for a free address (anyone may try any address), and a
        // note to the address's owner, who may simply have forgotten they have an account.
        tx.rollback().await?;
        return answer(send_already_registered(&state, email.clone()));
    };
    sqlx::query!("INSERT INTO user_profiles (user_id, display_name) VALUES ($1, $2)", user_id, display_name)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("INSERT INTO user_security_states (user_id) VALUES ($1)", user_id).execute(&mut *tx).await?;
    let token = new_confirmation(&mut tx, user_id, &email).await?;
    tx.commit().await?;
    answer(send_confirmation(&state, email.clone(), token))
}

fn send_already_registered(state: &AppState, email: Email) -> bool {
    state.mailer.send_if_enabled(email, "You already have an account", |url| {
        format!(
            "Someone asked to create a Conclave account with this address, which already has one.\n\nIf it was you, sign in at {url} (or reset your password there if you forgot it).\nIf it was not you, ignore this message: nothing was changed.\n"
        )
    })
}

async fn new_confirmation(conn: &mut PgConnection, user_id: Uuid, email: &Email) -> ApiResult<String> {
    let token = tokens::generate(Kind::EmailConfirmation);
    sqlx::query!(
        "INSERT INTO email_confirmation_tokens (user_id, email, token_hash, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4::float8::int))",
        user_id,
        email.as_str(),
        tokens::digest(&token),
        CONFIRMATION_HOURS,
    )
    .execute(conn)
    .await?;
    Ok(token)
}

fn send_confirmation(state: &AppState, email: Email, token: String) -> bool {
    state.mailer.send_if_enabled(email, "Confirm your email address", |url| {
        format!(
            "Welcome to Conclave.\n\nConfirm your email address with this token (valid for {CONFIRMATION_HOURS} hours):\n\n{token}\n\nor open {url}/confirm-email?token={token}\n\nIf you did not create an account, ignore this message.\n"
        )
    })
}

#[utoipa::path(
    post,
    path = "/v1/auth/confirm-email",
    tag = "auth",
    operation_id = "confirm_email",
    security(()),
    request_body = ConfirmEmailRequest,
    responses(
        (status = 200, description = "The address is confirmed", body = EmailConfirmed),
        (status = 400, description = "`invalid_emailed_token`", body = crate::error::ErrorBody),
    )
)]
pub async fn confirm_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ConfirmEmailRequest>,
) -> ApiResult<axum::Json<EmailConfirmed>> {
    let invalid =
        || ApiError::new(ErrorCode::InvalidEmailedToken, "the confirmation token is invalid, used or expired");
    if !tokens::looks_like(Kind::EmailConfirmation, &body.token) {
        return Err(invalid());
    }
    let mut tx = state.db.begin().await?;
    // Consuming is one statement, so two concurrent uses cannot both succeed.
    let confirmed = sqlx::query!(
        "UPDATE email_confirmation_tokens SET consumed_at = now()
          WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now()
          RETURNING user_id, email::text AS \"email!\"",
        tokens::digest(&body.token)
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid)?;
    sqlx::query!(
        "UPDATE user_accounts SET email_confirmed_at = coalesce(email_confirmed_at, now()) WHERE id = $1 AND email = $2",
        confirmed.user_id,
        confirmed.email
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(EmailConfirmed { confirmed: true, user_id: confirmed.user_id }))
}

/// `POST /v1/auth/confirm-email`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EmailConfirmed {
    confirmed: bool,
    user_id: Uuid,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ResendConfirmationRequest)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    email: String,
}

/// Always 202, whether or not the address has an unconfirmed account: the answer must not tell
/// who is registered.
#[utoipa::path(
    post,
    path = "/v1/auth/confirm-email/resend",
    tag = "auth",
    operation_id = "resend_confirmation",
    security(()),
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the address has an unconfirmed account"),
        (status = 429, description = "`rate_limited`", body = crate::error::ErrorBody),
    )
)]
pub async fn resend_confirmation(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<EmailRequest>,
) -> ApiResult<StatusCode> {
    ratelimit::check(&state, ratelimit::REGISTER, &ip.key()).await?;
    let email = Email::parse(&body.email)?;
    let mut tx = state.db.begin().await?;
    let user = sqlx::query_scalar!(
        "SELECT id FROM user_accounts WHERE email = $1 AND email_confirmed_at IS NULL AND status = 'active'",
        email.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(user_id) = user {
        let token = new_confirmation(&mut tx, user_id, &email).await?;
        tx.commit().await?;
        send_confirmation(&state, email, token);
    }
    Ok(StatusCode::ACCEPTED)
}
