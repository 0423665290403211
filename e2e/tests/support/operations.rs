//! Day-two operations on the real node while people talk: a rolling update of the DataPlane,
//! data-plane pods killed, the chart uninstalled and installed again.

use super::{NS, Scenario, eventually};
use conclave_client::messenger::{ListenEvent, ListenerOptions};
use conclave_e2e::control_plane::OPERATOR_NAMESPACE;
use conclave_e2e::system::DATAPLANE;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The second tag the rolling update moves to: the same build, tagged again in the node's
/// containerd (a new image reference is what makes the operator run a migration Job and roll).
const ROLLED_TAG: &str = "0.1.0-rolled";
const SECS_240: Duration = Duration::from_secs(240);

/// What a conversation under disturbance came to.
struct Chatted {
    acknowledged: usize,
    failed: usize,
    disconnects: usize,
}

impl Scenario {
    /// Alice sends numbered messages to bob, one every 250 ms, while `disturb` runs and for a
    /// few more after it; bob listens with the SDK's listener (it reconnects by itself and
    /// resumes from its cursor). Then: bob received every message stored, each exactly once
    /// and in order; every send acknowledged is stored exactly once; a send that failed (its
    /// connection cut by the disturbance) is stored at most once.
    async fn chat_while(&self, label: &str, disturb: impl Future<Output = ()>) -> Chatted {
        let [alice, bob] = &self.people[..] else { panic!("two people") };
        let (org, conversation) = self.conversation.expect("a conversation");
        let start_seq = alice.messenger.client().conversation(org, conversation).await.expect("conversation").last_seq;
        // A pod that goes away can leave a connection with no route behind it (no reset ever
        // comes): short deadlines find that out well within this scenario's waits.
        let options = ListenerOptions {
            max_backoff: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ..ListenerOptions::default()
        };
        let mut listener = bob.messenger.listen(org, &[conversation], options).await.expect("bob listens");
        let received: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
        let disconnects = Arc::new(AtomicUsize::new(0));
        let receiving = {
            let (received, disconnects) = (received.clone(), disconnects.clone());
            tokio::spawn(async move {
                loop {
                    match listener.next().await {
                        Ok(ListenEvent::Message(m)) => {
                            let text = m.body.text().unwrap_or_default().to_owned();
                            received.lock().expect("lock").push((m.seq, text));
                        }
                        Ok(ListenEvent::Disconnected { reason, retry_in }) => {
                            disconnects.fetch_add(1, Ordering::Relaxed);
                            eprintln!("[e2e]     bob's listener: disconnected ({reason}); retrying in {retry_in:?}");
                        }
                        Ok(ListenEvent::Resumed) => eprintln!("[e2e]     bob's listener: resumed from its cursor"),
                        Ok(_) => {}
                        Err(e) => panic!("bob's listener failed: {e}"),
                    }
                }
            })
        };

        let disturbed = AtomicBool::new(false);
        let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
        let sending = async {
            let mut after = 0;
            for i in 0.. {
                if disturbed.load(Ordering::Relaxed) {
                    after += 1;
                    if after > 6 {
                        break;
                    }
                }
                let text = format!("{label} #{i}");
                match tokio::time::timeout(Duration::from_secs(15), alice.messenger.send_text(org, conversation, &text))
                    .await
                {
                    Ok(Ok(_)) => acknowledged.push(text),
                    Ok(Err(e)) => {
                        eprintln!("[e2e]     alice's send of {text:?} failed: {e}");
                        failed.push(text);
                    }
                    Err(_) => {
                        eprintln!("[e2e]     alice's send of {text:?} got no answer within 15 s");
                        failed.push(text);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let disturbing = async {
            disturb.await;
            disturbed.store(true, Ordering::Relaxed);
        };
        tokio::join!(sending, disturbing);

        // What PostgreSQL holds, read back through the SDK.
        let mut stored: Vec<(i64, String)> = Vec::new();
        loop {
            let after = stored.last().map_or(start_seq, |(seq, _)| *seq);
            let (page, more) =
                alice.messenger.messages_after(org, conversation, after, 200).await.expect("messages after");
            stored.extend(page.into_iter().map(|m| (m.seq, m.body.text().unwrap_or_default().to_owned())));
            if !more {
                break;
            }
        }
        let last = stored.last().map_or(start_seq, |(seq, _)| *seq);
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.lock().expect("lock").last().is_none_or(|(seq, _)| *seq < last) {
            assert!(Instant::now() < deadline, "bob's listener did not catch up to seq {last} within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        receiving.abort();
        let received = received.lock().expect("lock").clone();
        assert_eq!(received, stored, "bob received exactly what is stored, each once and in order");
        let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, ((start_seq + 1)..=last).collect::<Vec<_>>(), "no gap in the sequence");
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, text) in &stored {
            *counts.entry(text.as_str()).or_default() += 1;
        }
        for text in &acknowledged {
            assert_eq!(counts.get(text.as_str()), Some(&1), "{text:?}: acknowledged, so stored exactly once");
        }
        for text in &failed {
            assert!(counts.get(text.as_str()).is_none_or(|n| *n <= 1), "{text:?} stored twice");
        }
        assert!(counts.keys().all(|t| t.starts_with(label)), "only this exchange's messages: {counts:?}");
        Chatted {
            acknowledged: acknowledged.len(),
            failed: failed.len(),
            disconnects: disconnects.load(Ordering::Relaxed),
        }
    }

    /// The data-plane pods, with the image each runs.
    fn server_pod_images(&self) -> Vec<(String, String)> {
        self.k(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=server",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image}{"\n"}{end}"#,
        ])
        .lines()
        .filter_map(|l| l.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect()
    }

    /// The DataPlane moves to a new image reference while alice and bob talk: the operator runs
    /// the new image's migration Job first, then the Deployment rolls (one extra pod at a time,
    /// none unavailable) and the DataPlane reports the new version; nothing is lost or doubled.
    pub async fn rolling_update_while_chatting(&self) {
        let old_image = self.k(&["get", "dataplane", DATAPLANE, "-o", "jsonpath={.spec.image}"]);
        let (repository, _) = old_image.rsplit_once(':').expect("a tagged image");
        let new_image = format!("{repository}:{ROLLED_TAG}");
        self.node.ctr(&["images", "tag", "--force", &old_image, &new_image]).expect("tag the image again");
        let chatted = self
            .chat_while("rolling update", async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let patch = format!(r#"{{"spec":{{"image":"{new_image}"}}}}"#);
                self.k(&["patch", "dataplane", DATAPLANE, "--type", "merge", "-p", &patch]);
                eprintln!("[e2e]     kubectl patch dataplane {DATAPLANE}: image {new_image}");
                eventually("the DataPlane to report the new version, every pod on it", SECS_240, || async {
                    let version = self.k(&["get", "dataplane", DATAPLANE, "-o", "jsonpath={.status.version}"]);
                    let pods = self.server_pod_images();
                    let rolled = version == new_image
                        && pods.len() == 2
                        && pods.iter().all(|(_, image)| *image == new_image)
                        && self.ready_endpoints().len() == 2;
                    rolled.then_some(())
                })
                .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            })
            .await;
        self.wait_ready(&format!("dataplane/{DATAPLANE}"), "True", Some("Available"), Duration::from_secs(60)).await;

        // The new image's migration Job ran, and finished before any pod of the new image started.
        let job = self.migration_jobs(
            r#"{range .items[*]}{.spec.template.spec.containers[0].image}|{.status.succeeded}|{.status.completionTime}{"\n"}{end}"#,
        );
        let line = job.lines().find(|l| l.starts_with(&format!("{new_image}|"))).unwrap_or_else(|| panic!("{job}"));
        let [_, succeeded, completed] = line.split('|').collect::<Vec<_>>()[..] else { panic!("{line}") };
        assert_eq!(succeeded, "1", "{line}");
        let started = self.k(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=server",
            "-o",
            "jsonpath={.items[*].metadata.creationTimestamp}",
        ]);
        for pod_created in started.split_whitespace() {
            // RFC 3339 UTC timestamps at the same precision compare as strings.
            assert!(
                pod_created >= completed,
                "a pod of {new_image} created at {pod_created}, before its migration finished at {completed}"
            );
        }
        eprintln!(
            "[e2e]     rolled to {new_image} (migration Job first); alice sent {} acknowledged messages ({} failed sends), bob's listener reconnected {} times, nothing lost or doubled",
            chatted.acknowledged, chatted.failed, chatted.disconnects
        );
    }

    /// While alice and bob talk, one data-plane container is killed (SIGKILL, through
    /// containerd: the kubelet restarts it) and then the other pod is deleted (the ReplicaSet
    /// replaces it): bob's socket is cut at least once; nothing is lost or doubled.
    pub async fn pods_killed_while_chatting(&self) {
        let chatted = self
            .chat_while("pods killed", async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let pods = self.running_pods(NS, "server");
                assert_eq!(pods.len(), 2, "{pods:?}");
                let container =
                    self.k(&["get", "pod", &pods[0], "-o", "jsonpath={.status.containerStatuses[0].containerID}"]);
                self.node
                    .ctr(&["tasks", "kill", "--signal", "SIGKILL", container.trim_start_matches("containerd://")])
                    .expect("SIGKILL the data-plane container");
                eprintln!("[e2e]     SIGKILL to the data plane in pod {}", pods[0]);
                eventually("the killed container restarted and both endpoints ready", SECS_240, || async {
                    let restarts =
                        self.k(&["get", "pod", &pods[0], "-o", "jsonpath={.status.containerStatuses[0].restartCount}"]);
                    (restarts.parse::<u32>().is_ok_and(|n| n >= 1) && self.ready_endpoints().len() == 2).then_some(())
                })
                .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.k(&["delete", "pod", &pods[1], "--wait=false"]);
                eprintln!("[e2e]     deleted pod {}", pods[1]);
                eventually("a replacement pod and both endpoints ready", SECS_240, || async {
                    let now = self.running_pods(NS, "server");
                    (now.len() == 2 && !now.contains(&pods[1]) && self.ready_endpoints().len() == 2).then_some(())
                })
                .await;
            })
            .await;
        assert!(chatted.disconnects >= 1, "bob's socket was on one of the two pods, so it was cut at least once");
        eprintln!(
            "[e2e]     alice sent {} acknowledged messages ({} failed sends), bob's listener reconnected {} times, nothing lost or doubled",
            chatted.acknowledged, chatted.failed, chatted.disconnects
        );
    }

    /// `helm uninstall` removes the operator (Deployment, RBAC, ServiceAccount) and nothing
    /// else: the CRDs, every custom resource, the data plane's pods and the tenants' rows stay,
    /// whatever their deletion policy (the chart's README). A resource deleted meanwhile waits on
    /// its finalizer; installing the chart again lets the operator finish it by its policy.
    pub async fn uninstall_and_reinstall_the_chart(&mut self) {
        let org = "apiVersion: conclave.io/v1alpha1\nkind: Organization\nmetadata: {name: initech}\nspec: {slug: initech, displayName: Initech, deletionPolicy: Delete}\n";
        self.plane.kubectl_stdin(&["-n", NS, "apply", "-f", "-"], org).expect("apply");
        self.wait_ready("organization/initech", "True", None, Duration::from_secs(60)).await;
        let initech = self.org_id("initech");
        let db = self.stack.db.owner.clone();
        let row_exists = |id: uuid::Uuid| {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM organizations WHERE id = $1")
                    .bind(id)
                    .fetch_one(&db)
                    .await
                    .expect("count")
                    == 1
            }
        };

        let out = self.plane.helm(&["uninstall", "conclave", "-n", OPERATOR_NAMESPACE, "--wait", "--timeout", "120s"]);
        eprintln!("[e2e]     helm uninstall: {}", out.expect("helm uninstall").trim());
        let left = self.kubectl(&["-n", OPERATOR_NAMESPACE, "get", "deploy,sa,role,rolebinding", "-o", "name"]);
        assert!(!left.contains("conclave-operator"), "the chart's objects are gone: {left}");
        eventually("the operator's pod to be gone", Duration::from_secs(90), || async {
            self.running_pods(OPERATOR_NAMESPACE, "operator").is_empty().then_some(())
        })
        .await;
        let crds = self.kubectl(&["get", "crd", "-o", "name"]);
        assert_eq!(crds.lines().filter(|l| l.contains("conclave.io")).count(), 5, "Helm keeps the CRDs: {crds}");
        let kept = self.k(&["get", "conclave", "-o", "name"]);
        for name in ["dataplane.conclave.io/conclave", "organization.conclave.io/initech"] {
            assert!(kept.contains(name), "{name} stays: {kept}");
        }
        assert!(row_exists(initech).await, "the Delete-policy organization's rows stay: nothing deleted it");
        // The data plane does not need the operator to serve.
        let [alice, _] = &self.people[..] else { panic!("two people") };
        let (org_id, conversation) = self.conversation.expect("a conversation");
        alice.messenger.send_text(org_id, conversation, "still here without an operator").await.expect("send");
        eprintln!("[e2e]     uninstalled: CRDs, resources, rows and the serving data plane stay; alice still sends");

        // Deleting a resource without an operator: its finalizer holds it, its rows stay.
        self.k(&["delete", "org", "initech", "--wait=false"]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let deleting = self.k(&["get", "org", "initech", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
        assert!(!deleting.is_empty(), "the Organization waits on its finalizer");
        assert!(row_exists(initech).await, "no operator, so its Delete policy has not run");

        // Installed again: the new operator takes the Lease and finishes the deletion by policy.
        self.sys.install_chart_and_operator().await.unwrap_or_else(|e| panic!("{e:#}"));
        eventually("initech's deletion to finish", Duration::from_secs(90), || async {
            self.plane.kubectl(&["-n", NS, "get", "org", "initech"]).is_err().then_some(())
        })
        .await;
        assert!(!row_exists(initech).await, "Delete: the organization's rows are gone once the operator is back");
        self.wait_ready(&format!("dataplane/{DATAPLANE}"), "True", Some("Available"), Duration::from_secs(60)).await;
        eprintln!("[e2e]     installed again: the new operator deleted initech by its Delete policy");
    }

    /// The data-plane pods keep their Redis keys and channels under this run's prefix
    /// (`spec.redis.keyPrefix`), so a run beside this one never touches them, nor they its.
    pub fn redis_keys_carry_the_runs_prefix(&self) {
        let redis = |args: &[&str]| {
            let mut c = std::process::Command::new("redis-cli");
            c.arg("-u").arg(&self.stack.redis_url).args(args);
            conclave_e2e::proc::run(c).expect("redis-cli")
        };
        let pattern = format!("{}:*", self.redis_prefix);
        let keys = redis(&["--scan", "--pattern", &pattern]);
        let channels = redis(&["PUBSUB", "CHANNELS", &pattern]);
        let (keys, channels) = (keys.lines().count(), channels.lines().count());
        assert!(keys + channels > 0, "no Redis key or channel under {pattern}");
        eprintln!("[e2e]     Redis: {keys} keys and {channels} subscribed channels under {pattern}");
    }

    /// The operator's own log (its current pod) has no ERROR line.
    pub fn operator_log_has_no_errors(&self) {
        let log = self.operator_log();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
        assert!(errors.is_empty(), "the operator logged errors:\n{}", errors.join("\n"));
    }
}
