//! The whole local system, brought up the way a platform engineer would on a cluster, on a real
//! node ([`crate::node`]): the Helm chart's operator as a pod from its image, the example
//! DataPlane with its migration Job and its data-plane pods, reached through its Service. The
//! end-to-end scenario and the demo (`conclave-local`) both start it here.
//!
//! PostgreSQL, Redis and the mail relay stay on the host's loopback; pods reach them as Services
//! without selector whose endpoints are the node's relays ([`Node::host_service`]). The host
//! reaches the data plane at its Service's cluster address (routed to the node), and the demo
//! also on a loopback port ([`System::serve_on_loopback`]).

use crate::chart::{self, OPERATOR_DB_SECRET};
use crate::control_plane::{ControlPlane, OPERATOR_NAMESPACE};
use crate::node::{Node, NodeNet};
use crate::relay::Relay;
use crate::stack::{Stack, cnpg_app_secret, parse_pg_url, redis_secret};
use crate::tools::{Tools, repo_root};
use anyhow::{Context, Result, bail};
use conclave_testkit::smtp::MailCatcher;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The namespace tenants are declared in.
pub const TENANTS: &str = "tenants";
/// The example DataPlane's name.
pub const DATAPLANE: &str = "conclave";

pub struct System {
    // Dropped first: the node (its pods, relays and network) before the API server it reports to.
    pub node: Node,
    pub plane: ControlPlane,
    pub stack: Stack,
    /// The SMTP relay of the DataPlane spec (reached by pods as the `smtp` Service).
    pub mail: MailCatcher,
    /// The data plane's URL from the host (its Service's cluster address), once it runs.
    pub base: String,
    /// This run's Redis key prefix (`spec.redis.keyPrefix`): this machine's Redis is shared by
    /// every test run and the demo.
    pub redis_prefix: String,
    loopback: Option<Relay>,
}

/// Says what is happening (the demo shows these lines; the tests print them too).
pub fn say(what: &str) {
    eprintln!("[e2e]     {what}");
}

/// The example DataPlane as this system runs it: its SMTP relay is the `smtp` Service, its Redis
/// keys carry `redis_prefix`, and its CPU request is small enough for two replicas and a rolling
/// update's extra pod on a two-core node.
pub fn example_dataplane(smtp_host: &str, smtp_port: u16, redis_prefix: &str) -> Result<String> {
    let manifest = System::example("dataplane.yaml")?;
    let replaced = manifest
        .replace("requests: {cpu: 250m, memory: 256Mi}", "requests: {cpu: 50m, memory: 64Mi}")
        .replace(
            "    secretName: conclave-redis",
            &format!("    secretName: conclave-redis\n    keyPrefix: {redis_prefix}"),
        )
        .replace("host: 127.0.0.1", &format!("host: {smtp_host}"))
        .replace("port: 2525", &format!("port: {smtp_port}"));
    if replaced.matches(redis_prefix).count() != 1 || !replaced.contains(smtp_host) || !replaced.contains("cpu: 50m") {
        bail!("examples/dataplane.yaml changed shape: the harness could not adapt it:\n{replaced}");
    }
    Ok(replaced)
}

