//! Accounts made through the HTTP API the way a person makes one: register, then confirm with
//! the token the data plane emails. Plain JSON over HTTP, so the data plane's API tests, the
//! SDK's tests and the end-to-end suite all stand on the same sequence.

use crate::smtp::MailCatcher;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// The password the tests' people use.
pub const PASSWORD: &str = "correct horse battery staple";

/// How long the confirmation email may take to arrive.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(15);

async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<(reqwest::StatusCode, Value)> {
    let response = http.post(&url).json(&body).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// Registers `email` on the data plane at `base` and confirms it with the token mailed to
/// `mail`; returns the new account's id.
pub async fn register_confirmed(
    http: &reqwest::Client,
    base: &str,
    mail: &MailCatcher,
    email: &str,
    password: &str,
    display_name: &str,
) -> Result<Uuid> {
    let body = json!({ "email": email, "password": password, "display_name": display_name });
    let (status, body) = post(http, format!("{base}/v1/auth/register"), body).await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("registering {email}: {status} {body}");
    }
    let token = mail
        .wait_for(email, "Confirm", MAIL_TIMEOUT)
        .await
        .with_context(|| format!("no confirmation email to {email} within {MAIL_TIMEOUT:?}"))?
        .token("cve_")
        .with_context(|| format!("no cve_ token in the confirmation email to {email}"))?;
    let (status, body) = post(http, format!("{base}/v1/auth/confirm-email"), json!({ "token": token })).await?;
    if status != reqwest::StatusCode::OK {
        bail!("confirming {email}: {status} {body}");
    }
    body["user_id"].as_str().and_then(|s| s.parse().ok()).with_context(|| format!("no user_id in {body}"))
}
