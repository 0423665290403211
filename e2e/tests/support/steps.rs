//! The platform engineer's side: chart, operator, DataPlane, tenants, kubectl.

use super::{NS, Scenario, eventually};
use base64::Engine;
use conclave_e2e::operator;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::time::Duration;
use uuid::Uuid;

const SECS_30: Duration = Duration::from_secs(30);
const SECS_60: Duration = Duration::from_secs(60);

impl Scenario {
    pub async fn install_chart_and_start_operator(&mut self) {
        let notes = self.sys.install_chart_and_operator().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert!(notes.contains("conclave-operator"), "{notes}");
    }

    pub async fn apply_dataplane_and_run_it(&mut self) {
        self.sys.deploy_dataplane().await.unwrap_or_else(|e| panic!("{e:#}"));

        // Keys: four generated Secrets, owned by the DataPlane.
        let owner = self.k(&["get", "dataplane", "conclave", "-o", "jsonpath={.metadata.uid}"]);
        for secret in ["conclave-jwt-signing", "conclave-vapid", "conclave-at-rest-key", "conclave-mls-removal"] {
            let owners = self.k(&["get", "secret", secret, "-o", "jsonpath={.metadata.ownerReferences[0].uid}"]);
            assert_eq!(owners, owner, "{secret} is owned by the DataPlane");
        }
        let job = self.migration_jobs("{.items[0].metadata.name}:{.items[0].status.succeeded}");
        assert!(job.starts_with("conclave-migrate-") && job.ends_with(":1"), "{job}");

        // The children, as declared.
        let image = self.k(&["get", "deploy", "conclave", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
        assert_eq!(image, "ghcr.io/conclave/conclave-dataplane:0.1.0");
        let hpa = self.k(&[
            "get",
            "hpa",
            "conclave",
            "-o",
            "jsonpath={.spec.minReplicas}-{.spec.maxReplicas}-{.spec.metrics[0].resource.target.averageUtilization}",
        ]);
        assert_eq!(hpa, "2-6-70");
        let pdb = self.k(&["get", "pdb", "conclave", "-o", "jsonpath={.spec.maxUnavailable}"]);
        assert_eq!(pdb, "1");
        let svc = self.k(&[
            "get",
            "service",
            "conclave",
            "-o",
            "jsonpath={.spec.ports[0].port}->{.spec.ports[0].targetPort}",
        ]);
        assert_eq!(svc, "80->http");
        let smtp = self.k(&[
            "get",
            "deploy",
            "conclave",
            "-o",
            r#"jsonpath={.spec.template.spec.containers[0].env[?(@.name=="CONCLAVE_SMTP_URL")].value}"#,
        ]);
        assert!(smtp.starts_with(&format!("smtp://smtp.{NS}.svc.cluster.local:")), "{smtp}");
        for kind in ["configmap", "serviceaccount", "deployment", "service", "hpa", "pdb"] {
            let managed = self.k(&[
                "get",
                kind,
                "conclave",
                "-o",
                "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
            ]);
            assert_eq!(managed, "conclave-operator", "{kind}");
        }
        // The pods run the image the DataPlane names, with this run's Redis key prefix.
        let images = self.k(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=server",
            "-o",
            "jsonpath={.items[*].status.containerStatuses[0].image}",
        ]);
        assert!(images.contains("ghcr.io/conclave/conclave-dataplane:0.1.0"), "{images}");
        let prefix = self.k(&["get", "configmap", "conclave", "-o", "jsonpath={.data.CONCLAVE_REDIS_NAMESPACE}"]);
        assert_eq!(prefix, self.redis_prefix);

        let status = self.k(&[
            "get",
            "dataplane",
            "conclave",
            "-o",
            "jsonpath={.status.version}|{.status.schemaVersion}|{.status.jwtKeyId}",
        ]);
        let parts: Vec<&str> = status.split('|').collect();
        assert_eq!(parts[0], "ghcr.io/conclave/conclave-dataplane:0.1.0");
        assert!(parts[1].parse::<i64>().is_ok_and(|v| v > 0), "schemaVersion {status}");
        let kid = parts[2];
        let keys = self.k(&["get", "secret", "conclave-jwt-signing", "-o", "jsonpath={.data}"]);
        assert!(keys.contains(&format!("{kid}.pem")), "the signing key {kid} is in the Secret: {keys}");
    }

    /// The DataPlane's migration Jobs, as a jsonpath template shows them.
    pub fn migration_jobs(&self, template: &str) -> String {
        self.k(&["get", "jobs", "-l", "app.kubernetes.io/component=migrate", "-o", &format!("jsonpath={template}")])
    }

    pub async fn apply_tenants(&mut self) {
        let files = ["organization.yaml", "workspaces.yaml", "webhook.yaml", "bot.yaml"].map(|f| self.example_path(f));
        let mut args = vec!["-n", NS, "apply"];
        for f in &files {
            args.extend(["-f", f.as_str()]);
        }
        let out = self.kubectl(&args);
        eprintln!("{out}");
        for resource in [
            "organization/acme",
            "workspace/acme-general",
            "workspace/acme-engineering",
            "webhookendpoint/acme-general-events",
            "botagent/helper",
        ] {
            self.wait_ready(resource, "True", None, SECS_60).await;
        }
    }

    pub fn org_id(&self, name: &str) -> Uuid {
        self.k(&["get", "org", name, "-o", "jsonpath={.status.organizationId}"]).parse().expect("organizationId")
    }

    pub fn workspace_id(&self, name: &str) -> Uuid {
        self.k(&["get", "ws", name, "-o", "jsonpath={.status.workspaceId}"]).parse().expect("workspaceId")
    }

    pub fn secret_value(&self, name: &str, key: &str) -> String {
        let b64 = self.k(&["get", "secret", name, "-o", &format!("jsonpath={{.data.{}}}", key.replace('.', "\\."))]);
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64")).expect("utf-8")
    }

    pub async fn check_rows_and_secrets(&self) {
        let db = &self.stack.db.owner;
        let org = self.org_id("acme");
        let row = sqlx::query(
            "SELECT slug::text, display_name, message_retention_days, max_members, attachment_quota_bytes,
                    allowed_email_domains, k8s_namespace, k8s_name FROM organizations WHERE id = $1",
        )
        .bind(org)
        .fetch_one(db)
        .await
        .expect("organization row");
        assert_eq!(row.get::<String, _>(0), "acme");
        assert_eq!(row.get::<String, _>(1), "Acme Corporation");
        assert_eq!(row.get::<Option<i32>, _>(2), Some(365));
        assert_eq!(row.get::<Option<i32>, _>(3), Some(500));
        assert_eq!(row.get::<Option<i64>, _>(4), Some(10 * 1024 * 1024 * 1024));
        assert_eq!(row.get::<Vec<String>, _>(5), vec!["example.org".to_owned()]);
        assert_eq!(
            (row.get::<Option<String>, _>(6), row.get::<Option<String>, _>(7)),
            (Some(NS.to_owned()), Some("acme".to_owned()))
        );

        let workspaces: Vec<(String, Option<i32>)> = sqlx::query_as(
            "SELECT slug::text, message_retention_days FROM workspaces WHERE organization_id = $1 ORDER BY slug",
        )
        .bind(org)
        .fetch_all(db)
        .await
        .expect("workspaces");
        assert_eq!(workspaces, vec![("engineering".to_owned(), Some(90)), ("general".to_owned(), None)]);
        let channels: Vec<String> = sqlx::query_scalar(
            "SELECT name::text FROM conversations WHERE organization_id = $1 AND kind = 'channel' ORDER BY name",
        )
        .bind(org)
        .fetch_all(db)
        .await
        .expect("channels");
        assert_eq!(channels, ["announcements", "builds", "random"]);
        let invited: Vec<(String, String)> = sqlx::query_as(
            "SELECT email::text, role FROM organization_invitations WHERE organization_id = $1 ORDER BY email",
        )
        .bind(org)
        .fetch_all(db)
        .await
        .expect("owner invitations");
        let owner = |e: &str| (e.to_owned(), "owner".to_owned());
        assert_eq!(invited, [owner("alice@example.org"), owner("bob@example.org")]);

        // The webhook's signing secret: generated into a Secret, sealed in PostgreSQL under the
        // at-rest key the DataPlane's Secret holds (the one the data plane was started with).
        let signing = self.secret_value("acme-general-events-webhook-signing", "signing-secret");
        assert!(signing.starts_with("whsec_"));
        let (endpoint, url, sealed): (Uuid, String, Vec<u8>) =
            sqlx::query_as("SELECT id, url, signing_secret_sealed FROM webhook_endpoints WHERE organization_id = $1")
                .bind(org)
                .fetch_one(db)
                .await
                .expect("webhook row");
        assert_eq!(url, "https://hooks.example.org/conclave");
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.secret_value("conclave-at-rest-key", "key").trim())
            .expect("at-rest key");
        let opened =
            conclave_resources::seal::open(&key, &conclave_resources::seal::webhook_context(endpoint), &sealed)
                .expect("the sealed secret opens with the DataPlane's at-rest key");
        assert_eq!(opened, signing.as_bytes());

        // The bot: only the SHA-256 of the Secret's token is in PostgreSQL.
        let token = self.secret_value("helper-bot-token", "token");
        assert!(token.starts_with("cbot_"));
        let (hash, scopes): (Vec<u8>, Vec<String>) =
            sqlx::query_as("SELECT token_hash, scopes FROM bot_agents WHERE organization_id = $1")
                .bind(org)
                .fetch_one(db)
                .await
                .expect("bot row");
        assert_eq!(hash, Sha256::digest(token.as_bytes()).to_vec());
        assert_eq!(scopes, ["messages:read", "messages:write"]);
    }

