//! Encrypted attachments, reactions and pins through the SDK, against a real data plane.

use std::path::Path;
use std::time::Duration;

use conclave_client::Error;
use conclave_client::content::{Content, FileContent};
use conclave_client::crypto::attachment::{CHUNK_SIZE, SEALED_CHUNK_SIZE, blob_len, encrypt_file};
use conclave_client::crypto::{CryptoError, FileKey};
use conclave_client::messenger::{Body, ListenEvent, Listener, ListenerOptions, ReceivedReaction};
use sha2::{Digest as _, Sha256};

use crate::messaging::group;
use crate::support::{TempDir, TestApp};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes
}

/// Files in `dir` whose names start with a dot (the SDK's temporary files).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

#[tokio::test]
async fn a_file_round_trips_encrypted_and_tampering_truncation_and_outsiders_are_refused() {
    let storage = TempDir::new("attachments");
    let app = TestApp::start_with(&["--attachments-dir", storage.0.to_str().expect("utf-8 path")]).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let carol = app.person("carol@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    // Carol is in the organization but not in the conversation.
    sqlx::query("INSERT INTO organization_memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')")
        .bind(org)
        .bind(carol.user_id)
        .execute(&app.db.owner)
        .await
        .expect("carol joins the organization");

    let files = TempDir::new("files");
    let plaintext = random_bytes(3 * 1024 * 1024 + 12_345);
    let source = files.0.join("report.pdf");
    std::fs::write(&source, &plaintext).expect("write the source");

    let sent = alice.messenger.send_file(org, conversation, &source).await.expect("send the file");

    // Bob sees a file message and downloads it, byte for byte.
    let history = bob.messenger.history(org, conversation, 10).await.expect("history");
    let Body::Content { content: Content::File(file) } = &history.last().expect("a message").body else {
        panic!("not a file: {:?}", history.last().map(|m| &m.body));
    };
    assert_eq!((file.name.as_str(), file.media_type.as_str()), ("report.pdf", "application/pdf"));
    assert_eq!(file.size, plaintext.len() as u64);
    let downloads = TempDir::new("downloads");
    let got = bob.messenger.download(org, conversation, sent.id, &downloads.0).await.expect("download");
    assert_eq!(got.path, downloads.0.join("report.pdf"));
    assert!(std::fs::read(&got.path).expect("read the download") == plaintext, "the file differs");
    assert!(leftovers(&downloads.0).is_empty());

    // The server stores ciphertext only: the right size, and none of the plaintext.
    let blob_path = storage.0.join("blobs").join(file.attachment_id.to_string());
    let blob = std::fs::read(&blob_path).expect("the stored blob");
    assert_eq!(blob.len() as u64, blob_len(plaintext.len() as u64));
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&blob)), file.sha256);
    assert!(!blob.windows(64).any(|w| w == &plaintext[..64]), "the plaintext is in the stored blob");

    // Someone outside the conversation cannot download it.
    let err = carol
        .messenger
        .client()
        .download_attachment(org, conversation, file.attachment_id)
        .await
        .expect_err("carol is not a member");
    assert_eq!(err.api().map(|e| e.status.as_u16()), Some(404), "{err}");

    // A blob altered on the server fails its hash check; nothing is written.
    let mut tampered = blob.clone();
    tampered[SEALED_CHUNK_SIZE + 100] ^= 0x01;
    std::fs::write(&blob_path, &tampered).expect("tamper");
    let dest = downloads.0.join("tampered.pdf");
    let err = bob.messenger.download(org, conversation, sent.id, &dest).await.expect_err("tampered");
    assert!(matches!(&err, Error::Attachment(reason) if reason.contains("SHA-256")), "{err}");
    assert!(!dest.exists());
    assert!(leftovers(&downloads.0).is_empty(), "{:?}", leftovers(&downloads.0));

    // A blob cut short on the server is refused too.
    std::fs::write(&blob_path, &blob[..2 * SEALED_CHUNK_SIZE]).expect("truncate");
    let err = bob.messenger.download(org, conversation, sent.id, &dest).await.expect_err("truncated");
    assert!(!dest.exists(), "{err}");
    assert!(leftovers(&downloads.0).is_empty());

    // A sender who announces a truncated blob with a matching hash still fails at decryption:
    // the last chunk left was not sealed as final.
    let key = FileKey::generate().expect("key");
    let small = random_bytes(3 * CHUNK_SIZE);
    let cut = encrypt_file(&key, &small).expect("encrypt")[..2 * SEALED_CHUNK_SIZE].to_vec();
    let sha256: [u8; 32] = Sha256::digest(&cut).into();
    let body_bytes = cut.clone();
    let attachment = alice
        .messenger
        .client()
        .upload_attachment(org, conversation, cut.len() as u64, &sha256, || Ok(body_bytes.clone().into()))
        .await
        .expect("upload");
    let forged = FileContent {
        attachment_id: attachment.id,
        name: "cut.bin".into(),
        media_type: "application/octet-stream".into(),
        size: 2 * CHUNK_SIZE as u64,
        key,
        sha256,
    };
    let dest = downloads.0.join("cut.bin");
    let err = alice.messenger.download_file(org, conversation, &forged, &dest).await.expect_err("truncated");
    assert!(matches!(err, Error::Crypto(CryptoError::ChunkDecryptionFailed { index: 1 })), "{err}");
    assert!(err.to_string().contains("tampered with or truncated"), "{err}");
    assert!(!dest.exists());
    assert!(leftovers(&downloads.0).is_empty());
}

