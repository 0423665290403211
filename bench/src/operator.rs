//! The operator mode: Organizations and Workspaces created against a real kube-apiserver (the
//! end-to-end harness's etcd + kube-apiserver, the Helm chart's CRDs and RBAC) and reconciled by
//! the release operator binary, run as the chart's Deployment would run it, timed to `Ready`;
//! then the operator's CPU and RSS at rest.

use crate::results::OperatorFigures;
use crate::system::{self, Watch};
use anyhow::{Context, Result, bail};
use conclave_e2e::chart::{self, OPERATOR_DB_SECRET};
use conclave_e2e::control_plane::{ControlPlane, OPERATOR_NAMESPACE};
use conclave_e2e::operator as e2e_operator;
use conclave_e2e::proc::{Proc, free_port, port_open};
use conclave_e2e::stack::cnpg_app_secret;
use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The namespace the tenants are declared in.
const NAMESPACE: &str = "bench";
/// The label every object of the run carries, to list them.
const LABEL: &str = "conclave-bench/run";

#[derive(Clone)]
pub struct Settings {
    pub organizations: usize,
    pub workspaces: usize,
    pub concurrency: usize,
    pub timeout: Duration,
    pub idle: Duration,
    /// Create everything before the operator starts (its convergence alone is timed).
    pub start_after_create: bool,
    /// Chart values for the operator's install (`helm --set`).
    pub chart_values: Vec<String>,
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("conclave.io", "v1alpha1", kind), plural)
}

fn organization(i: usize, run: &str) -> Value {
    json!({
        "apiVersion": "conclave.io/v1alpha1",
        "kind": "Organization",
        "metadata": {"name": format!("org-{i}"), "labels": {LABEL: run}},
        "spec": {"slug": format!("org-{i}"), "displayName": format!("Organization {i}")},
    })
}

fn workspace(i: usize, org: usize, run: &str) -> Value {
    json!({
        "apiVersion": "conclave.io/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": format!("ws-{i}"), "labels": {LABEL: run}},
        "spec": {
            "organizationRef": {"name": format!("org-{org}")},
            "slug": format!("ws-{i}"),
            "displayName": format!("Workspace {i}"),
        },
    })
}

/// Whether an object's `Ready` condition is `True`.
fn is_ready(object: &DynamicObject) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Creates `docs` with at most `concurrency` requests in flight, counting them in `created`;
/// the errors by kind.
async fn create_all(
    api: &Api<DynamicObject>,
    docs: Vec<Value>,
    concurrency: usize,
    created: &AtomicUsize,
) -> BTreeMap<String, u64> {
    let results: Vec<Result<()>> = futures::stream::iter(docs)
        .map(|doc| async move {
            let object: DynamicObject = serde_json::from_value(doc)?;
            api.create(&PostParams::default(), &object).await?;
            created.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut errors = BTreeMap::new();
    for e in results.into_iter().filter_map(Result::err) {
        let kind = format!("{e:#}");
        *errors.entry(kind.chars().take(120).collect()).or_insert(0) += 1;
    }
    errors
}

/// Follows the run's objects of one kind with a watch (one request, then only changes: a list
/// of thousands of objects every second would be load on the API server that the product does
/// not cause) and keeps the number that are `Ready` in the returned counter.
fn count_ready(api: Api<DynamicObject>, run: &str) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let ready = Arc::new(AtomicUsize::new(0));
    let config = watcher::Config::default().labels(&format!("{LABEL}={run}"));
    let count = ready.clone();
    let task = tokio::spawn(async move {
        let mut names = HashSet::new();
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    if is_ready(&object) {
                        names.insert(object.name_any());
                    } else {
                        names.remove(&object.name_any());
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    names.remove(&object.name_any());
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) | Err(_) => {}
            }
            count.store(names.len(), Ordering::Relaxed);
        }
    });
    (ready, task)
}

