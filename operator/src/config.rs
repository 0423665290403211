//! The operator's configuration, from flags or the environment (`CONCLAVE_*`).

use clap::Args;
use std::net::SocketAddr;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL of the schema owner (row-level security does not apply to it).
    #[arg(long, env = "CONCLAVE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Most PostgreSQL connections the operator holds.
    #[arg(long, env = "CONCLAVE_DATABASE_MAX_CONNECTIONS", default_value_t = 4)]
    pub database_max_connections: u32,
    /// Most reconciles each controller runs at once; the rest wait their turn in its queue.
    #[arg(long, env = "CONCLAVE_RECONCILE_CONCURRENCY", default_value_t = 32)]
    pub reconcile_concurrency: u16,
    /// The Secret holding the data plane's at-rest key, as `namespace/name` (the DataPlane
    /// controller generates it as `<dataplane>-at-rest-key`). Needed to seal webhook secrets.
    #[arg(long, env = "CONCLAVE_AT_REST_KEY_SECRET")]
    pub at_rest_key_secret: Option<String>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "CONCLAVE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Address of the health and metrics endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "CONCLAVE_HTTP_LISTEN", default_value = "0.0.0.0:8081")]
    pub http_listen: SocketAddr,
    /// The namespace of the leader-election Lease (default: the pod's namespace from
    /// `POD_NAMESPACE`, else `default`).
    #[arg(long, env = "CONCLAVE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// The name of the leader-election Lease.
    #[arg(long, env = "CONCLAVE_LEASE_NAME", default_value = "conclave-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How often every resource is reconciled even without a change (drift repair), in seconds.
    #[arg(long, env = "CONCLAVE_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// How often each organization's audit hash chain is verified again, in seconds (the result
    /// is in its status; a broken chain also raises a Warning event). 0 never verifies.
    #[arg(long, env = "CONCLAVE_AUDIT_VERIFY_SECONDS", default_value_t = 3600)]
    pub audit_verify_seconds: u64,
    /// Failed database attempts during a deletion after which the finalizer is released anyway
    /// (with a Warning event), so a lost database cannot wedge a namespace deletion. 0 waits
    /// forever (until `conclave.io/force-detach` is set).
    #[arg(long, env = "CONCLAVE_DELETE_MAX_FAILURES", default_value_t = 10)]
    pub delete_max_failures: u32,
    /// Log format: `json` (default) or `pretty`.
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}