    pub async fn check_kubectl_columns_and_explain(&self) {
        // The counts follow the Workspaces' provisioning within the operator's pacing of
        // count-only status writes (10 s).
        let orgs = eventually("the Organization to count its two Workspaces", SECS_30, || async {
            let orgs = self.k(&["get", "orgs"]);
            let row: Vec<String> = orgs.lines().nth(1).unwrap_or_default().split_whitespace().map(Into::into).collect();
            (row.get(5).map(String::as_str) == Some("2")).then_some(orgs)
        })
        .await;
        eprintln!("{orgs}");
        let header: Vec<&str> = orgs.lines().next().unwrap_or_default().split_whitespace().collect();
        assert_eq!(header, ["NAME", "SLUG", "READY", "REASON", "MEMBERS", "WORKSPACES", "AUDIT", "AGE"]);
        let row: Vec<&str> = orgs.lines().nth(1).unwrap_or_default().split_whitespace().collect();
        assert_eq!(&row[..4], ["acme", "acme", "True", "Provisioned"]);
        assert_eq!(row[6], "true", "the operator verified the audit chain: it holds");
        let wide = self.k(&["get", "orgs", "-o", "wide"]);
        assert!(wide.lines().next().unwrap_or_default().contains("POLICY") && wide.contains("Retain"), "{wide}");
        let ws = self.k(&["get", "ws"]);
        eprintln!("{ws}");
        assert!(ws.starts_with("NAME") && ws.lines().next().unwrap_or_default().contains("ORGANIZATION"), "{ws}");
        let bots = self.k(&["get", "bot", "-o", "wide"]);
        assert!(bots.contains("helper-bot-token"), "{bots}");
        let dp = self.k(&["get", "dp"]);
        eprintln!("{dp}");
        assert!(dp.contains("ghcr.io/conclave/conclave-dataplane:0.1.0") && dp.contains("Available"), "{dp}");
        let everything = self.k(&["get", "conclave", "-o", "name"]);
        for name in [
            "dataplane.conclave.io/conclave",
            "organization.conclave.io/acme",
            "workspace.conclave.io/acme-general",
            "webhookendpoint.conclave.io/acme-general-events",
            "botagent.conclave.io/helper",
        ] {
            assert!(everything.contains(name), "{name} in `kubectl get conclave`: {everything}");
        }
        let explain = self.kubectl(&["explain", "organization.spec.deletionPolicy"]);
        assert!(explain.contains("Retain") && explain.contains("Delete"), "{explain}");
        let explain = self.kubectl(&["explain", "workspace.spec"]);
        assert!(explain.contains("organizationRef") && explain.contains("defaultChannels"), "{explain}");
    }

