//! Accounts, sessions and devices.

use conclave_protocol::auth::{ConfirmEmailRequest, LoginRequest, Me, RegisterRequest, Registered, TokenPair};
use conclave_protocol::devices::{Device, NewDevice};
use reqwest::Method;
use uuid::Uuid;

use super::{Call, Client, Result, Tokens};

impl Client {
    /// `POST /v1/auth/register`: creates an account; the server emails a confirmation token.
    pub async fn register(&self, email: &str, password: &str, display_name: &str) -> Result<Registered> {
        let body = RegisterRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            display_name: display_name.to_owned(),
        };
        self.post_unauthenticated("/v1/auth/register", &body).await
    }

    /// `POST /v1/auth/confirm-email`: confirms the address with the emailed token.
    pub async fn confirm_email(&self, token: &str) -> Result<()> {
        let body = ConfirmEmailRequest { token: token.to_owned() };
        self.send_ignoring_body(Call::post("/v1/auth/confirm-email", &body, false)?).await
    }

    /// `POST /v1/auth/login`: opens a session (registering the device when it is new). The
    /// client uses the new tokens from then on; persisting them is the caller's job.
    pub async fn login(&self, login: &LoginRequest) -> Result<TokenPair> {
        let pair: TokenPair = self.post_unauthenticated("/v1/auth/login", login).await?;
        self.set_tokens(Some(Tokens {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
        }))
        .await;
        Ok(pair)
    }

    /// `POST /v1/auth/logout`: ends this session on the server, and forgets the tokens.
    pub async fn logout(&self) -> Result<()> {
        let result = self.send_ignoring_body(Call::new(Method::POST, "/v1/auth/logout".into(), true)).await;
        self.set_tokens(None).await;
        result
    }

    /// `GET /v1/me`.
    pub async fn me(&self) -> Result<Me> {
        self.get("/v1/me".into()).await
    }

    /// `GET /v1/devices`: the caller's devices, revoked ones included.
    pub async fn devices(&self) -> Result<Vec<Device>> {
        self.get("/v1/devices".into()).await
    }

    /// `POST /v1/devices`: registers another device of the caller's.
    pub async fn register_device(&self, device: &NewDevice) -> Result<Device> {
        self.post("/v1/devices", device).await
    }

    /// `DELETE /v1/devices/{id}`: revokes a device (its sessions end; conversations it was in
    /// must rotate their key before the next message).
    pub async fn revoke_device(&self, device_id: Uuid) -> Result<()> {
        self.send_ignoring_body(Call::new(Method::DELETE, format!("/v1/devices/{device_id}"), true)).await
    }
}
