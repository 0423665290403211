//! Slow and greedy clients, with raw sockets on loopback: the header read timeout, the body idle
//! timeout and the cap on connections per address (`server.rs`), none of which may cost a
//! legitimate WebSocket its connection.

use crate::conversations::group;
use crate::realtime::{connect, next_of};
use crate::support::TestApp;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One-second timeouts, so the tests wait seconds rather than the default half minutes.
const FAST: [&str; 6] =
    ["--rate-limit-factor", "1000", "--header-read-timeout-secs", "1", "--body-idle-timeout-secs", "1"];

/// Allowed beyond a timeout for the server to act on it on a busy two-core test machine.
const SLACK: Duration = Duration::from_secs(4);

async fn open(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the server closes the socket: what it sent before closing, or `None` if it is
/// still open at `deadline`.
async fn closed_by(socket: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn a_slow_loris_has_every_socket_closed_within_the_header_timeout() {
    let app = TestApp::start_with(&FAST).await;
    let started = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..50 {
        let mut socket = open(&app).await;
        // Most send part of a head and stall; some send nothing at all.
        if i % 5 != 0 {
            socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: conclave\r\nX-Slow: ").await.expect("partial head");
        }
        sockets.push(socket);
    }
    let deadline = started + Duration::from_secs(1) + SLACK;
    for (i, socket) in sockets.iter_mut().enumerate() {
        assert!(closed_by(socket, deadline).await.is_some(), "socket {i} still open after the header timeout");
    }
    // Nothing else was held up meanwhile.
    assert_eq!(app.get("/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_stalls_is_given_up_on_within_the_idle_timeout_and_one_that_trickles_is_not() {
    let app = TestApp::start_with(&FAST).await;
    // A gigabyte declared, and one under the JSON limit: each sends ten bytes and stops.
    for declared in [1u64 << 30, 400_000] {
        let mut socket = open(&app).await;
        let head = format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: conclave\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.expect("head");
        socket.write_all(b"{\"email\": ").await.expect("ten bytes");
        let deadline = Instant::now() + Duration::from_secs(1) + SLACK;
        let answer = closed_by(&mut socket, deadline).await;
        let answer = answer.unwrap_or_else(|| panic!("a stalled body of {declared} bytes still waited on"));
        assert!(answer.starts_with("HTTP/1.1 4"), "{declared}: {answer}");
    }

    // A body that keeps coming, slower in total than the timeout but never idle that long, is read.
    let body = br#"{"email": "trickle@example.org"}"#;
    let mut socket = open(&app).await;
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: conclave\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    for chunk in body.chunks(8) {
        tokio::time::sleep(Duration::from_millis(450)).await;
        socket.write_all(chunk).await.expect("chunk");
    }
    assert!(started.elapsed() > Duration::from_millis(1500), "longer in total than the idle timeout");
    let answer = closed_by(&mut socket, Instant::now() + Duration::from_secs(1) + SLACK).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 422"), "the whole body was read and judged (a password is missing): {answer}");
}

#[tokio::test]
async fn a_json_body_trickled_inside_the_idle_timeout_is_cut_at_the_total_deadline() {
    // The attack: one byte just inside every idle timeout keeps a request (and its socket) open
    // for as long as the body is long. A JSON body has a deadline in total.
    let mut args = FAST.to_vec();
    args.extend(["--body-read-timeout-secs", "2"]);
    let app = TestApp::start_with(&args).await;
    let mut socket = open(&app).await;
    let body = format!(r#"{{"email": "trickle@example.org", "password": "{}"}}"#, "x".repeat(100));
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: conclave\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let (mut reader, mut writer) = socket.into_split();
    // A byte every 400 ms: never idle for the one-second idle timeout, 50 s for the whole body.
    let trickle = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2) + SLACK, reader.read_to_end(&mut received)).await;
    trickle.abort();
    let answer = String::from_utf8_lossy(&received).into_owned();
    assert!(closed.is_ok(), "still open {:?} after the head: {answer}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(1900), "not before the deadline: {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let json: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("a body")).expect("a JSON error body");
    assert_eq!(json["error"]["code"], "request_timeout", "{json}");
    crate::contract::check(
        &reqwest::Method::POST,
        "/v1/auth/login",
        StatusCode::REQUEST_TIMEOUT,
        Some("application/json"),
        &json,
    );
}

#[tokio::test]
async fn an_idle_websocket_outlives_the_timeouts_and_the_cap_refuses_only_connections_beyond_it() {
    let mut args = FAST.to_vec();
    args.extend(["--max-connections-per-address", "4"]);
    let app = TestApp::start_with(&args).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = group(&app, &alice, &[&bob]).await;
    assert_eq!(chat.rotate(&alice, 1).await.0, StatusCode::CREATED);
    // The test client's kept-alive connection is closed by the server once idle for the header
    // timeout; from then on only the sockets below count for this address.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut socket = connect(&app.base, &bob).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&app).await);
    }
    // The fifth connection from this address is closed at once, long before any timeout.
    let mut refused = open(&app).await;
    let closed = closed_by(&mut refused, Instant::now() + Duration::from_millis(500)).await;
    assert_eq!(closed.as_deref(), Some(""), "closed unanswered");

    // The held sockets go with the header timeout; the WebSocket, idle just as long, stays.
    let deadline = Instant::now() + Duration::from_secs(1) + SLACK;
    for socket in &mut held {
        assert!(closed_by(socket, deadline).await.is_some());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, sent) = chat.send(&alice, 1, &[1u8; 48]).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let frame = next_of(&mut socket, "message_created").await;
    assert_eq!(frame["message"]["id"], sent["id"]);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_closes_websockets_and_stops_serving() {
    // The default timeouts: the request in flight waits out the shutdown, which on a busy
    // machine can take longer than FAST's one-second body timeout.
    let app = TestApp::start().await;
    let bob = app.person("bob@example.org").await;
    // A server of its own on the same state, to stop while the test's app goes on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(conclave_dataplane::serve(listener, app.state.clone(), async move {
        let _ = stopped.await;
    }));
    let mut socket = connect(&base, &bob).await;
    let body = br#"{"email": "late@example.org"}"#;
    let mut request = TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect");
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: conclave\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    request.write_all(head.as_bytes()).await.expect("head");
    request.write_all(&body[..10]).await.expect("part of the body");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let _ = stop.send(());
    let frame = next_of(&mut socket, "closed").await;
    assert_eq!(frame["code"], 1001, "going away: {frame}");
    request.write_all(&body[10..]).await.expect("the rest of the body");
    let answer = closed_by(&mut request, Instant::now() + SLACK).await.expect("answered, then closed");
    assert!(answer.starts_with("HTTP/1.1 422"), "the request in flight was served: {answer}");
    let served = tokio::time::timeout(SLACK, server).await.expect("stopped").expect("joined");
    assert!(served.is_ok(), "{served:?}");
    assert!(TcpStream::connect(base.trim_start_matches("http://")).await.is_err(), "no longer listening");
}

/// Writes a whole `GET /healthz` that asks to close, and reads the answer up to the close.
async fn health_over(socket: &mut TcpStream) -> String {
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: conclave\r\nConnection: close\r\n\r\n").await.expect("request");
    closed_by(socket, Instant::now() + SLACK).await.expect("answered and closed")
}

/// A connection from `from` to `to`.
async fn open_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let from: std::net::IpAddr = from.parse().expect("an address");
    let socket = if from.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
    let socket = socket.expect("socket");
    socket.bind((from, 0).into()).expect("bind the source address");
    socket.connect(to).await.expect("connect")
}

