//! JSON bodies of the organization and workspace endpoints, as their members read them
//! (`/v1/organizations/...`). The operator creates organizations and workspaces; members list
//! them, join workspaces and accept invitations.
//!
//! Roles are the words `owner`, `admin`, `member` and `guest` in an organization, and `admin`,
//! `member` and `guest` in a workspace.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An organization the caller belongs to (`GET /v1/organizations`, `GET /v1/organizations/{org}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Organization {
    pub id: Uuid,
    /// Unique short name.
    pub slug: String,
    pub display_name: String,
    /// The caller's role.
    pub role: String,
    /// Whether members must sign in with TOTP.
    pub require_totp: bool,
    /// The email domains members may have (empty: any).
    pub allowed_email_domains: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A workspace of an organization (`GET /v1/organizations/{org}/workspaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Workspace {
    pub id: Uuid,
    /// Short name, unique in the organization.
    pub slug: String,
    pub display_name: String,
    /// Whether guests of the organization may join it.
    pub guest_access: bool,
    pub message_retention_days: Option<i32>,
    /// Whether the caller is a member of it.
    pub joined: bool,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
}

/// A member of an organization (`GET /v1/organizations/{org}/members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OrganizationMember {
    pub user_id: Uuid,
    /// Shown to admins and owners only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Their role in the organization.
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

/// `POST /v1/organizations/{org}/invitations/accept`: the emailed invitation token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptOrganizationInvitation {
    pub token: String,
}

impl fmt::Debug for AcceptOrganizationInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcceptOrganizationInvitation { <redacted> }")
    }
}

/// The answer to an accepted organization invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct JoinedOrganization {
    pub organization_id: Uuid,
    /// The role the invitation granted.
    pub role: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_member_without_a_visible_email_omits_the_field() {
        let member = OrganizationMember {
            user_id: Uuid::nil(),
            email: None,
            display_name: None,
            role: "member".into(),
            joined_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let value = serde_json::to_value(&member).expect("json");
        assert!(value.get("email").is_none());
        assert_eq!(value["display_name"], json!(null));
        assert_eq!(serde_json::from_value::<OrganizationMember>(value).expect("read back"), member);
    }
}
