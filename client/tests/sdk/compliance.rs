//! A privacy export, made readable on a device that holds the keys (docs/compliance.md).

use conclave_client::messenger::Body;
use conclave_protocol::archive;
use conclave_protocol::compliance::PrivacyRequestKind;
use serde_json::Value;

use crate::identity::link_code;
use crate::messaging::group;
use crate::signin::sign_in_new_device;
use crate::support::TestApp;

fn messages_of(tar: &[u8]) -> Vec<Value> {
    let files = archive::files(tar).expect("an archive");
    let (_, data) = files.iter().find(|(name, _)| name == "messages.json").expect("messages.json");
    serde_json::from_slice(data).expect("JSON")
}

#[tokio::test]
async fn an_export_is_ciphertext_until_a_device_of_its_owner_makes_it_readable() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    alice.messenger.send_text(org, conversation, "for the record").await.expect("send");
    bob.messenger.send_text(org, conversation, "bob's own words").await.expect("bob sends");
    alice.messenger.send_text(org, conversation, "and a second").await.expect("send");

    // Alice asks for her data; she owns the organization, so she approves it too.
    let client = alice.messenger.client();
    let request = client.file_privacy_request(org, PrivacyRequestKind::Export).await.expect("file");
    client.approve_privacy_request(org, request.id, None).await.expect("approve");
    let export = client.download_export(request.id).await.expect("download");
    let again = client.download_export(request.id).await.expect_err("the link works once");
    assert!(again.is_api("export_unavailable"), "{again:?}");

    // What the server hands over is ciphertext: her two messages, none of the text.
    let exported = messages_of(&export);
    assert_eq!(exported.len(), 2, "only what she sent");
    for needle in ["for the record", "and a second", "bob's own words"] {
        assert!(!export.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle:?} in the export");
    }

    // Her device turns it into a readable archive: the same files, each message with its text.
    let readable = alice.messenger.read_export(&export).await.expect("read");
    assert_eq!((readable.readable, readable.unreadable), (2, 0));
    let shown: Vec<_> = messages_of(&readable.archive).iter().map(|m| m["shown_as"].clone()).collect();
    assert_eq!(shown, ["for the record", "and a second"]);
    let files = archive::files(&readable.archive).expect("a readable archive");
    let names: Vec<_> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.contains(&"account.json") && names.contains(&"audit.json"), "every file kept: {names:?}");

    // The same with the CLI: ask, (the owner approves,) download, read.
    let out =
        app.cli(&["--profile", "alice", "--json", "privacy", "request", "--org", "acme", "export"]).await.expect("cli");
    let filed: Value = serde_json::from_str(&out).expect("JSON");
    let id: uuid::Uuid = filed["id"].as_str().expect("id").parse().expect("uuid");
    client.approve_privacy_request(org, id, None).await.expect("approve");
    let dir = app.home.0.join("exports");
    std::fs::create_dir_all(&dir).expect("dir");
    let (tar, readable_tar) = (dir.join("export.tar"), dir.join("readable.tar"));
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
    app.cli(&["--profile", "alice", "privacy", "download", &id.to_string(), "--out", &path(&tar)])
        .await
        .expect("download");
    let out = app
        .cli(&["--profile", "alice", "privacy", "read", &path(&tar), "--out", &path(&readable_tar)])
        .await
        .expect("read");
    assert!(out.contains("2 messages readable on this device, 0 not"), "{out}");
    let shown: Vec<_> =
        messages_of(&std::fs::read(&readable_tar).expect("file")).iter().map(|m| m["shown_as"].clone()).collect();
    assert_eq!(shown, ["for the record", "and a second"]);
    let listed = app.cli(&["--profile", "alice", "privacy"]).await.expect("list");
    assert_eq!(listed.lines().filter(|l| l.contains("export  completed")).count(), 2, "{listed}");

    // Another account's device does not read it...
    let err = bob.messenger.read_export(&export).await.expect_err("not bob's");
    assert!(err.to_string().contains("another account"), "{err}");
    // ...a damaged archive is refused...
    let mut damaged = export.clone();
    damaged[10] ^= 0x40;
    assert!(alice.messenger.read_export(&damaged).await.is_err());
    // ...and a device of hers that joined later says what it cannot read, and why.
    let laptop = sign_in_new_device(&app.base, "alice@example.org", app.home.0.join("profiles").join("alice-2")).await;
    let code = link_code(&laptop.messenger.ensure_identity().await.expect("the laptop waits for a link"));
    alice.messenger.link_device(&code).await.expect("link");
    laptop.messenger.ensure_identity().await.expect("the laptop receives the identity key");
    alice.messenger.rotate(org, conversation).await.expect("a commit adds the laptop");
    let partial = laptop.messenger.read_export(&export).await.expect("read on the laptop");
    assert_eq!((partial.readable, partial.unreadable), (0, 2));
    let first = &messages_of(&partial.archive)[0];
    assert_eq!(first["body"]["status"], "missing_key", "{first}");
    assert!(first["shown_as"].as_str().is_some_and(|s| s.contains("messages may be missing")), "{first}");
    assert_eq!(serde_json::to_value(Body::MissingKey { generation: 1 }).expect("json")["status"], "missing_key");
}
