//! A BotAgent's `spec.deployment` against a real etcd + kube-apiserver (`conclave_e2e`'s
//! control plane; no node, so nothing runs the pods and no controller manager collects garbage):
//! the operator's controllers run in this process, as cluster admin, on a database of the test's
//! own, and the test reads back what the API server stored.

use crate::support::{NS, db, mk_bot, mk_org, mk_workspace};
use conclave_e2e::ControlPlane;
use conclave_e2e::tools::repo_root;
use conclave_operator::conditions::reason;
use conclave_operator::controllers::{Context, run_controllers};
use conclave_resources::bot::{BotDeployment, BotStorage};
use conclave_resources::dataplane::Resources;
use conclave_resources::{BotAgent, DeletionPolicy, Organization, Workspace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    config: conclave_operator::Config,
}

/// Polls `probe` every 200 ms until it gives a value, at most 60 s.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    for _ in 0..300 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within 60 s");
}

/// The Ready condition's status (`True`, `False`, `Unknown`) and reason.
fn ready(conditions: &[conclave_resources::Condition]) -> Option<(String, String)> {
    let c = conditions.iter().find(|c| c.type_ == "Ready")?;
    let status = serde_json::to_value(c.status).ok()?.as_str()?.to_owned();
    Some((status, c.reason.clone()))
}

fn deployment_spec(image: &str, storage: Option<BotStorage>) -> BotDeployment {
    BotDeployment {
        image: image.into(),
        args: vec!["--verbose".into()],
        resources: Some(Resources {
            requests: [("cpu".to_owned(), "50m".to_owned()), ("memory".to_owned(), "64Mi".to_owned())].into(),
            limits: [("memory".to_owned(), "128Mi".to_owned())].into(),
        }),
        server: "http://conclave.conclave.svc:8080".into(),
        storage,
    }
}

async fn patch_deployment(bots: &Api<BotAgent>, name: &str, deployment: Value) {
    let patch = json!({ "spec": { "deployment": deployment } });
    bots.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch the BotAgent");
}

