//! A real single-node Kubernetes node for the end-to-end suite: containerd (Debian's) with runc,
//! kubelet, kube-proxy and CoreDNS in a network namespace of the run's own, and
//! kube-controller-manager and kube-scheduler beside the [`ControlPlane`]'s API server.
//!
//! Everything is named with a per-run id (`conclave-<id>`), so a second run, or the demo, never
//! touches another's:
//!
//! * the network: a network namespace `conclave-<id>` holding the node (its iptables rules, the
//!   kubelet's `KUBE-FIREWALL`/`KUBE-KUBELET-CANARY`/`KUBE-IPTABLES-HINT` chains and kube-proxy's
//!   included), a veth pair `cnc<id>h` (host, 10.N.0.1/30) / `cnc<id>n` (node, 10.N.0.2), a bridge
//!   `cnc<id>b` (10.N.1.1/24) for the pods through Debian's CNI `bridge` + `host-local` plugins,
//!   and the Service range 10.N.2.0/24; N is chosen free (no address or route of the machine in
//!   10.N.0.0/16) and held with a lock file. The node's namespace has no default route: pods reach
//!   the node, each other and the host's end of the link, nothing else. The host reaches the pod
//!   and Service ranges through the link.
//! * services on the host's loopback (kube-apiserver, PostgreSQL, Redis) are reached through a
//!   [`Relay`] on 10.N.0.1.
//! * containerd runs with a configuration of its own in the run directory: its own root, state,
//!   socket and runc root, `restrict_oom_score_adj = true` (the machine lacks CAP_SYS_RESOURCE),
//!   cgroupfs, and a `sandbox_image` imported locally (`scripts/images.sh` builds it: nothing can
//!   be pulled here). The kubelet puts pods under the cgroup `/conclave-<id>`.
//! * cluster DNS: CoreDNS in the node's namespace on 10.N.0.2:53, behind the `kube-dns` Service
//!   (10.N.2.10) and an EndpointSlice, so pods reach Services by name.
//!
//! Stopping (or dropping) the [`Node`] stops the kubelet, kills what runs in the pods' cgroups and
//! the containerd shims of this containerd, stops the other processes, unmounts what is mounted
//! under the run directory, removes the cgroups and deletes the network namespace (with its
//! bridge, veths and iptables chains), then checks that none of it is left.

use crate::control_plane::{ControlPlane, NodeAccess, kubeconfig_yaml};
use crate::proc::{Proc, run};
use crate::relay::Relay;
use crate::tools::repo_root;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where live nodes register (one file each), so a later run can tell which are gone.
const REGISTRY: &str = "/run/conclave-e2e-nodes";
/// The containerd namespace the kubelet's CRI uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The node's network: the namespace, the link to the host and the ranges inside it.
pub struct NodeNet {
    pub id: String,
    pub netns: String,
    pub host_veth: String,
    pub node_veth: String,
    pub bridge: String,
    /// 10.N.0.0/16 holds everything of this node.
    pub octet: u8,
    _lock: File,
    created: bool,
}

