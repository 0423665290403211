use std::time::Duration;

use conclave_client::crypto::DeviceKeys;
use conclave_client::{Client, Error};
use conclave_protocol::auth::LoginRequest;
use conclave_protocol::devices::Platform;
use reqwest::StatusCode;

use crate::support::{PASSWORD, TestApp};

#[tokio::test]
async fn a_person_registers_confirms_by_email_and_signs_in_through_the_sdk() {
    let app = TestApp::start().await;
    let client = Client::new(&app.base).expect("client");
    let registered = client.register(" Alice@Example.org ", PASSWORD, "Alice").await.expect("register");
    assert_eq!(registered.email, "alice@example.org");
    assert!(registered.confirmation_email_sent);

    let keys = DeviceKeys::generate().expect("keys");
    let login =
        LoginRequest::with_new_device("alice@example.org", PASSWORD, keys.registration("laptop", Platform::Cli));
    let refused = client.login(&login).await.expect_err("not confirmed yet");
    let api = refused.api().expect("an API error");
    assert_eq!((api.status, api.code.as_str()), (StatusCode::FORBIDDEN, "email_not_confirmed"));
    assert!(!api.message.is_empty());

    client.confirm_email(&app.confirmation_token("alice@example.org").await).await.expect("confirm");
    let pair = client.login(&login).await.expect("login");
    assert_eq!(client.me().await.expect("me").user_id, pair.user_id);
    assert!(!format!("{pair:?}").contains(&pair.access_token), "Debug hides the tokens");

    let me = client.me().await.expect("me");
    assert_eq!((me.email.as_str(), me.device_id), ("alice@example.org", pair.device_id));
    let devices = client.devices().await.expect("devices");
    assert_eq!(devices.len(), 1);
    assert!(devices[0].current);
    assert_eq!(devices[0].ed25519_public_key, keys.public());

    // Signing in again on the registered device, by id.
    let again = Client::new(&app.base).expect("client");
    let pair2 = again
        .login(&LoginRequest::on_device(
            login.email.clone(),
            PASSWORD,
            pair.device_id,
            keys.device_proof(&login.email, pair.device_id),
        ))
        .await
        .expect("login by device id, with the device's proof");
    assert_eq!(pair2.device_id, pair.device_id);
    // A password and a device id are not enough.
    let mut unproven = LoginRequest::on_device(
        login.email.clone(),
        PASSWORD,
        pair.device_id,
        keys.device_proof(&login.email, pair.device_id),
    );
    unproven.device_proof = None;
    let err = again.login(&unproven).await.expect_err("no proof");
    assert_eq!(err.api().map(|e| e.code.as_str()), Some("validation_failed"), "{err}");

    client.logout().await.expect("logout");
    assert!(matches!(client.me().await, Err(Error::NotSignedIn)));
}

#[tokio::test]
async fn a_wrong_password_is_an_api_error_with_the_servers_code() {
    let app = TestApp::start().await;
    let person = app.person("bob@example.org").await;
    let client = Client::new(&app.base).expect("client");
    let proof = person.messenger.with_keystore(|k| k.device().device_proof(&person.email, person.device_id));
    let login = LoginRequest::on_device(person.email.clone(), "not the password at all", person.device_id, proof);
    let err = client.login(&login).await.expect_err("wrong password");
    let api = err.api().expect("an API error");
    assert_eq!((api.status, api.code.as_str()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    assert_eq!(err.to_string(), format!("{} (invalid_credentials, HTTP 401)", api.message));
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_and_the_new_pair_saved_before_it_is_used() {
    // Access tokens live one second (plus the server's five seconds of leeway).
    let app = TestApp::start_with(&["--access-token-ttl", "1"]).await;
    let person = app.person("carol@example.org").await;
    let before = person.profile.load_session().expect("load").expect("session");
    tokio::time::sleep(Duration::from_secs(7)).await;

    let me = person.messenger.client().me().await.expect("me, after a transparent refresh");
    assert_eq!(me.user_id, person.user_id);
    let after = person.profile.load_session().expect("load").expect("session");
    assert_ne!(after.tokens.refresh_token, before.tokens.refresh_token, "the rotated refresh token was saved");
    assert_eq!(after.tokens.access_token, person.messenger.client().access_token().await.expect("token"));

    // The saved pair is the live one: a new process (here, the CLI) carries on with it.
    let out = app.cli(&["--profile", "carol", "whoami"]).await.expect("whoami through the CLI");
    assert!(out.contains("carol@example.org"), "{out}");
}
