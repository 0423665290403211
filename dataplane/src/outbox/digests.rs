//! Email digests: for a person with email notifications on, at most one email per digest period
//! listing, per organization, the conversations whose oldest unread message is older than their
//! delay, with counts only (never content), and a one-click unsubscribe link (RFC 8058
//! `List-Unsubscribe` + `List-Unsubscribe-Post`) that works without signing in.
//!
//! `conclave_claim_digests` picks the people due one (claiming them for the period, SKIP LOCKED,
//! so replicas never both send); each digest is then built in the person's own tenant
//! transactions and sent through the SMTP path account email uses.

use crate::AppState;
use crate::auth::credentials::Email;
use crate::db::{tenant_tx, user_tx};
use crate::error::ApiError;
use crate::ratelimit;
use crate::tokens;
use uuid::Uuid;

const BATCH: i32 = 16;
/// How long an unsubscribe link works.
const UNSUBSCRIBE_DAYS: i32 = 60;

/// One conversation's line in a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub organization: String,
    /// `#name` for a channel; a description for the others (their titles are encrypted).
    pub conversation: String,
    pub unread: i64,
}

/// The digest's text: counts and names the server holds as routing metadata, never content.
pub fn body(lines: &[Line], public_url: &str, unsubscribe_url: &str) -> String {
    let total: i64 = lines.iter().map(|l| l.unread).sum();
    let mut text = format!("You have {total} unread message{} in Conclave:\n\n", if total == 1 { "" } else { "s" });
    let mut organization = None;
    for line in lines {
        if organization != Some(&line.organization) {
            text.push_str(&format!("{}\n", line.organization));
            organization = Some(&line.organization);
        }
        text.push_str(&format!("  {}: {} unread\n", line.conversation, line.unread));
    }
    text.push_str(&format!(
        "\nOpen Conclave to read them: {public_url}\n\nTo stop these emails, open {unsubscribe_url}\n(or change your notification preferences).\n"
    ));
    text
}

/// Claims the people due a digest and sends theirs; returns how many were sent.
pub async fn run_once(state: &AppState) -> Result<usize, sqlx::Error> {
    if !state.mailer.enabled() {
        return Ok(0);
    }
    let due = sqlx::query!(
        r#"SELECT user_id AS "user_id!", email AS "email!", email_delay_minutes AS "email_delay_minutes!"
             FROM conclave_claim_digests($1)"#,
        BATCH
    )
    .fetch_all(&state.db)
    .await?;
    let mut sent = 0;
    for person in due {
        match send(state, person.user_id, &person.email, person.email_delay_minutes).await {
            Ok(true) => sent += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user_id = %person.user_id, "could not send a digest"),
        }
    }
    Ok(sent)
}

/// The lines of one person's digest, organization by organization.
async fn lines(state: &AppState, user_id: Uuid, delay_minutes: i32) -> Result<Vec<Line>, ApiError> {
    let mut tx = user_tx(state, user_id).await?;
    let organizations = sqlx::query!(
        "SELECT o.id, o.display_name FROM organization_memberships m JOIN organizations o ON o.id = m.organization_id
          WHERE m.user_id = $1 AND o.status = 'active' ORDER BY o.display_name",
        user_id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut lines = Vec::new();
    for organization in organizations {
        let mut tx = tenant_tx(state, organization.id, user_id).await?;
        let rows = sqlx::query!(
            r#"SELECT c.kind, c.name::text AS name,
                      (SELECT count(*) FROM conversation_members n WHERE n.conversation_id = c.id) AS "members!",
                      u.unread AS "unread!"
                 FROM conversation_members m
                 JOIN conversations c ON c.id = m.conversation_id
                 CROSS JOIN LATERAL (
                     SELECT count(*) AS unread, min(x.created_at) AS oldest FROM messages x
                      WHERE x.conversation_id = m.conversation_id AND x.seq > m.read_seq
                        AND x.sender_user_id IS DISTINCT FROM m.user_id AND x.deleted_at IS NULL) u
                WHERE m.organization_id = $1 AND m.user_id = $2 AND u.unread > 0
                  AND u.oldest <= now() - make_interval(mins => $3)
                ORDER BY u.unread DESC, c.id"#,
            organization.id,
            user_id,
            delay_minutes
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in rows {
            let conversation = match (row.kind.as_str(), row.name) {
                ("channel", Some(name)) => format!("#{name}"),
                ("direct", _) => "a direct conversation".to_owned(),
                _ => format!("a group conversation of {} members", row.members),
            };
            lines.push(Line { organization: organization.display_name.clone(), conversation, unread: row.unread });
        }
    }
    Ok(lines)
}

async fn send(state: &AppState, user_id: Uuid, email: &str, delay_minutes: i32) -> anyhow::Result<bool> {
    let lines = lines(state, user_id, delay_minutes).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if lines.is_empty() {
        return Ok(false);
    }
    // A second fence, per recipient, whatever the preferences say.
    if ratelimit::check(state, ratelimit::DIGEST, &user_id.to_string()).await.is_err() {
        tracing::info!(%user_id, "digest skipped: the recipient's email limit is reached");
        return Ok(false);
    }
    let token = tokens::generate(tokens::Kind::Unsubscribe);
    sqlx::query!(
        "INSERT INTO unsubscribe_tokens (user_id, token_hash, expires_at)
         VALUES ($1, $2, now() + make_interval(days => $3))",
        user_id,
        tokens::digest(&token),
        UNSUBSCRIBE_DAYS
    )
    .execute(&state.db)
    .await?;
    let public_url = &state.mailer.public_url;
    let unsubscribe = format!("{public_url}/v1/notifications/unsubscribe?token={token}");
    let to = Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let headers = [
        ("List-Unsubscribe", format!("<{unsubscribe}>")),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_owned()),
    ];
    state
        .mailer
        .send_with_headers(&to, "Unread messages in Conclave", body(&lines, public_url, &unsubscribe), &headers)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_lists_counts_per_organization_and_the_unsubscribe_link() {
        let lines = vec![
            Line { organization: "Acme".into(), conversation: "#general".into(), unread: 3 },
            Line { organization: "Acme".into(), conversation: "a direct conversation".into(), unread: 1 },
            Line { organization: "Globex".into(), conversation: "a group conversation of 3 members".into(), unread: 2 },
        ];
        let text =
            body(&lines, "https://chat.example.org", "https://chat.example.org/v1/notifications/unsubscribe?token=t");
        assert!(text.starts_with("You have 6 unread messages in Conclave:"));
        assert!(text.contains("Acme\n  #general: 3 unread\n  a direct conversation: 1 unread\nGlobex\n"));
        assert!(text.contains("unsubscribe?token=t"));
    }
}
