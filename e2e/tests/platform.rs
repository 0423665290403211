//! The whole system as its users use it, on a real node (containerd, kubelet, kube-proxy,
//! CoreDNS, controller manager, scheduler) with a real etcd + kube-apiserver, PostgreSQL and
//! Redis: a platform engineer installs the chart and applies `examples/` with kubectl; the
//! operator (the chart's pod, from its image, under its ServiceAccount and RBAC) provisions; the
//! data plane runs as the operator's pods behind its Service; two people chat with end-to-end
//! encryption through that Service, across a rolling update, killed pods and a chart
//! uninstall.
//!
//! One scenario, in steps that each say what they prove, because each step builds on the
//! state the previous one left (as in a real cluster) and one control plane is started once.

mod support;

use support::{Scenario, step};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_platform_engineer_provisions_tenants_and_two_people_chat_end_to_end() {
    let mut s = Scenario::start().await;

    step("the chart installs and the operator takes the leader Lease");
    s.install_chart_and_start_operator().await;

    step("a DataPlane: keys, migration Job, then Deployment, Service, HPA, PDB, ConfigMap");
    s.apply_dataplane_and_run_it().await;

    step("two people register on the data plane the operator configured");
    s.register_people().await;

    step("Organization, two Workspaces, a WebhookEndpoint and a BotAgent become Ready");
    s.apply_tenants().await;
    s.check_rows_and_secrets().await;
    s.check_kubectl_columns_and_explain().await;

    step("invalid resources are refused by the API server's schema and CEL rules");
    s.invalid_resources_are_refused();

    step("a Workspace waits for its missing Organization, then becomes Ready");
    s.missing_reference_resolves().await;

    step("the two people join and exchange end-to-end-encrypted messages");
    s.people_chat().await;

    step("the bot authenticates with the token from its Secret");
    s.bot_authenticates().await;

    step("a rolling update of the DataPlane while they chat: migration Job first, pods roll, nothing lost");
    s.rolling_update_while_chatting().await;
    s.redis_keys_carry_the_runs_prefix();

    step("data-plane pods killed while they chat: the client reconnects and resumes, nothing lost");
    s.pods_killed_while_chatting().await;

    step("updates reach PostgreSQL");
    s.updates_reach_postgres().await;

    step("the operator is killed mid-way; a new replica takes the Lease and converges");
    s.operator_crash_and_takeover().await;

    step("deletion: Delete removes the rows, Retain detaches them");
    s.deletion_policies().await;

    step("helm uninstall keeps CRDs, resources and rows; installed again, the operator resumes");
    s.uninstall_and_reinstall_the_chart().await;
    s.operator_log_has_no_errors();

    s.finish();
}
