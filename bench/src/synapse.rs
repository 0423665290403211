//! Synapse, the Matrix homeserver `peer-matrix` measures: installed from PyPI into a venv of
//! ours, configured for one run (loopback only, no federation, every throttle the benchmark would
//! hit raised, secrets and signing key new each run), started on the stack's PostgreSQL, and its
//! users registered through the shared-secret admin API.
//!
//! The configuration is written as JSON (YAML is a superset of it) by pure functions, tested
//! without Synapse.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The Synapse release installed and measured (the newest on PyPI when the mode was written).
pub const VERSION: &str = "1.163.2";
/// The PostgreSQL driver installed beside it (the prebuilt `psycopg2-binary` wheel).
const PSYCOPG2_VERSION: &str = "2.9.13";

/// The server name of the run's homeserver (users are `@peer0:peer.localhost` …): no other
/// server ever resolves it, as nothing federates.
pub const SERVER_NAME: &str = "peer.localhost";

/// A throttle no benchmark reaches: per second and burst.
const UNTHROTTLED: f64 = 1_000_000.0;

/// Where the venv lives: `$HOME/.cache/conclave/peer/synapse-venv`, kept between runs.
pub fn venv_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/conclave/peer/synapse-venv"))
}

/// The installed Synapse version in the venv whose python is `python`, if it imports together
/// with psycopg2 (the PostgreSQL driver).
async fn installed_version(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args(["-c", "import psycopg2, synapse; print(synapse.__version__)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Installs [`VERSION`] into the venv unless it is there already, saying what it installs, and
/// returns the venv's python.
pub async fn ensure_installed() -> Result<PathBuf> {
    let venv = venv_dir()?;
    let python = venv.join("bin").join("python");
    if installed_version(&python).await.as_deref() == Some(VERSION) {
        eprintln!("[bench] Synapse {VERSION} found in {}", venv.display());
        return Ok(python);
    }
    // psycopg2's prebuilt wheel rather than Synapse's `postgres` extra, which builds it from
    // source (a compiler and libpq's headers).
    let requirement = format!("matrix-synapse=={VERSION} psycopg2-binary=={PSYCOPG2_VERSION}");
    eprintln!("[bench] installing {requirement} from PyPI into the venv {}", venv.display());
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    succeeds(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv (is python3 installed?)")
        .await?;
    let pip = venv.join("bin").join("pip");
    let synapse = format!("matrix-synapse=={VERSION}");
    let driver = format!("psycopg2-binary=={PSYCOPG2_VERSION}");
    let install = ["install", "--quiet", "--disable-pip-version-check", &synapse, &driver];
    succeeds(Command::new(pip).args(install), &format!("pip install {requirement}")).await?;
    match installed_version(&python).await {
        Some(version) if version == VERSION => {
            eprintln!("[bench] installed Synapse {version}");
            Ok(python)
        }
        other => bail!("after pip install, the venv's Synapse is {other:?}, not {VERSION}"),
    }
}

/// Runs `command` (`what` it is, for an error), its output shown.
async fn succeeds(command: &mut Command, what: &str) -> Result<()> {
    let status = command.stdin(Stdio::null()).status().await.with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); see its output above");
    }
    Ok(())
}

/// The run's secrets, new each run and written only into the run's work directory.
pub struct Secrets {
    pub registration_shared_secret: String,
    pub macaroon_secret_key: String,
    pub form_secret: String,
    /// The Ed25519 seed of the server's signing key.
    pub signing_seed: [u8; 32],
}

/// 32 random bytes (two v4 UUIDs' randomness, as the bench's other keys are made).
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes
}

impl Secrets {
    pub fn generate() -> Self {
        Self {
            registration_shared_secret: hex::encode(random_bytes()),
            macaroon_secret_key: hex::encode(random_bytes()),
            form_secret: hex::encode(random_bytes()),
            signing_seed: random_bytes(),
        }
    }
}

/// The signing key file as Synapse (signedjson) reads it: algorithm, key id, unpadded base64 seed.
pub fn signing_key(seed: &[u8; 32]) -> String {
    format!("ed25519 a_bench {}\n", base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed))
}

/// Where the run's homeserver keeps its files.
pub struct Files {
    pub dir: PathBuf,
}

impl Files {
    pub fn config(&self) -> PathBuf {
        self.dir.join("homeserver.yaml")
    }
    pub fn log_config(&self) -> PathBuf {
        self.dir.join("log.yaml")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("homeserver.log")
    }
    pub fn output(&self) -> PathBuf {
        self.dir.join("synapse.out")
    }
    pub fn signing_key(&self) -> PathBuf {
        self.dir.join("signing.key")
    }

