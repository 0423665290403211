use clap::Parser;
use conclave_dataplane::AppState;
use conclave_dataplane::config::Config;
use conclave_testkit::TestDb;
use conclave_testkit::smtp::MailCatcher;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

pub fn redis_url() -> String {
    std::env::var("CONCLAVE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// A data plane serving on an ephemeral loopback port with its own database and mail catcher,
/// stopped when dropped.
pub struct TestApp {
    pub base: String,
    /// The arguments the server was started with, to start more replicas like it.
    pub args: Vec<String>,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub mail: MailCatcher,
    pub state: AppState,
    _stop: oneshot::Sender<()>,
}

impl TestApp {
    /// Rate limits are raised a thousandfold so tests of other things never trip them.
    pub async fn start() -> Self {
        Self::start_with(&["--rate-limit-factor", "1000"]).await
    }

    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_on_redis(&redis_url(), extra).await
    }

    pub async fn start_on_redis(redis: &str, extra: &[&str]) -> Self {
        let db = TestDb::new().await.expect("test database");
        let mail = MailCatcher::start().await.expect("smtp listener");
        // JWT keys on disk, so further replicas accept this one's tokens.
        let keys = std::env::temp_dir().join(format!("conclave-test-keys-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&keys).expect("keys dir");
        conclave_dataplane::auth::jwt::generate_key_file(&keys, "test-1").expect("jwt key");
        // A namespace of its own: rate-limit counters and channels never leak between tests.
        let namespace = format!("test-{}", Uuid::new_v4().simple());
        let mut args: Vec<String> = [
            "conclave-dataplane",
            "--redis-namespace",
            &namespace,
            "--database-url",
            &db.app_url(),
            "--redis-url",
            redis,
            "--smtp-url",
            &mail.url(),
            "--database-max-connections",
            "5",
            "--jwt-keys-dir",
            keys.to_str().expect("utf-8 path"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let (base, state, stop) = serve(&args).await;
        Self { base, args, db, http: reqwest::Client::new(), mail, state, _stop: stop }
    }

    /// Another data-plane process's worth of server on the same database, Redis and keys.
    pub async fn replica(&self) -> Replica {
        let (base, _state, stop) = serve(&self.args).await;
        Replica { base, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        exchange(request).await
    }

    /// `post` with owned arguments, for requests built in a loop and awaited together.
    pub async fn post_owned(&self, path: String, body: Value, token: String) -> (StatusCode, Value) {
        self.post(&path, body, Some(&token)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        exchange(request).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        exchange(self.http.delete(self.url(path)).bearer_auth(token)).await
    }

    /// Registers and confirms an account (through the emailed token); returns its id.
    pub async fn confirmed_user(&self, email: &str, password: &str) -> Uuid {
        conclave_testkit::accounts::register_confirmed(&self.http, &self.base, &self.mail, email, password, "Test")
            .await
            .expect("a registered, confirmed account")
    }

    /// Logs in on a new device; returns the token pair JSON.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/auth/login",
                json!({ "email": email, "password": password, "device": new_device("laptop") }),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A confirmed, logged-in user: (user id, access token, login response).
    pub async fn signed_in(&self, email: &str) -> (Uuid, String, Value) {
        let id = self.confirmed_user(email, PASSWORD).await;
        let pair = self.login(email, PASSWORD).await;
        (id, pair["access_token"].as_str().expect("token").to_owned(), pair)
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db.owner).await.expect("count")
    }
}

/// A second replica; stops when dropped.
pub struct Replica {
    pub base: String,
    _stop: oneshot::Sender<()>,
}

async fn serve(args: &[String]) -> (String, AppState, oneshot::Sender<()>) {
    let config = Cli::try_parse_from(args).expect("config").config;
    let state = AppState::connect(&config).await.expect("app state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(conclave_dataplane::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    (base, state, stop)
}

pub use conclave_testkit::accounts::PASSWORD;

/// Sends the request and checks the answer against the OpenAPI document ([`crate::contract`]).
pub async fn exchange(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let (client, request) = request.build_split();
    let request = request.expect("a well-formed request");
    let (method, path) = (request.method().clone(), request.url().path().to_owned());
    let response = client.execute(request).await.expect("request");
    let content_type =
        response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, body) = read(response).await;
    crate::contract::check(&method, &path, status, content_type.as_deref(), &body);
    (status, body)
}

/// The status and body (JSON when it parses, else the text; null when empty), unchecked.
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// Seconds since 1970, as the device proofs carry them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

pub fn b64(bytes: &[u8]) -> String {
    conclave_protocol::b64::encode(bytes)
}

/// A device registration with a real key and a valid proof of possession.
pub fn new_device(name: &str) -> Value {
    TestDevice::new().registration(name)
}

pub fn rand32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// A device whose secret keys the test holds, so it can sign like a real client.
pub struct TestDevice {
    pub signing: SigningKey,
}

impl TestDevice {
    pub fn new() -> Self {
        Self { signing: SigningKey::from_bytes(&rand32()) }
    }

    pub fn registration(&self, name: &str) -> Value {
        let ed = self.signing.verifying_key().to_bytes();
        let signature = self.signing.sign(&conclave_protocol::layout::device_key_input(&ed));
        json!({
            "name": name,
            "platform": "cli",
            "ed25519_public_key": b64(&ed),
            "key_signature": b64(&signature.to_bytes()),
        })
    }
}

/// A data plane whose blobs are in a directory of its own (returned, to look inside), with the
/// background retention sweep and attachment collector off: tests run them themselves.
pub async fn app_with_blobs(label: &str) -> (TestApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("conclave-test-{label}-{}", Uuid::new_v4().simple()));
    let app = TestApp::start_with(&[
        "--rate-limit-factor",
        "1000",
        "--retention-interval-ms",
        "0",
        "--attachment-gc-ms",
        "0",
        "--attachments-dir",
        dir.to_str().expect("utf-8"),
    ])
    .await;
    (app, dir)
}

/// A signed-in person with a device of their own.
pub struct Person {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub access: String,
    pub device: TestDevice,
}

impl TestApp {
    pub async fn person(&self, email: &str) -> Person {
        let user_id = self.confirmed_user(email, PASSWORD).await;
        let device = TestDevice::new();
        let (status, body) = self
            .post(
                "/v1/auth/login",
                json!({ "email": email, "password": PASSWORD, "device": device.registration("laptop") }),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Person {
            user_id,
            device_id: body["device_id"].as_str().and_then(|s| s.parse().ok()).expect("device id"),
            access: body["access_token"].as_str().expect("token").to_owned(),
            device,
        }
    }

    /// An organization (as the operator would create it) with one workspace and these members;
    /// the first is its owner.
    pub async fn organization(&self, slug: &str, members: &[&Person]) -> (Uuid, Uuid) {
        let users: Vec<Uuid> = members.iter().map(|p| p.user_id).collect();
        let org = conclave_testkit::seed_organization(&self.db.owner, slug, &users).await.expect("organization");
        (org.id, org.workspace_id)
    }

    pub async fn patch(&self, path: &str, body: Value, token: &str) -> (StatusCode, Value) {
        exchange(self.http.patch(self.url(path)).json(&body).bearer_auth(token)).await
    }

    pub async fn put(&self, path: &str, body: Value, token: &str) -> (StatusCode, Value) {
        exchange(self.http.put(self.url(path)).json(&body).bearer_auth(token)).await
    }

    /// Another device of `person`'s account (`email`), signed in.
    pub async fn another_device(&self, person: &Person, email: &str) -> Person {
        let device = TestDevice::new();
        let (status, body) = self
            .post(
                "/v1/auth/login",
                json!({ "email": email, "password": PASSWORD, "device": device.registration("phone") }),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Person {
            user_id: person.user_id,
            device_id: body["device_id"].as_str().and_then(|s| s.parse().ok()).expect("device id"),
            access: body["access_token"].as_str().expect("token").to_owned(),
            device,
        }
    }
}
