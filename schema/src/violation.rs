//! Database constraint violations, translated where the query runs into something a person can
//! act on. The constraint names are PostgreSQL's defaults for the DDL in `migrations/`, so the
//! table of known constraints below is checked by a test against the live schema.

use std::fmt;

/// What kind of rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A unique constraint or unique index (SQLSTATE 23505).
    Duplicate,
    /// A foreign key: the row refers to something missing, or something still refers to it (23503).
    Reference,
    /// A CHECK constraint or domain check (23514).
    Invalid,
    /// A NOT NULL column left empty (23502).
    Missing,
    /// Row-level security or a missing grant refused the write (42501).
    Forbidden,
}

impl ViolationKind {
    /// A stable `snake_case` code, for error bodies and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Reference => "invalid_reference",
            Self::Invalid => "invalid_value",
            Self::Missing => "missing_value",
            Self::Forbidden => "forbidden",
        }
    }
}

/// A constraint violation with a readable message. The message names the rule, never the SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The table the write went to, when PostgreSQL reports it.
    pub table: Option<String>,
    /// The constraint (or column, for NOT NULL) that refused it.
    pub constraint: Option<String>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Violation {}

/// Constraints whose meaning deserves words of its own; every other one gets a generic message
/// built from its kind and table.
const KNOWN: &[(&str, &str)] = &[
    ("user_accounts_email_key", "an account with this email address already exists"),
    ("organizations_slug_key", "an organization with this slug already exists"),
    ("organization_memberships_organization_id_user_id_key", "this person is already a member of the organization"),
    ("organization_memberships_role_check", "role must be one of owner, admin, member, guest"),
    ("organization_invitations_role_check", "role must be one of owner, admin, member, guest"),
    ("organization_invitations_open", "an open invitation for this email address already exists"),
    ("workspaces_organization_id_slug_key", "a workspace with this slug already exists in the organization"),
    ("workspace_memberships_workspace_id_user_id_key", "this person has already joined the workspace"),
    ("workspace_memberships_role_check", "role must be one of admin, member, guest"),
    ("workspace_memberships_organization_id_user_id_fkey", "only members of the organization can join its workspaces"),
    ("workspace_memberships_organization_id_workspace_id_fkey", "the workspace does not exist in this organization"),
    ("conversations_channel_name", "a channel with this name already exists in the workspace"),
    ("conversations_kind_check", "kind must be one of direct, group, channel"),
    ("conversation_members_conversation_id_user_id_key", "this person is already a member of the conversation"),
    (
        "conversation_members_organization_id_user_id_fkey",
        "only members of the organization can join its conversations",
    ),
    ("conversation_encryption_keys_conversation_id_generation_key", "this key generation already exists"),
    ("messages_conversation_id_seq_key", "this sequence number is already taken"),
    (
        "messages_organization_id_conversation_id_key_generation_fkey",
        "the key generation does not exist for this conversation",
    ),
    ("devices_ed25519_public_key_key", "a device with this signing key is already registered"),
    ("contact_links_user_id_contact_user_id_key", "this contact already exists"),
    ("contact_links_check", "a person cannot be their own contact"),
    ("call_sessions_live", "a call is already in progress in this conversation"),
    ("message_pins_message_id_key", "this message is already pinned"),
    ("message_reactions_message_id_user_id_value_tag_key", "you already reacted with this value"),
    ("conversation_invites_use_limit", "the invite has reached its use limit"),
];

impl Violation {
    /// Reads a constraint violation out of a database error; `None` for every other error (those
    /// are the server's problem, not the caller's).
    pub fn from_sqlx(err: &sqlx::Error) -> Option<Self> {
        let db = err.as_database_error()?;
        let kind = match db.code()?.as_ref() {
            "23505" => ViolationKind::Duplicate,
            "23503" => ViolationKind::Reference,
            "23514" => ViolationKind::Invalid,
            "23502" => ViolationKind::Missing,
            "42501" => ViolationKind::Forbidden,
            _ => return None,
        };
        let table = db.table().map(str::to_owned);
        let constraint = db.constraint().map(str::to_owned);
        let known = constraint
            .as_deref()
            .and_then(|name| KNOWN.iter().find(|(known, _)| *known == name))
            .map(|(_, message)| (*message).to_owned());
        let message = known.unwrap_or_else(|| generic_message(kind, table.as_deref(), constraint.as_deref()));
        Some(Self { kind, table, constraint, message })
    }

    /// The constraint names this module has words for (checked against the schema by a test).
    pub fn known_constraints() -> impl Iterator<Item = &'static str> {
        KNOWN.iter().map(|(name, _)| *name)
    }
}

fn generic_message(kind: ViolationKind, table: Option<&str>, constraint: Option<&str>) -> String {
    let what = table.map(|t| t.replace('_', " ")).unwrap_or_else(|| "record".to_owned());
    match kind {
        ViolationKind::Duplicate => format!("this {what} already exists"),
        ViolationKind::Reference => {
            format!("this {what} refers to something that does not exist, or is still referred to")
        }
        ViolationKind::Invalid => match constraint {
            Some(c) => format!("a value of this {what} is not allowed ({c})"),
            None => format!("a value of this {what} is not allowed"),
        },
        ViolationKind::Missing => format!("a required value of this {what} is missing"),
        ViolationKind::Forbidden => "this write is not allowed for the current organization".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_stable_code() {
        let kinds = [
            ViolationKind::Duplicate,
            ViolationKind::Reference,
            ViolationKind::Invalid,
            ViolationKind::Missing,
            ViolationKind::Forbidden,
        ];
        let mut codes: Vec<_> = kinds.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')));
    }

    #[test]
    fn generic_messages_name_the_table_not_the_sql() {
        let message = generic_message(ViolationKind::Duplicate, Some("message_pins"), Some("x_key"));
        assert_eq!(message, "this message pins already exists");
        let message = generic_message(ViolationKind::Invalid, None, Some("foo_check"));
        assert_eq!(message, "a value of this record is not allowed (foo_check)");
    }
}
