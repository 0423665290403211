//! Profiles, notification preferences, the exact-email member lookup and unread counts
//! (`docs/notifications.md`).

use conclave_protocol::notifications::{
    LookupMember, NotificationOverride, NotificationPreferences, Profile, SetNotificationOverride, UnreadCounts,
    UpdateNotificationPreferences, UpdateProfile,
};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use uuid::Uuid;

use super::{Call, Client, Result};

/// Which override: an organization's, one of its workspaces', or one of its conversations'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideScope {
    Organization,
    Workspace(Uuid),
    Conversation(Uuid),
}

fn override_path(org: Uuid, scope: OverrideScope) -> String {
    match scope {
        OverrideScope::Organization => format!("/v1/organizations/{org}/notification-preferences"),
        OverrideScope::Workspace(ws) => format!("/v1/organizations/{org}/workspaces/{ws}/notification-preferences"),
        OverrideScope::Conversation(c) => format!("/v1/organizations/{org}/conversations/{c}/notification-preferences"),
    }
}

impl Client {
    /// `GET /v1/profile`.
    pub async fn profile(&self) -> Result<Profile> {
        self.get("/v1/profile".into()).await
    }

    /// `PATCH /v1/profile`.
    pub async fn update_profile(&self, body: &UpdateProfile) -> Result<Profile> {
        super::decode(&self.execute(Call::with_body(Method::PATCH, "/v1/profile", body, true)?).await?)
    }

    /// `PUT /v1/profile/avatar`: uploads a picture (`media_type`: `image/png`, `image/jpeg` or
    /// `image/webp`, at most 256 KiB); the old one is deleted.
    pub async fn upload_avatar(&self, media_type: &str, bytes: Vec<u8>) -> Result<Profile> {
        let url = format!("{}/v1/profile/avatar", self.inner.base);
        let response = self
            .with_token(|token: String| {
                let request = self
                    .inner
                    .http
                    .put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .bearer_auth(token)
                    .body(bytes.clone());
                async move { super::rich::finish(request.send().await?).await }
            })
            .await?;
        super::decode(&response.bytes().await?)
    }

    /// `DELETE /v1/profile/avatar`.
    pub async fn delete_avatar(&self) -> Result<Profile> {
        super::decode(&self.execute(Call::new(Method::DELETE, "/v1/profile/avatar".into(), true)).await?)
    }

    /// `GET /v1/organizations/{org}/members/{user}/avatar`: a member's picture and its media type.
    pub async fn member_avatar(&self, org: Uuid, user: Uuid) -> Result<(String, Vec<u8>)> {
        let url = format!("{}/v1/organizations/{org}/members/{user}/avatar", self.inner.base);
        let response = self
            .with_token(|token: String| {
                let request = self.inner.http.get(url.clone()).bearer_auth(token);
                async move { super::rich::finish(request.send().await?).await }
            })
            .await?;
        let media_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok((media_type, response.bytes().await?.to_vec()))
    }

    /// `GET /v1/organizations/{org}/members/{user}/profile`.
    pub async fn member_profile(&self, org: Uuid, user: Uuid) -> Result<Profile> {
        self.get(format!("/v1/organizations/{org}/members/{user}/profile")).await
    }

    /// `POST /v1/organizations/{org}/members/lookup`: the member with exactly this address
    /// (`not_found` for anyone else).
    pub async fn lookup_member(&self, org: Uuid, email: &str) -> Result<Profile> {
        self.post(&format!("/v1/organizations/{org}/members/lookup"), &LookupMember { email: email.to_owned() }).await
    }

    /// `GET /v1/notification-preferences`.
    pub async fn notification_preferences(&self) -> Result<NotificationPreferences> {
        self.get("/v1/notification-preferences".into()).await
    }

    /// `PATCH /v1/notification-preferences`.
    pub async fn update_notification_preferences(
        &self,
        body: &UpdateNotificationPreferences,
    ) -> Result<NotificationPreferences> {
        let call = Call::with_body(Method::PATCH, "/v1/notification-preferences", body, true)?;
        super::decode(&self.execute(call).await?)
    }

    /// `GET /v1/organizations/{org}/notification-preferences`: the caller's overrides there.
    pub async fn notification_overrides(&self, org: Uuid) -> Result<Vec<NotificationOverride>> {
        self.get(override_path(org, OverrideScope::Organization)).await
    }

    /// `PUT .../notification-preferences` of a scope.
    pub async fn set_notification_override(
        &self,
        org: Uuid,
        scope: OverrideScope,
        body: &SetNotificationOverride,
    ) -> Result<NotificationOverride> {
        let call = Call::with_body(Method::PUT, &override_path(org, scope), body, true)?;
        super::decode(&self.execute(call).await?)
    }

    /// `DELETE .../notification-preferences` of a scope: it inherits again.
    pub async fn clear_notification_override(&self, org: Uuid, scope: OverrideScope) -> Result<()> {
        self.send_ignoring_body(Call::new(Method::DELETE, override_path(org, scope), true)).await
    }

    /// `GET /v1/organizations/{org}/unread`.
    pub async fn unread(&self, org: Uuid) -> Result<UnreadCounts> {
        self.get(format!("/v1/organizations/{org}/unread")).await
    }
}
