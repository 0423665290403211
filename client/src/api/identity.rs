//! Protocol v2's identity calls: the account's identity key, the members' keys for safety numbers,
//! and identity keys sealed by one of the caller's devices for another.

use conclave_protocol::identity::{Identity, IdentityTransfer, PublishIdentity, SealedIdentity};
use reqwest::Method;
use uuid::Uuid;

use super::{Call, Client, Result, decode};

impl Client {
    /// `GET /v1/identity`: the account's identity key (`not_found` before its first device made one).
    pub async fn own_identity(&self) -> Result<Identity> {
        self.get("/v1/identity".to_owned()).await
    }

    /// `PUT /v1/identity`: publishes the identity key with this device's credential under it.
    pub async fn publish_identity(&self, body: &PublishIdentity) -> Result<Identity> {
        decode(&self.execute(Call::with_body(Method::PUT, "/v1/identity", body, true)?).await?)
    }

    /// `GET /v1/organizations/{org}/members/{user}/identity`: a fellow member's identity key.
    pub async fn member_identity(&self, org: Uuid, user_id: Uuid) -> Result<Identity> {
        self.get(format!("/v1/organizations/{org}/members/{user_id}/identity")).await
    }

    /// `PUT /v1/devices/{device}/identity-transfer`: the identity key sealed for another device.
    pub async fn send_identity_transfer(&self, device_id: Uuid, body: &SealedIdentity) -> Result<()> {
        let path = format!("/v1/devices/{device_id}/identity-transfer");
        self.send_ignoring_body(Call::with_body(Method::PUT, &path, body, true)?).await
    }

    /// `POST /v1/identity/transfer`: takes the identity key sealed for this device (once).
    pub async fn take_identity_transfer(&self) -> Result<IdentityTransfer> {
        decode(&self.execute(Call::new(Method::POST, "/v1/identity/transfer".to_owned(), true)).await?)
    }
}
