//! What can go wrong talking to the data plane, and the server's error body parsed into a type.

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::crypto::CryptoError;
use crate::keystore::KeystoreError;
use crate::store::StoreError;

/// An error answer from the data plane: `{"error": {"code", "message", "details"}}`.
///
/// `code` is the stable `snake_case` string to branch on (`rotation_required`,
/// `wrap_set_mismatch`, `invalid_token`, ...); `message` is for people.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{message} ({code}, HTTP {})", status.as_u16())]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The server's stable error code.
    pub code: String,
    /// The server's human-readable explanation.
    pub message: String,
    /// Structured details (for example the `field` of a validation failure, or the `missing` and
    /// `unexpected` devices of a `wrap_set_mismatch`); `Null` when there are none.
    pub details: Value,
    /// Seconds to wait before retrying, from `Retry-After` (rate limits, lockouts).
    pub retry_after: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Value,
}

impl ApiError {
    /// Parses an error body. A body that is not the documented JSON (a proxy's HTML page, an
    /// empty 502) still gives an error naming the status, with a short excerpt of the text.
    pub fn from_body(status: StatusCode, retry_after: Option<u64>, body: &[u8]) -> Self {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => {
                Self { status, code: error.code, message: error.message, details: error.details, retry_after }
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let excerpt: String = text.trim().chars().take(200).collect();
                let reason = status.canonical_reason().unwrap_or("unexpected answer");
                let message = if excerpt.is_empty() { reason.to_owned() } else { format!("{reason}: {excerpt}") };
                Self { status, code: format!("http_{}", status.as_u16()), message, details: Value::Null, retry_after }
            }
        }
    }

    /// Whether the server answered with this error code.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// The device ids listed under `details.<field>` (for `wrap_set_mismatch`: `missing` and
    /// `unexpected`).
    pub fn detail_ids(&self, field: &str) -> Vec<Uuid> {
        self.details[field]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str()?.parse().ok()).collect())
            .unwrap_or_default()
    }
}

/// Everything the SDK can fail with. None of the variants carries a token or a key.
#[derive(Debug, Error)]
pub enum Error {
    /// The server refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The server could not be reached, or the connection broke. (The cause is the error's
    /// `source`, so `{:#}` in anyhow or [`Error::chain`] prints it once.)
    #[error("cannot reach the server")]
    Transport(#[from] reqwest::Error),
    /// The WebSocket could not be opened or broke.
    #[error("the WebSocket connection failed")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server accepted the connection but did not answer within this time (a dead
    /// route, a server that stopped while the connection was being opened).
    #[error("the server did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server URL is not an `http://` URL (TLS is not supported yet).
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServerUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Protocol v2 (MLS, the identity chain) refused something: an attack, or corrupt state.
    #[error(transparent)]
    Mls(#[from] crate::mls::MlsError),
    /// The local keystore could not be used.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The local session or profile could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operation needs a session; sign in first.
    #[error("not signed in: run `conclave login` first")]
    NotSignedIn,
    /// The session ended on the server (logout elsewhere, device revoked, refresh token reuse).
    #[error("the session has ended ({0}); sign in again")]
    SessionEnded(String),
    /// This device was never given the key of a generation (it was not a member then, or was
    /// removed before it).
    #[error("this device holds no key for generation {generation} of conversation {conversation_id}")]
    MissingKey {
        /// The conversation.
        conversation_id: Uuid,
        /// The generation whose key is missing.
        generation: u32,
    },
    /// An attachment could not be sent or received as the message describes it (size or
    /// SHA-256 differ: altered or truncated; not a file message).
    #[error("attachment: {0}")]
    Attachment(String),
    /// Reading or writing a local file failed.
    #[error("file input/output failed")]
    Io(#[from] std::io::Error),
    /// A message's content is too large or not valid.
    #[error("invalid message content: {0}")]
    Content(String),
    /// A call signal was refused (docs/protocol-v2.md, "Call signalling").
    #[error(transparent)]
    Signal(#[from] crate::calls::signal::SignalError),
    /// A call's peer-to-peer connection failed.
    #[error("call connection: {0}")]
    Peer(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(err: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(err))
    }
}

impl Error {
    /// The server's error, when the server refused the request.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(err) => Some(err),
            _ => None,
        }
    }

    /// The conversation's current epoch, as a refusal for a stale one names it
    /// (`details.current_key_generation`).
    pub fn current_key_generation(&self) -> Option<i64> {
        self.api()?.details.get("current_key_generation")?.as_i64()
    }

    /// Whether the server refused the request with this code.
    pub fn is_api(&self, code: &str) -> bool {
        self.api().is_some_and(|err| err.is(code))
    }

    /// The error and its causes on one line, `: `-separated.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            // Some libraries repeat their source in their own message; say it once.
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_error_body_is_parsed() {
        let body = json!({"error": {"code": "wrap_set_mismatch", "message": "wraps do not match the member devices",
                                    "details": {"missing": ["00000000-0000-0000-0000-000000000001"], "unexpected": []}}});
        let err = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, None, body.to_string().as_bytes());
        assert!(err.is("wrap_set_mismatch"));
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.message, "wraps do not match the member devices");
        assert_eq!(err.detail_ids("missing"), vec![Uuid::from_u128(1)]);
        assert!(err.detail_ids("unexpected").is_empty());
        assert_eq!(err.to_string(), "wraps do not match the member devices (wrap_set_mismatch, HTTP 422)");
    }

    #[test]
    fn null_details_and_retry_after_are_kept() {
        let body = br#"{"error":{"code":"rate_limited","message":"slow down","details":null}}"#;
        let err = ApiError::from_body(StatusCode::TOO_MANY_REQUESTS, Some(7), body);
        assert_eq!((err.code.as_str(), err.retry_after, &err.details), ("rate_limited", Some(7), &Value::Null));
    }

    #[test]
    fn a_body_that_is_not_the_error_json_still_names_the_status() {
        let err = ApiError::from_body(StatusCode::BAD_GATEWAY, None, b"<html>upstream down</html>");
        assert_eq!(err.code, "http_502");
        assert_eq!(err.message, "Bad Gateway: <html>upstream down</html>");
        let err = ApiError::from_body(StatusCode::SERVICE_UNAVAILABLE, None, b"");
        assert_eq!((err.code.as_str(), err.message.as_str()), ("http_503", "Service Unavailable"));
    }
}
