//! Account email over SMTP (lettre). Emails carry single-use tokens, so they are sent directly
//! after the transaction that created the token commits, never queued in the database: the
//! database only ever holds the token's digest.

use crate::auth::credentials::Email;
use crate::config::{Config, Secret};
use anyhow::{Context, bail};
use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    pub public_url: String,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from: Mailbox = config.mail_from.parse().context("CONCLAVE_MAIL_FROM is not a mailbox")?;
        let transport = match config.smtp_url.as_ref().map(Secret::expose) {
            None => None,
            Some(url) => {
                let Some(rest) = url.strip_prefix("smtp://") else {
                    bail!("CONCLAVE_SMTP_URL must look like smtp://host:port (a relay on a trusted network)");
                };
                let rest = rest.trim_end_matches('/');
                let (host, port) = match rest.rsplit_once(':') {
                    Some((host, port)) => (host, port.parse::<u16>().context("CONCLAVE_SMTP_URL has an invalid port")?),
                    None => (rest, 25),
                };
                Some(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).build())
            }
        };
        Ok(Self { transport, from, public_url: config.public_url.trim_end_matches('/').to_owned() })
    }

    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends one plain-text email. Errors are logged without the body (it holds a token).
    pub async fn send(&self, to: &Email, subject: &str, body: String) -> anyhow::Result<()> {
        self.send_with_headers(to, subject, body, &[]).await
    }

    /// Sends one plain-text email with extra headers (`List-Unsubscribe`, ...).
    pub async fn send_with_headers(
        &self,
        to: &Email,
        subject: &str,
        body: String,
        headers: &[(&'static str, String)],
    ) -> anyhow::Result<()> {
        let Some(transport) = &self.transport else {
            bail!("email is not configured (CONCLAVE_SMTP_URL)");
        };
        let to: Mailbox = to.as_str().parse().context("recipient address")?;
        let mut builder = Message::builder().from(self.from.clone()).to(to).subject(subject);
        for (name, value) in headers {
            builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), value.clone()));
        }
        let message = builder.body(body)?;
        transport.send(message).await.context("SMTP delivery failed")?;
        Ok(())
    }

    /// [`Self::send_later`] when this deployment sends email, with the body `compose` makes from
    /// the public URL; whether it was sent.
    pub fn send_if_enabled(
        self: &std::sync::Arc<Self>,
        to: Email,
        subject: &'static str,
        compose: impl FnOnce(&str) -> String,
    ) -> bool {
        if !self.enabled() {
            return false;
        }
        let body = compose(&self.public_url);
        self.send_later(to, subject, body);
        true
    }

    /// Sends in the background so the request does not wait on the mail relay.
    pub fn send_later(self: &std::sync::Arc<Self>, to: Email, subject: &'static str, body: String) {
        let mailer = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&to, subject, body).await {
                tracing::warn!(error = %e, subject, "could not send email");
            }
        });
    }
}