impl NodeNet {
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 0, 1)
    }
    pub fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 0, 2)
    }
    pub fn pod_cidr(&self) -> String {
        format!("10.{}.1.0/24", self.octet)
    }
    pub fn pod_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 1, 1)
    }
    pub fn service_cidr(&self) -> String {
        format!("10.{}.2.0/24", self.octet)
    }
    pub fn dns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 2, 10)
    }
    /// What the API server needs to serve this node.
    pub fn access(&self) -> NodeAccess {
        NodeAccess {
            advertise: self.host_ip(),
            service_cidr: self.service_cidr(),
            service_ip: Ipv4Addr::new(10, self.octet, 2, 1),
        }
    }

    /// Creates the namespace, the link and the bridge, on a 10.N.0.0/16 nothing else uses.
    pub fn create() -> Result<Self> {
        std::fs::create_dir_all(REGISTRY)?;
        sweep_dead_nodes();
        let id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        let used = run(cmd("ip", &["-4", "-o", "addr"]))? + &run(cmd("ip", &["-4", "route", "show", "table", "all"]))?;
        let mut chosen = None;
        for octet in 120u8..=199 {
            if used.contains(&format!("10.{octet}.")) {
                continue;
            }
            let lock = File::create(Path::new(REGISTRY).join(format!("net-10.{octet}.lock")))?;
            if try_lock(&lock) {
                chosen = Some((octet, lock));
                break;
            }
        }
        let (octet, lock) = chosen.context("no free 10.N.0.0/16 range for the node's network (120..199 all used)")?;
        let mut net = Self {
            netns: format!("conclave-{id}"),
            host_veth: format!("cnc{id}h"),
            node_veth: format!("cnc{id}n"),
            bridge: format!("cnc{id}b"),
            id,
            octet,
            _lock: lock,
            created: false,
        };
        net.created = true;
        if let Err(e) = net.set_up() {
            net.delete();
            return Err(e);
        }
        Ok(net)
    }

    fn set_up(&self) -> Result<()> {
        let ns = self.netns.as_str();
        let (h, n, br) = (self.host_veth.as_str(), self.node_veth.as_str(), self.bridge.as_str());
        let host = format!("{}/30", self.host_ip());
        let node = format!("{}/30", self.node_ip());
        let gateway = format!("{}/24", self.pod_gateway());
        let via = self.node_ip().to_string();
        let (pods, services) = (self.pod_cidr(), self.service_cidr());
        run(cmd("ip", &["netns", "add", ns]))?;
        run(cmd("ip", &["link", "add", h, "type", "veth", "peer", "name", n]))?;
        run(cmd("ip", &["link", "set", n, "netns", ns]))?;
        run(cmd("ip", &["addr", "add", &host, "dev", h]))?;
        run(cmd("ip", &["link", "set", h, "up"]))?;
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", &node, "dev", n],
            &["link", "set", n, "up"],
            &["link", "add", br, "type", "bridge"],
            &["addr", "add", &gateway, "dev", br],
            &["link", "set", br, "up"],
        ] {
            run(self.exec("ip", args))?;
        }
        // Routing between the pods, the node and the host's end of the link; nothing beyond.
        run(self.exec("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]))?;
        run(cmd("ip", &["route", "add", &pods, "via", &via, "dev", h]))?;
        run(cmd("ip", &["route", "add", &services, "via", &via, "dev", h]))?;
        Ok(())
    }

    /// A command run inside the node's network namespace (the mount namespace stays the host's,
    /// so containerd sees the kubelet's volume mounts).
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns)).arg("--").arg(program).args(args);
        c
    }

    /// Deletes the namespace (and so the bridge, the veths, the pods' interfaces and every
    /// iptables rule made inside it).
    fn delete(&mut self) {
        if !self.created {
            return;
        }
        self.created = false;
        let _ = run(cmd("ip", &["netns", "delete", &self.netns]));
        // The host's end goes with its peer; if the peer never moved, remove it here.
        let _ = Command::new("ip").args(["link", "delete", &self.host_veth]).output();
        let _ = std::fs::remove_file(Path::new(REGISTRY).join(format!("net-10.{}.lock", self.octet)));
    }

    /// What of this network still exists (empty when it is all gone).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if Path::new("/run/netns").join(&self.netns).exists() {
            left.push(format!("network namespace {}", self.netns));
        }
        if Path::new("/sys/class/net").join(&self.host_veth).exists() {
            left.push(format!("link {}", self.host_veth));
        }
        if run(cmd("ip", &["-4", "route"])).is_ok_and(|r| r.contains(&format!("10.{}.", self.octet))) {
            left.push(format!("routes to 10.{}.0.0/16", self.octet));
        }
        left
    }
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        self.delete();
    }
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// An exclusive, non-blocking lock on the file, held until it is closed (or the process dies).
fn try_lock(file: &File) -> bool {
    file.try_lock().is_ok()
}

