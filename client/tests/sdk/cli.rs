use std::time::Duration;

use crate::support::TestApp;

#[tokio::test]
async fn the_cli_takes_two_people_from_registration_to_an_encrypted_conversation() {
    let app = TestApp::start().await;
    for (profile, email, name) in [("alice", "alice@example.org", "Alice"), ("bob", "bob@example.org", "Bob")] {
        let out = app
            .cli(&["--profile", profile, "register", "--email", email, "--display-name", name])
            .await
            .expect("register");
        assert!(out.contains("Check your email"), "{out}");
        let token = app.confirmation_token(email).await;
        app.cli(&["--profile", profile, "confirm", &token]).await.expect("confirm");
        let out = app.cli(&["--profile", profile, "login", "--email", email]).await.expect("login");
        assert!(out.contains("new device registered"), "{out}");
    }
    let alice_id = app.cli(&["--profile", "alice", "--json", "whoami"]).await.expect("whoami");
    let alice_id: serde_json::Value = serde_json::from_str(&alice_id).expect("json");
    let bob_id = app.cli(&["--profile", "bob", "--json", "whoami"]).await.expect("whoami");
    let bob_id: serde_json::Value = serde_json::from_str(&bob_id).expect("json");
    let ids = [&alice_id["user_id"], &bob_id["user_id"]].map(|v| v.as_str().expect("id").parse().expect("uuid"));
    app.organization("acme", &ids).await;

    let out = app.cli(&["--profile", "alice", "orgs"]).await.expect("orgs");
    assert!(out.contains("acme"), "{out}");
    let out = app.cli(&["--profile", "bob", "workspaces", "--org", "acme"]).await.expect("workspaces");
    assert!(out.contains("general"), "{out}");

    // Alice owns the organization, so she may look Bob up by email.
    let out = app
        .cli(&[
            "--profile",
            "alice",
            "--json",
            "create-conversation",
            "--org",
            "acme",
            "--workspace",
            "general",
            "--kind",
            "channel",
            "--name",
            "lunch",
            "--member",
            "bob@example.org",
        ])
        .await
        .expect("create");
    let conversation: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(conversation["members"].as_array().map(Vec::len), Some(2));

    // Bob listens for one message while Alice sends it.
    let listen = app.cli(&["--profile", "bob", "listen", "--org", "acme", "--conversation", "lunch", "--count", "1"]);
    let send = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.cli(&["--profile", "alice", "send", "--org", "acme", "--conversation", "#lunch", "pizza at noon?"]).await
    };
    let (heard, sent) =
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(listen, send) }).await.expect("within 20 s");
    assert!(sent.expect("send").contains("Sent"));
    let heard = heard.expect("listen");
    assert!(
        heard.trim_end().ends_with("alice@example.org: pizza at noon?") || heard.contains("Alice: pizza at noon?"),
        "{heard}"
    );

    app.cli(&["--profile", "bob", "send", "--org", "acme", "--conversation", "lunch", "yes!"]).await.expect("reply");
    let history =
        app.cli(&["--profile", "alice", "history", "--org", "acme", "--conversation", "lunch"]).await.expect("history");
    let lines: Vec<_> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(lines[0].starts_with('[') && lines[0].ends_with("] alice@example.org: pizza at noon?"), "{history}");
    assert!(lines[1].ends_with("] bob@example.org: yes!"), "{history}");

    // Bob is not an admin: he may name a colleague by exact email, and an address that is not a
    // member of the organization is refused without saying whether it exists elsewhere.
    let err = app
        .cli(&["--profile", "bob", "invite", "--org", "acme", "--conversation", "lunch", "--member", "x@example.org"])
        .await
        .expect_err("not a member");
    assert!(err.to_string().contains("\"x@example.org\" is not a member of this organization"), "{err}");

    // Errors carry the server's message and code.
    let err = app
        .cli(&[
            "--profile",
            "alice",
            "create-conversation",
            "--org",
            "acme",
            "--workspace",
            "general",
            "--kind",
            "channel",
        ])
        .await
        .expect_err("a channel needs a name");
    assert!(err.to_string().contains("validation_failed"), "{err}");

    let out = app.cli(&["--profile", "alice", "logout"]).await.expect("logout");
    assert!(out.contains("Signed out"), "{out}");
    let err = app.cli(&["--profile", "alice", "whoami"]).await.expect_err("signed out");
    assert!(err.to_string().contains("not signed in"), "{err}");
    // The device and its keys stay: signing in again reuses them.
    let out = app.cli(&["--profile", "alice", "login", "--email", "alice@example.org"]).await.expect("login");
    assert!(out.contains("existing device"), "{out}");
    let history =
        app.cli(&["--profile", "alice", "history", "--org", "acme", "--conversation", "lunch"]).await.expect("history");
    assert!(history.contains("pizza at noon?"), "{history}");
}

