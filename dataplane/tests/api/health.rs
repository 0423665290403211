use crate::support::TestApp;
use serde_json::Value;

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let app = TestApp::start().await;
    let response = app.http.get(app.url("/healthz")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_checks_postgres_and_redis() {
    let app = TestApp::start().await;
    let response = app.http.get(app.url("/readyz")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
}

#[tokio::test]
async fn readyz_reports_which_dependency_is_down() {
    let app = TestApp::start().await;
    // Take PostgreSQL away from this replica: its database refuses connections and the ones it
    // held are ended.
    let maintenance =
        sqlx::PgPool::connect_with(app.db.owner_options().database("postgres")).await.expect("maintenance");
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false", app.db.name)))
        .execute(&maintenance)
        .await
        .expect("block connections");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&app.db.name)
        .execute(&maintenance)
        .await
        .expect("terminate");
    let response = app.http.get(app.url("/readyz")).send().await.expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["checks"]["postgres"], "unavailable");
    assert_eq!(body["checks"]["redis"], "ok");
    // The liveness probe stays green: a database outage is no reason to restart the process.
    let response = app.http.get(app.url("/healthz")).send().await.expect("request");
    assert_eq!(response.status(), 200);
}
