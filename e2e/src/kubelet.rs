//! What a kubelet would do with our pods, done on the host.
//!
//! The control plane has no kubelet (and no controller manager), so nothing runs a Pod. This
//! module takes a Deployment's or a Job's pod template as the operator or the chart wrote it and
//! runs its container's program as a host process, configured exactly as Kubernetes would
//! configure the container: `env` (literal values, `secretKeyRef`, `configMapKeyRef`,
//! `fieldRef`), `envFrom` ConfigMaps and Secrets, `$(VAR)` expansion, and Secret volumes written
//! to files under the pod's directory (mount paths inside env values are rewritten to those
//! files). Only listen addresses are overridden, so several "pods" share loopback.
//!
//! It then reports what a kubelet and the controllers would: a finished Job's `succeeded`, a
//! Deployment's ready replicas. Those status writes are the only thing the suite does in place of
//! Kubernetes components, and they happen only after the real process did the real work.

use crate::proc::Proc;
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A pod's container, resolved: the environment and args it would get, and its files.
#[derive(Debug, Clone)]
pub struct ResolvedContainer {
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Where each mounted volume's files were written.
    pub root: PathBuf,
}

async fn secret_data(client: &kube::Client, ns: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let secret: Secret =
        Api::namespaced(client.clone(), ns).get(name).await.with_context(|| format!("reading Secret {ns}/{name}"))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

async fn config_map_data(client: &kube::Client, ns: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let cm: ConfigMap = Api::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("reading ConfigMap {ns}/{name}"))?;
    Ok(cm.data.unwrap_or_default())
}

/// `$(VAR)` expansion as Kubernetes does it (unknown variables stay as written).
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if env.contains_key(&after[..end]) => {
                out.push_str(&env[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Resolves the container `container` of `pod` in namespace `ns`, as pod `pod_name`, writing
/// its Secret volumes under `root`.
pub async fn resolve(
    client: &kube::Client,
    ns: &str,
    pod_name: &str,
    pod: &PodSpec,
    container: &str,
    root: &Path,
) -> Result<ResolvedContainer> {
    let c: &Container = pod
        .containers
        .iter()
        .find(|c| c.name == container)
        .with_context(|| format!("no container {container} in the pod template"))?;
    let mut env = BTreeMap::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(cm) = &from.config_map_ref {
            for (k, v) in config_map_data(client, ns, &cm.name).await? {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
        if let Some(s) = &from.secret_ref {
            for (k, v) in secret_data(client, ns, &s.name).await? {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            expand(v, &env)
        } else if let Some(from) = &var.value_from {
            if let Some(s) = &from.secret_key_ref {
                let data = secret_data(client, ns, &s.name).await?;
                match data.get(&s.key) {
                    Some(v) => v.clone(),
                    None if s.optional == Some(true) => continue,
                    None => bail!("Secret {ns}/{} has no key {} (env {})", s.name, s.key, var.name),
                }
            } else if let Some(cm) = &from.config_map_key_ref {
                config_map_data(client, ns, &cm.name).await?.get(&cm.key).cloned().unwrap_or_default()
            } else if let Some(field) = &from.field_ref {
                match field.field_path.as_str() {
                    "metadata.name" => pod_name.to_owned(),
                    "metadata.namespace" => ns.to_owned(),
                    other => bail!("fieldRef {other} is not supported by the host kubelet"),
                }
            } else {
                bail!("env {}: unsupported valueFrom", var.name)
            }
        } else {
            String::new()
        };
        env.insert(var.name.clone(), value);
    }
    // Secret volumes become files; a mount path in an env value points at them instead.
    let mut mounts = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .with_context(|| format!("no volume {}", mount.name))?;
        let Some(secret) = &volume.secret else { continue };
        let name = secret.secret_name.clone().context("secret volume without secretName")?;
        let dir = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)?;
        for (key, value) in secret_data(client, ns, &name).await? {
            std::fs::write(dir.join(&key), value)?;
        }
        mounts.push((mount.mount_path.clone(), dir));
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    for value in env.values_mut() {
        if let Some((path, dir)) = mounts.iter().find(|(path, _)| value.starts_with(path.as_str())) {
            *value = format!("{}{}", dir.display(), &value[path.len()..]);
        }
    }
    Ok(ResolvedContainer { args: c.args.clone().unwrap_or_default(), env, root: root.to_owned() })
}

impl ResolvedContainer {
    /// The host command for `program` with this container's args and exactly its environment
    /// (plus PATH/HOME), with `overrides` applied.
    pub fn command(&self, program: &Path, overrides: &[(&str, String)]) -> Command {
        let mut c = Command::new(program);
        c.env_clear();
        for keep in ["PATH", "HOME", "TMPDIR"] {
            if let Ok(v) = std::env::var(keep) {
                c.env(keep, v);
            }
        }
        c.envs(&self.env);
        for (k, v) in overrides {
            c.env(k, v);
        }
        c.args(&self.args).current_dir(&self.root);
        c
    }
}

/// Runs a Job's container to completion on the host, then records it as a Job controller
/// would (`succeeded: 1` or `failed: 1`). Returns whether it succeeded.
pub async fn run_job(client: &kube::Client, ns: &str, name: &str, program: &Path, root: &Path) -> Result<bool> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = jobs.get(name).await.with_context(|| format!("reading Job {ns}/{name}"))?;
    let pod = job.spec.as_ref().and_then(|s| s.template.spec.clone()).context("Job without a pod template")?;
    let container = pod.containers.first().map(|c| c.name.clone()).context("Job without a container")?;
    let resolved = resolve(client, ns, &format!("{name}-host"), &pod, &container, root).await?;
    let started = chrono_now();
    let output = resolved.command(program, &[]).output().with_context(|| format!("running Job {name}"))?;
    std::fs::write(root.join("job.log"), [&output.stdout[..], &output.stderr[..]].concat())?;
    let succeeded = output.status.success();
    let status = if succeeded {
        json!({"status": {"startTime": started, "completionTime": chrono_now(), "succeeded": 1, "ready": 0, "active": 0,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": chrono_now(), "lastTransitionTime": chrono_now()},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": chrono_now(), "lastTransitionTime": chrono_now()}
        ]}})
    } else {
        json!({"status": {"startTime": started, "failed": 1, "active": 0}})
    };
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("recording Job {name}'s completion"))?;
    Ok(succeeded)
}