    fn refused(&self, manifest: &str) -> String {
        let err =
            self.plane.kubectl_stdin(&["-n", NS, "apply", "-f", "-"], manifest).expect_err("the API server refuses it");
        err.to_string()
    }

    pub fn invalid_resources_are_refused(&self) {
        let cases = [
            (
                "apiVersion: conclave.io/v1alpha1\nkind: Organization\nmetadata: {name: bad}\nspec: {slug: Not_A_Slug, displayName: Bad}\n",
                "spec.slug",
            ),
            (
                "apiVersion: conclave.io/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: plain}\nspec: {workspaceRef: {name: acme-general}, url: 'http://hooks.example.org/x', eventTypes: [message.created]}\n",
                "url must use https unless allowInsecureHttp is true",
            ),
            (
                "apiVersion: conclave.io/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: both}\nspec: {workspaceRef: {name: acme-general}, organizationRef: {name: acme}, url: 'https://h.example.org/x', eventTypes: [a]}\n",
                "set exactly one of workspaceRef and organizationRef",
            ),
            (
                "apiVersion: conclave.io/v1alpha1\nkind: DataPlane\nmetadata: {name: both}\nspec: {image: x, replicas: 2, autoscaling: {minReplicas: 1, maxReplicas: 2}, postgres: {secretName: a}, redis: {secretName: b}}\n",
                "set replicas or autoscaling, not both",
            ),
            (
                "apiVersion: conclave.io/v1alpha1\nkind: DataPlane\nmetadata: {name: bounds}\nspec: {image: x, autoscaling: {minReplicas: 5, maxReplicas: 2}, postgres: {secretName: a}, redis: {secretName: b}}\n",
                "maxReplicas must be at least minReplicas",
            ),
            (
                "apiVersion: conclave.io/v1alpha1\nkind: BotAgent\nmetadata: {name: root}\nspec: {workspaceRef: {name: acme-general}, displayName: Root, scopes: ['admin:all']}\n",
                "spec.scopes[0]",
            ),
            // An immutable field: the slug of an existing Organization.
            (
                "apiVersion: conclave.io/v1alpha1\nkind: Organization\nmetadata: {name: acme}\nspec: {slug: acme-renamed, displayName: Acme Corporation}\n",
                "slug is immutable",
            ),
        ];
        for (manifest, message) in cases {
            let err = self.refused(manifest);
            assert!(err.contains(message), "wanted {message:?} in:\n{err}");
            eprintln!("[e2e]     refused: {}", err.lines().find(|l| l.contains(message)).unwrap_or(message).trim());
        }
    }

