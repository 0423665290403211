//! The children of a DataPlane, as server-side-apply documents, and the rollout decision.
//!
//! Every child carries an owner reference to the DataPlane (so it is garbage-collected with it)
//! and the labels `app.kubernetes.io/{name,instance,managed-by,component}`.

use conclave_resources::DataPlane;
use conclave_resources::dataplane::Turn;
use kube::Resource;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The port the data plane serves HTTP and WebSocket on.
pub const PORT: i32 = 8080;
/// Where the generated key Secrets are mounted in the data-plane container.
pub const KEYS_DIR: &str = "/var/run/conclave/keys";
/// The key of the at-rest Secret: the 32-byte key, base64 (as `CONCLAVE_AT_REST_KEY_FILE` reads it).
pub const AT_REST_KEY: &str = "key";
/// The key of the VAPID Secret: the P-256 private scalar, base64url.
pub const VAPID_KEY: &str = "private-key";
/// The keys of the MLS removal Secret: the Ed25519 key (PKCS#8 PEM) with which the delivery
/// service signs its groups' `Remove` proposals, and during a rotation's overlap the one before.
pub const MLS_REMOVAL_KEY: &str = "private-key";
pub const MLS_REMOVAL_PREVIOUS_KEY: &str = "previous-private-key";

/// The SMTP URL the data plane reads (`CONCLAVE_SMTP_URL`), built from the spec; with
/// credentials, it refers to the `CONCLAVE_SMTP_USERNAME`/`PASSWORD` variables, which
/// Kubernetes expands (`$(VAR)`) from the credentials Secret.
pub fn smtp_url(smtp: &conclave_resources::dataplane::Smtp) -> String {
    use conclave_resources::dataplane::SmtpTls;
    let (scheme, query) = match smtp.tls {
        SmtpTls::StartTls => ("smtp", "?tls=required"),
        SmtpTls::Tls => ("smtps", ""),
        SmtpTls::None => ("smtp", ""),
    };
    let credentials = if smtp.credentials_secret_name.is_some() {
        "$(CONCLAVE_SMTP_USERNAME):$(CONCLAVE_SMTP_PASSWORD)@"
    } else {
        ""
    };
    format!("{scheme}://{credentials}{}:{}{query}", smtp.host, smtp.port)
}

/// The names of a DataPlane's children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Deployment, Service, ConfigMap, ServiceAccount, PodDisruptionBudget and
    /// HorizontalPodAutoscaler all share the DataPlane's name.
    pub base: String,
    pub jwt_secret: String,
    pub vapid_secret: String,
    pub at_rest_secret: String,
    pub mls_removal_secret: String,
}

pub fn names(dp_name: &str) -> Names {
    Names {
        base: dp_name.to_owned(),
        jwt_secret: format!("{dp_name}-jwt-signing"),
        vapid_secret: format!("{dp_name}-vapid"),
        at_rest_secret: format!("{dp_name}-at-rest-key"),
        mls_removal_secret: format!("{dp_name}-mls-removal"),
    }
}

/// The migration Job for an image: one per image, so a new version runs its own.
pub fn migration_job_name(dp_name: &str, image: &str) -> String {
    let digest = Sha256::digest(image.as_bytes());
    format!("{dp_name}-migrate-{}", hex::encode(&digest[..5]))
}

fn labels(dp: &DataPlane, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "conclave-dataplane",
        "app.kubernetes.io/instance": dp.metadata.name.clone().unwrap_or_default(),
        "app.kubernetes.io/managed-by": "conclave-operator",
        "app.kubernetes.io/component": component,
    })
}

fn selector(dp: &DataPlane) -> Value {
    json!({
        "app.kubernetes.io/name": "conclave-dataplane",
        "app.kubernetes.io/instance": dp.metadata.name.clone().unwrap_or_default(),
    })
}

/// The serving pods only: the Service and the PodDisruptionBudget must not select the migration
/// Job's pod, which carries the same name and instance labels (a PDB over a Job's pod cannot be
/// computed: Jobs have no scale subresource).
fn server_selector(dp: &DataPlane) -> Value {
    let mut s = selector(dp);
    s["app.kubernetes.io/component"] = json!("server");
    s
}

fn metadata(dp: &DataPlane, name: &str, component: &str) -> Value {
    let owner = dp.controller_owner_ref(&()).map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
    json!({
        "name": name,
        "namespace": dp.metadata.namespace.clone().unwrap_or_default(),
        "labels": labels(dp, component),
        "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
    })
}

