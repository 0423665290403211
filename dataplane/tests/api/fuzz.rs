//! A property-based fuzzer over the whole API: schemathesis (from PyPI) reads the document the data
//! plane serves and sends generated requests, valid and invalid, to every operation, signed in as
//! a member of an organization with a conversation, a message and a contact. It fails on any 5xx
//! and on any answer the document does not describe (status, content type, body schema).
//!
//! Ignored in a plain `cargo test` (it needs schemathesis); `scripts/test.sh` installs it when
//! missing and runs this test, bounded in examples per operation and in time
//! (`CONCLAVE_FUZZ_EXAMPLES`, `CONCLAVE_FUZZ_SECONDS`). `CONCLAVE_SCHEMATHESIS` names the `st`
//! program. Everything it sends goes to the test's own loopback server.

use crate::reactions::ready_chat;
use crate::support::TestApp;
use reqwest::StatusCode;
use serde_json::json;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test]
#[ignore = "needs schemathesis: scripts/test.sh installs it and runs this test"]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    // With TURN configured, so that the credentials endpoint answers what it is for (nothing is
    // sent to that address: credentials are signed locally).
    let app =
        TestApp::start_with(&["--turn-urls", "turn:127.0.0.1:3478", "--turn-shared-secret", "fuzz-turn-secret"]).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let chat = ready_chat(&app, &alice, &bob).await;
    let (status, sent) = chat.send(&alice, 1, &[1u8; 40]).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let (status, invited) =
        app.post("/v1/contacts/invitations", json!({ "email": "carl@example.org" }), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::CREATED, "{invited}");

    let program = setting("CONCLAVE_SCHEMATHESIS", "st");
    let examples = setting("CONCLAVE_FUZZ_EXAMPLES", "25");
    let seconds = setting("CONCLAVE_FUZZ_SECONDS", "90");
    let report = std::env::temp_dir().join(format!("conclave-fuzz-{}", uuid::Uuid::new_v4().simple()));
    // Run inside its report directory: schemathesis keeps a cache in its working directory.
    std::fs::create_dir_all(&report).expect("a report directory");
    let output = tokio::process::Command::new(&program)
        .current_dir(&report)
        .args(["run", &app.url("/openapi.json"), "--url", &app.base])
        .args(["--header", &format!("Authorization: Bearer {}", alice.access)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", &examples, "--max-time", &seconds])
        // Operations that would end the session the fuzzer signs in with (the rest then only
        // gets 401s): each has tests of its own.
        .args(["--exclude-operation-id", "logout"])
        // Exact byte lengths in base64url are hard to hit by chance: keep what it finds.
        .args(["--suppress-health-check", "filter_too_much"])
        .args(["--seed", "16", "--workers", "2", "--request-timeout", "20", "--generation-database", "none"])
        .args(["--no-color", "--report", "junit", "--report-dir"])
        .arg(&report)
        .output()
        .await
        .unwrap_or_else(|error| panic!("running {program} (pip install schemathesis): {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "schemathesis found answers outside the document or 5xx:\n{stdout}\n{stderr}");
    // It ran the operations: a run that tested nothing would pass too.
    assert!(stdout.contains("passed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&report);
}
