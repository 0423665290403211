//! A real Kubernetes control plane on loopback: etcd and kube-apiserver, as envtest runs them,
//! with TLS everywhere, RBAC and static-token authentication.
//!
//! Certificates are made with the `openssl` command line: one CA, one loopback certificate
//! (127.0.0.1 and localhost, for serving and as etcd's client), and the service-account signing
//! key. The token file has two users: `admin` (`system:masters`, for kubectl, helm and the test's
//! assertions) and the operator's ServiceAccount identity
//! `system:serviceaccount:<ns>:conclave-operator` with the ServiceAccount groups, so the RBAC the
//! Helm chart installs is what authorises the operator, exactly as in a cluster.
//!
//! Dropping the [`ControlPlane`] stops kube-apiserver, then etcd, and removes the directory.

use crate::proc::{Proc, free_port, run};
use crate::tools::Tools;
use anyhow::{Context, Result, bail};
use base64::Engine;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The namespace the chart and the operator's identity live in.
pub const OPERATOR_NAMESPACE: &str = "conclave-system";
/// The operator's ServiceAccount (the chart's `conclave-operator`).
pub const OPERATOR_SERVICE_ACCOUNT: &str = "conclave-operator";

/// Where a node's network reaches the API server (see [`crate::node`]): the host's end of the
/// link to the node, which the API server advertises (the `kubernetes` Service's endpoint), and
/// the Service range that exists only inside the node.
#[derive(Debug, Clone)]
pub struct NodeAccess {
    pub advertise: Ipv4Addr,
    pub service_cidr: String,
    /// The `kubernetes` Service's address (the range's first).
    pub service_ip: Ipv4Addr,
}

pub struct ControlPlane {
    pub tools: Tools,
    /// Set when started for a node.
    pub node_access: Option<NodeAccess>,
    /// Everything of this control plane: certificates, etcd data, logs, kubeconfigs.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`
    pub server: String,
    pub apiserver_port: u16,
    pub etcd_port: u16,
    pub etcd_peer_port: u16,
    /// Cluster-admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The operator's kubeconfig (its ServiceAccount's identity, bound by the chart's RBAC).
    pub operator_kubeconfig: PathBuf,
    // Declared in stop order: the API server before etcd.
    apiserver: Option<Proc>,
    etcd: Option<Proc>,
    keep_dir: bool,
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let mut c = Command::new("openssl");
    c.current_dir(dir).args(args);
    run(c).map(|_| ()).context("openssl (the harness makes its certificates with the openssl command)")
}

fn make_certificates(dir: &Path, extra_sans: &str) -> Result<()> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=conclave-e2e-ca"]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "loopback.key", "-out", "loopback.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &csr)?;
    std::fs::write(
        dir.join("loopback.ext"),
        format!(
            "subjectAltName=IP:127.0.0.1,DNS:localhost{extra_sans}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
        ),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "loopback.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "loopback.crt",
            "-days",
            "30",
            "-extfile",
            "loopback.ext",
        ],
    )?;
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"])?;
    openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

