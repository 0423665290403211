//! Someone signing in through the SDK on a new device, as the CLI does: the one copy of this
//! sequence, used by the SDK's tests and by the end-to-end suite (`e2e/tests/support/mod.rs`
//! includes this file with `#[path]`).
//!
//! Why a file shared by path rather than a testkit function: the sequence needs the SDK's types
//! (keystore, session, messenger), and testkit stays free of the SDK (the SDK's tests depend on
//! testkit, and the data plane's tests on testkit without the SDK). The part that needs no SDK,
//! registering and confirming the account by email, is testkit's `accounts::register_confirmed`.

use conclave_client::api::{Client, TokenSink};
use conclave_client::messenger::Messenger;
use conclave_client::store::{Profile, SESSION_VERSION, Session};
use conclave_protocol::auth::LoginRequest;
use conclave_protocol::devices::Platform;
use conclave_testkit::accounts::{PASSWORD, register_confirmed};
use conclave_testkit::smtp::MailCatcher;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

/// A signed-in person: their profile on disk (keys, session, device directory) and their
/// messaging engine.
pub struct Person {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub email: String,
    pub profile: Profile,
    pub messenger: Messenger,
}

/// Registers `email` on the data plane at `base`, confirms it with the token mailed to `mail`,
/// and signs in through the SDK with a new device whose keys and session go to the profile in
/// `profile_dir`.
pub async fn sign_up(base: &str, mail: &MailCatcher, email: &str, display_name: &str, profile_dir: PathBuf) -> Person {
    let user_id = register_confirmed(&reqwest::Client::new(), base, mail, email, PASSWORD, display_name)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let person = sign_in_new_device(base, email, profile_dir).await;
    assert_eq!(person.user_id, user_id);
    person
}

/// Signs `email` (an existing account) in through the SDK with a new device whose keys and
/// session go to the profile in `profile_dir`.
pub async fn sign_in_new_device(base: &str, email: &str, profile_dir: PathBuf) -> Person {
    let profile = Profile::open(profile_dir).expect("profile");
    let (mut keystore, created) = profile.load_or_create_keystore().expect("keystore");
    assert!(created, "a new device");
    let login = LoginRequest::with_new_device(email, PASSWORD, keystore.device().registration("laptop", Platform::Cli));
    let pair = Client::new(base).expect("client").login(&login).await.expect("login");
    keystore.set_device_id(pair.device_id);
    keystore.save().expect("save keystore");
    let session = Session {
        version: SESSION_VERSION,
        server: base.to_owned(),
        user_id: pair.user_id,
        email: email.to_owned(),
        device_id: pair.device_id,
        tokens: conclave_client::api::Tokens {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
        },
    };
    profile.save_session(&session).expect("save session");
    let sink: Arc<dyn TokenSink> = Arc::new(profile.token_sink(session.clone()));
    let client = Client::with_session(base, session.tokens.clone(), Some(sink)).expect("client");
    let messenger = Messenger::new(client, keystore, pair.user_id, pair.device_id);
    // As `conclave login` does: the account's first device makes the identity key (a later one
    // waits for a link) and publishes key packages, so that others can add it to groups.
    messenger.ensure_identity().await.expect("identity");
    Person { user_id: pair.user_id, device_id: pair.device_id, email: email.to_owned(), profile, messenger }
}
