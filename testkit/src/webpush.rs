//! A Web Push service (RFC 8030) on loopback for tests: it checks every request as a real push
//! service would, and keeps what it could read.
//!
//! For each request it checks the VAPID authorization (RFC 8292: `vapid t=<JWT>, k=<key>`, the
//! key the data plane published, an ES256 signature that verifies with it, `aud` the origin of
//! the endpoint, `exp` in the future and at most 24 hours ahead, a `sub`), the headers (`TTL`,
//! `Content-Encoding: aes128gcm`), and decrypts the body with the subscription's private key
//! (RFC 8291, with Mozilla's `ece` crate). Then it answers what the test queued (201 by default):
//! 404, 410, 413, 429 with `Retry-After`, a 5xx, ... A request whose VAPID does not verify is
//! answered 401 and recorded with the reason.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A subscription as a browser would create it: its endpoint and the keys it hands out.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub endpoint: String,
    /// The uncompressed P-256 public point (65 bytes).
    pub p256dh: Vec<u8>,
    /// The 16-byte authentication secret.
    pub auth: Vec<u8>,
}

/// One request the service received.
#[derive(Debug, Clone)]
pub struct Received {
    pub subscription: String,
    /// What the service answered.
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// The VAPID token's claims, when it verified.
    pub claims: Option<serde_json::Value>,
    /// Why the request was refused, when it was (VAPID, headers, decryption).
    pub error: Option<String>,
    /// The decrypted payload.
    pub plaintext: Option<Vec<u8>>,
    /// The body as it travelled.
    pub body: Vec<u8>,
}

impl Received {
    /// The decrypted payload as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.plaintext.as_deref()?).ok()
    }
}

struct Keys {
    components: ece::EcKeyComponents,
    auth: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, Keys>,
    answers: VecDeque<(u16, Option<u64>)>,
    received: Vec<Received>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    vapid_public_key: Arc<Mutex<Option<Vec<u8>>>>,
    origin: String,
}

/// The service; stops when dropped.
pub struct PushService {
    pub origin: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PushService {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let shared = Shared { inner: Arc::default(), vapid_public_key: Arc::default(), origin: origin.clone() };
        let router = axum::Router::new().route("/push/{id}", axum::routing::post(receive)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { origin, shared, task })
    }

    /// The VAPID public key (65 bytes) requests must be signed with, as the data plane publishes
    /// it (`GET /v1/push/vapid-public-key`).
    pub fn expect_vapid_key(&self, public_key: Vec<u8>) {
        if let Ok(mut key) = self.shared.vapid_public_key.lock() {
            *key = Some(public_key);
        }
    }

    /// A new subscription with fresh keys, as `PushManager.subscribe()` makes.
    pub fn subscribe(&self) -> anyhow::Result<Subscription> {
        let (pair, auth) = ece::generate_keypair_and_auth_secret()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let subscription = Subscription {
            endpoint: format!("{}/push/{id}", self.origin),
            p256dh: pair.pub_as_raw()?,
            auth: auth.to_vec(),
            id: id.clone(),
        };
        let keys = Keys { components: pair.raw_components()?, auth: auth.to_vec() };
        self.lock().keys.insert(id, keys);
        Ok(subscription)
    }

    /// The next request is answered `status` (with `Retry-After` when given); later ones 201.
    pub fn answer_next(&self, status: u16, retry_after: Option<u64>) {
        self.lock().answers.push_back((status, retry_after));
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Waits up to `timeout` until at least `count` requests arrived; returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn receive(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let header_map: HashMap<String, String> =
        headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let expected = shared.vapid_public_key.lock().ok().and_then(|k| k.clone());
    let checked = check_vapid(&header_map, expected.as_deref(), &shared.origin);
    let mut inner = shared.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut received = Received {
        subscription: id.clone(),
        status: 201,
        headers: header_map.clone(),
        claims: None,
        error: None,
        plaintext: None,
        body: body.to_vec(),
    };
    match checked {
        Err(error) => {
            received.status = 401;
            received.error = Some(error);
        }
        Ok(claims) => {
            received.claims = Some(claims);
            let header_error = if !header_map.contains_key("ttl") {
                Some("no TTL header".to_owned())
            } else if header_map.get("content-encoding").map(String::as_str) != Some("aes128gcm") {
                Some("Content-Encoding is not aes128gcm".to_owned())
            } else {
                None
            };
            match (header_error, inner.keys.get(&id)) {
                (Some(error), _) => {
                    received.status = 400;
                    received.error = Some(error);
                }
                (None, None) => received.status = 410,
                (None, Some(keys)) => match ece::decrypt(&keys.components, &keys.auth, &body) {
                    Ok(plaintext) => received.plaintext = Some(plaintext),
                    Err(e) => {
                        received.status = 400;
                        received.error = Some(format!("cannot decrypt: {e}"));
                    }
                },
            }
        }
    }
    let mut answer_headers = HeaderMap::new();
    if received.error.is_none()
        && received.status == 201
        && let Some((status, retry_after)) = inner.answers.pop_front()
    {
        received.status = status;
        if let Some(seconds) = retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            answer_headers.insert("retry-after", value);
        }
    }
    let status = StatusCode::from_u16(received.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    inner.received.push(received);
    (status, answer_headers)
}

/// The claims of a valid `vapid t=..., k=...` authorization, or why it is not.
fn check_vapid(
    headers: &HashMap<String, String>,
    expected_key: Option<&[u8]>,
    origin: &str,
) -> Result<serde_json::Value, String> {
    let value = headers.get("authorization").ok_or("no Authorization header")?;
    let rest = value.strip_prefix("vapid ").ok_or("the Authorization scheme is not vapid")?;
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => token = Some(v.trim()),
            Some(("k", v)) => key = Some(v.trim()),
            _ => {}
        }
    }
    let (token, key) = (token.ok_or("no t= in the authorization")?, key.ok_or("no k= in the authorization")?);
    let key = URL_SAFE_NO_PAD.decode(key).map_err(|_| "k is not base64url")?;
    if let Some(expected) = expected_key
        && expected != key.as_slice()
    {
        return Err("k is not the published VAPID key".to_owned());
    }
    if key.len() != 65 || key[0] != 4 {
        return Err("k is not an uncompressed P-256 point".to_owned());
    }
    let x = URL_SAFE_NO_PAD.encode(&key[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&key[33..65]);
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(&x, &y).map_err(|e| format!("bad key: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation)
        .map_err(|e| format!("the VAPID token does not verify: {e}"))?;
    let exp = data.claims.get("exp").and_then(serde_json::Value::as_u64).ok_or("no exp")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if exp > now + 24 * 3600 {
        return Err("exp is more than 24 hours ahead".to_owned());
    }
    Ok(data.claims)
}