/// A kubeconfig for `server` authenticating with `token`.
pub fn kubeconfig_yaml(server: &str, ca_pem: &[u8], user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: conclave-e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: {user}@conclave-e2e\n  context:\n    cluster: conclave-e2e\n    user: {user}\n    namespace: default\n\
         current-context: {user}@conclave-e2e\n"
    )
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver in a new temporary directory and waits until the API
    /// server is ready.
    pub fn start() -> Result<Self> {
        let tools = Tools::ensure()?;
        let dir = std::env::temp_dir().join(format!("conclave-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Self::start_in(tools, dir)
    }

    /// Starts in a given directory (the demo keeps one under its state directory).
    pub fn start_in(tools: Tools, dir: PathBuf) -> Result<Self> {
        Self::start_with(tools, dir, None)
    }

    /// Starts for a node: the API server also answers, through the node's relay, on the
    /// addresses pods and the node use (`access`), and reaches the kubelet with a client
    /// certificate.
    pub fn start_for_node(access: NodeAccess) -> Result<Self> {
        let tools = Tools::ensure()?;
        let dir = std::env::temp_dir().join(format!("conclave-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Self::start_with(tools, dir, Some(access))
    }

    pub fn start_with(tools: Tools, dir: PathBuf, node_access: Option<NodeAccess>) -> Result<Self> {
        let started = Instant::now();
        std::fs::create_dir_all(dir.join("etcd"))?;
        let extra_sans = node_access.as_ref().map_or_else(String::new, |a| {
            format!(
                ",IP:{},IP:{},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
                a.advertise, a.service_ip
            )
        });
        make_certificates(&dir, &extra_sans)?;
        let (apiserver_port, etcd_port, etcd_peer_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let admin_token = random_token();
        let operator_token = random_token();
        let operator_user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{admin_token},admin,admin-uid,\"system:masters\"\n\
                 {operator_token},{operator_user},operator-uid,\"system:serviceaccounts,system:serviceaccounts:{OPERATOR_NAMESPACE}\"\n"
            ),
        )?;
        let ca = std::fs::read(dir.join("ca.crt"))?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&server, &ca, "admin", &admin_token))?;
        let operator_kubeconfig = dir.join("operator.kubeconfig");
        std::fs::write(&operator_kubeconfig, kubeconfig_yaml(&server, &ca, "conclave-operator", &operator_token))?;
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();

        let mut etcd = Command::new(&tools.etcd);
        etcd.args([
            "--name=e2e",
            &format!("--data-dir={}", path("etcd")),
            &format!("--listen-client-urls=https://127.0.0.1:{etcd_port}"),
            &format!("--advertise-client-urls=https://127.0.0.1:{etcd_port}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            &format!("--initial-cluster=e2e=http://127.0.0.1:{etcd_peer_port}"),
            &format!("--cert-file={}", path("loopback.crt")),
            &format!("--key-file={}", path("loopback.key")),
            &format!("--trusted-ca-file={}", path("ca.crt")),
            "--client-cert-auth",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        let etcd = Proc::spawn("etcd", etcd, &dir.join("etcd.log"))?;

        let (advertise, service_cidr) =
            node_access.as_ref().map_or(("127.0.0.1".to_owned(), "10.96.0.0/24".to_owned()), |a| {
                (a.advertise.to_string(), a.service_cidr.clone())
            });
        let mut apiserver = Command::new(&tools.kube_apiserver);
        if node_access.is_some() {
            apiserver.args([
                format!("--kubelet-client-certificate={}", path("loopback.crt")),
                format!("--kubelet-client-key={}", path("loopback.key")),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
            ]);
        }
        apiserver.args([
            &format!("--etcd-servers=https://127.0.0.1:{etcd_port}"),
            &format!("--etcd-cafile={}", path("ca.crt")),
            &format!("--etcd-certfile={}", path("loopback.crt")),
            &format!("--etcd-keyfile={}", path("loopback.key")),
            "--bind-address=127.0.0.1",
            &format!("--advertise-address={advertise}"),
            &format!("--secure-port={apiserver_port}"),
            &format!("--cert-dir={}", path("certs")),
            &format!("--tls-cert-file={}", path("loopback.crt")),
            &format!("--tls-private-key-file={}", path("loopback.key")),
            &format!("--client-ca-file={}", path("ca.crt")),
            &format!("--token-auth-file={}", path("tokens.csv")),
            "--authorization-mode=RBAC",
            &format!("--service-account-issuer={server}"),
            &format!("--service-account-key-file={}", path("sa.pub")),
            &format!("--service-account-signing-key-file={}", path("sa.key")),
            &format!("--service-cluster-ip-range={service_cidr}"),
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]);
        let apiserver = Proc::spawn("kube-apiserver", apiserver, &dir.join("kube-apiserver.log"))?;
        let mut plane = Self {
            tools,
            node_access,
            dir,
            server,
            apiserver_port,
            etcd_port,
            etcd_peer_port,
            kubeconfig,
            operator_kubeconfig,
            apiserver: Some(apiserver),
            etcd: Some(etcd),
            keep_dir: std::env::var_os("CONCLAVE_E2E_KEEP").is_some(),
        };
        plane.wait_ready(Duration::from_secs(90))?;
        eprintln!(
            "[e2e] kube-apiserver ready at {} in {:.1}s ({})",
            plane.server,
            started.elapsed().as_secs_f64(),
            plane.dir.display()
        );
        Ok(plane)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for proc in [&mut self.etcd, &mut self.apiserver].into_iter().flatten() {
                if !proc.running() {
                    bail!("{} exited during start-up:\n{}", proc.name, proc.tail(30));
                }
            }
            // Ready, and the system namespaces exist (they are made by the API server itself).
            let ready = self.kubectl(&["get", "--raw=/readyz"]).is_ok_and(|s| s.trim() == "ok")
                && self.kubectl(&["get", "namespace", "default", "-o", "name"]).is_ok();
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.apiserver.as_ref().map(|p| p.tail(30)).unwrap_or_default();
                bail!("kube-apiserver was not ready within {timeout:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn tool(&self, program: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.env("KUBECONFIG", kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .args(args);
        c
    }

    /// A `kubectl` command as cluster admin (not yet run).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        self.tool(&self.tools.kubectl, &self.kubeconfig, args)
    }

    /// Runs `kubectl` as cluster admin; its stdout, or an error with its output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(self.kubectl_command(args))
    }

    /// Runs `kubectl` as the operator's ServiceAccount (to check what RBAC allows it).
    pub fn kubectl_as_operator(&self, args: &[&str]) -> Result<String> {
        run(self.tool(&self.tools.kubectl, &self.operator_kubeconfig, args))
    }

    /// Runs `kubectl` with a manifest on its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
        let output = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("kubectl {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(stdout)
    }

    /// Runs `helm` as cluster admin.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        run(self.tool(&self.tools.helm, &self.kubeconfig, args))
    }

    /// A kube client as cluster admin.
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig).await
    }

    /// Stops both processes (the API server first) and checks that their ports are free.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.apiserver.take() {
            p.stop(Duration::from_secs(15));
        }
        if let Some(mut p) = self.etcd.take() {
            p.stop(Duration::from_secs(10));
        }
        for port in [self.apiserver_port, self.etcd_port, self.etcd_peer_port] {
            if crate::proc::port_open(port) {
                bail!("port {port} is still open after the control plane stopped");
            }
        }
        Ok(())
    }

    /// The process ids of etcd and kube-apiserver (while they run).
    pub fn pids(&self) -> Vec<u32> {
        [&self.apiserver, &self.etcd].into_iter().flatten().filter_map(Proc::pid).collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.stop();
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("[e2e] control-plane files and logs kept in {}", self.dir.display());
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