/// A running node.
pub struct Node {
    /// The node's name, `conclave-<id>`.
    pub name: String,
    /// containerd's files, the kubelet's root, configurations and logs.
    pub dir: PathBuf,
    pub containerd_socket: PathBuf,
    relays: Vec<Relay>,
    kubelet: Option<Proc>,
    kube_proxy: Option<Proc>,
    coredns: Option<Proc>,
    scheduler: Option<Proc>,
    controller_manager: Option<Proc>,
    containerd: Option<Proc>,
    cgroup: String,
    created_var_lib_kubelet: bool,
    keep_dir: bool,
    // Last: the network goes after everything in it.
    pub net: NodeNet,
}

/// The cgroup v1 hierarchies (and the unified one, when mounted) the kubelet makes pod cgroups in.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("cgroup.procs").exists()).collect())
        .unwrap_or_default()
}

impl Node {
    /// Starts containerd, imports the images, then the kubelet, kube-proxy, CoreDNS, the
    /// controller manager and the scheduler, and waits until the node is Ready and DNS answers.
    pub fn start(plane: &ControlPlane, net: NodeNet) -> Result<Self> {
        let started = Instant::now();
        let access = plane.node_access.clone().context("the control plane was not started for a node")?;
        let name = format!("conclave-{}", net.id);
        let dir = plane.dir.join("node");
        std::fs::create_dir_all(dir.join("cni/net.d"))?;
        let cgroup = format!("conclave-{}", net.id);
        let var_lib_kubelet = Path::new("/var/lib/kubelet");
        let created_var_lib_kubelet = !var_lib_kubelet.exists();
        std::fs::write(
            Path::new(REGISTRY).join(format!("{name}.node")),
            format!(
                "pid={}\nplane_dir={}\ndir={}\nnetns={}\noctet={}\ncgroup={cgroup}\nvar_lib_kubelet_created={created_var_lib_kubelet}\n",
                std::process::id(),
                plane.dir.display(),
                dir.display(),
                net.netns,
                net.octet
            ),
        )?;
        let mut node = Self {
            name,
            containerd_socket: dir.join("containerd.sock"),
            dir,
            relays: Vec::new(),
            kubelet: None,
            kube_proxy: None,
            coredns: None,
            scheduler: None,
            controller_manager: None,
            containerd: None,
            cgroup,
            created_var_lib_kubelet,
            keep_dir: std::env::var_os("CONCLAVE_E2E_KEEP").is_some(),
            net,
        };
        node.boot(plane, &access)?;
        eprintln!(
            "[e2e] node {} Ready in {:.1}s (pods {}, Services {}, DNS {})",
            node.name,
            started.elapsed().as_secs_f64(),
            node.net.pod_cidr(),
            node.net.service_cidr(),
            node.net.dns_ip()
        );
        Ok(node)
    }

