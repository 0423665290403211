//! Organizations and workspaces (created by the operator; members read and join them).

use conclave_protocol::tenancy::{
    AcceptOrganizationInvitation, JoinedOrganization, Organization, OrganizationMember, Workspace,
};
use serde_json::json;
use uuid::Uuid;

use super::{Call, Client, Result};

impl Client {
    /// `GET /v1/organizations`: the organizations the caller belongs to.
    pub async fn organizations(&self) -> Result<Vec<Organization>> {
        self.get("/v1/organizations".into()).await
    }

    /// `GET /v1/organizations/{org}/workspaces`.
    pub async fn workspaces(&self, org: Uuid) -> Result<Vec<Workspace>> {
        self.get(format!("/v1/organizations/{org}/workspaces")).await
    }

    /// `POST /v1/organizations/{org}/workspaces/{ws}/join`.
    pub async fn join_workspace(&self, org: Uuid, workspace: Uuid) -> Result<()> {
        let path = format!("/v1/organizations/{org}/workspaces/{workspace}/join");
        self.send_ignoring_body(Call::post(&path, &json!({}), true)?).await
    }

    /// `GET /v1/organizations/{org}/members`.
    pub async fn organization_members(&self, org: Uuid) -> Result<Vec<OrganizationMember>> {
        self.get(format!("/v1/organizations/{org}/members")).await
    }

    /// `POST /v1/organizations/{org}/invitations/accept`: joins an organization with an
    /// invitation token.
    pub async fn accept_organization_invitation(&self, org: Uuid, token: &str) -> Result<JoinedOrganization> {
        let body = AcceptOrganizationInvitation { token: token.to_owned() };
        self.post(&format!("/v1/organizations/{org}/invitations/accept"), &body).await
    }
}