fn chrono_now() -> String {
    // RFC 3339 in UTC, seconds precision, as Kubernetes writes times.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs as i64).map(|t| t.to_string()).unwrap_or_default()
}

/// A Deployment's pod, running on the host.
pub struct HostPod {
    pub proc: Proc,
    pub container: ResolvedContainer,
}

/// Starts one replica of a Deployment's container as a host process.
pub async fn start_deployment_pod(
    client: &kube::Client,
    ns: &str,
    deployment: &str,
    container: &str,
    program: &Path,
    root: &Path,
    overrides: &[(&str, String)],
) -> Result<HostPod> {
    let d: Deployment = Api::namespaced(client.clone(), ns)
        .get(deployment)
        .await
        .with_context(|| format!("reading Deployment {ns}/{deployment}"))?;
    let pod = d.spec.as_ref().and_then(|s| s.template.spec.clone()).context("Deployment without a pod template")?;
    std::fs::create_dir_all(root)?;
    let resolved = resolve(client, ns, &format!("{deployment}-host-0"), &pod, container, root).await?;
    let proc = Proc::spawn(deployment, resolved.command(program, overrides), &root.join("pod.log"))?;
    Ok(HostPod { proc, container: resolved })
}

/// Records that `ready` replicas of a Deployment are up on its current template, as the
/// Deployment controller and the kubelet would.
pub async fn report_deployment_ready(client: &kube::Client, ns: &str, deployment: &str, ready: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = api.get(deployment).await?;
    let generation = d.metadata.generation.unwrap_or(1);
    let status = json!({"status": {
        "observedGeneration": generation,
        "replicas": ready, "updatedReplicas": ready, "readyReplicas": ready, "availableReplicas": ready,
    }});
    api.patch_status(deployment, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}
