//! What a BotAgent should be in the database, derived from its token Secret.

use super::rotation::Rotating;
use super::{Columns, diff};
use crate::secrets::digest;
use chrono::{DateTime, Utc};
use conclave_resources::BotAgent;
use conclave_resources::validate::InvalidSpec;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The key of the token in the bot's Secret.
pub const TOKEN_KEY: &str = "token";
/// The key of the previous token during an overlap.
pub const PREVIOUS_TOKEN_KEY: &str = "previous-token";

/// The name of the Secret holding a bot's token.
pub fn secret_name(bot_name: &str) -> String {
    format!("{bot_name}-bot-token")
}

/// The columns of `bot_agents` the operator manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotRow {
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    pub display_name: String,
    /// Sorted, without duplicates.
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub token_hash: Vec<u8>,
    pub previous_token_hash: Option<Vec<u8>>,
    pub previous_token_expires_at: Option<DateTime<Utc>>,
}

impl Columns for BotRow {
    fn changed(&self, found: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        diff(&mut out, "organization_id", &self.organization_id, &found.organization_id);
        diff(&mut out, "workspace_id", &self.workspace_id, &found.workspace_id);
        diff(&mut out, "display_name", &self.display_name, &found.display_name);
        let mut found_scopes = found.scopes.clone();
        found_scopes.sort();
        diff(&mut out, "scopes", &self.scopes, &found_scopes);
        diff(&mut out, "enabled", &self.enabled, &found.enabled);
        diff(&mut out, "token_hash", &self.token_hash, &found.token_hash);
        diff(&mut out, "previous_token_hash", &self.previous_token_hash, &found.previous_token_hash);
        // The database keeps microseconds, the Secret seconds: compare whole seconds.
        let secs = |t: &Option<DateTime<Utc>>| t.map(|t| t.timestamp());
        diff(
            &mut out,
            "previous_token_expires_at",
            &secs(&self.previous_token_expires_at),
            &secs(&found.previous_token_expires_at),
        );
        out
    }
}

/// The row a bot declares, given its workspace and the token state in its Secret.
pub fn desired(
    bot: &BotAgent,
    organization_id: Uuid,
    workspace_id: Uuid,
    token: &Rotating,
) -> Result<BotRow, InvalidSpec> {
    bot.spec.validate()?;
    let scopes: BTreeSet<&str> = bot.spec.scopes.iter().map(|s| s.as_str()).collect();
    let previous = token.previous.as_deref().zip(token.previous_expires_at);
    Ok(BotRow {
        organization_id,
        workspace_id,
        display_name: bot.spec.display_name.trim().to_owned(),
        scopes: scopes.into_iter().map(str::to_owned).collect(),
        enabled: bot.spec.enabled,
        token_hash: digest(&token.current),
        previous_token_hash: previous.map(|(p, _)| digest(p)),
        previous_token_expires_at: previous.map(|(_, at)| at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{K8sRef, Observed, RowAction, plan_row};
    use conclave_resources::bot::{BotAgentSpec, BotScope};
    use conclave_resources::{BotAgent, LocalRef};

    fn mk_bot(scopes: &[BotScope]) -> BotAgent {
        BotAgent::new(
            "helper",
            BotAgentSpec {
                workspace_ref: LocalRef { name: "eng".into() },
                display_name: " Helper ".into(),
                scopes: scopes.to_vec(),
                enabled: true,
                token_overlap_seconds: 3600,
            },
        )
    }

    fn token(current: &str, previous: Option<(&str, i64)>) -> Rotating {
        Rotating {
            current: current.into(),
            previous: previous.map(|(p, _)| p.into()),
            previous_expires_at: previous.and_then(|(_, at)| DateTime::from_timestamp(at, 0)),
            issued_at: None,
            rotation_handled: None,
        }
    }

    #[test]
    fn only_digests_of_the_tokens_reach_the_row() {
        let row = desired(
            &mk_bot(&[BotScope::MessagesWrite, BotScope::MessagesRead]),
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            &token("cbot_new", Some(("cbot_old", 1_900_000_000))),
        )
        .expect("valid");
        assert_eq!(row.token_hash, digest("cbot_new"));
        assert_eq!(row.previous_token_hash, Some(digest("cbot_old")));
        assert_eq!(row.scopes, vec!["messages:read", "messages:write"]);
        assert_eq!(row.display_name, "Helper");
    }

    #[test]
    fn a_token_hash_changed_behind_our_back_is_drift_to_repair() {
        let want = desired(&mk_bot(&[]), Uuid::from_u128(1), Uuid::from_u128(2), &token("t", None)).expect("valid");
        let mut found = want.clone();
        found.token_hash = digest("someone else's token");
        let me = K8sRef::new("ns", "helper");
        let observed = Observed { id: Uuid::from_u128(7), managed_by: Some(me.clone()), row: found };
        assert_eq!(
            plan_row(&want, &me, Some(&observed), None),
            RowAction::Update { id: Uuid::from_u128(7), changed: vec!["token_hash"] }
        );
    }

    #[test]
    fn sub_second_differences_in_the_expiry_are_not_drift() {
        let want =
            desired(&mk_bot(&[]), Uuid::from_u128(1), Uuid::from_u128(2), &token("t", Some(("p", 1_900_000_000))))
                .expect("valid");
        let mut found = want.clone();
        found.previous_token_expires_at = DateTime::from_timestamp(1_900_000_000, 123_000);
        assert!(want.changed(&found).is_empty());
    }

    #[test]
    fn a_duplicated_scope_is_invalid() {
        let bot = mk_bot(&[BotScope::FilesRead, BotScope::FilesRead]);
        assert!(desired(&bot, Uuid::from_u128(1), Uuid::from_u128(2), &token("t", None)).is_err());
    }
}