    fn boot(&mut self, plane: &ControlPlane, access: &NodeAccess) -> Result<()> {
        let tools = &plane.tools;
        let dir = self.dir.clone();
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let pki = |name: &str| plane.dir.join(name).to_string_lossy().into_owned();

        // The API server, through the link.
        let api = self.relay(plane.apiserver_port)?;
        let admin_token = admin_token(&plane.kubeconfig)?;
        let ca = std::fs::read(plane.dir.join("ca.crt"))?;
        let node_kubeconfig = dir.join("node.kubeconfig");
        std::fs::write(&node_kubeconfig, kubeconfig_yaml(&format!("https://{api}"), &ca, "admin", &admin_token))?;

        // containerd.
        for h in cgroup_hierarchies() {
            std::fs::create_dir_all(h.join(&self.cgroup))?;
        }
        let sandbox_image = pause_image();
        std::fs::write(
            dir.join("containerd.toml"),
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
                root = p("containerd/root"),
                state = p("containerd/state"),
                socket = p("containerd.sock"),
                opt = p("containerd/opt"),
                runc = p("runc"),
                cni = p("cni/net.d"),
            ),
        )?;
        std::fs::write(
            dir.join(format!("cni/net.d/10-{}.conflist", self.name)),
            serde_json::to_string_pretty(&serde_json::json!({
                "cniVersion": "0.4.0",
                "name": self.name,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": self.net.bridge,
                        "isGateway": true,
                        "hairpinMode": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": self.net.pod_cidr(), "gateway": self.net.pod_gateway().to_string()}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": p("cni/ipam"),
                        }
                    },
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            }))?,
        )?;
        let mut containerd = self.net.exec("containerd", &["--config", &p("containerd.toml")]);
        containerd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        self.containerd = Some(Proc::spawn("containerd", containerd, &dir.join("containerd.log"))?);
        wait_for("containerd's socket", Duration::from_secs(30), || Ok(self.containerd_socket.exists()))?;
        let images_started = Instant::now();
        self.import_images()?;
        eprintln!(
            "[e2e] images built (scripts/images.sh) and imported in {:.1}s",
            images_started.elapsed().as_secs_f64()
        );

        // The kubelet.
        std::fs::write(dir.join("resolv.conf"), "options ndots:1\n")?;
        std::fs::write(
            dir.join("kubelet.yaml"),
            format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
clusterDNS: [{dns}]
clusterDomain: cluster.local
resolvConf: {resolv}
podLogsDir: {logs}
volumePluginDir: {plugins}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
serializeImagePulls: false
"#,
                node_ip = self.net.node_ip(),
                ca = pki("ca.crt"),
                cgroup = self.cgroup,
                socket = p("containerd.sock"),
                dns = self.net.dns_ip(),
                resolv = p("resolv.conf"),
                logs = p("pod-logs"),
                plugins = p("volume-plugins"),
            ),
        )?;
        let kubelet = self.net.exec(
            &tools.kubelet.to_string_lossy(),
            &[
                &format!("--config={}", p("kubelet.yaml")),
                &format!("--kubeconfig={}", node_kubeconfig.display()),
                &format!("--root-dir={}", p("kubelet")),
                &format!("--cert-dir={}", p("kubelet/pki")),
                &format!("--hostname-override={}", self.name),
                &format!("--node-ip={}", self.net.node_ip()),
                "--v=1",
            ],
        );
        self.kubelet = Some(Proc::spawn("kubelet", kubelet, &dir.join("kubelet.log"))?);

        // kube-proxy (iptables, inside the node's namespace).
        std::fs::write(
            dir.join("kube-proxy.yaml"),
            format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
clusterCIDR: {pods}
hostnameOverride: {name}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {{masqueradeAll: true, syncPeriod: 10s, minSyncPeriod: 0s}}
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
                kubeconfig = node_kubeconfig.display(),
                pods = self.net.pod_cidr(),
                name = self.name,
            ),
        )?;
        let proxy = self
            .net
            .exec(&tools.kube_proxy.to_string_lossy(), &[&format!("--config={}", p("kube-proxy.yaml")), "--v=1"]);
        self.kube_proxy = Some(Proc::spawn("kube-proxy", proxy, &dir.join("kube-proxy.log"))?);

        // The controller manager and the scheduler, beside the API server on the host.
        let admin = plane.kubeconfig.to_string_lossy().into_owned();
        let mut kcm = Command::new(&tools.kube_controller_manager);
        kcm.args([
            &format!("--kubeconfig={admin}"),
            "--leader-elect=false",
            "--secure-port=0",
            &format!("--service-account-private-key-file={}", pki("sa.key")),
            &format!("--root-ca-file={}", pki("ca.crt")),
            &format!("--service-cluster-ip-range={}", access.service_cidr),
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ]);
        self.controller_manager =
            Some(Proc::spawn("kube-controller-manager", kcm, &dir.join("kube-controller-manager.log"))?);
        let mut scheduler = Command::new(&tools.kube_scheduler);
        scheduler.args([&format!("--kubeconfig={admin}"), "--leader-elect=false", "--secure-port=0", "--v=1"]);
        self.scheduler = Some(Proc::spawn("kube-scheduler", scheduler, &dir.join("kube-scheduler.log"))?);

        // Cluster DNS: CoreDNS on the node's address, behind the kube-dns Service.
        std::fs::write(
            dir.join("Corefile"),
            format!(
                ".:53 {{\n    bind {node_ip}\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        kubeconfig {kubeconfig} admin@conclave-e2e\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }}\n    cache 5\n}}\n",
                node_ip = self.net.node_ip(),
                kubeconfig = node_kubeconfig.display(),
            ),
        )?;
        let coredns = self.net.exec(&tools.coredns.to_string_lossy(), &["-conf", &p("Corefile")]);
        self.coredns = Some(Proc::spawn("coredns", coredns, &dir.join("coredns.log"))?);
        plane.kubectl_stdin(&["apply", "-f", "-"], &dns_objects(&self.net))?;
        self.wait_service_programmed("kube-system", "kube-dns")?;
        self.wait_service_programmed("default", "kubernetes")?;

        // Ready: the node reports Ready and the default ServiceAccount exists.
        let name = self.name.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.check_running()?;
            let ready = plane
                .kubectl(&["get", "node", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
                .is_ok_and(|s| s.trim() == "True");
            let sa = plane.kubectl(&["get", "serviceaccount", "default", "-o", "name"]).is_ok();
            if ready && sa {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {name} was not Ready within 120s:\n{}",
                    self.kubelet.as_ref().map(|k| k.tail(40)).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until kube-proxy has programmed the Service `namespace/name` (its rules exist in the
    /// node's iptables): a pod started before that would find the Service's address unreachable.
    pub fn wait_service_programmed(&self, namespace: &str, name: &str) -> Result<()> {
        let comment = format!("\"{namespace}/{name}");
        wait_for(&format!("kube-proxy's rules for Service {namespace}/{name}"), Duration::from_secs(60), || {
            Ok(run(self.net.exec("iptables-save", &["-t", "nat"])).is_ok_and(|rules| rules.contains(&comment)))
        })
    }

    /// Every process of the node still runs (an error with the log tail of the first that does not).
    pub fn check_running(&mut self) -> Result<()> {
        for proc in [
            &mut self.containerd,
            &mut self.kubelet,
            &mut self.kube_proxy,
            &mut self.coredns,
            &mut self.controller_manager,
            &mut self.scheduler,
        ]
        .into_iter()
        .flatten()
        {
            if !proc.running() {
                bail!("{} exited:\n{}", proc.name, proc.tail(40));
            }
        }
        Ok(())
    }

    /// Makes a host loopback port reachable from the node and its pods at `10.N.0.1:<port>`.
    /// Asking twice for the same port gives the same relay.
    pub fn relay(&mut self, loopback_port: u16) -> Result<SocketAddr> {
        if let Some(existing) = self.relays.iter().find(|r| r.target.port() == loopback_port) {
            return Ok(existing.listen);
        }
        let relay = Relay::start(
            SocketAddrV4::new(self.net.host_ip(), loopback_port).into(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, loopback_port).into(),
        )?;
        let addr = relay.listen;
        self.relays.push(relay);
        Ok(addr)
    }

    /// Makes a host loopback service (PostgreSQL, Redis, a mail relay) reachable from pods as
    /// `<name>.<namespace>.svc.cluster.local:<relay port>`: a Service without selector whose
    /// EndpointSlice is this node's relay to the loopback port. Returns that host name and port.
    pub fn host_service(
        &mut self,
        plane: &ControlPlane,
        namespace: &str,
        name: &str,
        loopback_port: u16,
    ) -> Result<(String, u16)> {
        let relay = self.relay(loopback_port)?;
        let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
             "spec": {"ports": [{"name": "tcp", "port": relay.port(), "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": format!("{name}-host"), "namespace": namespace,
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [relay.ip().to_string()], "conditions": {"ready": true}}],
             "ports": [{"name": "tcp", "port": relay.port(), "protocol": "TCP"}]},
        ]});
        plane.kubectl_stdin(&["apply", "-f", "-"], &objects.to_string()).context("the host Service")?;
        self.wait_service_programmed(namespace, name)?;
        Ok((format!("{name}.{namespace}.svc.cluster.local"), relay.port()))
    }

    /// Builds the project's images (`scripts/images.sh`: cargo rebuilds only what changed, so
    /// the pods run this tree's code) and imports them into this containerd.
    fn import_images(&self) -> Result<()> {
        let script = repo_root().join("scripts/images.sh");
        let mut c = Command::new("bash");
        c.arg(&script)
            .arg("import")
            .env("CONTAINERD_ADDRESS", &self.containerd_socket)
            .env("CONTAINERD_NAMESPACE", CRI_NAMESPACE);
        run(c).context("building and importing the images into the node's containerd (scripts/images.sh import)")?;
        Ok(())
    }

    /// `ctr` against this node's containerd.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.containerd_socket).args(["-n", CRI_NAMESPACE]).args(args);
        run(c)
    }

    /// The process ids in the pods' cgroups.
    fn pod_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for h in cgroup_hierarchies() {
            collect_pids(&h.join(&self.cgroup), &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// containerd shims serving this containerd (found by its socket on their command line).
    fn shim_pids(&self) -> Vec<u32> {
        let socket = self.containerd_socket.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            if args.first().is_some_and(|a| a.contains("containerd-shim")) && args.iter().any(|a| a == &socket) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Mount points under the run directory (deepest first).
    fn mounts(&self) -> Vec<String> {
        mounts_under(&self.dir.to_string_lossy())
    }

    /// Stops everything and removes what the node made; an error lists what is left.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut k) = self.kubelet.take() {
            k.stop(Duration::from_secs(10));
        }
        for _ in 0..20 {
            let pids = [self.pod_pids(), self.shim_pids()].concat();
            if pids.is_empty() {
                break;
            }
            let mut kill = Command::new("kill");
            kill.arg("-KILL").args(pids.iter().map(u32::to_string));
            let _ = kill.output();
            std::thread::sleep(Duration::from_millis(200));
        }
        for proc in [
            &mut self.kube_proxy,
            &mut self.coredns,
            &mut self.scheduler,
            &mut self.controller_manager,
            &mut self.containerd,
        ] {
            if let Some(mut p) = proc.take() {
                p.stop(Duration::from_secs(10));
            }
        }
        for m in self.mounts() {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        for h in cgroup_hierarchies() {
            remove_cgroup(&h.join(&self.cgroup));
        }
        self.relays.clear();
        self.net.delete();
        let _ = std::fs::remove_file(Path::new(REGISTRY).join(format!("{}.node", self.name)));
        self.clean_host_paths();

        let mut left = self.net.leftovers();
        left.extend(self.pod_pids().iter().map(|p| format!("pod process {p}")));
        left.extend(self.shim_pids().iter().map(|p| format!("containerd shim {p}")));
        left.extend(self.mounts().into_iter().map(|m| format!("mount {m}")));
        left.extend(
            cgroup_hierarchies()
                .into_iter()
                .map(|h| h.join(&self.cgroup))
                .filter(|c| c.exists())
                .map(|c| format!("cgroup {}", c.display())),
        );
        if !left.is_empty() {
            bail!("the node left behind: {}", left.join(", "));
        }
        Ok(())
    }

    /// The kubelet writes a few host paths whatever its root directory: the container log links
    /// in /var/log/containers (those pointing into this run are removed) and
    /// /var/lib/kubelet/device-plugins (removed with /var/lib/kubelet when this node made it and
    /// no other node of ours is alive).
    fn clean_host_paths(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/var/log/containers").into_iter().flatten().flatten() {
            if std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with(&dir)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir("/var/log/containers");
        let others_alive = std::fs::read_dir(REGISTRY)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".node"));
        if self.created_var_lib_kubelet && !others_alive {
            let _ = std::fs::remove_dir_all("/var/lib/kubelet");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("[e2e] {e}");
        }
        if self.keep_dir || std::thread::panicking() {
            eprintln!("[e2e] node files and logs kept in {}", self.dir.display());
        }
    }
}

