//! Reading the audit trail (docs/compliance.md): admins list, filter, page, export and verify it;
//! members get 403, other organizations 404; people appear as pseudonyms resolved while the
//! person exists; contact answers and removals are audited.

use crate::support::{TestApp, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn admins_list_filter_page_export_and_verify_the_audit_trail() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let mallory = app.person("mallory@example.org").await;
    let (org, workspace) = app.organization("acme", &[&alice, &bob]).await;
    let (their_org, _) = app.organization("globex", &[&mallory]).await;
    let holds = format!("/v1/organizations/{org}/legal-holds");
    let mut hold_ids = Vec::new();
    for n in 0..3 {
        let (status, hold) = app
            .post(
                &holds,
                json!({ "scope": "workspace", "target_id": workspace, "reason": format!("matter {n}") }),
                Some(&alice.access),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        hold_ids.push(hold["id"].as_str().expect("id").to_owned());
    }
    let (status, _) = app.post(&format!("{holds}/{}/lift", hold_ids[0]), json!({}), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, hold) = app
        .post(&holds, json!({ "scope": "user", "target_id": bob.user_id, "reason": "matter 9" }), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, request) = app
        .post(&format!("/v1/organizations/{org}/privacy-requests"), json!({ "kind": "export" }), Some(&bob.access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");

    let audit = format!("/v1/organizations/{org}/audit");
    let (status, page) = app.get(&audit, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let all = entries(&page);
    let total = all.len();
    assert!(total >= 6, "{page}");
    let seqs: Vec<i64> = all.iter().map(|e| e["chain_seq"].as_i64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    assert_eq!(all[0]["action"], "privacy_request.received");

    // People are pseudonyms in the trail, resolved for the admins while they exist.
    let by_bob = &all[0];
    assert_eq!(by_bob["actor"]["id"], json!(bob.user_id));
    assert_ne!(by_bob["actor"]["pseudonym"], json!(bob.user_id));
    assert_eq!(by_bob["actor_device"]["id"], json!(bob.device_id));
    let user_hold = all.iter().find(|e| e["target_id"] == hold["id"]).expect("the user hold's entry");
    assert_ne!(user_hold["details"]["target_id"], json!(bob.user_id), "a held user is named by pseudonym");
    assert_eq!(user_hold["details"]["target_id"], by_bob["actor"]["pseudonym"]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE actor_user_id = $1 OR target_id = $1")
        .bind(bob.user_id)
        .fetch_one(&app.db.owner)
        .await
        .expect("count");
    assert_eq!(stored, 0, "no entry stores a user id");

    // Filters.
    let count = |query: String| {
        let app = &app;
        let audit = &audit;
        let token = alice.access.clone();
        async move {
            let (status, page) = app.get(&format!("{audit}?{query}"), Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            entries(&page).len()
        }
    };
    assert_eq!(count("action=legal_hold".into()).await, 5);
    assert_eq!(count("action=legal_hold.lifted".into()).await, 1);
    assert_eq!(count(format!("actor_id={}", bob.user_id)).await, 1);
    assert_eq!(count(format!("actor_id={}", alice.user_id)).await, 5);
    assert_eq!(count(format!("target_type=legal_hold&target_id={}", hold_ids[0])).await, 2);
    assert_eq!(count("until=2000-01-01T00:00:00Z".into()).await, 0);
    assert_eq!(count("since=2000-01-01T00:00:00Z".into()).await, total);

    // Cursor paging walks everything exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("{audit}?limit=2&cursor={c}"),
            None => format!("{audit}?limit=2"),
        };
        let (status, page) = app.get(&query, Some(&alice.access)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(entries(&page).iter().map(|e| e["chain_seq"].as_i64().expect("seq")));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, seqs);
    for bad in ["limit=0", "limit=201", "cursor=abc", "actor_id=nope", "colour=red"] {
        let (status, err) = app.get(&format!("{audit}?{bad}"), Some(&alice.access)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
        assert!(matches!(error_code(&err), "validation_failed" | "invalid_query"), "{bad}: {err}");
    }

    // Export: JSON lines of the same entries, and the export itself is audited.
    let response =
        app.http.get(app.url(&format!("{audit}/export"))).bearer_auth(&alice.access).send().await.expect("export");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.expect("body");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), total);
    assert_eq!(lines, all);
    assert_eq!(count("action=audit.exported".into()).await, 1);

    // Verification through the API, then after tampering as the database owner.
    let (status, verdict) = app.get(&format!("{audit}/verify"), Some(&alice.access)).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict["intact"], true);
    assert_eq!(verdict["entries"], json!(total + 1));
    let mut tx = app.db.owner.begin().await.expect("begin");
    sqlx::query("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only").execute(&mut *tx).await.expect("off");
    sqlx::query("UPDATE audit_logs SET details = '{}' WHERE organization_id = $1 AND chain_seq = 2")
        .bind(org)
        .execute(&mut *tx)
        .await
        .expect("tamper");
    sqlx::query("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_append_only").execute(&mut *tx).await.expect("on");
    tx.commit().await.expect("commit");
    let (_, verdict) = app.get(&format!("{audit}/verify"), Some(&alice.access)).await;
    assert_eq!(verdict["intact"], false, "{verdict}");
    assert_eq!(verdict["first_broken_seq"], 2);
    assert_eq!(verdict["problem"], "hash mismatch");

    // Members: 403 with a stable code; other organizations: the 404 of an unknown id.
    for path in [audit.clone(), format!("{audit}/export"), format!("{audit}/verify")] {
        let (status, err) = app.get(&path, Some(&bob.access)).await;
        assert_eq!((status, error_code(&err)), (StatusCode::FORBIDDEN, "insufficient_role"), "{path}");
        let (status, err) = app.get(&path, Some(&mallory.access)).await;
        assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"), "{path}");
        let unknown = path.replace(&org.to_string(), &Uuid::new_v4().to_string());
        let (status, err) = app.get(&unknown, Some(&alice.access)).await;
        assert_eq!((status, error_code(&err)), (StatusCode::NOT_FOUND, "not_found"), "{unknown}");
    }
    let (status, theirs) = app.get(&format!("/v1/organizations/{their_org}/audit"), Some(&mallory.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(entries(&theirs).iter().all(|e| e["action"] != "legal_hold.placed"), "{theirs}");
}

#[tokio::test]
async fn contact_answers_and_removals_are_audited_with_pseudonyms() {
    let app = TestApp::start().await;
    let (ann_id, ann, _) = app.signed_in("ann@example.org").await;
    let (bea_id, bea, _) = app.signed_in("bea@example.org").await;
    let (_, cid, _) = app.signed_in("cid@example.org").await;
    let invite = |to: &'static str| {
        let app = &app;
        let ann = ann.clone();
        async move {
            let (status, sent) = app.post("/v1/contacts/invitations", json!({ "email": to }), Some(&ann)).await;
            assert_eq!(status, StatusCode::CREATED, "{sent}");
            sent["id"].as_str().expect("id").to_owned()
        }
    };
    let to_bea = invite("bea@example.org").await;
    let to_cid = invite("cid@example.org").await;
    let (status, _) = app.post(&format!("/v1/contacts/invitations/{to_bea}/accept"), json!({}), Some(&bea)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post(&format!("/v1/contacts/invitations/{to_cid}/decline"), json!({}), Some(&cid)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete(&format!("/v1/contacts/{bea_id}"), &ann).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let rows: Vec<(String, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "SELECT a.action, pa.subject_id, pt.subject_id FROM audit_logs a
           LEFT JOIN audit_pseudonyms pa ON pa.pseudonym = a.actor_user_id
           LEFT JOIN audit_pseudonyms pt ON pt.pseudonym = a.target_id
          WHERE a.action LIKE 'contact.%' ORDER BY a.chain_seq",
    )
    .fetch_all(&app.db.owner)
    .await
    .expect("entries");
    assert_eq!(
        rows,
        vec![
            ("contact.accepted".to_owned(), Some(bea_id), Some(ann_id)),
            ("contact.declined".to_owned(), rows[1].1, Some(ann_id)),
            ("contact.removed".to_owned(), Some(ann_id), Some(bea_id)),
        ]
    );
    assert!(rows[1].1.is_some(), "the decliner is named");
}
