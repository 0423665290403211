//! Protocol v2's delivery-service calls: key packages, and the ordered commits, Welcomes and group
//! info of a conversation's MLS group.

use conclave_protocol::handshake::{
    CommitAccepted, DeliveryService, PendingProposals, StoredCommit, StoredGroupInfo, StoredWelcome, UploadCommit,
};
use conclave_protocol::keypackages::{ClaimKeyPackages, ClaimedKeyPackages, KeyPackageStock, UploadKeyPackages};
use uuid::Uuid;

use super::conversations::conversation_path;
use super::{Client, Result};

impl Client {
    /// `POST /v1/key-packages`: key packages of this device.
    pub async fn upload_key_packages(&self, body: &UploadKeyPackages) -> Result<KeyPackageStock> {
        self.post("/v1/key-packages", body).await
    }

    /// `GET /v1/key-packages`: how many this device has left on the server.
    pub async fn key_package_stock(&self) -> Result<KeyPackageStock> {
        self.get("/v1/key-packages".to_owned()).await
    }

    /// `POST /v1/organizations/{org}/key-packages/claim`: one per active device of these users.
    pub async fn claim_key_packages(&self, org: Uuid, user_ids: Vec<Uuid>) -> Result<ClaimedKeyPackages> {
        self.claim_device_key_packages(org, user_ids, Vec::new()).await
    }

    /// `POST /v1/organizations/{org}/key-packages/claim`, for only `device_ids` of these users.
    pub async fn claim_device_key_packages(
        &self,
        org: Uuid,
        user_ids: Vec<Uuid>,
        device_ids: Vec<Uuid>,
    ) -> Result<ClaimedKeyPackages> {
        self.post(&format!("/v1/organizations/{org}/key-packages/claim"), &ClaimKeyPackages { user_ids, device_ids })
            .await
    }

    /// `POST .../conversations/{c}/commits`: a commit made in the conversation's current epoch.
    pub async fn upload_commit(&self, org: Uuid, conversation: Uuid, body: &UploadCommit) -> Result<CommitAccepted> {
        self.post(&format!("{}/commits", conversation_path(org, conversation)), body).await
    }

    /// `GET .../conversations/{c}/commits?after=N`: the commits that opened the epochs after `after`.
    pub async fn commits(&self, org: Uuid, conversation: Uuid, after: i32) -> Result<Vec<StoredCommit>> {
        self.get_query(format!("{}/commits", conversation_path(org, conversation)), vec![("after", after.to_string())])
            .await
    }

    /// `GET .../conversations/{c}/welcome`: the latest Welcome for this device.
    pub async fn welcome(&self, org: Uuid, conversation: Uuid) -> Result<StoredWelcome> {
        self.get(format!("{}/welcome", conversation_path(org, conversation))).await
    }

    /// `GET .../conversations/{c}/group-info`: the current epoch's group info.
    pub async fn group_info(&self, org: Uuid, conversation: Uuid) -> Result<StoredGroupInfo> {
        self.get(format!("{}/group-info", conversation_path(org, conversation))).await
    }

    /// `GET .../conversations/{c}/proposals`: the delivery service's `Remove` proposals for the
    /// current epoch.
    pub async fn proposals(&self, org: Uuid, conversation: Uuid) -> Result<PendingProposals> {
        self.get(format!("{}/proposals", conversation_path(org, conversation))).await
    }

    /// `GET /v1/mls/delivery-service`: the removal key new groups name as their external sender.
    pub async fn delivery_service(&self) -> Result<DeliveryService> {
        self.get("/v1/mls/delivery-service".to_owned()).await
    }
}
