//! The data plane's HTTP API, typed: one method per endpoint on [`Client`].
//!
//! - Request and response bodies are the server's own types, from [`conclave_protocol`]: [`api`]
//!   (messaging), [`auth`], [`devices`], [`tenancy`], [`rich`](conclave_protocol::rich) and
//!   [`compliance`](conclave_protocol::compliance) (privacy requests).
//!
//! [`api`]: conclave_protocol::api
//! [`auth`]: conclave_protocol::auth
//! [`devices`]: conclave_protocol::devices
//! [`tenancy`]: conclave_protocol::tenancy
//! - A failed request is an [`ApiError`] (status, stable `code`, `message`, `details`).
//! - Authenticated calls send the access token; on `401 invalid_token` (typically expired) the
//!   client refreshes once with the refresh token and retries. Refresh tokens rotate on every
//!   use and reusing an old one ends the session, so the new pair is handed to the
//!   [`TokenSink`] (the profile's `session.json`, written atomically) *before* it is used.
//!
//! Transport: plain HTTP (`http://`) only for now; the client is built without TLS. Put it behind
//! a TLS-terminating proxy on the same host, or on a trusted network, until TLS is added.

mod auth;
mod bots;
mod calls;
mod compliance;
mod conversations;
mod error;
mod handshake;
mod identity;
mod notifications;
mod rich;
mod tenancy;

use std::fmt;
use std::sync::Arc;

use conclave_protocol::auth::{RefreshRequest, TokenPair};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use conversations::MessageQuery;
pub use error::{ApiError, Error, Result};
pub use notifications::OverrideScope;

/// An access token and the refresh token that renews it. `Debug` prints neither.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The short-lived bearer token (a JWT).
    pub access_token: String,
    /// The single-use token that mints the next pair.
    pub refresh_token: String,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens { <redacted> }")
    }
}

/// Where a refreshed token pair is persisted before the client uses it.
pub trait TokenSink: Send + Sync {
    /// Stores `tokens`; called with the client's token lock held, so calls never overlap.
    fn store(&self, tokens: &Tokens) -> Result<()>;
}

/// A client of one data plane. Cheap to clone (clones share the tokens).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    base: String,
    tokens: Mutex<Option<Tokens>>,
    sink: Option<Arc<dyn TokenSink>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.inner.base).finish_non_exhaustive()
    }
}

/// One request, kept whole so it can be sent again after a token refresh.
struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    body: Option<Vec<u8>>,
    authenticated: bool,
}

impl Client {
    /// A client of the data plane at `server` (for example `http://127.0.0.1:8080`), signed out.
    pub fn new(server: &str) -> Result<Self> {
        Self::build(server, None, None)
    }

    /// A client that sends `tokens`, and hands every refreshed pair to `sink` before using it.
    pub fn with_session(server: &str, tokens: Tokens, sink: Option<Arc<dyn TokenSink>>) -> Result<Self> {
        Self::build(server, Some(tokens), sink)
    }

    fn build(server: &str, tokens: Option<Tokens>, sink: Option<Arc<dyn TokenSink>>) -> Result<Self> {
        let base = normalize_server(server)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("conclave-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Self { inner: Arc::new(Inner { http, base, tokens: Mutex::new(tokens), sink }) })
    }

    /// The server's base URL, `http://host:port`.
    pub fn server(&self) -> &str {
        &self.inner.base
    }

    /// The current access token (for the WebSocket handshake). Never log it.
    pub async fn access_token(&self) -> Result<String> {
        self.inner.tokens.lock().await.as_ref().map(|t| t.access_token.clone()).ok_or(Error::NotSignedIn)
    }

    /// Replaces the tokens in memory (after a login); does not call the sink.
    pub async fn set_tokens(&self, tokens: Option<Tokens>) {
        *self.inner.tokens.lock().await = tokens;
    }

    /// Renews the token pair now, unless another task already did since `used` was read; returns
    /// the access token to use. The new pair is persisted through the sink before it is returned.
    pub async fn refresh_after(&self, used: Option<&str>) -> Result<String> {
        let mut tokens = self.inner.tokens.lock().await;
        let current = tokens.as_ref().ok_or(Error::NotSignedIn)?;
        if used.is_some_and(|used| used != current.access_token) {
            return Ok(current.access_token.clone());
        }
        let body = RefreshRequest { refresh_token: current.refresh_token.clone() };
        let call = Call::post("/v1/auth/refresh", &body, false)?;
        let pair: TokenPair = match self.send(&call, None).await {
            Ok(bytes) => decode(&bytes)?,
            Err(Error::Api(err)) if err.status == StatusCode::UNAUTHORIZED => {
                return Err(Error::SessionEnded(err.code));
            }
            Err(err) => return Err(err),
        };
        let next = Tokens { access_token: pair.access_token, refresh_token: pair.refresh_token };
        // The old refresh token is spent: keep the new pair in memory whatever happens, and
        // report a failure to persist it (the next process would present a spent token).
        let stored = self.inner.sink.as_ref().map(|sink| sink.store(&next)).unwrap_or(Ok(()));
        let access = next.access_token.clone();
        *tokens = Some(next);
        stored.map(|()| access)
    }

    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T> {
        decode(&self.execute(Call::new(Method::GET, path, true)).await?)
    }

    async fn get_query<T: DeserializeOwned>(&self, path: String, query: Vec<(&str, String)>) -> Result<T> {
        let mut call = Call::new(Method::GET, path, true);
        call.query = query;
        decode(&self.execute(call).await?)
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        decode(&self.execute(Call::post(path, body, true)?).await?)
    }

    async fn post_unauthenticated<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        decode(&self.execute(Call::post(path, body, false)?).await?)
    }

