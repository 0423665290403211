//! One error type for the whole service, rendered as [`ErrorBody`]:
//! `{"error": {"code": "...", "message": "...", "details": ...}}`.
//!
//! `code` is an [`ErrorCode`]: one enum is the list the server can answer, the HTTP status each
//! code goes with, the JSON word, and the `ErrorCode` schema of the OpenAPI document, so none of
//! them can drift from the others. `message` is for people and never carries SQL, paths or
//! internal detail (those go to the log, with the request's span). `details` is one of the typed
//! [`ErrorDetails`] shapes, documented in the same schema the server serialises.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conclave_schema::{Violation, ViolationKind};
use serde::Serialize;
use std::borrow::Cow;
use utoipa::ToSchema;
use uuid::Uuid;

/// Declares [`ErrorCode`] once: variant, JSON word, HTTP status and documentation together.
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $word:literal, $status:ident; )+) => {
        /// A stable `snake_case` word clients branch on. Each code always comes with the same HTTP
        /// status. New versions may add codes: treat an unknown one by its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The word in the JSON body.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $word,)+ }
            }

            /// The HTTP status this code is always answered with.
            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)+ }
            }
        }
    };
}

error_codes! {
    /// The account was disabled by the platform.
    AccountDisabled = "account_disabled", FORBIDDEN;
    /// Too many failed sign-ins: wait `Retry-After` seconds.
    AccountLocked = "account_locked", FORBIDDEN;
    AlreadyContacts = "already_contacts", CONFLICT;
    AlreadyMember = "already_member", CONFLICT;
    AlreadyPinned = "already_pinned", CONFLICT;
    /// The organization's attachment storage is full (details: `Quota`).
    AttachmentQuotaExceeded = "attachment_quota_exceeded", PAYLOAD_TOO_LARGE;
    AttachmentTooLarge = "attachment_too_large", PAYLOAD_TOO_LARGE;
    /// An avatar is at most 256 KiB.
    AvatarTooLarge = "avatar_too_large", PAYLOAD_TOO_LARGE;
    /// A bot's session called an endpoint no bot may use (`crate::bots::scopes`).
    BotNotAllowed = "bot_not_allowed", FORBIDDEN;
    /// A bot's session called an endpoint that needs a scope its BotAgent does not grant; the
    /// message names the scope.
    BotScopeMissing = "bot_scope_missing", FORBIDDEN;
    ChannelNameTaken = "channel_name_taken", CONFLICT;
    ContactBlocked = "contact_blocked", CONFLICT;
    ContactRefused = "contact_refused", FORBIDDEN;
    /// Another device of the same account answered this call first.
    CallAnsweredElsewhere = "call_answered_elsewhere", CONFLICT;
    /// The call has ended: nothing changes it any more.
    CallEnded = "call_ended", CONFLICT;
    /// The call has as many participants as a full mesh allows (docs/calls.md).
    CallFull = "call_full", CONFLICT;
    /// The conversation already has a call that has not ended: join it instead.
    CallInProgress = "call_in_progress", CONFLICT;
    /// The action does not apply to the call and participant as they are (for example declining
    /// a call one is already in).
    CallStateConflict = "call_state_conflict", CONFLICT;
    /// The database pool is exhausted, or the database cannot be reached for now (restarting,
    /// connection lost): retry after `Retry-After`.
    DatabaseBusy = "database_busy", SERVICE_UNAVAILABLE;
    /// The request's work outlasted `--request-deadline-secs` (a database gone silent): whether
    /// a write took effect is unknown; retry what is idempotent after `Retry-After`.
    DeadlineExceeded = "deadline_exceeded", SERVICE_UNAVAILABLE;
    /// A webhook delivery is still being attempted (`pending`, `sending` or `failed` with a retry
    /// to come): only a delivered or given-up one can be replayed.
    DeliveryInProgress = "delivery_in_progress", CONFLICT;
    /// This device is already in another call.
    DeviceBusy = "device_busy", CONFLICT;
    DirectConversation = "direct_conversation", CONFLICT;
    /// `email_delay_minutes` is outside 5..=10080 (a week).
    EmailDelayOutOfRange = "email_delay_out_of_range", UNPROCESSABLE_ENTITY;
    /// A uniqueness rule of the schema refused the write.
    Duplicate = "duplicate", CONFLICT;
    EmailDisabled = "email_disabled", SERVICE_UNAVAILABLE;
    /// The organization admits only some email domains (details: `AllowedDomains`).
    EmailDomainNotAllowed = "email_domain_not_allowed", UNPROCESSABLE_ENTITY;
    EmailNotConfirmed = "email_not_confirmed", FORBIDDEN;
    /// The webhook endpoint is disabled (by its resource, or after its failure budget): enable it
    /// before replaying deliveries to it.
    EndpointDisabled = "endpoint_disabled", CONFLICT;
    /// A privacy export was downloaded already (it can be downloaded once) or has expired: file
    /// a new request.
    ExportUnavailable = "export_unavailable", GONE;
    GuestAccessDisabled = "guest_access_disabled", FORBIDDEN;
    /// The account has another identity key (protocol v2): receive it from one of its devices,
    /// or replace it explicitly.
    IdentityExists = "identity_exists", CONFLICT;
    /// The uploaded bytes do not have the declared SHA-256.
    HashMismatch = "hash_mismatch", UNPROCESSABLE_ENTITY;
    InsufficientRole = "insufficient_role", FORBIDDEN;
    InternalError = "internal_error", INTERNAL_SERVER_ERROR;
    /// The JSON body has the wrong shape (types, unknown or missing fields).
    InvalidBody = "invalid_body", UNPROCESSABLE_ENTITY;
    InvalidBotToken = "invalid_bot_token", UNAUTHORIZED;
    /// A device credential is malformed, names another user or device, or does not verify.
    InvalidCredential = "invalid_credential", UNPROCESSABLE_ENTITY;
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED;
    /// A registered device's proof (a bot session's `device_proof`) is not a fresh signature by
    /// that device's key, or was used before.
    InvalidDeviceProof = "invalid_device_proof", UNAUTHORIZED;
    /// An emailed token (email confirmation, password reset) is unknown, used or expired.
    InvalidEmailedToken = "invalid_emailed_token", BAD_REQUEST;
    /// A conversation invite token is unknown, expired, revoked or used up.
    InvalidInvite = "invalid_invite", BAD_REQUEST;
    /// A mentioned user is not a member of the conversation, or is the sender.
    InvalidMention = "invalid_mention", UNPROCESSABLE_ENTITY;
    /// A locale is not a BCP 47 language tag (`fr`, `pt-BR`).
    InvalidLocale = "invalid_locale", UNPROCESSABLE_ENTITY;
    /// An avatar's bytes are not the image its `Content-Type` says (PNG, JPEG or WebP).
    InvalidImage = "invalid_image", UNPROCESSABLE_ENTITY;
    /// `muted_until` is in the past or more than a year ahead.
    InvalidMuteUntil = "invalid_mute_until", UNPROCESSABLE_ENTITY;
    /// Bytes are not the MLS message they are said to be (details: the field and why): not MLS
    /// 1.0, another kind of message, another conversation's group, another epoch or cipher suite.
    InvalidMlsMessage = "invalid_mls_message", UNPROCESSABLE_ENTITY;
    InvalidPath = "invalid_path", BAD_REQUEST;
    /// Quiet hours need `start` and `end` as different `HH:MM` times.
    InvalidQuietHours = "invalid_quiet_hours", UNPROCESSABLE_ENTITY;
    /// The query string has the wrong shape.
    InvalidQuery = "invalid_query", UNPROCESSABLE_ENTITY;
    /// A reference of the schema refused the write (something it names does not exist).
    InvalidReference = "invalid_reference", UNPROCESSABLE_ENTITY;
    InvalidRefreshToken = "invalid_refresh_token", UNAUTHORIZED;
    InvalidRequest = "invalid_request", BAD_REQUEST;
    /// A time zone is not an IANA name (`Europe/Paris`).
    InvalidTimeZone = "invalid_time_zone", UNPROCESSABLE_ENTITY;
    /// The access token is invalid or expired: refresh it.
    InvalidToken = "invalid_token", UNAUTHORIZED;
    InvalidTotp = "invalid_totp", UNAUTHORIZED;
    /// An unsubscribe link is unknown, used or expired.
    InvalidUnsubscribeToken = "invalid_unsubscribe_token", BAD_REQUEST;
    /// A check rule of the schema refused the value.
    InvalidValue = "invalid_value", UNPROCESSABLE_ENTITY;
    InvitationDeclined = "invitation_declined", GONE;
    InvitationEmailMismatch = "invitation_email_mismatch", FORBIDDEN;
    InvitationExists = "invitation_exists", CONFLICT;
    InvitationExpired = "invitation_expired", GONE;
    InvitationRevoked = "invitation_revoked", GONE;
    InvitationUsed = "invitation_used", GONE;
    LastOwner = "last_owner", CONFLICT;
    /// A standing legal hold names the person: their erasure waits until it is lifted.
    LegalHoldActive = "legal_hold_active", CONFLICT;
    MalformedJson = "malformed_json", BAD_REQUEST;
    /// The organization is full (details: `MemberLimit`).
    MemberLimitReached = "member_limit_reached", CONFLICT;
    MessageDeleted = "message_deleted", CONFLICT;
    MessageTooLarge = "message_too_large", PAYLOAD_TOO_LARGE;
    /// The path exists, the method does not.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    MissingToken = "missing_token", UNAUTHORIZED;
    /// A required value of the schema is missing.
    MissingValue = "missing_value", UNPROCESSABLE_ENTITY;
    /// A key generation may only be the current one plus one (details: `KeyGeneration`).
    NotNextGeneration = "not_next_generation", UNPROCESSABLE_ENTITY;
    NotAWorkspaceMember = "not_a_workspace_member", CONFLICT;
    /// Unknown, or not visible to the caller: another organization's ids answer exactly like
    /// ids that do not exist.
    NotFound = "not_found", NOT_FOUND;
    NotTheSender = "not_the_sender", FORBIDDEN;
    OwnInvitation = "own_invitation", CONFLICT;
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    /// The privacy request was decided already: completed or rejected (and an approved one can
    /// no longer be rejected).
    PrivacyRequestClosed = "privacy_request_closed", CONFLICT;
    /// Wait `Retry-After` seconds.
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    ReactionExists = "reaction_exists", CONFLICT;
    /// The JSON request body did not arrive within the deadline counted from the request head
    /// (`--body-read-timeout-secs`); the connection closes.
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT;
    ReactionTooLarge = "reaction_too_large", PAYLOAD_TOO_LARGE;
    /// Redis is unavailable: retry after `Retry-After`.
    RealtimeUnavailable = "realtime_unavailable", SERVICE_UNAVAILABLE;
    /// A refresh token was used twice: its whole session ended.
    RefreshTokenReused = "refresh_token_reused", UNAUTHORIZED;
    /// The membership changed: upload the next key generation first (details: `KeyGeneration`).
    RotationRequired = "rotation_required", CONFLICT;
    SessionExpiredByOrganization = "session_expired_by_organization", UNAUTHORIZED;
    SessionRevoked = "session_revoked", UNAUTHORIZED;
    /// The uploaded bytes are not the declared size.
    SizeMismatch = "size_mismatch", UNPROCESSABLE_ENTITY;
    /// Someone else rotated first: this generation was superseded (details: `KeyGeneration`).
    StaleGeneration = "stale_generation", CONFLICT;
    TotpAlreadyEnabled = "totp_already_enabled", CONFLICT;
    TotpNotEnabled = "totp_not_enabled", CONFLICT;
    TotpNotEnrolled = "totp_not_enrolled", CONFLICT;
    TotpRequired = "totp_required", UNAUTHORIZED;
    TotpRequiredByOrganization = "totp_required_by_organization", FORBIDDEN;
    /// This deployment names no TURN server (the `DataPlane` resource's `turn`): calls can still
    /// connect directly, without relay candidates.
    TurnNotConfigured = "turn_not_configured", SERVICE_UNAVAILABLE;
    UnknownAttachment = "unknown_attachment", UNPROCESSABLE_ENTITY;
    /// The key generation does not exist yet (details: `KeyGeneration`).
    UnknownGeneration = "unknown_generation", CONFLICT;
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    UploadInterrupted = "upload_interrupted", BAD_REQUEST;
    /// A field's value breaks a rule (details: `Field`).
    ValidationFailed = "validation_failed", UNPROCESSABLE_ENTITY;
    /// The password is refused (details: `WeakPassword`).
    WeakPassword = "weak_password", UNPROCESSABLE_ENTITY;
    /// `GET /v1/ws` without a WebSocket upgrade.
    WebsocketRequired = "websocket_required", UPGRADE_REQUIRED;
    /// The key wraps are not exactly one per member device (details: `WrapSet`).
    WrapSetMismatch = "wrap_set_mismatch", UNPROCESSABLE_ENTITY;
}

