//! `GET /metrics`, through the real server.

use crate::support::TestApp;
use futures::StreamExt;
use reqwest::StatusCode;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    let text = response.text().await.expect("text");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    text
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status_never_by_id() {
    let app = TestApp::start().await;
    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    for id in ids {
        let response = app.http.delete(app.url(&format!("/v1/devices/{id}"))).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    app.http.get(app.url("/healthz")).send().await.expect("healthz");
    let stray = Uuid::now_v7();
    app.http.get(app.url(&format!("/no/such/route/{stray}"))).send().await.expect("stray");

    let text = scrape(&app).await;
    let line =
        r#"conclave_dataplane_http_requests_total{method="DELETE",route="/v1/devices/{device_id}",status="401"} 2"#;
    assert!(text.contains(line), "{text}");
    assert!(text.contains(r#"conclave_dataplane_http_requests_total{method="GET",route="/healthz",status="200"} 1"#));
    assert!(text.contains(r#"conclave_dataplane_http_requests_total{method="GET",route="unmatched",status="404"} 1"#));
    assert!(text.contains(
        r#"conclave_dataplane_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 1"#
    ));
    for id in ids.iter().chain([&stray]) {
        assert!(!text.contains(&id.to_string()), "an id became a label value:\n{text}");
    }
    assert!(text.contains("conclave_dataplane_db_pool_max_connections "), "{text}");
    assert!(text.contains("conclave_dataplane_db_pool_idle_connections "));
    assert!(text.contains("conclave_dataplane_events_published_total 0"));
    assert!(text.contains("conclave_dataplane_slow_consumers_disconnected_total 0"));
}

#[tokio::test]
async fn open_websockets_are_a_gauge() {
    let app = TestApp::start().await;
    let (_, token, _) = app.signed_in("gauge@example.com").await;
    assert!(scrape(&app).await.contains("conclave_dataplane_websocket_connections 0\n"));
    let url = format!("{}/v1/ws", app.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket");
    let ready = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a frame in time");
    assert!(ready.is_some());
    let text = scrape(&app).await;
    assert!(text.contains("conclave_dataplane_websocket_connections 1\n"), "{text}");
    assert!(text.contains(r#"route="/v1/ws",status="101""#), "{text}");
}
