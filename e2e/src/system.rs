//! The whole local system, brought up the way a platform engineer would on a cluster: the Helm
//! chart, the operator under its ServiceAccount, the example DataPlane with its migration Job and
//! its data plane. The end-to-end scenario and the demo (`conclave-local`) both start it here.

use crate::chart::{self, OPERATOR_DB_SECRET};
use crate::control_plane::{ControlPlane, OPERATOR_NAMESPACE};
use crate::kubelet::{self, HostPod};
use crate::operator::{self, Operator};
use crate::stack::{Stack, cnpg_app_secret, redis_secret};
use crate::tools::{our_binary, repo_root};
use anyhow::{Context, Result, bail};
use conclave_testkit::smtp::MailCatcher;
use std::time::{Duration, Instant};

/// The namespace tenants are declared in.
pub const TENANTS: &str = "tenants";
/// The example DataPlane's name.
pub const DATAPLANE: &str = "conclave";

pub struct System {
    pub plane: ControlPlane,
    pub stack: Stack,
    /// The SMTP relay of the DataPlane spec (the example's port is replaced by this one's).
    pub mail: MailCatcher,
    pub operator: Option<Operator>,
    pub dataplane: Option<HostPod>,
    /// The data plane's URL, once it runs.
    pub base: String,
}

/// Says what is happening (the demo shows these lines; the tests print them too).
pub fn say(what: &str) {
    eprintln!("[e2e]     {what}");
}

impl System {
    /// A control plane (in `dir`, or a temporary directory), this run's database (named
    /// `<database_prefix>_…`) and a mail relay.
    pub async fn start(dir: Option<std::path::PathBuf>, database_prefix: &str) -> Result<Self> {
        let stack = Stack::new(database_prefix).await.context("PostgreSQL and Redis (scripts/stack.sh up)")?;
        let mail = MailCatcher::start().await.context("mail relay")?;
        let plane = tokio::task::spawn_blocking(move || match dir {
            Some(dir) => ControlPlane::start_in(crate::tools::Tools::ensure()?, dir),
            None => ControlPlane::start(),
        })
        .await??;
        Ok(Self { plane, stack, mail, operator: None, dataplane: None, base: String::new() })
    }

    pub fn apply_json(&self, doc: &serde_json::Value) -> Result<String> {
        self.plane.kubectl_stdin(&["apply", "-f", "-"], &doc.to_string())
    }

    /// An example manifest's text.
    pub fn example(name: &str) -> Result<String> {
        std::fs::read_to_string(repo_root().join("examples").join(name)).with_context(|| format!("examples/{name}"))
    }

