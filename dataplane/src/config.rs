//! Configuration, from flags or the environment (`CONCLAVE_*`), parsed once at start-up.

use clap::{Args, ValueEnum};
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve HTTP and WebSocket on.
    #[arg(long, env = "CONCLAVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the data plane's login (the `conclave_app` role, or a member of it).
    #[arg(long, env = "CONCLAVE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The role every connection works as; row-level security applies to it.
    #[arg(long, env = "CONCLAVE_DATABASE_ROLE", default_value = conclave_schema::APP_ROLE)]
    pub database_role: String,
    /// Most PostgreSQL connections this replica holds.
    #[arg(long, env = "CONCLAVE_DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
    /// Redis URL for fan-out, presence, rate limits and signalling state.
    #[arg(long, env = "CONCLAVE_REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of the schema owner (not the data plane's role).
    #[arg(long, env = "CONCLAVE_OWNER_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}
