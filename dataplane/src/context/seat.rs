//! The caller's place in a conversation ([`Seat`]) and the key-generation rule sends and
//! reactions obey.

use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails};
use conclave_protocol::api::ConversationKind;
use sqlx::PgConnection;
use uuid::Uuid;

pub fn kind_str(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
        ConversationKind::Channel => "channel",
    }
}

pub fn parse_kind(text: &str) -> ApiResult<ConversationKind> {
    match text {
        "direct" => Ok(ConversationKind::Direct),
        "group" => Ok(ConversationKind::Group),
        "channel" => Ok(ConversationKind::Channel),
        _ => Err(ApiError::internal()),
    }
}

/// The caller's place in a conversation, loaded (and the conversation row locked when `lock`)
/// inside a tenant transaction. Not a member: 404, like a conversation that does not exist.
#[derive(Debug, Clone)]
pub struct Seat {
    pub kind: ConversationKind,
    pub role: String,
    pub current_key_generation: i32,
    pub rotation_required: bool,
    pub last_seq: i64,
}

pub async fn seat(conn: &mut PgConnection, user_id: Uuid, conversation_id: Uuid, lock: bool) -> ApiResult<Seat> {
    // Locking the conversation row serialises sends, rotations and membership changes of one
    // conversation, which is what keeps sequence numbers gap-free and generations ordered.
    let row = if lock {
        sqlx::query!(
            r#"SELECT c.kind, m.role, c.current_key_generation, c.rotation_required, c.last_seq
                 FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $2
                WHERE c.id = $1 FOR UPDATE OF c"#,
            conversation_id,
            user_id
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.kind, r.role, r.current_key_generation, r.rotation_required, r.last_seq))
    } else {
        sqlx::query!(
            r#"SELECT c.kind, m.role, c.current_key_generation, c.rotation_required, c.last_seq
                 FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $2
                WHERE c.id = $1"#,
            conversation_id,
            user_id
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.kind, r.role, r.current_key_generation, r.rotation_required, r.last_seq))
    };
    let (kind, role, current_key_generation, rotation_required, last_seq) =
        row.ok_or_else(|| ApiError::not_found("conversation"))?;
    Ok(Seat { kind: parse_kind(&kind)?, role, current_key_generation, rotation_required, last_seq })
}

impl Seat {
    pub fn is_admin(&self) -> bool {
        self.role == "owner" || self.role == "admin"
    }

    /// Refuses a send or reaction sealed under anything but the current generation.
    pub fn check_generation(&self, generation: i32) -> ApiResult<()> {
        check_key_generation(self.current_key_generation, self.rotation_required, generation)
    }
}

/// Sends and reactions are sealed under the conversation's current key generation, and none is
/// accepted while a rotation is due.
pub fn check_key_generation(current: i32, rotation_required: bool, generation: i32) -> ApiResult<()> {
    let details = ErrorDetails::KeyGeneration { current_key_generation: current };
    if generation < 1 {
        // Generations count from 1: a zero or negative one was never issued by anybody.
        return Err(ApiError::validation("key_generation", "key generations start at 1"));
    }
    if rotation_required {
        return Err(ApiError::new(
            ErrorCode::RotationRequired,
            "the membership changed: upload a new key generation for the current members before sending",
        )
        .with_details(details));
    }
    if generation < current {
        return Err(ApiError::new(
            ErrorCode::StaleGeneration,
            "this key generation was superseded; use the current one",
        )
        .with_details(details));
    }
    if generation > current {
        return Err(
            ApiError::new(ErrorCode::UnknownGeneration, "this key generation does not exist yet").with_details(details)
        );
    }
    Ok(())
}