/// Processes with `needle` in one of their command-line arguments (this one excepted).
fn processes_naming(needle: &str) -> Vec<u32> {
    let own = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if pid != own && cmdline.split(|b| *b == 0).any(|a| String::from_utf8_lossy(a).contains(needle)) {
            pids.push(pid);
        }
    }
    pids
}

/// Mount points under `dir` (deepest first).
fn mounts_under(dir: &str) -> Vec<String> {
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    mounts
}

/// Clears what the nodes of earlier runs left when their process died without stopping them
/// (a killed test run): every process whose command line names that run's directory (etcd, the
/// API server, containerd and its shims, the kubelet…: all are started with paths inside it),
/// the containers in its cgroup, its mounts, cgroups and network namespace, then the directory.
/// Nodes whose process is alive are left alone.
fn sweep_dead_nodes() {
    let Ok(entries) = std::fs::read_dir(REGISTRY) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "node") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or_default()
                .to_owned()
        };
        let pid = field("pid");
        if pid.is_empty() || Path::new("/proc").join(&pid).exists() {
            continue;
        }
        let (plane_dir, dir, netns, cgroup, octet) =
            (field("plane_dir"), field("dir"), field("netns"), field("cgroup"), field("octet"));
        // Only what this harness makes: a conclave-e2e directory, a conclave-<id> namespace and cgroup.
        if !plane_dir.contains("conclave-")
            || !dir.starts_with(&plane_dir)
            || !netns.starts_with("conclave-")
            || !cgroup.starts_with("conclave-")
        {
            continue;
        }
        eprintln!("[e2e] clearing node {netns}, left by process {pid}, which is gone");
        for _ in 0..20 {
            let mut pids = processes_naming(&plane_dir);
            for h in cgroup_hierarchies() {
                collect_pids(&h.join(&cgroup), &mut pids);
            }
            if pids.is_empty() {
                break;
            }
            let _ = Command::new("kill").arg("-KILL").args(pids.iter().map(u32::to_string)).output();
            std::thread::sleep(Duration::from_millis(200));
        }
        for m in mounts_under(&dir) {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        for h in cgroup_hierarchies() {
            remove_cgroup(&h.join(&cgroup));
        }
        let _ = Command::new("ip").args(["netns", "delete", &netns]).output();
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(Path::new(REGISTRY).join(format!("net-10.{octet}.lock")));
        let others_alive = std::fs::read_dir(REGISTRY)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".node"));
        if field("var_lib_kubelet_created") == "true" && !others_alive {
            let _ = std::fs::remove_dir_all("/var/lib/kubelet");
        }
        if mounts_under(&dir).is_empty() {
            let _ = std::fs::remove_dir_all(&plane_dir);
        }
    }
}

