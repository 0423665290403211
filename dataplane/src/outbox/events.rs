//! The webhook event catalogue (docs/webhooks.md has each payload's JSON schema) and the one place
//! events other than `message.created` are queued.
//!
//! An event is queued in the transaction of its cause, one outbox row per enabled endpoint of
//! the organization subscribed to its type, so it exists exactly when the cause committed.
//! Payloads carry ids and metadata only, never content. `message.created` is queued by the send
//! batch's SQL function itself (migrations), in the same statement as the messages.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// The event types the data plane delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    ConversationCreated,
    MemberJoined,
    MemberLeft,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    PrivacyRequestFiled,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Self::ConversationCreated,
        Self::MemberJoined,
        Self::MemberLeft,
        Self::MessageCreated,
        Self::MessageEdited,
        Self::MessageDeleted,
        Self::PrivacyRequestFiled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConversationCreated => "conversation.created",
            Self::MemberJoined => "member.joined",
            Self::MemberLeft => "member.left",
            Self::MessageCreated => "message.created",
            Self::MessageEdited => "message.edited",
            Self::MessageDeleted => "message.deleted",
            Self::PrivacyRequestFiled => "privacy_request.filed",
        }
    }
}

/// Queues `event` about a conversation for the organization-wide endpoints and those of the
/// conversation's workspace. Returns how many deliveries were queued.
pub async fn in_conversation(
    conn: &mut PgConnection,
    organization_id: Uuid,
    conversation_id: Uuid,
    event: Event,
    data: Value,
) -> Result<u64, sqlx::Error> {
    queue(conn, organization_id, Some(conversation_id), event, data).await
}

/// Queues `event` about the organization as a whole, for its organization-wide endpoints only
/// (a workspace's endpoint hears about its workspace).
pub async fn in_organization(
    conn: &mut PgConnection,
    organization_id: Uuid,
    event: Event,
    data: Value,
) -> Result<u64, sqlx::Error> {
    queue(conn, organization_id, None, event, data).await
}

/// Without a conversation, the workspace is NULL and only organization-wide endpoints match.
async fn queue(
    conn: &mut PgConnection,
    organization_id: Uuid,
    conversation_id: Option<Uuid>,
    event: Event,
    data: Value,
) -> Result<u64, sqlx::Error> {
    let queued = sqlx::query!(
        "INSERT INTO outbound_notifications (organization_id, channel, event_type, webhook_endpoint_id, payload)
         SELECT $1, 'webhook', $3, w.id, $4
           FROM webhook_endpoints w
          WHERE w.organization_id = $1 AND w.enabled AND $3 = ANY (w.event_types)
            AND (w.workspace_id IS NULL
                 OR w.workspace_id = (SELECT c.workspace_id FROM conversations c
                                       WHERE c.id = $2 AND c.organization_id = $1))",
        organization_id,
        conversation_id,
        event.as_str(),
        data
    )
    .execute(conn)
    .await?;
    Ok(queued.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_a_valid_subscription_and_the_docs_list_it() {
        let docs = include_str!("../../../docs/webhooks.md");
        for event in Event::ALL {
            let name = event.as_str();
            assert!(conclave_schema_event_shape(name), "{name}");
            assert!(docs.contains(&format!("### `{name}`")), "docs/webhooks.md has no section for {name}");
        }
    }

    /// What a WebhookEndpoint's `eventTypes` accepts: dot-separated lower-case words and `_`.
    fn conclave_schema_event_shape(name: &str) -> bool {
        name.split('.').count() == 2
            && name.split('.').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    }
}
