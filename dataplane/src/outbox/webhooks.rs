//! Webhook deliveries: a JSON POST signed with the endpoint's secret (docs/webhooks.md), whose
//! result is written back to the endpoint row for the operator's status.

use super::{Job, Outcome, system_tx};
use crate::AppState;
use crate::sealing::webhook_context;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

pub type Http = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client for `https://` (system roots, ring) and, where an endpoint explicitly allows
/// it, `http://`.
pub fn client() -> anyhow::Result<Http> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn deliver(state: &AppState, http: &Http, job: &Job) -> Outcome {
    let Some(endpoint_id) = job.webhook_endpoint_id else {
        return Outcome::Drop("webhook row without an endpoint".to_owned());
    };
    let endpoint = async {
        let mut tx = system_tx(state, job.organization_id).await?;
        let row = sqlx::query!(
            "SELECT url, signing_secret_sealed, enabled FROM webhook_endpoints WHERE id = $1",
            endpoint_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(row)
    }
    .await;
    let endpoint = match endpoint {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Outcome::Drop("the endpoint no longer exists".to_owned()),
        Err(e) => return Outcome::Retry(format!("database: {e}")),
    };
    if !endpoint.enabled {
        return Outcome::Drop("the endpoint is disabled".to_owned());
    }
    let Some(secret) = state.sealing.open(&webhook_context(endpoint_id), &endpoint.signing_secret_sealed) else {
        return Outcome::Retry("the signing secret does not open with this replica's at-rest key".to_owned());
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let body = json!({
        "id": job.id,
        "type": job.event_type,
        "organization_id": job.organization_id,
        "attempt": job.attempts,
        "data": job.payload,
    })
    .to_string();
    let request = hyper::Request::post(&endpoint.url)
        .header("content-type", "application/json")
        .header("user-agent", "conclave-webhooks/1")
        .header("conclave-event", &job.event_type)
        .header("conclave-delivery", job.id.to_string())
        .header("conclave-signature", signature(&secret, now, body.as_bytes()))
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(request) => request,
        Err(e) => return Outcome::Drop(format!("invalid request: {e}")),
    };
    let result = tokio::time::timeout(TIMEOUT, async {
        let response = http.request(request).await?;
        let status = response.status();
        // Read (and discard) the body so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    let (outcome, succeeded, error) = match result {
        Ok(Ok(status)) if status.is_success() => (Outcome::Delivered, true, None),
        Ok(Ok(status)) => {
            let error = format!("the endpoint answered {status}");
            (Outcome::Retry(error.clone()), false, Some(error))
        }
        Ok(Err(e)) => {
            let error = format!("could not reach the endpoint: {e}");
            (Outcome::Retry(error.clone()), false, Some(error))
        }
        Err(_) => {
            let error = format!("no answer within {} seconds", TIMEOUT.as_secs());
            (Outcome::Retry(error.clone()), false, Some(error))
        }
    };
    let recorded = async {
        let mut tx = system_tx(state, job.organization_id).await?;
        sqlx::query!(
            "UPDATE webhook_endpoints
                SET last_delivery_at = now(),
                    last_delivery_status = CASE WHEN $2 THEN 'succeeded' ELSE 'failed' END,
                    last_delivery_error = left($3, 1024),
                    consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END
              WHERE id = $1",
            endpoint_id,
            succeeded,
            error
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, %endpoint_id, "could not record a webhook delivery result");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; message here is "<t>.<body>".
        let signature = signature(b"Jefe", 0, b"what do ya want for nothing?");
        assert!(signature.starts_with("t=0,v1="));
        assert_eq!(signature.len(), "t=0,v1=".len() + 64);
        assert_ne!(signature, super::signature(b"Jefe", 1, b"what do ya want for nothing?"));
    }
}