    /// Writes the configuration, the logging configuration and the signing key.
    pub fn write(&self, port: u16, database_dsn: &str, secrets: &Secrets) -> Result<()> {
        std::fs::write(
            self.config(),
            serde_json::to_string_pretty(&homeserver_config(self, port, database_dsn, secrets))?,
        )?;
        std::fs::write(self.log_config(), serde_json::to_string_pretty(&log_config(&self.log()))?)?;
        std::fs::write(self.signing_key(), signing_key(&secrets.signing_seed))?;
        Ok(())
    }
}

/// A throttle raised out of the benchmark's way.
fn unthrottled() -> Value {
    json!({ "per_second": UNTHROTTLED, "burst_count": UNTHROTTLED as u64 })
}

/// `homeserver.yaml`: a client listener on 127.0.0.1:`port` only (no federation listener, no
/// federation with anyone, no key servers), registration closed but for the shared-secret admin
/// API, no stats reporting, the run's PostgreSQL database through psycopg2 (pool as Synapse's
/// defaults), WARNING logs and the media store in the work directory, and the throttles the
/// benchmark would otherwise measure raised:
///
/// * `rc_message`: 0.2 messages/s per user with bursts of 10 by default: the senders' messages.
/// * `rc_registration`, `rc_login`: the eight users registered in a row.
/// * `rc_room_creation`, `rc_invites`, `rc_joins`, `rc_joins_per_room`: the room made, seven
///   invites by one user and seven joins within a second.
/// * `rc_presence`: each reader's `/sync` sets its presence.
pub fn homeserver_config(files: &Files, port: u16, database_dsn: &str, secrets: &Secrets) -> Value {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    json!({
        "server_name": SERVER_NAME,
        "public_baseurl": format!("http://127.0.0.1:{port}/"),
        "pid_file": path(files.dir.join("homeserver.pid")),
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": false,
            "x_forwarded": false,
            "resources": [{ "names": ["client"], "compress": false }],
        }],
        "database": {
            "name": "psycopg2",
            "args": { "dsn": database_dsn, "cp_min": 5, "cp_max": 10 },
        },
        "log_config": path(files.log_config()),
        "media_store_path": path(files.dir.join("media_store")),
        "signing_key_path": path(files.signing_key()),
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "report_stats": false,
        "enable_registration": false,
        "registration_shared_secret": secrets.registration_shared_secret,
        "macaroon_secret_key": secrets.macaroon_secret_key,
        "form_secret": secrets.form_secret,
        "rc_message": unthrottled(),
        "rc_registration": unthrottled(),
        "rc_login": { "address": unthrottled(), "account": unthrottled(), "failed_attempts": unthrottled() },
        "rc_room_creation": unthrottled(),
        "rc_invites": { "per_room": unthrottled(), "per_user": unthrottled(), "per_issuer": unthrottled() },
        "rc_joins": { "local": unthrottled(), "remote": unthrottled() },
        "rc_joins_per_room": unthrottled(),
        "rc_presence": { "per_user": unthrottled() },
    })
}

/// The logging configuration (Python's `dictConfig`): WARNING and above, to `log` only.
pub fn log_config(log: &Path) -> Value {
    json!({
        "version": 1,
        "disable_existing_loggers": false,
        "formatters": { "plain": { "format": "%(asctime)s %(levelname)s %(name)s %(message)s" } },
        "handlers": {
            "file": { "class": "logging.FileHandler", "formatter": "plain", "filename": log.to_string_lossy() },
        },
        "root": { "level": "WARNING", "handlers": ["file"] },
    })
}

/// The `mac` of a shared-secret registration: hex HMAC-SHA1, keyed with the shared secret, of
/// `nonce NUL username NUL password NUL admin|notadmin` (Synapse's admin API documentation).
pub fn registration_mac(shared_secret: &str, nonce: &str, username: &str, password: &str, admin: bool) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(shared_secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    for (i, part) in [nonce, username, password, if admin { "admin" } else { "notadmin" }].into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// A registered user of the run's homeserver.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub access_token: String,
}

/// The running homeserver; killed when dropped.
pub struct Synapse {
    pub base: String,
    child: Child,
}

