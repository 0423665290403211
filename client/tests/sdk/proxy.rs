//! A tampering reverse proxy between SDK clients and the real data plane: the malicious server of
//! the attack tests (`attacks.rs`).
//!
//! Each client gets its own loopback port ([`Proxy::listen`]), so a rule knows whom it answers.
//! By default every HTTP request is forwarded faithfully (method, path, query, headers, body) and
//! the server's answer returned as it is. A test adds rules that rewrite a request before it is
//! forwarded, answer it in the server's place, or rewrite the server's answer. Everything that
//! passes (what the clients sent, what they were answered) is kept for the plaintext scan
//! ([`Proxy::sightings`]). HTTP only: the WebSocket is not proxied.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// A request as a client sent it (and as it is forwarded, after the rules).
#[derive(Clone, Debug)]
pub struct Request {
    /// The label of the port it came in on ([`Proxy::listen`]).
    pub client: String,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

/// A client label that matches every client.
pub const ANYONE: &str = "*";

impl Request {
    /// `method` on a path ending with `suffix`, from `client` (or [`ANYONE`]).
    pub fn is(&self, client: &str, method: Method, suffix: &str) -> bool {
        (client == ANYONE || self.client == client) && self.method == method && self.path.ends_with(suffix)
    }

    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).expect("a JSON request body")
    }
}

/// An answer, the server's or the proxy's own.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Response {
    /// An answer in the server's place.
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Self {
        Self { status, body: serde_json::to_vec(value).expect("JSON") }
    }

    pub fn read<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).expect("a JSON answer")
    }

    pub fn set<T: Serialize>(&mut self, value: &T) {
        self.body = serde_json::to_vec(value).expect("JSON");
    }
}

/// One request and its answer, as they passed through the proxy.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub request: Request,
    pub response: Response,
}

type RequestRule = Box<dyn FnMut(&mut Request) -> Option<Response> + Send>;
type ResponseRule = Box<dyn FnMut(&Request, &mut Response) + Send>;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    request_rules: Mutex<Vec<RequestRule>>,
    response_rules: Mutex<Vec<ResponseRule>>,
    log: Mutex<Vec<Exchange>>,
}

/// The proxy in front of the data plane at `upstream`; its listeners stop when it is dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Port {
    shared: Arc<Shared>,
    label: String,
}

impl Proxy {
    pub fn new(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            request_rules: Mutex::default(),
            response_rules: Mutex::default(),
            log: Mutex::default(),
        });
        Self { shared, tasks: Vec::new() }
    }

    /// A new loopback port for the client called `label`; returns its base URL.
    pub async fn listen(&mut self, label: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let port = Port { shared: self.shared.clone(), label: label.to_owned() };
        let app = Router::new().fallback(relay).with_state(port);
        self.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        base
    }

    /// Before a request is forwarded: the rule may rewrite it, or answer it itself (`Some`), in
    /// which case the server never sees it. Rules run in the order they were added.
    pub fn on_request(&self, rule: impl FnMut(&mut Request) -> Option<Response> + Send + 'static) {
        self.shared.request_rules.lock().expect("rules").push(Box::new(rule));
    }

    /// After the server (or a request rule) answered: the rule may rewrite the answer.
    pub fn on_response(&self, rule: impl FnMut(&Request, &mut Response) + Send + 'static) {
        self.shared.response_rules.lock().expect("rules").push(Box::new(rule));
    }

    /// Rewrites, as a `T`, the successful answers to `client`'s (or anyone's: [`ANYONE`]) `method`
    /// requests on a path ending with `suffix`.
    pub fn rewrite<T: Serialize + DeserializeOwned>(
        &self,
        client: &str,
        method: Method,
        suffix: impl Into<String>,
        mut rewrite: impl FnMut(&mut T) + Send + 'static,
    ) {
        let (client, suffix) = (client.to_owned(), suffix.into());
        self.on_response(move |request, response| {
            if request.is(&client, method.clone(), &suffix) && response.status.is_success() {
                let mut value: T = response.read();
                rewrite(&mut value);
                response.set(&value);
            }
        });
    }

    /// Back to forwarding faithfully.
    pub fn clear_rules(&self) {
        self.shared.request_rules.lock().expect("rules").clear();
        self.shared.response_rules.lock().expect("rules").clear();
    }

    /// Everything that passed so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Where `needle` passed through the proxy, in any request or answer: in the raw bytes, in any
    /// JSON string, or inside any JSON string that decodes as base64 (either alphabet, with or
    /// without padding) — which is how every MLS message and ciphertext travels.
    pub fn sightings(&self, needle: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        for (n, exchange) in self.exchanges().iter().enumerate() {
            let request = &exchange.request;
            let place = |what: &str| format!("#{n} {} {} {} ({what})", request.client, request.method, request.path);
            if contains(request.path.as_bytes(), needle) || contains(request.query.as_bytes(), needle) {
                found.push(place("url"));
            }
            if body_contains(&request.body, needle) {
                found.push(place("request body"));
            }
            if body_contains(&exchange.response.body, needle) {
                found.push(place("answer body"));
            }
        }
        found
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn body_contains(body: &[u8], needle: &[u8]) -> bool {
    if contains(body, needle) {
        return true;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let mut strings = Vec::new();
    collect_strings(&json, &mut strings);
    strings.iter().any(|s| {
        contains(s.as_bytes(), needle)
            || [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
                .iter()
                .filter_map(|engine| engine.decode(s).ok())
                .any(|decoded| contains(&decoded, needle))
    })
}

fn collect_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(fields) => fields.iter().for_each(|(k, v)| {
            out.push(k);
            collect_strings(v, out)
        }),
        _ => {}
    }
}

/// Headers that belong to one hop, not to the request or answer.
fn hop_by_hop(name: &HeaderName) -> bool {
    [CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, HOST].contains(name)
}

async fn relay(
    State(port): State<Port>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let shared = &port.shared;
    let mut request = Request {
        client: port.label.clone(),
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        body: body.to_vec(),
    };
    let mut answer = None;
    for rule in shared.request_rules.lock().expect("rules").iter_mut() {
        if let Some(response) = rule(&mut request) {
            answer = Some(response);
            break;
        }
    }
    let (mut response, mut response_headers) = match answer {
        Some(response) => {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (response, headers)
        }
        None => forward(shared, &request, &headers).await,
    };
    for rule in shared.response_rules.lock().expect("rules").iter_mut() {
        rule(&request, &mut response);
    }
    for name in [CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, HOST] {
        response_headers.remove(name);
    }
    shared.log.lock().expect("log").push(Exchange { request, response: response.clone() });
    (response.status, response_headers, response.body)
}

async fn forward(shared: &Shared, request: &Request, headers: &HeaderMap) -> (Response, HeaderMap) {
    let mut url = format!("{}{}", shared.upstream, request.path);
    if !request.query.is_empty() {
        url = format!("{url}?{}", request.query);
    }
    let mut outgoing = shared.http.request(request.method.clone(), url).body(request.body.clone());
    for (name, value) in headers.iter().filter(|(name, _)| !hop_by_hop(name)) {
        outgoing = outgoing.header(name, value);
    }
    let answer = outgoing.send().await.expect("the data plane answers the proxy");
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.expect("the answer's body").to_vec();
    (Response { status, body }, headers)
}