/// The Deployment once `done` holds for it.
async fn deployment_when(api: &Api<Deployment>, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(name, || async {
        let found = api.get_opt(name).await.expect("get the Deployment")?;
        let doc = serde_json::to_value(found).expect("json");
        done(&doc).then_some(doc)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_agents_deployment_and_state_claim_follow_its_spec_on_a_real_api_server() {
    let mut plane = tokio::task::spawn_blocking(ControlPlane::start).await.expect("join").expect("control plane");
    let crds = repo_root().join("crds");
    plane.kubectl(&["apply", "--server-side", "-f", crds.to_str().expect("utf-8")]).expect("apply CRDs");
    plane.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]).expect("established");
    plane.kubectl(&["create", "namespace", NS]).expect("namespace");
    let client: Client = plane.client().await.expect("client");
    let db = db().await;
    let owner_url = db.owner_url();
    let flags =
        <Flags as clap::Parser>::parse_from(["operator", "--database-url", &owner_url, "--resync-seconds", "5"]);
    let ctx = Arc::new(Context::new(client.clone(), db.owner.clone(), flags.config, Arc::default(), "test".into()));
    // The controllers run beside the checks on this task (their futures are not `Send`).
    tokio::select! {
        () = run_controllers(ctx) => panic!("the controllers stopped"),
        () = checks(client) => {}
    }
    tokio::task::spawn_blocking(move || plane.stop()).await.expect("join").expect("clean stop");
}

/// What the test checks while the controllers run.
async fn checks(client: Client) {
    let orgs: Api<Organization> = Api::namespaced(client.clone(), NS);
    let workspaces: Api<Workspace> = Api::namespaced(client.clone(), NS);
    let bots: Api<BotAgent> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let post = PostParams::default();
    orgs.create(&post, &mk_org("acme", "acme", DeletionPolicy::Retain)).await.expect("Organization");
    workspaces.create(&post, &mk_workspace("eng", "acme", &[], DeletionPolicy::Retain)).await.expect("Workspace");
    let mut bot = mk_bot("helper", "eng");
    bot.spec.deployment = Some(deployment_spec("registry.example/helper:1", Some(BotStorage::default())));
    let bot = bots.create(&post, &bot).await.expect("BotAgent");
    let uid = bot.uid().expect("uid");

    // Ready, with the Deployment and the claim it names.
    let status = eventually("the BotAgent Ready", || async {
        let found = bots.get("helper").await.ok()?;
        let status = found.status?;
        (ready(&status.conditions)?.0 == "True" && status.deployment_name.is_some()).then_some(status)
    })
    .await;
    assert_eq!(status.deployment_name.as_deref(), Some("helper-bot"));
    assert_eq!(status.state_claim_name.as_deref(), Some("helper-bot-state"));
    let doc = deployment_when(&deployments, "helper-bot", |_| true).await;
    let owners = &doc["metadata"]["ownerReferences"];
    assert_eq!((owners[0]["uid"].as_str(), owners[0]["kind"].as_str()), (Some(uid.as_str()), Some("BotAgent")));
    assert_eq!(owners[0]["controller"], true);
    let pod = &doc["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/helper:1");
    assert_eq!(container["args"], json!(["--verbose"]));
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})
    );
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 2, "{volumes:?}");
    // Only the token key of the Secret is mounted, never the previous token.
    assert_eq!(volumes[0]["secret"]["secretName"], "helper-bot-token");
    assert_eq!(volumes[0]["secret"]["items"], json!([{"key": "token", "path": "token"}]));
    assert_eq!(volumes[1]["persistentVolumeClaim"]["claimName"], "helper-bot-state");
    assert!(!doc.to_string().contains("previous-token"));
    let claim = serde_json::to_value(claims.get("helper-bot-state").await.expect("the claim")).expect("json");
    assert_eq!(claim["metadata"]["ownerReferences"][0]["uid"].as_str(), Some(uid.as_str()));
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "64Mi", "the documented default");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));

    // A new image and arguments reach the Deployment.
    let mut changed =
        serde_json::to_value(deployment_spec("registry.example/helper:2", Some(BotStorage::default()))).expect("json");
    changed["args"] = json!(["--quiet"]);
    patch_deployment(&bots, "helper", changed).await;
    let doc = deployment_when(&deployments, "helper-bot", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/helper:2"
    })
    .await;
    assert_eq!(doc["spec"]["template"]["spec"]["containers"][0]["args"], json!(["--quiet"]));

    // Without storage the state is the pod's own again, and the claim is deleted (it stays
    // Terminating here: the controller manager's pvc-protection would finish it).
    let mut ephemeral = serde_json::to_value(deployment_spec("registry.example/helper:2", None)).expect("json");
    ephemeral["storage"] = Value::Null;
    patch_deployment(&bots, "helper", ephemeral).await;
    let doc = deployment_when(&deployments, "helper-bot", |d| {
        d["spec"]["template"]["spec"]["volumes"][1].get("emptyDir").is_some()
    })
    .await;
    assert!(doc["spec"]["template"]["spec"]["volumes"][1].get("persistentVolumeClaim").is_none());
    eventually("the claim deleted", || async {
        let claim = claims.get_opt("helper-bot-state").await.expect("get the claim");
        claim.is_none_or(|c| c.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;

    // Removing spec.deployment removes the Deployment.
    patch_deployment(&bots, "helper", Value::Null).await;
    eventually("the Deployment deleted", || async {
        deployments.get_opt("helper-bot").await.expect("get the Deployment").is_none().then_some(())
    })
    .await;
    let status = eventually("the status without a Deployment", || async {
        let status = bots.get("helper").await.ok()?.status?;
        status.deployment_name.is_none().then_some(status)
    })
    .await;
    assert_eq!(status.state_claim_name, None);

    // A bad spec: the API server's schema refuses an empty image and a bad server URL...
    for (image, server, field) in
        [("", "http://conclave:8080", "spec.deployment.image"), ("bot:1", "conclave:8080", "spec.deployment.server")]
    {
        let mut bad = mk_bot("bad", "eng");
        bad.spec.deployment = Some(BotDeployment { server: server.into(), ..deployment_spec(image, None) });
        let err = bots.create(&post, &bad).await.expect_err("refused by the schema");
        assert!(err.to_string().contains(field), "{err}");
    }
    // ...and what only the operator checks is Ready=False with its reason, and nothing runs.
    let mut bad = mk_bot("blank", "eng");
    bad.spec.deployment =
        Some(deployment_spec(" ", Some(BotStorage { size: "lots".into(), storage_class_name: None })));
    bots.create(&post, &bad).await.expect("the schema lets it through");
    let (status, why) = eventually("the blank bot's condition", || async {
        let status = bots.get("blank").await.ok()?.status?;
        ready(&status.conditions)
    })
    .await;
    assert_eq!((status.as_str(), why.as_str()), ("False", reason::INVALID_SPEC));
    assert!(deployments.get_opt("blank-bot").await.expect("get").is_none());
    assert!(claims.get_opt("blank-bot-state").await.expect("get").is_none());
}
