//! JSON bodies of the compliance endpoints (docs/compliance.md): legal holds
//! (`/v1/organizations/{org}/legal-holds`), the audit trail (`/v1/organizations/{org}/audit`)
//! and privacy requests (`/v1/organizations/{org}/privacy-requests`).

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

/// A person (or a person's device) an audit entry names. Entries store only the pseudonym; `id`
/// is the user or device behind it while the link exists (it is deleted with the account, after
/// which only the pseudonym is left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditPerson {
    pub pseudonym: Uuid,
    /// The user's or device's id; absent once the person was erased.
    pub id: Option<Uuid>,
}

/// One entry of an organization's hash-chained audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: Uuid,
    /// Position in the organization's chain, from 1.
    pub chain_seq: i64,
    /// `user`, `bot`, `operator` or `system`.
    pub actor_kind: String,
    pub actor: Option<AuditPerson>,
    /// The device the actor acted from, as a pseudonym (and the device while its owner exists).
    pub actor_device: Option<AuditPerson>,
    /// `domain.verb`, e.g. `legal_hold.placed`.
    pub action: String,
    pub target_type: Option<String>,
    /// The target's id as stored; for a `user`, `member` or `device` target, its pseudonym.
    pub target_id: Option<Uuid>,
    /// A `user`, `member` or `device` target, resolved while the link exists.
    pub target_person: Option<AuditPerson>,
    pub ip_address: Option<String>,
    /// Counts and settings, never content; people in it are pseudonyms.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// SHA-256 of the previous entry's hash and this entry's canonical text, in hex.
    pub hash: String,
}

/// A page of audit entries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The result of checking an organization's whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// True when every entry's hash matches and no entry is missing.
    pub intact: bool,
    /// How many entries the chain holds.
    pub entries: i64,
    /// The first entry that was altered, or follows a removed one.
    pub first_broken_seq: Option<i64>,
    pub first_broken_id: Option<Uuid>,
    /// `hash mismatch` or `gap before this entry`.
    pub problem: Option<String>,
    pub verified_at: DateTime<Utc>,
}

/// What a privacy request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PrivacyRequestKind {
    /// A copy of everything stored about the requester (GDPR articles 15 and 20).
    Export,
    /// Deleting the requester's account and data (GDPR article 17).
    Erasure,
}

impl PrivacyRequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Erasure => "erasure",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "export" => Some(Self::Export),
            "erasure" => Some(Self::Erasure),
            _ => None,
        }
    }
}

/// `received` → `in_progress` (approved) → `completed`, or `received` → `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PrivacyRequestStatus {
    Received,
    InProgress,
    Completed,
    Rejected,
}

impl PrivacyRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "received" => Some(Self::Received),
            "in_progress" => Some(Self::InProgress),
            "completed" => Some(Self::Completed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// `POST /v1/organizations/{org}/privacy-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FilePrivacyRequest {
    pub kind: PrivacyRequestKind,
}

/// `POST .../privacy-requests/{id}/approve` and `.../reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecidePrivacyRequest {
    /// Why (1-500 characters): required to reject, optional to approve. Shown to the requester.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A privacy request and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PrivacyRequest {
    pub id: Uuid,
    pub organization_id: Uuid,
    /// Absent once an erasure completed: the record that it happened names nobody.
    pub user_id: Option<Uuid>,
    pub kind: PrivacyRequestKind,
    pub status: PrivacyRequestStatus,
    pub requested_at: DateTime<Utc>,
    /// Thirty days after filing.
    pub due_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<Uuid>,
    pub reason: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Until when a completed export can be downloaded (once).
    pub export_expires_at: Option<DateTime<Utc>>,
    pub downloaded_at: Option<DateTime<Utc>>,
    /// What an erasure did (counts), or what an export holds (file names and counts).
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// `POST .../privacy-requests/{id}/download-link`: a one-time link to a completed export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ExportLink {
    /// `GET` it without credentials: the path carries a one-time token.
    pub path: String,
    pub expires_at: DateTime<Utc>,
}