/// The next reaction event, skipping the others.
async fn next_reaction(listener: &mut Listener) -> ReceivedReaction {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ListenEvent::ReactionAdded(reaction) = listener.next().await.expect("listener") {
                return reaction;
            }
        }
    })
    .await
    .expect("a reaction within 10 s")
}

#[tokio::test]
async fn reactions_and_pins_round_trip_between_two_people() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let message = alice.messenger.send_text(org, conversation, "lunch?").await.expect("send");

    let mut alice_listens = alice.messenger.listen(org, &[], ListenerOptions::default()).await.expect("listen");
    bob.messenger.react(org, conversation, message.id, "👍").await.expect("react");
    let heard = next_reaction(&mut alice_listens).await;
    assert_eq!((heard.value(), heard.user_id, heard.message_id), (Some("👍"), bob.user_id, message.id));

    let err = bob.messenger.react(org, conversation, message.id, "👍").await.expect_err("twice");
    assert!(err.is_api("reaction_exists"), "{err}");

    // After a rotation the next reaction uses generation 2; both still open.
    alice.messenger.rotate(org, conversation).await.expect("rotate");
    let party = bob.messenger.react(org, conversation, message.id, "🎉").await.expect("react again");
    assert_eq!(party.key_generation, 2);
    let reactions = alice.messenger.reactions(org, conversation, message.id).await.expect("reactions");
    let values: Vec<_> = reactions.iter().map(|r| (r.value(), r.key_generation)).collect();
    assert_eq!(values, vec![(Some("👍"), 1), (Some("🎉"), 2)]);
    // The server holds ciphertext only.
    let raw = alice.messenger.client().reactions(org, conversation, message.id).await.expect("raw");
    assert!(raw.iter().all(|r| !r.ciphertext.windows(4).any(|w| w == "👍".as_bytes())));

    assert_eq!(bob.messenger.unreact(org, conversation, message.id, "👍").await.expect("unreact"), 1);
    assert_eq!(bob.messenger.unreact(org, conversation, message.id, "👍").await.expect("unreact"), 0);
    let removed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ListenEvent::ReactionRemoved { value, user_id, .. } = alice_listens.next().await.expect("listener") {
                return (value, user_id);
            }
        }
    })
    .await
    .expect("a removal within 10 s");
    assert_eq!(removed, (Some("👍".to_owned()), bob.user_id));
    let left = bob.messenger.reactions(org, conversation, message.id).await.expect("reactions");
    assert_eq!(left.iter().map(|r| r.value()).collect::<Vec<_>>(), vec![Some("🎉")]);

    // Pins: Alice pins, Bob sees and unpins.
    let pin = alice.messenger.pin(org, conversation, message.id).await.expect("pin");
    assert_eq!((pin.message_id, pin.pinned_by), (message.id, Some(alice.user_id)));
    let err = bob.messenger.pin(org, conversation, message.id).await.expect_err("pinned twice");
    assert!(err.is_api("already_pinned"), "{err}");
    let pins = bob.messenger.pins(org, conversation).await.expect("pins");
    assert_eq!(pins.iter().map(|p| p.message_id).collect::<Vec<_>>(), vec![message.id]);
    bob.messenger.unpin(org, conversation, message.id).await.expect("unpin");
    assert!(alice.messenger.pins(org, conversation).await.expect("pins").is_empty());
    alice_listens.close().await;
}

#[tokio::test]
async fn reactions_and_pins_reach_a_listener_on_another_replica() {
    let app = TestApp::start().await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let message = alice.messenger.send_text(org, conversation, "on replica one").await.expect("send");

    let (replica, _stop) = app.replica().await;
    let alice_there = alice.on(&replica);
    let mut listens = alice_there.listen(org, &[], ListenerOptions::default()).await.expect("listen");
    bob.messenger.react(org, conversation, message.id, "🚀").await.expect("react on replica one");
    let heard = next_reaction(&mut listens).await;
    assert_eq!((heard.value(), heard.user_id), (Some("🚀"), bob.user_id));
    bob.messenger.pin(org, conversation, message.id).await.expect("pin on replica one");
    let pinned = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ListenEvent::Pinned(pin) = listens.next().await.expect("listener") {
                return pin;
            }
        }
    })
    .await
    .expect("a pin within 10 s");
    assert_eq!((pinned.message_id, pinned.pinned_by), (message.id, Some(bob.user_id)));
    // The other replica reads the same state, and opens the reaction with the keystore it loaded.
    let reactions = alice_there.reactions(org, conversation, message.id).await.expect("reactions");
    assert_eq!(reactions.iter().map(|r| r.value()).collect::<Vec<_>>(), vec![Some("🚀")]);
    listens.close().await;
}