#[tokio::test]
async fn the_cap_counts_ipv4_clients_of_a_dual_stack_listener_each_on_its_own_and_ipv6_by_its_64() {
    // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`, all inside `::/64`: counted
    // as IPv6 by their /64 they would share one cap. Each IPv4 address is its own source.
    let app = TestApp::start_with(&["--rate-limit-factor", "1000", "--max-connections-per-address", "2"]).await;
    let listener = tokio::net::TcpListener::bind("[::]:0").await.expect("bind a dual-stack listener");
    let port = listener.local_addr().expect("address").port();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(conclave_dataplane::serve(listener, app.state.clone(), async move {
        let _ = stopped.await;
    }));
    let v4: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: std::net::SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();

    let held = [open_from("127.0.0.1", v4).await, open_from("127.0.0.1", v4).await];
    let mut third = open_from("127.0.0.1", v4).await;
    assert_eq!(closed_by(&mut third, Instant::now() + SLACK).await.as_deref(), Some(""), "beyond the cap");
    let mut neighbour = open_from("127.0.0.2", v4).await;
    let answer = health_over(&mut neighbour).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "another IPv4 address has a cap of its own: {answer}");

    // IPv6 (loopback, the one IPv6 address a test can use; /64 bucketing of many addresses is
    // the unit test `server::tests::an_ipv6_64_is_one_source…`) has a cap of its own too.
    let held6 = [open_from("::1", v6).await, open_from("::1", v6).await];
    let mut third6 = open_from("::1", v6).await;
    assert_eq!(closed_by(&mut third6, Instant::now() + SLACK).await.as_deref(), Some(""), "beyond the cap");
    drop(held6);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = health_over(&mut open_from("127.0.0.1", v4).await).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "closed connections free their slots: {answer}");
}
