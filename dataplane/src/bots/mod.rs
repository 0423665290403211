//! Bots: accounts of software, declared as `BotAgent` resources. The operator generates each
//! bot's token into a Secret and stores only its SHA-256 digest; a bot authenticates with
//! `Authorization: Bearer <token>`. During a rotation the previous token keeps working until its
//! overlap ends, so a bot can pick up the new Secret without downtime.
//!
//! A bot is a member device like any other ([`sessions`]): with its token it opens a session
//! (`POST /v1/bot/sessions`) on a device whose keys the bot process generated, as the principal
//! of an account of its own that the data plane creates the first time. From then on it calls
//! the API with ordinary access tokens, publishes key packages, is added to conversations by
//! their admins, and receives Welcomes and commits like any member; the server never decrypts
//! for it. Two things differ from a person's session, both checked on every request by
//! [`crate::context::session::AuthUser`]: the session lives only as long as the bot token that
//! opened it (current, or previous during a rotation's overlap; a disabled bot's sessions end at
//! once), and each endpoint needs the scope [`scopes`] declares for it.

pub mod scopes;
mod sessions;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use conclave_credentials::token::BOT_TOKEN_PREFIX;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me)).routes(routes!(sessions::open))
}

/// The scopes of the enabled bot whose token (current, or previous within its overlap) has
/// this digest, in an active organization; `None` when there is none (any more).
pub async fn scopes_of_token(state: &AppState, digest: &[u8]) -> Result<Option<Vec<String>>, ApiError> {
    Ok(sqlx::query_scalar!(r#"SELECT scopes AS "scopes!" FROM conclave_bot_by_token($1)"#, digest)
        .fetch_optional(&state.db)
        .await?)
}

/// An authenticated bot.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bot {
    pub bot_id: Uuid,
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    pub display_name: String,
    pub scopes: Vec<String>,
    /// Authenticated with the previous token of a rotation still in its overlap window: time to
    /// reload the Secret.
    pub previous_token: bool,
}

/// An authenticated bot and the digest of the token it presented.
pub struct BotToken {
    pub bot: Bot,
    pub digest: Vec<u8>,
}

impl FromRequestParts<AppState> for Bot {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        BotToken::from_request_parts(parts, state).await.map(|token| token.bot)
    }
}

impl FromRequestParts<AppState> for BotToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::new(ErrorCode::InvalidBotToken, "the bot token is invalid, disabled or expired");
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::new(ErrorCode::MissingToken, "send the bot token: Authorization: Bearer <token>")
            })?;
        if !token.starts_with(BOT_TOKEN_PREFIX) {
            return Err(invalid());
        }
        let digest = crate::tokens::digest(token);
        let row = sqlx::query!(
            r#"SELECT organization_id AS "organization_id!", bot_id AS "bot_id!", workspace_id AS "workspace_id!",
                      display_name AS "display_name!", scopes AS "scopes!", previous_token AS "previous_token!"
                 FROM conclave_bot_by_token($1)"#,
            &digest
        )
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(invalid)?;
        let bot = Bot {
            bot_id: row.bot_id,
            organization_id: row.organization_id,
            workspace_id: row.workspace_id,
            display_name: row.display_name,
            scopes: row.scopes,
            previous_token: row.previous_token,
        };
        Ok(Self { bot, digest })
    }
}

/// Who the presented bot token belongs to.
#[utoipa::path(
    get,
    path = "/v1/bot",
    tag = "bots",
    operation_id = "bot_me",
    responses(
        (status = 200, description = "The bot the token belongs to", body = Bot),
        (status = 401, description = "`invalid_bot_token` or `missing_token`", body = crate::error::ErrorBody),
    )
)]
async fn me(State(_state): State<AppState>, bot: Bot) -> Json<Bot> {
    Json(bot)
}