impl Synapse {
    /// Starts Synapse with the run's configuration and waits (up to `limit`: the first start
    /// creates the schema) until it answers `/health`.
    pub async fn start(python: &Path, files: &Files, port: u16, limit: Duration) -> Result<Self> {
        let mut command = Command::new(python);
        command.args(["-m", "synapse.app.homeserver", "--config-path"]).arg(files.config()).current_dir(&files.dir);
        let child = crate::stack::spawn_logged(&mut command, &files.output()).context("starting Synapse")?;
        let mut synapse = Self { base: format!("http://127.0.0.1:{port}"), child };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = synapse.child.try_wait()? {
                bail!("Synapse exited ({status}) while starting:\n{}", tails(files));
            }
            let health = http.get(format!("{}/health", synapse.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                eprintln!("[bench] Synapse ready on {} in {:.1} s", synapse.base, started.elapsed().as_secs_f64());
                return Ok(synapse);
            }
            if started.elapsed() > limit {
                let _ = synapse.child.kill().await;
                bail!("Synapse did not answer /health within {limit:?}:\n{}", tails(files));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Registers `username` through `/_synapse/admin/v1/register` (a nonce, then the HMAC of the
    /// shared secret), and returns it signed in.
    pub async fn register(&self, http: &reqwest::Client, secrets: &Secrets, username: &str) -> Result<User> {
        let url = format!("{}/_synapse/admin/v1/register", self.base);
        let nonce: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
        let nonce = nonce["nonce"].as_str().context("no nonce in Synapse's answer")?;
        let password = hex::encode(random_bytes());
        let mac = registration_mac(&secrets.registration_shared_secret, nonce, username, &password, false);
        let body = json!({ "nonce": nonce, "username": username, "password": password, "admin": false, "mac": mac });
        let response = http.post(&url).json(&body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("registering {username}: HTTP {status} {}", answer["errcode"].as_str().unwrap_or(""));
        }
        Ok(User {
            user_id: answer["user_id"].as_str().context("no user_id")?.to_owned(),
            access_token: answer["access_token"].as_str().context("no access_token")?.to_owned(),
        })
    }
}

/// The last lines of Synapse's output and log, for an error.
fn tails(files: &Files) -> String {
    let tail = |path: PathBuf| {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- {} ---\n{}", path.display(), lines[lines.len().saturating_sub(15)..].join("\n"))
    };
    format!("{}\n{}", tail(files.output()), tail(files.log()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            registration_shared_secret: "shared".into(),
            macaroon_secret_key: "macaroon".into(),
            form_secret: "form".into(),
            signing_seed: [7; 32],
        }
    }

    /// The expected value is Python's `hmac.new(b"shared-secret", b"abc123nonce\0peer0\0pass
    /// word\0notadmin", hashlib.sha1).hexdigest()`, as Synapse computes it.
    #[test]
    fn the_registration_mac_is_the_one_synapse_computes() {
        assert_eq!(
            registration_mac("shared-secret", "abc123nonce", "peer0", "pass word", false),
            "1591aa652475b3dc432e7809ae412f5e3b1164a2"
        );
        assert_ne!(
            registration_mac("shared-secret", "abc123nonce", "peer0", "pass word", true),
            registration_mac("shared-secret", "abc123nonce", "peer0", "pass word", false)
        );
    }

    #[test]
    fn the_server_listens_on_loopback_only_with_no_federation_and_no_throttle_in_the_way() {
        let files = Files { dir: PathBuf::from("/tmp/conclave-peer-x") };
        let config = homeserver_config(&files, 18008, "postgresql://u:p@127.0.0.1:5432/conclave_peer_x", &secrets());
        let listeners = config["listeners"].as_array().expect("listeners");
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0]["bind_addresses"], json!(["127.0.0.1"]));
        assert_eq!(listeners[0]["port"], 18008);
        assert_eq!(listeners[0]["resources"][0]["names"], json!(["client"]), "no federation resource");
        assert_eq!(config["federation_domain_whitelist"], json!([]));
        assert_eq!(config["trusted_key_servers"], json!([]));
        assert_eq!(config["report_stats"], false);
        assert_eq!(config["enable_registration"], false);
        assert_eq!(config["registration_shared_secret"], "shared");
        assert_eq!(config["database"]["name"], "psycopg2");
        assert_eq!(config["database"]["args"]["dsn"], "postgresql://u:p@127.0.0.1:5432/conclave_peer_x");
        assert_eq!(config["media_store_path"], "/tmp/conclave-peer-x/media_store");
        assert_eq!(config["log_config"], "/tmp/conclave-peer-x/log.yaml");
        for throttle in [
            &config["rc_message"],
            &config["rc_registration"],
            &config["rc_login"]["address"],
            &config["rc_login"]["account"],
            &config["rc_room_creation"],
            &config["rc_invites"]["per_room"],
            &config["rc_invites"]["per_user"],
            &config["rc_invites"]["per_issuer"],
            &config["rc_joins"]["local"],
            &config["rc_joins_per_room"],
            &config["rc_presence"]["per_user"],
        ] {
            assert!(throttle["per_second"].as_f64() >= Some(UNTHROTTLED), "{throttle}");
            assert!(throttle["burst_count"].as_u64() >= Some(UNTHROTTLED as u64), "{throttle}");
        }
    }

    #[test]
    fn logs_go_to_the_work_directory_at_warning() {
        let config = log_config(Path::new("/tmp/conclave-peer-x/homeserver.log"));
        assert_eq!(config["root"]["level"], "WARNING");
        assert_eq!(config["handlers"]["file"]["filename"], "/tmp/conclave-peer-x/homeserver.log");
    }

    #[test]
    fn the_signing_key_is_an_ed25519_seed_in_unpadded_base64() {
        let key = signing_key(&[0; 32]);
        assert_eq!(key, format!("ed25519 a_bench {}\n", "A".repeat(43)));
    }
}