/// The non-secret configuration, passed to the container as environment.
pub fn config_map(dp: &DataPlane) -> Value {
    let spec = &dp.spec;
    let mut data = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        data.insert(k.to_owned(), Value::String(v));
    };
    put("CONCLAVE_LISTEN", format!("0.0.0.0:{PORT}"));
    put("CONCLAVE_LOG_FORMAT", "json".into());
    put("CONCLAVE_JWT_KEYS_DIR", format!("{KEYS_DIR}/jwt"));
    put("CONCLAVE_AT_REST_KEY_FILE", format!("{KEYS_DIR}/at-rest/{AT_REST_KEY}"));
    put("CONCLAVE_VAPID_PRIVATE_KEY_FILE", format!("{KEYS_DIR}/vapid/{VAPID_KEY}"));
    put("CONCLAVE_MLS_REMOVAL_KEY_FILE", format!("{KEYS_DIR}/mls-removal/{MLS_REMOVAL_KEY}"));
    put("CONCLAVE_MLS_REMOVAL_PREVIOUS_KEY_FILE", format!("{KEYS_DIR}/mls-removal/{MLS_REMOVAL_PREVIOUS_KEY}"));
    if let Some(url) = &spec.public_url {
        put("CONCLAVE_PUBLIC_URL", url.clone());
    }
    if spec.trust_forwarded_for {
        put("CONCLAVE_TRUST_FORWARDED_FOR", "true".into());
    }
    if let Some(max) = spec.max_connections_per_address {
        put("CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS", max.to_string());
    }
    if !spec.webhook_allowed_targets.is_empty() {
        put("CONCLAVE_WEBHOOK_ALLOWED_TARGETS", spec.webhook_allowed_targets.join(","));
    }
    if let Some(prefix) = &spec.redis.key_prefix {
        put("CONCLAVE_REDIS_NAMESPACE", prefix.clone());
    }
    if let Some(smtp) = &spec.smtp {
        put("CONCLAVE_MAIL_FROM", smtp.from.clone());
    }
    if let Some(turn) = &spec.turn {
        put("CONCLAVE_TURN_URLS", turn.urls.join(","));
        put("CONCLAVE_TURN_CREDENTIAL_TTL_SECONDS", turn.credential_ttl_seconds.to_string());
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(dp, &names(&name_of(dp)).base, "config"),
        "data": data,
    })
}

fn name_of(dp: &DataPlane) -> String {
    dp.metadata.name.clone().unwrap_or_default()
}

/// A digest of the configuration, put on the pod template so a change restarts the pods.
pub fn config_hash(config_map: &Value) -> String {
    let text = config_map.get("data").map(Value::to_string).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}})
}

fn container_env(dp: &DataPlane, jwt_key_id: &str) -> Vec<Value> {
    let spec = &dp.spec;
    let mut env = vec![
        secret_env("CONCLAVE_DATABASE_URL", &spec.postgres.secret_name, &spec.postgres.uri_key, false),
        secret_env("CONCLAVE_REDIS_URL", &spec.redis.secret_name, &spec.redis.url_key, false),
        json!({"name": "CONCLAVE_JWT_SIGNING_KEY_ID", "value": jwt_key_id}),
    ];
    if let Some(smtp) = &spec.smtp {
        if let Some(secret) = &smtp.credentials_secret_name {
            env.push(secret_env("CONCLAVE_SMTP_USERNAME", secret, "username", false));
            env.push(secret_env("CONCLAVE_SMTP_PASSWORD", secret, "password", false));
        }
        // After the credentials, so `$(..)` expands.
        env.push(json!({"name": "CONCLAVE_SMTP_URL", "value": smtp_url(smtp)}));
    }
    if let Some(turn) = &spec.turn {
        env.push(secret_env("CONCLAVE_TURN_SHARED_SECRET", &turn.shared_secret_name, Turn::SECRET_KEY, false));
    }
    env
}

/// The security context of every container the operator runs: no privilege, no capability, a
/// read-only root filesystem, not root (the "restricted" Pod Security Standard).
pub fn restricted_container() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}
    })
}

/// The data-plane Deployment running `image`, signing tokens with the JWT key `jwt_key_id`.
/// `revision` (the key ids and config digest) goes on the pod template, so a key rotation or a
/// configuration change rolls the pods.
pub fn deployment(dp: &DataPlane, image: &str, revision: &str, jwt_key_id: &str) -> Value {
    let n = names(&name_of(dp));
    let spec = &dp.spec;
    let mut container = json!({
        "name": "dataplane",
        "image": image,
        "args": ["serve"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": n.base}}],
        "env": container_env(dp, jwt_key_id),
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "jwt", "mountPath": format!("{KEYS_DIR}/jwt"), "readOnly": true},
            {"name": "vapid", "mountPath": format!("{KEYS_DIR}/vapid"), "readOnly": true},
            {"name": "at-rest", "mountPath": format!("{KEYS_DIR}/at-rest"), "readOnly": true},
            {"name": "mls-removal", "mountPath": format!("{KEYS_DIR}/mls-removal"), "readOnly": true},
            // The root filesystem is read-only: /tmp (the default attachment store's place) is
            // the pod's own scratch space.
            {"name": "tmp", "mountPath": "/tmp"}
        ],
    });
    if let Some(policy) = spec.image_pull_policy {
        container["imagePullPolicy"] = json!(policy.as_str());
    }
    if let Some(resources) = &spec.resources {
        container["resources"] = json!({"requests": resources.requests, "limits": resources.limits});
    }
    let mut deployment_spec = json!({
        "selector": {"matchLabels": selector(dp)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": labels(dp, "server"),
                "annotations": {"conclave.io/revision": revision},
            },
            "spec": {
                "serviceAccountName": n.base,
                "terminationGracePeriodSeconds": 60,
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [
                    {"name": "jwt", "secret": {"secretName": n.jwt_secret}},
                    {"name": "vapid", "secret": {"secretName": n.vapid_secret}},
                    {"name": "at-rest", "secret": {"secretName": n.at_rest_secret}},
                    {"name": "mls-removal", "secret": {"secretName": n.mls_removal_secret}},
                    {"name": "tmp", "emptyDir": {}}
                ],
            }
        }
    });
    // With autoscaling the HPA owns the replica count: leaving the field out of our apply
    // means we never fight it.
    if spec.autoscaling.is_none() {
        deployment_spec["replicas"] = json!(spec.replicas.unwrap_or(2));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(dp, &n.base, "server"),
        "spec": deployment_spec,
    })
}