fn collect_pids(cgroup: &Path, pids: &mut Vec<u32>) {
    if let Ok(procs) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    for entry in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids);
        }
    }
}

/// Removes a cgroup directory and its children (cgroup directories are removed with rmdir,
/// deepest first).
fn remove_cgroup(cgroup: &Path) {
    for entry in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(cgroup);
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready()? {
        if Instant::now() > deadline {
            bail!("{what} not ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The admin token from the control plane's kubeconfig.
fn admin_token(kubeconfig: &Path) -> Result<String> {
    let text = std::fs::read_to_string(kubeconfig)?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_owned))
        .context("no token in the admin kubeconfig")
}

/// The pod sandbox image `scripts/images.sh` builds (containerd's `sandbox_image`).
pub fn pause_image() -> String {
    format!("localhost/conclave-pause:{}", env!("CARGO_PKG_VERSION"))
}

/// The `kube-dns` Service and its EndpointSlice (CoreDNS runs on the node, not in a pod).
fn dns_objects(net: &NodeNet) -> String {
    let node_ip = net.node_ip();
    let dns_ip = net.dns_ip();
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {{k8s-app: kube-dns}}
spec:
  clusterIP: {dns_ip}
  ports:
    - {{name: dns, port: 53, protocol: UDP, targetPort: 53}}
    - {{name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {{kubernetes.io/service-name: kube-dns}}
addressType: IPv4
endpoints:
  - addresses: ["{node_ip}"]
    conditions: {{ready: true}}
ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, protocol: TCP}}
"#
    )
}
