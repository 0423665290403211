//! A WebhookEndpoint in PostgreSQL: [`provision`] and [`cleanup`].

use super::workspace::resolve_organization;
use super::{Note, Outcome, SyncError, applied_note, violation_or};
use crate::conditions::{Readiness, reason};
use crate::db::{self, Applied};
use crate::plan::webhook::{Disabled, Scope, Secrets};
use crate::plan::{self, K8sRef};
use conclave_resources::webhook::WebhookEndpointStatus;
use conclave_resources::{ANNOTATION_REENABLE, Organization, WebhookEndpoint, Workspace};
use kube::ResourceExt;
use sqlx::PgConnection;

pub fn k8s_ref(endpoint: &WebhookEndpoint) -> K8sRef {
    K8sRef::new(endpoint.namespace().unwrap_or_default(), endpoint.name_any())
}

/// The signing secret, as read from its Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningSecret {
    /// The Secret does not exist.
    SecretMissing {
        name: String,
    },
    /// The Secret exists without the key.
    KeyMissing {
        name: String,
        key: String,
    },
    Value {
        secret_name: String,
        secrets: Secrets,
    },
}

/// What the endpoint refers to, as found in Kubernetes.
pub struct Inputs<'a> {
    pub workspace: Option<&'a Workspace>,
    pub organization: Option<&'a Organization>,
    pub signing_secret: SigningSecret,
    /// The data plane's at-rest key (`None`: not configured or its Secret is missing).
    pub at_rest_key: Option<Vec<u8>>,
}

/// Creates or repairs the endpoint, its signing secret sealed with the at-rest key, and reads
/// the delivery state the data plane records for the status.
pub async fn provision(
    conn: &mut PgConnection,
    endpoint: &WebhookEndpoint,
    inputs: Inputs<'_>,
) -> Result<Outcome<WebhookEndpointStatus>, SyncError> {
    if let Err(invalid) = endpoint.spec.validate() {
        return Ok(Outcome::blocked(reason::INVALID_SPEC, invalid.0));
    }
    let me = k8s_ref(endpoint);
    let scope = if let Some(ws_ref) = &endpoint.spec.workspace_ref {
        let Some(ws) = inputs.workspace else {
            return Ok(Outcome::blocked(
                reason::WORKSPACE_NOT_FOUND,
                format!("Workspace {} does not exist in namespace {}", ws_ref.name, me.namespace),
            ));
        };
        match db::workspace::find_by_ref(conn, &K8sRef::new(&me.namespace, ws.name_any())).await? {
            Some((organization_id, found)) => Scope { organization_id, workspace_id: Some(found.id) },
            None => {
                return Ok(Outcome::blocked(
                    reason::WORKSPACE_NOT_READY,
                    format!("Workspace {} is not provisioned yet", ws_ref.name),
                ));
            }
        }
    } else {
        let org_name = endpoint.spec.organization_ref.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        match resolve_organization(conn, &me.namespace, &org_name, inputs.organization).await? {
            Ok(organization_id) => Scope { organization_id, workspace_id: None },
            Err(outcome) => return Ok(outcome),
        }
    };
    let (secret_name, secret) = match inputs.signing_secret {
        SigningSecret::SecretMissing { name } => {
            return Ok(Outcome::blocked(reason::SECRET_NOT_FOUND, format!("Secret {name} does not exist")));
        }
        SigningSecret::KeyMissing { name, key } => {
            return Ok(Outcome::blocked(reason::SECRET_KEY_MISSING, format!("Secret {name} has no key {key}")));
        }
        SigningSecret::Value { secret_name, secrets } => (secret_name, secrets),
    };
    let Some(key) = inputs.at_rest_key else {
        return Ok(Outcome::blocked(
            reason::AT_REST_KEY_MISSING,
            "the data plane's at-rest key is not available (is a DataPlane running, and the operator's \
             --at-rest-key-secret set?)",
        ));
    };
    let desired = match plan::webhook::desired(endpoint, scope, &secret) {
        Ok(desired) => desired,
        Err(invalid) => return Ok(Outcome::blocked(reason::INVALID_SPEC, invalid.0)),
    };
    let (applied, deliveries) = match db::webhook::apply(conn, &desired, &me, &key).await {
        Ok(done) => done,
        Err(err) => match err.downcast::<sqlx::Error>() {
            Ok(sql) => return violation_or(sql),
            Err(other) => return Err(SyncError::Other(other)),
        },
    };
    let id = match &applied {
        Applied::Conflict(message) => return Ok(Outcome::blocked(reason::CONFLICT, message.clone())),
        other => other.id().unwrap_or_default(),
    };
    let mut notes: Vec<Note> = applied_note("webhook endpoint", &applied).into_iter().collect();
    let mut readiness = Readiness::ready(reason::PROVISIONED, format!("webhook endpoint {id} is provisioned"));
    let mut deliveries = deliveries;
    if let Some(why) = deliveries.disabled_reason.clone() {
        let generation = endpoint.metadata.generation.unwrap_or_default();
        let request = endpoint.annotations().get(ANNOTATION_REENABLE).map(String::as_str);
        match plan::webhook::disabled(
            deliveries.disabled_generation,
            deliveries.reenable_handled.as_deref(),
            generation,
            request,
        ) {
            Disabled::Reenable { handled } => {
                db::webhook::reenable(conn, desired.organization_id, id, handled.as_deref()).await?;
                deliveries.consecutive_failures = 0;
                notes.push(Note::normal(reason::RE_ENABLED, "deliveries resume: the endpoint is enabled again"));
            }
            other => {
                if let Disabled::Remember { generation } = other {
                    db::webhook::remember_disabled_generation(conn, id, generation).await?;
                    notes.push(Note::warning(reason::AUTO_DISABLED, format!("deliveries stopped: {why}")));
                }
                readiness = Readiness::not_ready(
                    reason::AUTO_DISABLED,
                    format!(
                        "disabled after its failure budget ({why}); change the spec or set the annotation \
                         {ANNOTATION_REENABLE} to a new value to enable it again"
                    ),
                );
            }
        }
    }
    Ok(Outcome {
        readiness,
        status: WebhookEndpointStatus {
            endpoint_id: Some(id.to_string()),
            secret_name: Some(secret_name),
            last_delivery_status: deliveries.last_delivery_status,
            last_delivery_at: deliveries.last_delivery_at.map(|t| t.to_rfc3339()),
            last_delivery_error: deliveries.last_delivery_error,
            consecutive_failures: deliveries.consecutive_failures,
            ..Default::default()
        },
        notes,
    })
}

/// Deletes the endpoint's row.
pub async fn cleanup(conn: &mut PgConnection, endpoint: &WebhookEndpoint) -> Result<Note, SyncError> {
    Ok(match db::webhook::delete(conn, &k8s_ref(endpoint)).await? {
        Some(id) => Note::normal("Deleted", format!("webhook endpoint {id} deleted")),
        None => Note::normal("Deleted", "no webhook endpoint row to delete"),
    })
}
