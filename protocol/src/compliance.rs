//! JSON bodies of the compliance endpoints: legal holds
//! (`/v1/organizations/{org}/legal-holds`, docs/compliance.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a legal hold covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HoldScope {
    /// Everything in the organization (no `target_id`).
    Organization,
    /// A workspace's conversations.
    Workspace,
    /// One conversation.
    Conversation,
    /// The messages a member sent and every conversation they are a member of.
    User,
}

impl HoldScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Workspace => "workspace",
            Self::Conversation => "conversation",
            Self::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "organization" => Some(Self::Organization),
            "workspace" => Some(Self::Workspace),
            "conversation" => Some(Self::Conversation),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// `POST /v1/organizations/{org}/legal-holds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlaceHold {
    pub scope: HoldScope,
    /// The workspace, conversation or user held; absent for the organization.
    #[serde(default)]
    pub target_id: Option<Uuid>,
    /// A case or matter reference (1-500 characters); never message content.
    pub reason: String,
}

/// A legal hold, standing (`lifted_at` absent) or lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LegalHold {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub scope: HoldScope,
    pub target_id: Option<Uuid>,
    pub reason: String,
    pub placed_by: Option<Uuid>,
    pub placed_at: DateTime<Utc>,
    pub lifted_by: Option<Uuid>,
    pub lifted_at: Option<DateTime<Utc>>,
}
