//! Owner invitations the operator queued: the operator never keeps a usable token, so the token
//! is minted here, its digest replaces the placeholder, and it is emailed — all before the
//! transaction commits, so a failed email leaves the previous state and is retried.

use super::{Job, Outcome, system_tx};
use crate::AppState;
use crate::auth::credentials::Email;
use crate::tokens::{self, Kind};

pub async fn deliver(state: &AppState, job: &Job) -> Outcome {
    if job.event_type != "organization.invitation_created" {
        return Outcome::Drop(format!("no email for {}", job.event_type));
    }
    if !state.mailer.enabled() {
        return Outcome::Retry("email is not configured (CONCLAVE_SMTP_URL)".to_owned());
    }
    let Some(invitation_id) = job.payload["invitation_id"].as_str().and_then(|s| s.parse::<uuid::Uuid>().ok()) else {
        return Outcome::Drop("payload without an invitation_id".to_owned());
    };
    let result = async {
        let mut tx = system_tx(state, job.organization_id).await?;
        let token = tokens::generate(Kind::Invitation);
        let row = sqlx::query!(
            r#"UPDATE organization_invitations i SET token_hash = $2
                 FROM organizations o
                WHERE i.id = $1 AND o.id = i.organization_id
                  AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()
                RETURNING i.email::text AS "email!", i.role, o.display_name, i.expires_at"#,
            invitation_id,
            tokens::digest(&token)
        )
        .fetch_optional(&mut *tx)
        .await?;
        Ok::<_, sqlx::Error>((tx, token, row))
    }
    .await;
    let (tx, token, row) = match result {
        Ok(found) => found,
        Err(e) => return Outcome::Retry(format!("database: {e}")),
    };
    let Some(row) = row else {
        return Outcome::Drop("the invitation is no longer open".to_owned());
    };
    let Ok(email) = Email::parse(&row.email) else {
        return Outcome::Drop("the invitation's address is not valid".to_owned());
    };
    let body = format!(
        "You are invited to join {} on Conclave as {}.\n\nInvitation token (valid until {}):\n\n{token}\n\nSign in and accept it with POST /v1/organizations/{}/invitations/accept, or `conclave accept-invitation --org {} --token <token>`.\n",
        row.display_name,
        row.role,
        row.expires_at.format("%Y-%m-%d %H:%M UTC"),
        job.organization_id,
        job.organization_id,
    );
    if let Err(e) = state.mailer.send(&email, "You are invited to Conclave", body).await {
        return Outcome::Retry(e.to_string());
    }
    match tx.commit().await {
        Ok(()) => Outcome::Delivered,
        Err(e) => Outcome::Retry(format!("database: {e}")),
    }
}
