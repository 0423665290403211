//! Privacy requests (docs/compliance.md): filing one, an admin's decision, and downloading an
//! export through its one-time link.

use conclave_protocol::compliance::{
    DecidePrivacyRequest, ExportLink, FilePrivacyRequest, PrivacyRequest, PrivacyRequestKind,
};
use reqwest::Method;
use uuid::Uuid;

use super::{Call, Client, Result};

impl Client {
    /// `POST /v1/organizations/{org}/privacy-requests`: asks for an export or an erasure.
    pub async fn file_privacy_request(&self, org: Uuid, kind: PrivacyRequestKind) -> Result<PrivacyRequest> {
        self.post(&format!("/v1/organizations/{org}/privacy-requests"), &FilePrivacyRequest { kind }).await
    }

    /// `POST /v1/organizations/{org}/privacy-requests/{id}/approve` (admins and owners).
    pub async fn approve_privacy_request(&self, org: Uuid, id: Uuid, reason: Option<String>) -> Result<PrivacyRequest> {
        let path = format!("/v1/organizations/{org}/privacy-requests/{id}/approve");
        self.post(&path, &DecidePrivacyRequest { reason }).await
    }

    /// `GET /v1/privacy-requests`: the caller's own requests, in every organization.
    pub async fn my_privacy_requests(&self) -> Result<Vec<PrivacyRequest>> {
        self.get("/v1/privacy-requests".to_owned()).await
    }

    /// The archive of one of the caller's completed exports: asks for its one-time link, then
    /// follows it. A second download answers `410 export_unavailable`.
    pub async fn download_export(&self, id: Uuid) -> Result<Vec<u8>> {
        let link: ExportLink = self.post(&format!("/v1/privacy-requests/{id}/download-link"), &()).await?;
        // The link's path carries the token: it needs no credentials.
        self.execute(Call::new(Method::GET, link.path, false)).await
    }
}
