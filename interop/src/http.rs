//! The few HTTP calls the independent client makes (`docs/protocol.md` "HTTP API",
//! `docs/protocol-v2.md` "Delivery service (HTTP)"), with `reqwest` and the shared JSON body
//! types of `conclave-protocol` (plain serde structs: no cryptography in them).

use anyhow::{Context as _, Result, bail};
use conclave_protocol::api::{Conversation, MemberDevice, Message, MessagePage, SendMessage};
use conclave_protocol::auth::{LoginRequest, TokenPair};
use conclave_protocol::handshake::{
    CommitAccepted, DeliveryService, StoredCommit, StoredGroupInfo, StoredWelcome, UploadCommit,
};
use conclave_protocol::identity::{Identity, PublishIdentity};
use conclave_protocol::keypackages::{KeyPackageStock, UploadKeyPackages};
use conclave_protocol::rich::{AddReaction, Reaction};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A signed-in device's view of the API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    access_token: Option<String>,
}

/// Where a conversation lives.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub org: Uuid,
    pub conversation: Uuid,
}

impl At {
    fn path(&self, rest: &str) -> String {
        format!("/v1/organizations/{}/conversations/{}{rest}", self.org, self.conversation)
    }
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), http: reqwest::Client::new(), access_token: None }
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.access_token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("{method} {path}: body"))?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: {text}"))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `POST /v1/auth/login`; keeps the access token for the calls that follow.
    pub async fn login(&mut self, login: &LoginRequest) -> Result<TokenPair> {
        let pair: TokenPair = self.post("/v1/auth/login", login).await?;
        self.access_token = Some(pair.access_token.clone());
        Ok(pair)
    }

    /// `PUT /v1/identity`.
    pub async fn publish_identity(&self, body: &PublishIdentity) -> Result<Identity> {
        self.call(Method::PUT, "/v1/identity", Some(body)).await
    }

    /// `GET /v1/organizations/{org}/members/{user}/identity`.
    pub async fn member_identity(&self, org: Uuid, user: Uuid) -> Result<Identity> {
        self.get(&format!("/v1/organizations/{org}/members/{user}/identity")).await
    }

    /// `POST /v1/key-packages`.
    pub async fn upload_key_packages(&self, body: &UploadKeyPackages) -> Result<KeyPackageStock> {
        self.post("/v1/key-packages", body).await
    }

    /// `GET /v1/mls/delivery-service`.
    pub async fn delivery_service(&self) -> Result<DeliveryService> {
        self.get("/v1/mls/delivery-service").await
    }

    pub async fn conversation(&self, at: At) -> Result<Conversation> {
        self.get(&at.path("")).await
    }

    pub async fn conversation_devices(&self, at: At) -> Result<Vec<MemberDevice>> {
        self.get(&at.path("/devices")).await
    }

    pub async fn welcome(&self, at: At) -> Result<StoredWelcome> {
        self.get(&at.path("/welcome")).await
    }

    pub async fn commits(&self, at: At, after: i32) -> Result<Vec<StoredCommit>> {
        self.get(&at.path(&format!("/commits?after={after}"))).await
    }

    /// `GET .../group-info`: the current epoch's group info, to rejoin from by external commit.
    pub async fn group_info(&self, at: At) -> Result<StoredGroupInfo> {
        self.get(&at.path("/group-info")).await
    }

    pub async fn upload_commit(&self, at: At, body: &UploadCommit) -> Result<CommitAccepted> {
        self.post(&at.path("/commits"), body).await
    }

    pub async fn send_message(&self, at: At, body: &SendMessage) -> Result<Message> {
        self.post(&at.path("/messages"), body).await
    }

    pub async fn messages_after(&self, at: At, after_seq: i64) -> Result<MessagePage> {
        self.get(&at.path(&format!("/messages?after_seq={after_seq}&limit=100"))).await
    }

    pub async fn add_reaction(&self, at: At, message: Uuid, body: &AddReaction) -> Result<Reaction> {
        self.post(&at.path(&format!("/messages/{message}/reactions")), body).await
    }

    pub async fn reactions(&self, at: At, message: Uuid) -> Result<Vec<Reaction>> {
        self.get(&at.path(&format!("/messages/{message}/reactions"))).await
    }
}