impl System {
    /// A node of this run's own and its control plane (in `dir`, or a temporary directory),
    /// this run's database (named `<database_prefix>_…`) and a mail relay.
    pub async fn start(dir: Option<std::path::PathBuf>, database_prefix: &str) -> Result<Self> {
        let stack = Stack::new(database_prefix).await.context("PostgreSQL and Redis (scripts/stack.sh up)")?;
        let mail = MailCatcher::start().await.context("mail relay")?;
        let (plane, node) = tokio::task::spawn_blocking(move || -> Result<(ControlPlane, Node)> {
            let net = NodeNet::create()?;
            let access = net.access();
            let plane = match dir {
                Some(dir) => ControlPlane::start_with(Tools::ensure()?, dir, Some(access))?,
                None => ControlPlane::start_for_node(access)?,
            };
            let node = Node::start(&plane, net)?;
            Ok((plane, node))
        })
        .await??;
        let redis_prefix = format!("e2e-{}", stack.db.name);
        Ok(Self { node, plane, stack, mail, base: String::new(), redis_prefix, loopback: None })
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

    /// The operator's log (every container of its Deployment's current pod).
    pub fn operator_log(&self) -> String {
        self.plane
            .kubectl(&["-n", OPERATOR_NAMESPACE, "logs", "deployment/conclave-operator", "--tail=200"])
            .unwrap_or_else(|e| e.to_string())
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
                bail!(
                    "{resource} is Ready={s} ({r}), wanted {status} {reason:?}\n{yaml}\noperator log:\n{}",
                    self.operator_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The Running pods of the operator (`component=operator`) or of the data plane
    /// (`component=server`), by name.
    pub fn running_pods(&self, namespace: &str, component: &str) -> Vec<String> {
        self.plane
            .kubectl(&[
                "-n",
                namespace,
                "get",
                "pods",
                "-l",
                &format!("app.kubernetes.io/component={component}"),
                "--field-selector=status.phase=Running",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}|{.metadata.deletionTimestamp}{"\n"}{end}"#,
            ])
            .unwrap_or_default()
            .lines()
            // A pod being deleted is still Running until its containers stop: not counted.
            .filter_map(|l| l.split_once('|').filter(|(_, deleting)| deleting.is_empty()).map(|(n, _)| n.to_owned()))
            .collect()
    }

    /// Waits until the operator's Deployment is available and one of its pods holds the Lease;
    /// returns that pod's name.
    pub async fn wait_operator_leading(&self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let holder = crate::operator::lease_holder(&self.plane).await.ok().flatten();
            let running = self.running_pods(OPERATOR_NAMESPACE, "operator");
            if let Some(holder) = holder.filter(|h| running.contains(h)) {
                return Ok(holder);
            }
            if Instant::now() > deadline {
                let pods =
                    self.plane.kubectl(&["-n", OPERATOR_NAMESPACE, "get", "pods", "-o", "wide"]).unwrap_or_default();
                bail!("no running operator pod took the Lease within {timeout:?}:\n{pods}\n{}", self.operator_log());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `helm install` the chart (the operator's at-rest key pointing at the example DataPlane),
    /// its database Secret first (PostgreSQL reached through the node), then waits until the
    /// operator's pod holds the leader Lease. Returns the chart's notes.
    pub async fn install_chart_and_operator(&mut self) -> Result<String> {
        for ns in [OPERATOR_NAMESPACE, TENANTS] {
            if self.plane.kubectl(&["get", "namespace", ns, "-o", "name"]).is_err() {
                self.plane.kubectl(&["create", "namespace", ns])?;
            }
        }
        let url = self.in_cluster_pg_url(OPERATOR_NAMESPACE)?;
        self.apply_json(&cnpg_app_secret(OPERATOR_DB_SECRET, OPERATOR_NAMESPACE, &url)?)?;
        let notes = chart::install(
            &self.plane,
            &[&format!("operator.atRestKeySecret={TENANTS}/{DATAPLANE}-at-rest-key"), "operator.logFormat=json"],
        )?;
        say(&format!("helm install {} charts/conclave -n {OPERATOR_NAMESPACE}: deployed", chart::RELEASE));
        let leader = self.wait_operator_leading(Duration::from_secs(120)).await?;
        say(&format!(
            "operator pod {leader} (image {}) runs under ServiceAccount {OPERATOR_NAMESPACE}/conclave-operator and holds the leader Lease",
            self.plane
                .kubectl(&[
                    "-n",
                    OPERATOR_NAMESPACE,
                    "get",
                    "pod",
                    &leader,
                    "-o",
                    "jsonpath={.spec.containers[0].image}"
                ])
                .unwrap_or_default()
        ));
        Ok(notes)
    }

    /// The schema owner's URL for this run's database, as pods in `namespace` reach it (the
    /// `postgres` Service there, through the node's relay).
    fn in_cluster_pg_url(&mut self, namespace: &str) -> Result<String> {
        let pg = parse_pg_url(&self.stack.owner_url())?;
        let (host, port) = self.node.host_service(&self.plane, namespace, "postgres", pg.port.parse()?)?;
        Ok(format!("postgres://{}:{}@{host}:{port}/{}", pg.username, pg.password, pg.dbname))
    }

    /// Applies `examples/dataplane.yaml` (with the PostgreSQL and Redis Secrets it refers to, and
    /// this run's Redis key prefix), waits for its migration Job, two Ready data-plane pods as
    /// the Service's endpoints and the DataPlane's Ready condition. Sets [`System::base`].
    pub async fn deploy_dataplane(&mut self) -> Result<()> {
        let pg = self.in_cluster_pg_url(TENANTS)?;
        self.apply_json(&cnpg_app_secret("conclave-db-app", TENANTS, &pg)?)?;
        let redis_port: u16 = self
            .stack
            .redis_url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .context("the Redis URL's port")?;
        let (redis_host, redis_relay) = self.node.host_service(&self.plane, TENANTS, "redis", redis_port)?;
        let redis_url =
            self.stack.redis_url.replace(&format!("127.0.0.1:{redis_port}"), &format!("{redis_host}:{redis_relay}"));
        self.apply_json(&redis_secret("conclave-redis", TENANTS, &redis_url))?;
        let (smtp_host, smtp_port) = self.node.host_service(&self.plane, TENANTS, "smtp", self.mail.port)?;
        let manifest = example_dataplane(&smtp_host, smtp_port, &self.redis_prefix)?;
        self.plane.kubectl_stdin(&["-n", TENANTS, "apply", "-f", "-"], &manifest)?;
        say("kubectl apply -f examples/dataplane.yaml (PostgreSQL, Redis and SMTP on the host, reached as Services)");

        self.wait_ready(&format!("dataplane/{DATAPLANE}"), "True", Some("Available"), Duration::from_secs(300)).await?;
        let job = self.plane.kubectl(&[
            "-n",
            TENANTS,
            "get",
            "jobs",
            "-l",
            "app.kubernetes.io/component=migrate",
            "-o",
            "jsonpath={.items[0].metadata.name}:{.items[0].status.succeeded}",
        ])?;
        say(&format!("migration Job {job} (name:succeeded) ran `conclave-dataplane migrate` as a pod"));
        self.wait_ready_endpoints(2, Duration::from_secs(120)).await?;
        let ip = self.plane.kubectl(&["-n", TENANTS, "get", "svc", DATAPLANE, "-o", "jsonpath={.spec.clusterIP}"])?;
        self.base = format!("http://{ip}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(format!("{}/readyz", self.base)).await.is_ok_and(|r| r.status().is_success()) {
            if Instant::now() > deadline {
                bail!("the data plane's Service {} does not answer /readyz from the host", self.base);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        say(&format!("data plane pods serve through the Service at {}", self.base));
        Ok(())
    }

    /// The ready endpoints (pod addresses) of the data plane's Service.
    pub fn ready_endpoints(&self) -> Vec<String> {
        self.plane
            .kubectl(&[
                "-n",
                TENANTS,
                "get",
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={DATAPLANE}"),
                "-o",
                "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
            ])
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the Service has exactly `want` ready endpoints.
    pub async fn wait_ready_endpoints(&self, want: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let endpoints = self.ready_endpoints();
            if endpoints.len() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                let pods = self.plane.kubectl(&["-n", TENANTS, "get", "deploy,pods", "-o", "wide"]).unwrap_or_default();
                bail!("not {want} ready endpoints within {timeout:?}: {endpoints:?}\n{pods}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Relays `127.0.0.1:<port>` to the data plane's Service (the demo's address), and returns
    /// that URL.
    pub fn serve_on_loopback(&mut self, port: u16) -> Result<String> {
        let service: SocketAddr = format!("{}:80", self.base.trim_start_matches("http://")).parse()?;
        let relay = Relay::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(), service)?;
        self.loopback = Some(relay);
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Stops the node (pods, relays, network) and the control plane, checking nothing is left.
    pub fn stop(&mut self) -> Result<()> {
        self.loopback.take();
        self.node.stop()?;
        self.plane.stop()
    }
}