/// How long the operator's reconcile counter must stand still for it to count as settled:
/// longer than the operator's pacing of count-only status writes (10 s).
pub const SETTLED_AFTER: Duration = Duration::from_secs(12);

/// The operator's reconciles so far, from its `/metrics`.
async fn reconciles(http: &reqwest::Client, port: u16) -> Result<f64> {
    let text = system::scrape_metrics(http, port).await?;
    Ok(system::metric_sum(&text, "conclave_operator_reconciles_total").unwrap_or(0.0))
}

/// Waits until the operator's reconcile counter has stood still for [`SETTLED_AFTER`], at most
/// `limit`. When it last moved, if it settled.
async fn settle(port: u16, limit: Duration) -> Result<Option<Instant>> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    let mut last = reconciles(&http, port).await?;
    let mut moved = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = reconciles(&http, port).await?;
        if now != last {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() >= SETTLED_AFTER {
            return Ok(Some(moved));
        }
    }
    Ok(None)
}

/// Starts the control plane, installs the chart, runs the operator against `owner_url`'s
/// database, and measures.
pub async fn run(settings: &Settings, owner_url: &str, run_id: &str) -> Result<OperatorFigures> {
    eprintln!("[bench] starting etcd + kube-apiserver (the e2e harness)");
    let mut plane = tokio::task::spawn_blocking(ControlPlane::start).await??;
    let result = async {
        let _ = plane.kubectl(&["create", "namespace", NAMESPACE]);
        let mut values = vec!["operator.logFormat=json"];
        values.extend(settings.chart_values.iter().map(String::as_str));
        chart::install(&plane, &values).context("helm install")?;
        let secret = cnpg_app_secret(OPERATOR_DB_SECRET, OPERATOR_NAMESPACE, owner_url)?;
        plane.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string())?;
        let client = plane.client().await?;
        // Either everything exists before the operator starts, or the creates run while it
        // reconciles (in `measure`).
        let precreated = if settings.start_after_create {
            eprintln!("[bench] creating every object before the operator starts");
            Some(create_everything(settings, &client, run_id, Instant::now(), Arc::default()).await)
        } else {
            None
        };
        let identity = "bench-operator-0";
        let started = Instant::now();
        let mut op = start_operator(&plane, identity, owner_url).await?;
        e2e_operator::wait_for_leader(&plane, identity, Duration::from_secs(30)).await?;
        eprintln!("[bench] operator (pid {:?}) holds the leader Lease", op.proc.pid());
        let measured = measure(settings, &client, &mut op, run_id, precreated.map(|p| (p, started))).await;
        if measured.is_err() {
            eprintln!("[bench] operator log (last lines):\n{}", op.proc.tail(30));
        }
        drop(op);
        measured
    }
    .await;
    let stopped = tokio::task::spawn_blocking(move || plane.stop()).await;
    let figures = result?;
    stopped??;
    Ok(figures)
}

/// The release operator binary as a host process, run as the chart's Deployment runs its
/// container: its args and literal env values (so chart values such as
/// `operator.reconcileConcurrency` apply), with what a pod would get from elsewhere given here:
/// the database URL (the Secret's), the pod name, the operator's ServiceAccount identity and a
/// free loopback port for its HTTP endpoints.
pub struct Operator {
    pub proc: Proc,
    pub http_port: u16,
}