    /// The Ready condition's (status, reason) of a resource in the tenants namespace.
    pub fn ready(&self, resource: &str) -> (String, String) {
        let out = self
            .plane
            .kubectl(&[
                "-n",
                TENANTS,
                "get",
                resource,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}"#,
            ])
            .unwrap_or_default();
        let (a, b) = out.split_once('/').unwrap_or(("", ""));
        (a.to_owned(), b.to_owned())
    }

    /// Waits until a resource's Ready condition has this status (and reason, if given).
    pub async fn wait_ready(
        &self,
        resource: &str,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, r) = self.ready(resource);
            if s == status && reason.is_none_or(|want| want == r) {
                say(&format!("{resource}: Ready={s} ({r})"));
                return Ok(());
            }
            if Instant::now() > deadline {
                let yaml = self.plane.kubectl(&["-n", TENANTS, "get", resource, "-o", "yaml"]).unwrap_or_default();
                let log = self.operator.as_ref().map(|o| o.pod.proc.tail(30)).unwrap_or_default();
                bail!("{resource} is Ready={s} ({r}), wanted {status} {reason:?}\n{yaml}\noperator log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `helm install` the chart (the operator's at-rest key pointing at the example DataPlane),
    /// create its database Secret, and start the operator as replica `identity`.
    pub async fn install_chart_and_operator(&mut self, identity: &str) -> Result<String> {
        let _ = self.plane.kubectl(&["create", "namespace", TENANTS]);
        let notes = chart::install(
            &self.plane,
            &[&format!("operator.atRestKeySecret={TENANTS}/{DATAPLANE}-at-rest-key"), "operator.logFormat=pretty"],
        )?;
        say(&format!("helm install {} charts/conclave -n {OPERATOR_NAMESPACE}: deployed", chart::RELEASE));
        self.apply_json(&cnpg_app_secret(OPERATOR_DB_SECRET, OPERATOR_NAMESPACE, &self.stack.owner_url())?)?;
        let op = operator::start(&self.plane, identity).await?;
        operator::wait_for_leader(&self.plane, identity, Duration::from_secs(30)).await?;
        say(&format!(
            "operator {identity} runs under ServiceAccount {OPERATOR_NAMESPACE}/conclave-operator and holds the leader Lease"
        ));
        self.operator = Some(op);
        Ok(notes)
    }

    /// Applies `examples/dataplane.yaml` (with the PostgreSQL and Redis Secrets it refers to),
    /// runs its migration Job, starts its data plane on `port` and reports it ready, then waits
    /// for the DataPlane to be Ready.
    pub async fn deploy_dataplane(&mut self, port: u16) -> Result<()> {
        self.apply_json(&cnpg_app_secret("conclave-db-app", TENANTS, &self.stack.owner_url())?)?;
        self.apply_json(&redis_secret("conclave-redis", TENANTS, &self.stack.redis_url))?;
        let manifest = Self::example("dataplane.yaml")?.replace("port: 2525", &format!("port: {}", self.mail.port));
        self.plane.kubectl_stdin(&["-n", TENANTS, "apply", "-f", "-"], &manifest)?;
        say("kubectl apply -f examples/dataplane.yaml");
        self.wait_ready(&format!("dataplane/{DATAPLANE}"), "False", Some("Migrating"), Duration::from_secs(30)).await?;

        let job = self.plane.kubectl(&[
            "-n",
            TENANTS,
            "get",
            "jobs",
            "-l",
            "app.kubernetes.io/component=migrate",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])?;
        if job.is_empty() {
            bail!("no migration Job");
        }
        let client = self.plane.client().await?;
        let root = self.plane.dir.join("pods").join(&job);
        std::fs::create_dir_all(&root)?;
        let dataplane_bin = our_binary("conclave-dataplane")?;
        if !kubelet::run_job(&client, TENANTS, &job, &dataplane_bin, &root).await? {
            bail!("the migration Job failed:\n{}", std::fs::read_to_string(root.join("job.log")).unwrap_or_default());
        }
        say(&format!("Job {job} ran `conclave-dataplane migrate` with the Job's env: succeeded"));

        let deadline = Instant::now() + Duration::from_secs(30);
        while self.plane.kubectl(&["-n", TENANTS, "get", "deployment", DATAPLANE, "-o", "name"]).is_err() {
            if Instant::now() > deadline {
                bail!("the operator made no Deployment after the migration");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let pod = kubelet::start_deployment_pod(
            &client,
            TENANTS,
            DATAPLANE,
            "dataplane",
            &dataplane_bin,
            &self.plane.dir.join("pods").join(format!("{DATAPLANE}-0")),
            &[
                ("CONCLAVE_LISTEN", format!("127.0.0.1:{port}")),
                // This machine's Redis is shared with every other test run: a key prefix of this
                // run's own (what the setting is for: deployments sharing one Redis) keeps rate
                // limits and fan-out apart. The DataPlane spec has no field for it yet.
                ("CONCLAVE_REDIS_NAMESPACE", format!("e2e-{}", self.stack.db.name)),
            ],
        )
        .await?;
        self.base = format!("http://127.0.0.1:{port}");
        self.dataplane = Some(pod);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(p) = self.dataplane.as_mut()
                && !p.proc.running()
            {
                bail!("the data plane exited:\n{}", p.proc.tail(40));
            }
            if reqwest::get(format!("{}/readyz", self.base)).await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the data plane was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        say(&format!("data plane serving on {} with the ConfigMap, Secrets and env the operator wrote", self.base));
        let replicas: i32 = self
            .plane
            .kubectl(&["-n", TENANTS, "get", "deploy", DATAPLANE, "-o", "jsonpath={.spec.replicas}"])?
            .parse()
            .unwrap_or(1);
        kubelet::report_deployment_ready(&client, TENANTS, DATAPLANE, replicas).await?;
        self.wait_ready(&format!("dataplane/{DATAPLANE}"), "True", Some("Available"), Duration::from_secs(30)).await
    }

    /// Stops the data plane, the operator and the control plane, in that order.
    pub fn stop(&mut self) -> Result<()> {
        self.dataplane.take();
        self.operator.take();
        self.plane.stop()
    }
}