    pub async fn missing_reference_resolves(&self) {
        let orphan = "apiVersion: conclave.io/v1alpha1\nkind: Workspace\nmetadata: {name: globex-ops}\nspec: {organizationRef: {name: globex}, slug: ops, displayName: Ops}\n";
        self.plane.kubectl_stdin(&["-n", NS, "apply", "-f", "-"], orphan).expect("apply");
        self.wait_ready("workspace/globex-ops", "False", Some("OrganizationNotFound"), SECS_30).await;
        let message =
            self.k(&["get", "ws", "globex-ops", "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].message}"#]);
        assert!(message.contains("globex"), "the message names the missing Organization: {message}");
        let events = self.k(&["get", "events", "--field-selector", "reason=OrganizationNotFound", "-o", "name"]);
        assert!(!events.trim().is_empty(), "a Warning event is recorded");
        let org = "apiVersion: conclave.io/v1alpha1\nkind: Organization\nmetadata: {name: globex}\nspec: {slug: globex, displayName: Globex, deletionPolicy: Delete}\n";
        self.plane.kubectl_stdin(&["-n", NS, "apply", "-f", "-"], org).expect("apply");
        self.wait_ready("workspace/globex-ops", "True", Some("Provisioned"), SECS_60).await;
    }

    async fn org_row(&self, id: Uuid) -> Option<(String, Option<i32>, Option<String>)> {
        sqlx::query_as("SELECT display_name, message_retention_days, k8s_name FROM organizations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.stack.db.owner)
            .await
            .expect("query")
    }

    async fn workspace_row(&self, id: Uuid) -> Option<(String, Option<String>)> {
        sqlx::query_as("SELECT display_name, k8s_name FROM workspaces WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.stack.db.owner)
            .await
            .expect("query")
    }

    pub async fn updates_reach_postgres(&self) {
        let org = self.org_id("acme");
        self.k(&[
            "patch",
            "org",
            "acme",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"displayName":"Acme Inc.","messageRetentionDays":30}}"#,
        ]);
        eventually("the rename and the retention in PostgreSQL", SECS_30, || async {
            let row = self.org_row(org).await?;
            (row.0 == "Acme Inc." && row.1 == Some(30)).then_some(())
        })
        .await;
        let generation = self.k(&["get", "org", "acme", "-o", "jsonpath={.metadata.generation}"]);
        eventually("observedGeneration", SECS_30, || async {
            let observed = self.k(&["get", "org", "acme", "-o", "jsonpath={.status.observedGeneration}"]);
            (observed == generation).then_some(())
        })
        .await;
        let members = self.k(&["get", "org", "acme", "-o", "jsonpath={.status.memberCount}"]);
        assert_eq!(members, "2", "alice and bob are members");
        // The operator verified the audit trail's hash chain of everything so far.
        let audit =
            self.k(&["get", "org", "acme", "-o", "jsonpath={.status.auditChain.intact}/{.status.auditChain.entries}"]);
        let (intact, entries) = audit.split_once('/').expect("intact/entries");
        assert_eq!(intact, "true", "the audit chain holds");
        assert!(entries.parse::<u32>().is_ok_and(|n| n > 0), "entries verified: {entries:?}");
        let ws = self.workspace_id("acme-general");
        self.k(&["patch", "ws", "acme-general", "--type", "merge", "-p", r#"{"spec":{"displayName":"Everyone"}}"#]);
        eventually("the workspace rename", SECS_30, || async {
            (self.workspace_row(ws).await?.0 == "Everyone").then_some(())
        })
        .await;
        eprintln!("[e2e]     organization renamed to 'Acme Inc.' (retention 30 days), workspace to 'Everyone'");
    }

    pub async fn operator_crash_and_takeover(&mut self) {
        use conclave_e2e::control_plane::OPERATOR_NAMESPACE;
        let before = operator::lease_holder(&self.plane).await.expect("lease").expect("a holder");
        // A crash as a lost node would bring it: the container killed (SIGKILL, through
        // containerd), and its pod removed at once, so the ReplicaSet makes another.
        let container = self.kubectl(&[
            "-n",
            OPERATOR_NAMESPACE,
            "get",
            "pod",
            &before,
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ]);
        self.node
            .ctr(&["tasks", "kill", "--signal", "SIGKILL", container.trim_start_matches("containerd://")])
            .expect("kill the operator's container");
        self.kubectl(&["-n", OPERATOR_NAMESPACE, "delete", "pod", &before, "--grace-period=0", "--force"]);
        eprintln!("[e2e]     killed operator pod {before} (SIGKILL, pod deleted); changing a Workspace meanwhile");
        let ws = self.workspace_id("acme-engineering");
        self.k(&[
            "patch",
            "ws",
            "acme-engineering",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"displayName":"Platform Engineering"}}"#,
        ]);
        let after = self.sys.wait_operator_leading(Duration::from_secs(90)).await.expect("takeover");
        assert_ne!(before, after);
        eprintln!("[e2e]     the Lease moved from {before} to {after}");
        eventually("the change made while the operator was down", SECS_60, || async {
            (self.workspace_row(ws).await?.0 == "Platform Engineering").then_some(())
        })
        .await;
        self.wait_ready("workspace/acme-engineering", "True", None, SECS_30).await;
    }

    pub async fn deletion_policies(&self) {
        let db = &self.stack.db.owner;
        let acme = self.org_id("acme");
        let globex = self.org_id("globex");
        let general = self.workspace_id("acme-general");
        let engineering = self.workspace_id("acme-engineering");

        self.k(&["delete", "botagent", "helper", "--timeout=60s"]);
        self.k(&["delete", "webhookendpoint", "acme-general-events", "--timeout=60s"]);
        let (bots, hooks): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM bot_agents WHERE organization_id = $1), (SELECT count(*) FROM webhook_endpoints WHERE organization_id = $1)",
        )
        .bind(acme)
        .fetch_one(db)
        .await
        .expect("count");
        assert_eq!((bots, hooks), (0, 0), "a credential nobody declares stops existing");

        self.k(&["delete", "ws", "acme-engineering", "--timeout=60s"]);
        assert!(self.workspace_row(engineering).await.is_none(), "Delete: the workspace row is gone");
        let audited: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs WHERE organization_id = $1 AND action = 'workspace.deleted'",
        )
        .bind(acme)
        .fetch_one(db)
        .await
        .expect("audit");
        assert_eq!(audited, 1, "the deletion is audited");