async fn start_operator(plane: &ControlPlane, identity: &str, owner_url: &str) -> Result<Operator> {
    let deployment: Value = serde_json::from_str(&plane.kubectl(&[
        "-n",
        OPERATOR_NAMESPACE,
        "get",
        "deployment",
        &format!("{}-operator", chart::RELEASE),
        "-o",
        "json",
    ])?)?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let http_port = free_port()?;
    let mut command = std::process::Command::new(conclave_e2e::tools::our_binary("conclave-operator")?);
    command.env_clear().envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "HOME"));
    for var in container["env"].as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
            command.env(name, value);
        }
    }
    command
        .args(container["args"].as_array().into_iter().flatten().filter_map(Value::as_str))
        .env("CONCLAVE_DATABASE_URL", owner_url)
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
        .env("KUBECONFIG", &plane.operator_kubeconfig)
        .env("CONCLAVE_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn("conclave-operator", command, &plane.dir.join(format!("{identity}.log")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !port_open(http_port) {
        if !proc.running() || Instant::now() > deadline {
            bail!("the operator did not serve /healthz:\n{}", proc.tail(40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Operator { proc, http_port })
}

/// What the creates came to: the errors by kind and the seconds they took.
type Created = (BTreeMap<String, u64>, f64);

/// Creates every Organization, then every Workspace; the errors by kind and the seconds it took
/// from `start`.
async fn create_everything(
    settings: &Settings,
    client: &Client,
    run: &str,
    start: Instant,
    created: Arc<AtomicUsize>,
) -> Created {
    let (orgs, workspaces) = apis(client);
    let per_org = settings.organizations.max(1);
    let org_docs: Vec<Value> = (0..settings.organizations).map(|i| organization(i, run)).collect();
    let ws_docs: Vec<Value> = (0..settings.workspaces).map(|i| workspace(i, i % per_org, run)).collect();
    let mut errors = create_all(&orgs, org_docs, settings.concurrency, &created).await;
    for (k, v) in create_all(&workspaces, ws_docs, settings.concurrency, &created).await {
        *errors.entry(k).or_insert(0) += v;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "[bench] created {} Organizations and {} Workspaces in {secs:.1} s ({} errors)",
        settings.organizations,
        settings.workspaces,
        errors.values().sum::<u64>()
    );
    (errors, secs)
}

fn apis(client: &Client) -> (Api<DynamicObject>, Api<DynamicObject>) {
    (
        Api::namespaced_with(client.clone(), NAMESPACE, &resource("Organization", "organizations")),
        Api::namespaced_with(client.clone(), NAMESPACE, &resource("Workspace", "workspaces")),
    )
}

/// Times everything to Ready. With `precreated` (the creates' result and the operator's start),
/// the objects already exist and times count from the operator's start; otherwise the creates
/// run here, alongside, and times count from the first create.
async fn measure(
    settings: &Settings,
    client: &Client,
    op: &mut Operator,
    run: &str,
    precreated: Option<(Created, Instant)>,
) -> Result<OperatorFigures> {
    let pid = op.proc.pid().context("the operator has no pid")?;
    let (orgs, workspaces) = apis(client);
    let existing_objects = precreated.is_some();
    let created =
        Arc::new(AtomicUsize::new(if existing_objects { settings.organizations + settings.workspaces } else { 0 }));
    let (start, mut created_result, mut creating) = match precreated {
        Some((result, started)) => (started, Some(result), None),
        None => {
            // The creates run in a task of their own, so Ready is watched while they go.
            let start = Instant::now();
            let task = {
                let (settings, client, run, created) =
                    (settings.clone(), client.clone(), run.to_owned(), created.clone());
                tokio::spawn(async move { create_everything(&settings, &client, &run, start, created).await })
            };
            (start, None, Some(task))
        }
    };
    let watch = Watch::new(vec![pid]);
    let busy_start = watch.sample();
    let mut orgs_ready_secs = None;
    let mut workspaces_ready_secs = None;
    let (orgs_ready, orgs_watch) = count_ready(orgs.clone(), run);
    let (ws_ready, ws_watch) = count_ready(workspaces.clone(), run);
    let (mut ready_orgs, mut ready_ws);
    let mut last_report = Instant::now();
    loop {
        if !op.proc.running() {
            bail!("the operator exited:\n{}", op.proc.tail(40));
        }
        if creating.as_ref().is_some_and(tokio::task::JoinHandle::is_finished)
            && let Some(handle) = creating.take()
        {
            created_result = Some(handle.await?);
        }
        ready_orgs = orgs_ready.load(Ordering::Relaxed);
        if orgs_ready_secs.is_none() && ready_orgs >= settings.organizations {
            orgs_ready_secs = Some(start.elapsed().as_secs_f64());
        }
        ready_ws = ws_ready.load(Ordering::Relaxed);
        if workspaces_ready_secs.is_none() && ready_ws >= settings.workspaces {
            workspaces_ready_secs = Some(start.elapsed().as_secs_f64());
        }
        let done = orgs_ready_secs.is_some() && workspaces_ready_secs.is_some() && created_result.is_some();
        if done || last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "[bench] {:>5.1} s: created {}, Ready {ready_orgs}/{} Organizations, {ready_ws}/{} Workspaces; operator RSS {:.0} MiB",
                start.elapsed().as_secs_f64(),
                created.load(Ordering::Relaxed),
                settings.organizations,
                settings.workspaces,
                watch.dataplane_rss_mib()
            );
        }
        if done {
            break;
        }
        if start.elapsed() > settings.timeout {
            eprintln!("[bench] timed out after {:.0} s", settings.timeout.as_secs_f64());
            eprintln!("[bench] operator log (last lines):\n{}", op.proc.tail(60));
            if let Some(handle) = creating.take() {
                handle.abort();
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    orgs_watch.abort();
    ws_watch.abort();
    let busy_end = watch.sample();
    let busy_cpu = watch.cpu_between(&busy_start, &busy_end)[0];
    let busy_rss = watch.dataplane_rss_mib();
    let all_secs = start.elapsed().as_secs_f64();

    let settled = Instant::now();
    let settle_secs = if orgs_ready_secs.is_some() && workspaces_ready_secs.is_some() {
        // At least long enough to see it stand still, even when the Ready wait used up the timeout.
        let limit = settings.timeout.saturating_sub(start.elapsed()).max(SETTLED_AFTER * 2);
        match settle(op.http_port, limit).await {
            Ok(Some(last)) => {
                let secs = last.saturating_duration_since(settled).as_secs_f64();
                eprintln!("[bench] the operator's last reconcile came {secs:.1} s after everything was Ready");
                Some(secs)
            }
            Ok(None) => {
                eprintln!("[bench] the operator was still reconciling when the timeout ran out");
                None
            }
            Err(err) => {
                eprintln!("[bench] could not read the operator's metrics: {err:#}");
                None
            }
        }
    } else {
        None
    };

    eprintln!("[bench] holding idle for {:.0} s", settings.idle.as_secs_f64());
    let idle_start = watch.sample();
    tokio::time::sleep(settings.idle).await;
    let idle_end = watch.sample();
    let idle_cpu = watch.cpu_between(&idle_start, &idle_end)[0];
    let idle_rss = watch.dataplane_rss_mib();

    let (errors, create_secs) = created_result.unwrap_or_else(|| {
        let mut errors = BTreeMap::new();
        errors.insert("creates not finished within the timeout".to_owned(), 1);
        (errors, all_secs)
    });
    let objects = settings.organizations + settings.workspaces;
    let all_ready = orgs_ready_secs.is_some() && workspaces_ready_secs.is_some();
    Ok(OperatorFigures {
        organizations: settings.organizations,
        workspaces: settings.workspaces,
        concurrency: settings.concurrency,
        create_secs,
        organizations_ready_secs: orgs_ready_secs,
        workspaces_ready_secs,
        ready_organizations: ready_orgs,
        ready_workspaces: ready_ws,
        objects_per_sec: if all_ready { objects as f64 / all_secs.max(1e-6) } else { 0.0 },
        busy_cpu_percent: busy_cpu,
        busy_rss_mib: busy_rss,
        settle_secs,
        idle_secs: settings.idle.as_secs_f64(),
        idle_cpu_percent: idle_cpu,
        idle_rss_mib: idle_rss,
        errors: errors.values().sum(),
        error_kinds: errors.into_iter().collect(),
        existing_objects,
    })
}