    /// A request whose answer body does not matter (204, or a body this client ignores).
    async fn send_ignoring_body(&self, call: Call<'_>) -> Result<()> {
        self.execute(call).await.map(drop)
    }

    async fn execute(&self, call: Call<'_>) -> Result<Vec<u8>> {
        if !call.authenticated {
            return self.send(&call, None).await;
        }
        let token = self.access_token().await?;
        match self.send(&call, Some(&token)).await {
            Err(Error::Api(err)) if err.status == StatusCode::UNAUTHORIZED && err.is("invalid_token") => {
                let token = self.refresh_after(Some(&token)).await?;
                self.send(&call, Some(&token)).await
            }
            other => other,
        }
    }

    async fn send(&self, call: &Call<'_>, token: Option<&str>) -> Result<Vec<u8>> {
        let url = format!("{}{}", self.inner.base, call.path);
        let mut request = self.inner.http.request(call.method.clone(), url);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        let body = response.bytes().await?.to_vec();
        if status.is_success() { Ok(body) } else { Err(ApiError::from_body(status, retry_after, &body).into()) }
    }
}

impl<'a> Call<'a> {
    fn new(method: Method, path: String, authenticated: bool) -> Self {
        Self { method, path, query: Vec::new(), body: None, authenticated }
    }

    fn post<B: Serialize + ?Sized>(path: &str, body: &B, authenticated: bool) -> Result<Self> {
        Self::with_body(Method::POST, path, body, authenticated)
    }

    fn with_body<B: Serialize + ?Sized>(method: Method, path: &str, body: &B, authenticated: bool) -> Result<Self> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Protocol(format!("encoding a request: {e}")))?;
        Ok(Self { body: Some(body), ..Self::new(method, path.to_owned(), authenticated) })
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // An empty success body (204) reads as JSON null, for the calls that expect nothing.
    let bytes = if bytes.is_empty() { b"null".as_slice() } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| Error::Protocol(e.to_string()))
}

/// Checks a server URL and drops a trailing slash: `http://` only (see the module docs).
pub fn normalize_server(server: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidServerUrl { url: server.to_owned(), reason };
    let url = reqwest::Url::parse(server.trim()).map_err(|_| invalid("not a URL"))?;
    match url.scheme() {
        "http" => {}
        "https" => return Err(invalid("https is not supported yet: this client is built without TLS")),
        _ => return Err(invalid("the URL must start with http://")),
    }
    if url.host_str().is_none() {
        return Err(invalid("the URL names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("the URL must not carry a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_http_without_trailing_slash() {
        assert_eq!(normalize_server("http://127.0.0.1:8080/").expect("ok"), "http://127.0.0.1:8080");
        assert_eq!(
            normalize_server(" http://chat.example.org/conclave/ ").expect("ok"),
            "http://chat.example.org/conclave"
        );
        assert!(matches!(normalize_server("https://chat.example.org"), Err(Error::InvalidServerUrl { .. })));
        assert!(matches!(normalize_server("chat.example.org"), Err(Error::InvalidServerUrl { .. })));
        assert!(matches!(normalize_server("http://x.org/?a=b"), Err(Error::InvalidServerUrl { .. })));
    }

    #[test]
    fn tokens_never_appear_in_debug_output() {
        let tokens = Tokens { access_token: "secret-access".into(), refresh_token: "secret-refresh".into() };
        assert!(!format!("{tokens:?}").contains("secret"));
    }
}