pub fn service(dp: &DataPlane) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(dp, &name_of(dp), "server"),
        "spec": {
            "selector": server_selector(dp),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }
    })
}

pub fn service_account(dp: &DataPlane) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(dp, &name_of(dp), "server"),
        "automountServiceAccountToken": false,
    })
}

pub fn pod_disruption_budget(dp: &DataPlane) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(dp, &name_of(dp), "server"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": server_selector(dp)}},
    })
}

/// The autoscaler, or `None` when the DataPlane has a fixed replica count (an existing one is
/// then deleted).
pub fn horizontal_pod_autoscaler(dp: &DataPlane) -> Option<Value> {
    let a = dp.spec.autoscaling.as_ref()?;
    Some(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(dp, &name_of(dp), "server"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name_of(dp)},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization_percentage}}
            }],
        }
    }))
}

/// The Job that runs `image`'s migrations (`conclave-dataplane migrate`) as the schema owner.
pub fn migration_job(dp: &DataPlane, image: &str) -> Value {
    let spec = &dp.spec;
    let mut container = json!({
        "name": "migrate",
        "image": image,
        "args": ["migrate"],
        "env": [
            secret_env("CONCLAVE_OWNER_DATABASE_URL", &spec.postgres.secret_name, &spec.postgres.uri_key, false),
            {"name": "CONCLAVE_LOG_FORMAT", "value": "json"}
        ],
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
    });
    if let Some(policy) = spec.image_pull_policy {
        container["imagePullPolicy"] = json!(policy.as_str());
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(dp, &migration_job_name(&name_of(dp), image), "migrate"),
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels(dp, "migrate")},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": name_of(dp),
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                }
            }
        }
    })
}

/// The state of an image's migration Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Absent,
    Running,
    Succeeded,
    Failed,
}

/// What the rollout does this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Create the migration Job for the declared image.
    pub run_migration: bool,
    /// The image the Deployment should run now (`None`: no Deployment yet, wait).
    pub deploy_image: Option<String>,
    /// The image whose migrations are known to have succeeded.
    pub migrated_image: Option<String>,
    /// A migration is in progress or failed: (reason, message) for the Ready condition.
    pub blocked: Option<(&'static str, String)>,
}

/// Migrations run before a new version rolls out: the Deployment moves to the declared image
/// only once that image's migration Job has succeeded; until then it keeps running the image it
/// runs (or is not created at all).
pub fn rollout(declared: &str, migrated: Option<&str>, job: JobState, running: Option<&str>) -> Rollout {
    use crate::conditions::reason;
    if migrated == Some(declared) {
        return Rollout {
            run_migration: false,
            deploy_image: Some(declared.to_owned()),
            migrated_image: Some(declared.to_owned()),
            blocked: None,
        };
    }
    let keep = running.map(str::to_owned);
    let previous = migrated.map(str::to_owned);
    match job {
        JobState::Succeeded => Rollout {
            run_migration: false,
            deploy_image: Some(declared.to_owned()),
            migrated_image: Some(declared.to_owned()),
            blocked: None,
        },
        JobState::Absent | JobState::Running => Rollout {
            run_migration: job == JobState::Absent,
            deploy_image: keep,
            migrated_image: previous,
            blocked: Some((reason::MIGRATING, format!("running the migrations of {declared} before rolling it out"))),
        },
        JobState::Failed => Rollout {
            run_migration: false,
            deploy_image: keep,
            migrated_image: previous,
            blocked: Some((
                reason::MIGRATION_FAILED,
                format!(
                    "the migrations of {declared} failed (see the migration Job's logs); the previous version keeps running"
                ),
            )),
        },
    }
}

#[cfg(test)]
mod tests;
