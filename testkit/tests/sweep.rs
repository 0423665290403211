//! The sweep that `scripts/test.sh` runs drops only databases whose creating process is gone.

use conclave_testkit::TestDb;
use conclave_testkit::owner::{Process, sweep_abandoned};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use std::str::FromStr;

fn owner_options() -> PgConnectOptions {
    let url = std::env::var("CONCLAVE_TEST_OWNER_URL").expect("CONCLAVE_TEST_OWNER_URL (scripts/stack.sh env)");
    PgConnectOptions::from_str(&url).expect("a PostgreSQL URL").disable_statement_logging()
}

async fn maintenance() -> PgConnection {
    owner_options().database("postgres").connect().await.expect("the maintenance database (scripts/stack.sh up)")
}

async fn create(conn: &mut PgConnection, name: &str, comment: Option<&str>) {
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut *conn).await.expect("create");
    if let Some(comment) = comment {
        sqlx::raw_sql(AssertSqlSafe(format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'")))
            .execute(&mut *conn)
            .await
            .expect("comment");
    }
}

async fn exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await
        .expect("pg_database")
}

async fn drop_database(conn: &mut PgConnection, name: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(conn)
        .await
        .expect("drop");
}

fn fresh(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_sweep_drops_a_dead_processs_database_and_keeps_a_running_demos_and_tests() {
    // A process that ran and ended: what it recorded outlives it.
    let mut child = std::process::Command::new("sleep").arg("60").spawn().expect("sleep");
    let ended = Process::of(child.id()).expect("the child runs");
    child.kill().expect("kill");
    child.wait().expect("wait");

    let mut conn = maintenance().await;
    let abandoned_test = fresh("conclave_test");
    create(&mut conn, &abandoned_test, Some(&ended.mark())).await;
    let abandoned_demo = fresh("conclave_demo");
    create(&mut conn, &abandoned_demo, Some(&ended.mark())).await;
    // A pid now used by another process than the one recorded (here: ours, started at another time).
    let reused = Process { start: ended.start.wrapping_add(1), ..Process::current().expect("this process") };
    let reused_pid = fresh("conclave_test");
    create(&mut conn, &reused_pid, Some(&reused.mark())).await;
    // Made by something that does not mark its databases (an older checkout running beside us).
    let unmarked = fresh("conclave_test");
    create(&mut conn, &unmarked, None).await;
    // A test and a demo of a process that runs: this one.
    let running_test = TestDb::new().await.expect("a test database");
    let running_demo = TestDb::with_prefix("conclave_demo").await.expect("a demo database");

    let sweep = sweep_abandoned(&owner_options()).await.expect("sweep");

    for gone in [&abandoned_test, &abandoned_demo, &reused_pid] {
        assert!(sweep.dropped.contains(gone), "{gone} dropped: {sweep:?}");
        assert!(!exists(&mut conn, gone).await, "{gone} no longer exists");
    }
    for kept in [&unmarked, &running_test.name, &running_demo.name] {
        assert!(!sweep.dropped.contains(kept), "{kept} kept: {sweep:?}");
        assert!(exists(&mut conn, kept).await, "{kept} still exists");
    }
    let ok: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&running_demo.app).await.expect("the demo still answers");
    assert_eq!(ok, 1);
    drop_database(&mut conn, &unmarked).await;
    conn.close().await.expect("close");
}