#[tokio::test]
async fn conclave_call_rings_and_conclave_call_answer_talks_back_over_a_data_channel() {
    let app = TestApp::start().await;
    let alice = app.person("alice@cli-call.test").await;
    let bob = app.person("bob@cli-call.test").await;
    let (org, conversation) = crate::messaging::group(&app, &alice, &[&bob]).await;
    let (org, conversation) = (org.to_string(), conversation.to_string());

    // Nothing rings yet: answering fails with a message, not a hang.
    let error = app
        .cli(&["--profile", "bob", "call", "--org", &org, "--answer", &conversation, "--wait", "1"])
        .await
        .expect_err("nothing to answer");
    assert!(error.to_string().contains("no call rang within 1 s"), "{error:#}");

    let answering = [
        "--profile",
        "bob",
        "call",
        "--org",
        &org,
        "--answer",
        &conversation,
        "--send",
        "hello alice",
        "--count",
        "1",
        "--wait",
        "20",
    ];
    let answer = app.cli(&answering);
    let place = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.cli(&[
            "--profile",
            "alice",
            "call",
            "--org",
            &org,
            &conversation,
            "--kind",
            "video",
            "--send",
            "hello bob",
            "--count",
            "1",
            "--wait",
            "20",
        ])
        .await
    };
    let (answered, placed) = tokio::join!(answer, place);
    let (answered, placed) = (answered.expect("bob answers"), placed.expect("alice calls"));
    assert!(placed.contains("Calling…") && placed.contains("Connected directly"), "{placed}");
    assert!(placed.contains("< hello alice") && placed.contains("Hung up."), "{placed}");
    assert!(answered.contains("Answered") && answered.contains("< hello bob"), "{answered}");

    let records = alice.messenger.client().calls(org.parse().expect("uuid"), conversation.parse().expect("uuid")).await;
    let record = records.expect("records").into_iter().next().expect("one call");
    assert_eq!(record.kind, conclave_protocol::calls::CallKind::Video);
    assert!(record.answered_at.is_some() && record.ended_at.is_some(), "{record:?}");
}

#[tokio::test]
async fn conclave_listen_shows_an_incoming_call_with_the_command_that_answers_it() {
    let app = TestApp::start().await;
    let alice = app.person("alice@cli-ring.test").await;
    let bob = app.person("bob@cli-ring.test").await;
    let (org, conversation) = crate::messaging::group(&app, &alice, &[&bob]).await;
    let (org_text, conversation_text) = (org.to_string(), conversation.to_string());
    // Bob listens until one message arrives; meanwhile Alice calls, gives up, and writes.
    let listening =
        ["--profile", "bob", "listen", "--org", &org_text, "--conversation", &conversation_text, "--count", "1"];
    let listen = app.cli(&listening);
    let call_then_write = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kind = conclave_protocol::calls::CallKind::Video;
        let call = alice.messenger.start_call(org, conversation, kind).await.expect("start");
        alice.messenger.hang_up(org, conversation, call.id).await.expect("cancel");
        alice.messenger.send_text(org, conversation, "sorry, wrong button").await.expect("send");
        call.id
    };
    let (heard, call_id) = tokio::join!(listen, call_then_write);
    let heard = heard.expect("listen");
    let answer =
        format!("is calling (video, call {call_id}): answer with `conclave call --answer --org {org} {conversation}`");
    assert!(heard.contains(&answer), "{heard}");
    // Cancelled before Bob answered: to him, a missed call.
    assert!(heard.contains("* missed video call from alice"), "{heard}");
    assert!(heard.contains("sorry, wrong button"), "{heard}");
}

#[tokio::test]
async fn conclave_call_relay_only_connects_through_the_deployments_coturn() {
    let secret = "cli-relay-turn-secret";
    let turn = conclave_testkit::turn::Coturn::start(secret).await.expect("coturn");
    let app = TestApp::start_with(&["--turn-urls", &turn.uri(), "--turn-shared-secret", secret]).await;
    let alice = app.person("alice@cli-relay.test").await;
    let bob = app.person("bob@cli-relay.test").await;
    let (org, conversation) = crate::messaging::group(&app, &alice, &[&bob]).await;
    let (org, conversation) = (org.to_string(), conversation.to_string());
    let answering = [
        "--profile",
        "bob",
        "call",
        "--org",
        &org,
        "--answer",
        &conversation,
        "--relay-only",
        "--send",
        "via relay",
        "--count",
        "1",
        "--wait",
        "20",
    ];
    let placing = [
        "--profile",
        "alice",
        "call",
        "--org",
        &org,
        &conversation,
        "--relay-only",
        "--send",
        "relayed too",
        "--count",
        "1",
        "--wait",
        "20",
    ];
    let place = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.cli(&placing).await
    };
    let (answered, placed) = tokio::join!(app.cli(&answering), place);
    let (answered, placed) = (answered.expect("bob answers"), placed.expect("alice calls"));
    assert!(placed.contains("Connected through the TURN relay") && placed.contains("< via relay"), "{placed}");
    assert!(answered.contains("Connected through the TURN relay") && answered.contains("< relayed too"), "{answered}");
}

