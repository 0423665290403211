//! Reactions, pins and attachments (`docs/protocol.md`, "Reactions, pins and attachments").
//! The bodies are [`conclave_protocol::rich`] types; attachments are streamed both ways.

use conclave_protocol::rich::{AddReaction, Attachment, Pin, PinMessage, Reaction};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

use super::{ApiError, Call, Client, Error, Result, decode};

/// Uploads and downloads are bounded by this, not by the client's usual 60 seconds.
const TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

fn conversation_path(org: Uuid, conversation: Uuid) -> String {
    format!("/v1/organizations/{org}/conversations/{conversation}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Client {
    /// `POST .../messages/{m}/reactions`: stores a sealed reaction.
    pub async fn add_reaction(
        &self,
        org: Uuid,
        conversation: Uuid,
        message: Uuid,
        body: &AddReaction,
    ) -> Result<Reaction> {
        self.post(&format!("{}/messages/{message}/reactions", conversation_path(org, conversation)), body).await
    }

    /// `GET .../messages/{m}/reactions`: a message's reactions (encrypted), oldest first.
    pub async fn reactions(&self, org: Uuid, conversation: Uuid, message: Uuid) -> Result<Vec<Reaction>> {
        self.get(format!("{}/messages/{message}/reactions", conversation_path(org, conversation))).await
    }

    /// `DELETE .../messages/{m}/reactions/{value_tag}`: takes back the caller's reaction.
    pub async fn remove_reaction(
        &self,
        org: Uuid,
        conversation: Uuid,
        message: Uuid,
        value_tag: &[u8; 32],
    ) -> Result<()> {
        let tag = conclave_protocol::b64::encode(value_tag);
        let path = format!("{}/messages/{message}/reactions/{tag}", conversation_path(org, conversation));
        self.send_ignoring_body(Call::new(Method::DELETE, path, true)).await
    }

    /// `POST .../pins`.
    pub async fn pin(&self, org: Uuid, conversation: Uuid, message_id: Uuid) -> Result<Pin> {
        self.post(&format!("{}/pins", conversation_path(org, conversation)), &PinMessage { message_id }).await
    }

    /// `GET .../pins`.
    pub async fn pins(&self, org: Uuid, conversation: Uuid) -> Result<Vec<Pin>> {
        self.get(format!("{}/pins", conversation_path(org, conversation))).await
    }

    /// `DELETE .../pins/{m}`.
    pub async fn unpin(&self, org: Uuid, conversation: Uuid, message_id: Uuid) -> Result<()> {
        let path = format!("{}/pins/{message_id}", conversation_path(org, conversation));
        self.send_ignoring_body(Call::new(Method::DELETE, path, true)).await
    }

    /// `POST .../attachments?size=&sha256=`: uploads an encrypted blob of `size` bytes whose
    /// SHA-256 is `sha256`, streamed from the body `make_body` returns. The body is made again
    /// if the access token had to be refreshed first (a stream can be sent only once).
    pub async fn upload_attachment(
        &self,
        org: Uuid,
        conversation: Uuid,
        size: u64,
        sha256: &[u8; 32],
        make_body: impl Fn() -> Result<reqwest::Body>,
    ) -> Result<Attachment> {
        let url = format!("{}{}/attachments", self.inner.base, conversation_path(org, conversation));
        let query = [("size", size.to_string()), ("sha256", hex(sha256))];
        let send = |token: String| {
            let body = make_body();
            let url = url.clone();
            let query = query.clone();
            async move {
                let request = self
                    .inner
                    .http
                    .post(url)
                    .query(&query)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .timeout(TRANSFER_TIMEOUT)
                    .bearer_auth(token)
                    .body(body?);
                finish(request.send().await?).await
            }
        };
        decode(&self.with_token(send).await?.bytes().await?)
    }

    /// `GET .../attachments/{a}`: the encrypted blob, as a response whose body the caller streams
    /// (`bytes_stream`). Members may download attached files; an unsent one only its uploader.
    pub async fn download_attachment(
        &self,
        org: Uuid,
        conversation: Uuid,
        attachment: Uuid,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}/attachments/{attachment}", self.inner.base, conversation_path(org, conversation));
        self.with_token(|token: String| {
            let request = self.inner.http.get(url.clone()).timeout(TRANSFER_TIMEOUT).bearer_auth(token);
            async move { finish(request.send().await?).await }
        })
        .await
    }

    /// Runs `send` (a request that cannot go through [`Call`]: a streamed or raw body) with the
    /// access token, and once more with a refreshed one when the server says it expired.
    pub(super) async fn with_token<F, Fut>(&self, send: F) -> Result<reqwest::Response>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Response>>,
    {
        let token = self.access_token().await?;
        match send(token.clone()).await {
            Err(Error::Api(err)) if err.status == StatusCode::UNAUTHORIZED && err.is("invalid_token") => {
                send(self.refresh_after(Some(&token)).await?).await
            }
            other => other,
        }
    }
}

/// A successful response as it is (its body still to read), or the error body parsed.
pub(super) async fn finish(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok());
    let body = response.bytes().await?;
    Err(ApiError::from_body(status, retry_after, &body).into())
}