/// `conclave --profile P <command> --org O --conversation C <rest>`.
async fn cli_in(
    app: &TestApp,
    profile: &str,
    org: &str,
    conversation: &str,
    args: Vec<String>,
) -> anyhow::Result<String> {
    let mut full = vec!["--profile", profile, &args[0], "--org", org, "--conversation", conversation];
    full.extend(args[1..].iter().map(String::as_str));
    app.cli(&full).await
}

#[tokio::test]
async fn the_cli_sends_and_downloads_files_reacts_and_pins() {
    let storage = TempDir::new("attachments");
    let app = TestApp::start_with(&["--attachments-dir", storage.0.to_str().expect("utf-8 path")]).await;
    let alice = app.person("alice@example.org").await;
    let bob = app.person("bob@example.org").await;
    let (org, conversation) = group(&app, &alice, &[&bob]).await;
    let (org_s, conv_s) = (org.to_string(), conversation.to_string());
    let at = |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).collect() };
    let run = |profile: &'static str, args: Vec<String>| cli_in(&app, profile, &org_s, &conv_s, args);

    let out = run("alice", at(&["send", "lunch?"])).await.expect("send");
    assert!(out.contains("#1"), "{out}");

    // Bob listens while Alice reacts and then sends a second message.
    let listen_args = ["--profile", "bob", "listen", "--org", &org_s, "--count", "1"];
    let listen = app.cli(&listen_args);
    let act = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        run("alice", at(&["react", "--message", "#1", "🍕"])).await.expect("react");
        run("alice", at(&["send", "pizza then"])).await
    };
    let (heard, sent) = tokio::join!(listen, act);
    sent.expect("second send");
    let heard = heard.expect("listen");
    assert!(heard.contains("reacted 🍕"), "{heard}");

    let out = run("bob", at(&["react", "--message", "#1", "👍"])).await.expect("react");
    assert!(out.contains("Reacted 👍"), "{out}");
    let out = run("alice", at(&["history"])).await.expect("history");
    assert!(out.contains("reactions: 🍕 ") && out.contains("👍 "), "{out}");
    run("bob", at(&["react", "--message", "#1", "👍", "--remove"])).await.expect("unreact");
    let err = run("bob", at(&["react", "--message", "#1", "👍", "--remove"])).await.expect_err("nothing left");
    assert!(err.to_string().contains("no reaction"), "{err}");

    let out = run("bob", at(&["pin", "--message", "#2"])).await.expect("pin");
    assert!(out.contains("Pinned"), "{out}");
    let out = run("alice", at(&["pins"])).await.expect("pins");
    let message_two = out.split_whitespace().next().expect("a pin line").to_owned();
    assert!(out.contains("pinned by"), "{out}");
    run("alice", at(&["pin", "--message", &message_two, "--remove"])).await.expect("unpin");
    let out = run("alice", at(&["pins"])).await.expect("pins");
    assert!(out.contains("No pinned messages"), "{out}");

    // A file, through the CLI both ways.
    let files = TempDir::new("cli-files");
    let plaintext = random_bytes(200_000);
    let source = files.0.join("notes.txt");
    std::fs::write(&source, &plaintext).expect("write");
    let source_s = source.to_str().expect("utf-8 path").to_owned();
    let out = run("alice", vec!["send".into(), "--file".into(), source_s]).await.expect("send --file");
    assert!(out.contains("#3"), "{out}");
    let out = run("bob", at(&["history"])).await.expect("history");
    assert!(out.contains("[file \"notes.txt\", text/plain, 200000 bytes] (conclave download --message #3)"), "{out}");
    let dest = files.0.join("copy.txt");
    let dest_s = dest.to_str().expect("utf-8 path").to_owned();
    let out = run("bob", vec!["download".into(), "--message".into(), "#3".into(), "--output".into(), dest_s])
        .await
        .expect("download");
    assert!(out.contains("verified"), "{out}");
    assert!(std::fs::read(&dest).expect("read") == plaintext);
    let err = run("bob", at(&["download", "--message", "#1"])).await.expect_err("not a file");
    assert!(err.to_string().contains("not a file"), "{err}");
}