        self.k(&["delete", "ws", "acme-general", "--timeout=60s"]);
        assert_eq!(self.workspace_row(general).await.map(|r| r.1), Some(None), "Retain: the row stays, detached");
        self.k(&["delete", "org", "acme", "--timeout=60s"]);
        assert_eq!(self.org_row(acme).await.map(|r| r.2), Some(None), "Retain: the organization stays, detached");
        let members: i64 =
            sqlx::query_scalar("SELECT count(*) FROM organization_memberships WHERE organization_id = $1")
                .bind(acme)
                .fetch_one(db)
                .await
                .expect("members");
        assert_eq!(members, 2, "and its members with it");

        // An Organization with Delete waits for its Workspaces, then goes with everything in it.
        self.k(&["delete", "org", "globex", "--wait=false"]);
        self.wait_ready("organization/globex", "False", Some("WaitingForWorkspaces"), SECS_30).await;
        assert!(self.org_row(globex).await.is_some());
        self.k(&["delete", "ws", "globex-ops", "--timeout=60s"]);
        eventually("globex to be deleted", SECS_60, || async {
            self.plane.kubectl(&["-n", NS, "get", "org", "globex"]).is_err().then_some(())
        })
        .await;
        assert!(self.org_row(globex).await.is_none(), "Delete: the organization row is gone");
        let audited: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs WHERE organization_id = $1 AND action = 'organization.deleted'",
        )
        .bind(globex)
        .fetch_one(db)
        .await
        .expect("audit");
        assert_eq!(audited, 1, "the organization's deletion outlives it in the audit trail");
    }
}
