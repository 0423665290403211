//! What a BotAgent should be in the database, derived from its token Secret.

use super::rotation::Rotating;
use super::{Columns, diff};
use crate::secrets::digest;
use chrono::{DateTime, Utc};
use conclave_resources::BotAgent;
use conclave_resources::validate::InvalidSpec;
use kube::ResourceExt;
use serde_json::{Value, json};
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

/// The name of the Deployment running a bot (`spec.deployment`).
pub fn deployment_name(bot_name: &str) -> String {
    format!("{bot_name}-bot")
}

/// The labels of what runs a bot.
fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "conclave-bot",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "conclave-operator",
    })
}

/// The group that owns the state volume's files (`fsGroup`), the images' non-root user's.
const STATE_GROUP: i64 = 65532;

/// The name of the PersistentVolumeClaim holding a bot's state (`spec.deployment.storage`).
pub fn state_claim_name(bot_name: &str) -> String {
    format!("{bot_name}-bot-state")
}

/// Where the token Secret is mounted in the bot's container.
const TOKEN_DIR: &str = "/var/run/secrets/conclave/bot";
/// The bot's state directory (its keystore: device keys, identity key, MLS state).
const STATE_DIR: &str = "/var/lib/conclave-bot";

/// The Deployment that runs the bot, when its spec asks for one: one replica (one device: two
/// processes would share the token and fight over one keystore), replaced rather than rolled
/// (`Recreate`) for the same reason, with the token Secret mounted read-only. The kubelet
/// updates a mounted Secret in place after a rotation, and the bot framework reads the file again
/// when its session ends, so a rotation needs no restart. The state directory is the claim of
/// [`state_claim`] with `storage` (the same device across pods: `Recreate` also lets the old pod
/// release the `ReadWriteOnce` volume first; `fsGroup` makes it writable by the non-root user),
/// else the pod's own `emptyDir`: a new pod is a new device, which its conversations add at their
/// next commit.
pub fn deployment(bot: &BotAgent) -> Option<Value> {
    let spec = bot.spec.deployment.as_ref()?;
    let name = bot.name_any();
    let labels = labels(&name);
    let mut container = json!({
        "name": "bot",
        "image": spec.image,
        "args": spec.args,
        "env": [
            {"name": "CONCLAVE_SERVER", "value": spec.server},
            {"name": "CONCLAVE_BOT_TOKEN_FILE", "value": format!("{TOKEN_DIR}/{TOKEN_KEY}")},
            {"name": "CONCLAVE_BOT_STATE", "value": STATE_DIR},
        ],
        "securityContext": super::dataplane::restricted_container(),
        "volumeMounts": [
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": true},
            {"name": "state", "mountPath": STATE_DIR}
        ],
    });
    if let Some(resources) = &spec.resources {
        container["resources"] = json!({"requests": resources.requests, "limits": resources.limits});
    }
    let state = match &spec.storage {
        Some(_) => json!({"name": "state", "persistentVolumeClaim": {"claimName": state_claim_name(&name)}}),
        None => json!({"name": "state", "emptyDir": {}}),
    };
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(&name), "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "conclave-bot", "app.kubernetes.io/instance": name}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "fsGroup": STATE_GROUP,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [container],
                    "volumes": [
                        // Only the current token: the previous one is the operator's business.
                        {"name": "token", "secret": {"secretName": secret_name(&name), "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}]}},
                        state,
                    ],
                }
            }
        }
    }))
}

/// The claim holding the bot's state, when its spec asks for one (`spec.deployment.storage`):
/// `ReadWriteOnce` (one pod, one device), of the size and class the spec gives.
pub fn state_claim(bot: &BotAgent) -> Option<Value> {
    let storage = bot.spec.deployment.as_ref()?.storage.as_ref()?;
    let name = bot.name_any();
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    });
    if let Some(class) = &storage.storage_class_name {
        spec["storageClassName"] = json!(class);
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": state_claim_name(&name), "labels": labels(&name)},
        "spec": spec,
    }))
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
                deployment: None,
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
    fn a_bot_runs_only_when_its_spec_says_so_with_its_token_mounted_and_nothing_else() {
        assert_eq!(deployment(&mk_bot(&[])), None);
        let mut bot = mk_bot(&[]);
        bot.spec.deployment = Some(conclave_resources::bot::BotDeployment {
            image: "registry.example/reminder-bot:1".into(),
            args: vec!["--verbose".into()],
            resources: None,
            server: "http://conclave.conclave.svc:8080".into(),
            storage: None,
        });
        let doc = deployment(&bot).expect("a deployment");
        assert_eq!(doc["metadata"]["name"], "helper-bot");
        assert_eq!(doc["spec"]["replicas"], 1);
        assert_eq!(doc["spec"]["strategy"]["type"], "Recreate");
        let pod = &doc["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "helper-bot-token");
        assert_eq!(pod["volumes"][0]["secret"]["items"], json!([{"key": "token", "path": "token"}]));
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "registry.example/reminder-bot:1");
        assert_eq!(container["args"], json!(["--verbose"]));
        let env: Vec<(&str, &str)> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| (e["name"].as_str().unwrap_or_default(), e["value"].as_str().unwrap_or_default()))
            .collect();
        assert!(env.contains(&("CONCLAVE_BOT_TOKEN_FILE", "/var/run/secrets/conclave/bot/token")), "{env:?}");
        assert!(env.contains(&("CONCLAVE_SERVER", "http://conclave.conclave.svc:8080")), "{env:?}");
        assert!(!doc.to_string().contains("valueFrom"), "the token is a file, never an environment variable");
        assert_eq!(doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "helper");
        assert_eq!(pod["volumes"][1], json!({"name": "state", "emptyDir": {}}), "no storage: the pod's own");
        assert_eq!(state_claim(&bot), None);
    }

    #[test]
    fn with_storage_the_state_is_a_claim_of_the_declared_size() {
        let mut bot = mk_bot(&[]);
        bot.spec.deployment = Some(conclave_resources::bot::BotDeployment {
            image: "bot:1".into(),
            args: vec![],
            resources: None,
            server: "http://conclave:8080".into(),
            storage: Some(conclave_resources::bot::BotStorage { size: "128Mi".into(), storage_class_name: None }),
        });
        let pod = &deployment(&bot).expect("a deployment")["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][1],
            json!({"name": "state", "persistentVolumeClaim": {"claimName": "helper-bot-state"}})
        );
        assert_eq!(pod["securityContext"]["fsGroup"], 65532);
        let claim = state_claim(&bot).expect("a claim");
        assert_eq!(claim["metadata"]["name"], "helper-bot-state");
        assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "128Mi");
        assert!(claim["spec"].get("storageClassName").is_none(), "the cluster's default class");
    }

    #[test]
    fn a_duplicated_scope_is_invalid() {
        let bot = mk_bot(&[BotScope::FilesRead, BotScope::FilesRead]);
        assert!(desired(&bot, Uuid::from_u128(1), Uuid::from_u128(2), &token("t", None)).is_err());
    }
}