impl From<ViolationKind> for ErrorCode {
    fn from(kind: ViolationKind) -> Self {
        match kind {
            ViolationKind::Duplicate => Self::Duplicate,
            ViolationKind::Reference => Self::InvalidReference,
            ViolationKind::Invalid => Self::InvalidValue,
            ViolationKind::Missing => Self::MissingValue,
            // Row-level security refused it: for the caller that is something not found.
            ViolationKind::Forbidden => Self::NotFound,
        }
    }
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; never carries internal detail.
    #[schema(value_type = String)]
    pub message: Cow<'static, str>,
    /// More about some codes (each code's description names its shape), else null.
    #[schema(required = true)]
    pub details: Option<ErrorDetails>,
}

/// The shapes `details` takes; which code carries which is said on [`ErrorCode`].
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ErrorDetails {
    /// `validation_failed`, `invalid_mls_message`: the field and what is wrong with it.
    Field { field: Cow<'static, str>, reason: Cow<'static, str> },
    /// `rotation_required`, `stale_generation`, `unknown_generation`, `not_next_generation`.
    KeyGeneration { current_key_generation: i32 },
    /// `wrap_set_mismatch`: member devices without a wrap, wraps for devices that are not
    /// members, and whether a device was wrapped for twice.
    WrapSet { missing: Vec<Uuid>, unexpected: Vec<Uuid>, duplicates: bool },
    /// `weak_password`: the rule that refused it (`too_short`, `too_long`, `too_repetitive`,
    /// `too_common`, `contains_email`) and the minimum length.
    WeakPassword { rule: Cow<'static, str>, min_length: usize },
    /// `email_domain_not_allowed`.
    AllowedDomains { field: Cow<'static, str>, allowed_email_domains: Vec<String> },
    /// `member_limit_reached`.
    MemberLimit { max_members: i64, members: i64 },
    /// `attachment_quota_exceeded`.
    Quota { quota_bytes: i64, used_bytes: i64 },
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub details: Option<ErrorDetails>,
    /// Seconds a client should wait (rate limits, lockouts): sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `code` (and so its status).
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), details: None, retry_after: None }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn with_details(mut self, details: ErrorDetails) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 422 `validation_failed` naming the field.
    pub fn validation(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let message = message.into();
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {message}"))
            .with_details(ErrorDetails::Field { field: field.into(), reason: message })
    }

    /// `invalid_mls_message` for `field`.
    pub fn invalid_mls(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let message = message.into();
        Self::new(ErrorCode::InvalidMlsMessage, format!("{field}: {message}"))
            .with_details(ErrorDetails::Field { field: field.into(), reason: message })
    }

    /// Also what another organization's ids get: they answer exactly like ids that do not exist.
    pub fn not_found(what: &'static str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "something went wrong on our side")
    }

    /// The body this error renders.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail { code: self.code, message: self.message.clone(), details: self.details.clone() },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code.as_str(), status = status.as_u16(), "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Constraint violations are the caller's mistake and get a 4xx naming the rule; anything else
/// from the database is ours, logged in full and answered with a bare 500.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if let Some(v) = Violation::from_sqlx(&err) {
            if v.kind == ViolationKind::Forbidden {
                return Self::not_found("resource");
            }
            tracing::info!(constraint = ?v.constraint, table = ?v.table, "write refused by a constraint");
            return Self::new(v.kind.into(), v.message);
        }
        if matches!(err, sqlx::Error::PoolTimedOut) {
            tracing::error!(error = %err, "database pool exhausted");
            return Self::new(ErrorCode::DatabaseBusy, "the service is overloaded, try again shortly").retry_after(1);
        }
        if database_unreachable(&err) {
            tracing::error!(error = %err, "database unreachable");
            return Self::new(ErrorCode::DatabaseBusy, "the database is unavailable, try again shortly").retry_after(1);
        }
        tracing::error!(error = %err, "database error");
        Self::internal()
    }
}