#[tokio::test]
async fn conclave_call_relay_only_without_a_turn_server_is_refused_with_a_message() {
    let app = TestApp::start().await;
    let alice = app.person("alice@cli-noturn.test").await;
    let bob = app.person("bob@cli-noturn.test").await;
    let (org, conversation) = crate::messaging::group(&app, &alice, &[&bob]).await;
    let (org, conversation) = (org.to_string(), conversation.to_string());
    let error = app
        .cli(&["--profile", "alice", "call", "--org", &org, &conversation, "--relay-only", "--wait", "1"])
        .await
        .expect_err("no relay to use");
    let text = format!("{error:#}");
    assert!(
        text.contains("--relay-only needs the deployment's TURN server") && text.contains("turn_not_configured"),
        "{text}"
    );
}

#[tokio::test]
async fn conclave_history_shows_calls_in_place_and_listen_tells_how_each_ended() {
    let app = TestApp::start().await;
    let alice = app.person("alice@cli-history.test").await;
    let bob = app.person("bob@cli-history.test").await;
    let (org, conversation) = crate::messaging::group(&app, &alice, &[&bob]).await;
    let (org_text, conversation_text) = (org.to_string(), conversation.to_string());
    let (a, b) = (&alice.messenger, &bob.messenger);
    a.send_text(org, conversation, "lunch?").await.expect("send");

    // Bob listens until one more message arrives; meanwhile they talk, he calls back and Alice
    // declines, and she writes.
    let listening =
        ["--profile", "bob", "listen", "--org", &org_text, "--conversation", &conversation_text, "--count", "1"];
    let listen = app.cli(&listening);
    let calls_then_write = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let video = conclave_protocol::calls::CallKind::Video;
        let talked = a.start_call(org, conversation, video).await.expect("start");
        b.accept_call(org, conversation, talked.id).await.expect("answer");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        a.hang_up(org, conversation, talked.id).await.expect("hang up");
        b.hang_up(org, conversation, talked.id).await.expect("hang up");
        let declined = b.start_call(org, conversation, conclave_protocol::calls::CallKind::Audio).await.expect("start");
        a.decline_call(org, conversation, declined.id).await.expect("decline");
        a.send_text(org, conversation, "bye").await.expect("send");
    };
    let (heard, ()) = tokio::join!(listen, calls_then_write);
    let heard = heard.expect("listen");
    let lines: Vec<&str> = heard.lines().filter(|line| line.starts_with("* ") && line.contains(" call ")).collect();
    assert_eq!(lines.len(), 3, "a ring, and one line as each call ended: {heard}");
    // People as messages name them (addresses where the reader may see them, else names).
    assert!(lines[0].starts_with("* alice is calling (video"), "{heard}");
    assert!(lines[1].starts_with("* video call started by alice, "), "{heard}");
    assert!(lines[1].ends_with('s') && !lines[1].ends_with(", 0s"), "lasted a second or more: {heard}");
    assert_eq!(lines[2], "* audio call started by bob@cli-history.test, declined", "{heard}");

    let history = |who: &'static str| {
        let (app, org, conversation) = (&app, &org_text, &conversation_text);
        async move { app.cli(&["--profile", who, "history", "--org", org, "--conversation", conversation]).await }
    };
    let (alice_sees, bob_sees) = (history("alice").await.expect("history"), history("bob").await.expect("history"));
    for (out, alice, declined) in [
        (&alice_sees, "alice@cli-history.test", "] — declined audio call from bob@cli-history.test"),
        (&bob_sees, "alice", "] — audio call started by bob@cli-history.test, declined"),
    ] {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].ends_with(&format!("] {alice}: lunch?")), "{out}");
        assert!(lines[1].contains(&format!("] — video call started by {alice}, ")), "{out}");
        assert!(lines[1].ends_with('s') && !lines[1].ends_with(", 0s"), "{out}");
        assert!(lines[2].starts_with('[') && lines[2].ends_with(declined), "{out}");
        assert!(lines[3].ends_with(&format!("] {alice}: bye")), "{out}");
    }
    // The newest three alone; as JSON, typed entries.
    let limited = app
        .cli(&[
            "--profile",
            "alice",
            "history",
            "--org",
            &org_text,
            "--conversation",
            &conversation_text,
            "--limit",
            "3",
        ])
        .await
        .expect("history");
    assert_eq!(limited.lines().collect::<Vec<_>>(), alice_sees.lines().skip(1).collect::<Vec<_>>());
    let json = app
        .cli(&["--profile", "bob", "--json", "history", "--org", &org_text, "--conversation", &conversation_text])
        .await
        .expect("history");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    let types: Vec<&str> = json.as_array().expect("list").iter().map(|i| i["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["message", "call", "call", "message"], "{json}");
    assert_eq!((json[1]["direction"].as_str(), json[1]["outcome"].as_str()), (Some("incoming"), Some("answered")));
    assert!(json[1]["duration_seconds"].as_u64().is_some_and(|s| s >= 1), "{json}");
    assert_eq!((json[2]["direction"].as_str(), json[2]["outcome"].as_str()), (Some("outgoing"), Some("declined")));
}