/// The database went away under the request (a restart, a failover, a lost connection) or does
/// not accept connections yet: nothing was committed by a statement that failed so, and the same
/// request may succeed once it is back, so it is answered as retryable rather than as our bug.
fn database_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01-57P03: admin or crash shutdown, cannot connect now.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(err: redis::RedisError) -> Self {
        tracing::error!(error = %err, "redis error");
        Self::new(ErrorCode::RealtimeUnavailable, "a backing service is unavailable, try again shortly").retry_after(1)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        tracing::error!(error = %err, "blocking task failed");
        Self::internal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    async fn body(err: ApiError) -> (StatusCode, Option<String>, Value) {
        let response = err.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, retry, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn errors_render_the_documented_json_shape() {
        let (status, retry, json) = body(ApiError::validation("email", "is not an email address")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(retry, None);
        assert_eq!(
            json,
            json!({"error": {"code": "validation_failed", "message": "email: is not an email address",
                             "details": {"field": "email", "reason": "is not an email address"}}})
        );
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after() {
        let (status, retry, json) = body(ApiError::new(ErrorCode::RateLimited, "slow down").retry_after(42)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("42"));
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(json["error"]["details"], Value::Null);
    }

    #[tokio::test]
    async fn a_database_that_went_away_is_retryable() {
        let lost = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer"));
        let (status, retry, json) = body(ApiError::from(lost)).await;
        assert_eq!((status, retry.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        assert_eq!(json["error"]["code"], "database_busy");
        assert!(!json.to_string().contains("reset by peer"));
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_about_the_inside() {
        let (status, _, json) = body(ApiError::from(sqlx::Error::Protocol("secret detail".into()))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!json.to_string().contains("secret detail"));
    }

    #[test]
    fn every_code_serialises_as_its_word_and_words_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).expect("json"), json!(code.as_str()));
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code:?}");
        }
    }
}
