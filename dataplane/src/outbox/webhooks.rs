//! Webhook deliveries: a JSON POST signed per the Standard Webhooks specification with the
//! endpoint's secret, and during a rotation's overlap with the previous one too
//! (docs/webhooks.md), whose result is written back to the endpoint row for the operator's status.

use super::http::{Failure, GuardedHttp};
use super::{Job, Outcome, system_tx};
use crate::AppState;
use crate::sealing::webhook_context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use conclave_credentials::webhook_secret;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The failure budget: an endpoint is disabled after this many failed attempts in a row...
pub const FAILURE_BUDGET_ATTEMPTS: i32 = 15;
/// ...that span at least this long since the first of them (so a short outage of the receiver,
/// however many events it misses, never disables it).
pub const FAILURE_BUDGET_HOURS: i32 = 24;

/// What a refused delivery's reason adds: how an operator lets an in-cluster receiver through.
const ALLOW_HINT: &str = "an in-cluster receiver must be on the DataPlane's spec.webhookAllowedTargets";

/// One Standard Webhooks signature: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
/// where `key` is the secret's decoded bytes (not its `whsec_` text).
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated (the current secret's
/// first), which every Standard Webhooks verifier accepts if any one of them matches.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter().map(|key| signature(key, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

pub async fn deliver(state: &AppState, http: &GuardedHttp, job: &Job) -> Outcome {
    let Some(endpoint_id) = job.webhook_endpoint_id else {
        return Outcome::Drop("webhook row without an endpoint".to_owned());
    };
    let endpoint = async {
        let mut tx = system_tx(state, job.organization_id).await?;
        let row = sqlx::query!(
            r#"SELECT url, signing_secret_sealed, enabled, disabled_at IS NOT NULL AS "auto_disabled!",
                      CASE WHEN previous_secret_expires_at > now() THEN previous_signing_secret_sealed END
                          AS previous_signing_secret_sealed
                 FROM webhook_endpoints WHERE id = $1"#,
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
    if endpoint.auto_disabled {
        return Outcome::Drop("the endpoint was disabled after its failure budget".to_owned());
    }
    let context = webhook_context(endpoint_id);
    let Some(secret) = state.sealing.open(&context, &endpoint.signing_secret_sealed) else {
        return Outcome::Retry("the signing secret does not open with this replica's at-rest key".to_owned());
    };
    let key = |opened: Vec<u8>| String::from_utf8(opened).ok().and_then(|s| webhook_secret::key(&s).ok());
    let Some(current) = key(secret) else {
        return Outcome::Drop("the signing secret is not in the Standard Webhooks format (whsec_<base64>)".to_owned());
    };
    // The previous secret signs too until its overlap ends; one that no longer opens is skipped.
    let previous =
        endpoint.previous_signing_secret_sealed.and_then(|sealed| state.sealing.open(&context, &sealed)).and_then(key);
    let keys: Vec<Vec<u8>> = std::iter::once(current).chain(previous).collect();
    let now = crate::clock::unix_seconds();
    let body = json!({
        "id": job.id,
        "type": job.event_type,
        "organization_id": job.organization_id,
        "attempt": job.attempts,
        "data": job.payload,
    })
    .to_string();
    let id = job.id.to_string();
    let request = hyper::Request::post(&endpoint.url)
        .header("content-type", "application/json")
        .header("user-agent", "conclave-webhooks/2")
        .header("webhook-id", &id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature_header(&keys, &id, now, body.as_bytes()))
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(request) => request,
        Err(e) => return Outcome::Drop(format!("invalid request: {e}")),
    };
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(TIMEOUT, async {
        let response = http.request(request).await?;
        let status = response.status();
        // Read (and discard) the body so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<_, Failure>(status)
    })
    .await;
    let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let status_code = match &result {
        Ok(Ok(status)) => Some(i32::from(status.as_u16())),
        _ => None,
    };
    let (outcome, status, error) = match result {
        Ok(Ok(status)) if status.is_success() => (Outcome::Delivered, "succeeded", None),
        Ok(Ok(status)) if status.is_redirection() => {
            let error = format!("the endpoint answered {status}: redirects are not followed");
            (Outcome::Retry(error.clone()), "failed", Some(error))
        }
        Ok(Ok(status)) => {
            let error = format!("the endpoint answered {status}");
            (Outcome::Retry(error.clone()), "failed", Some(error))
        }
        // The address will not become acceptable by waiting: give the row up at once.
        Ok(Err(Failure::Refused(refused))) => {
            let error = format!("refused: {refused} ({ALLOW_HINT})");
            (Outcome::Drop(error.clone()), "refused", Some(error))
        }
        Ok(Err(Failure::Http(e))) => {
            let error = format!("could not reach the endpoint: {e}");
            (Outcome::Retry(error.clone()), "failed", Some(error))
        }
        Err(_) => {
            let error = format!("no answer within {} seconds", TIMEOUT.as_secs());
            (Outcome::Retry(error.clone()), "failed", Some(error))
        }
    };
    let recorded = async {
        let mut tx = system_tx(state, job.organization_id).await?;
        sqlx::query!(
            "UPDATE webhook_endpoints
                SET last_delivery_at = now(),
                    last_delivery_status = $2,
                    last_delivery_error = left($3, 1024),
                    consecutive_failures = CASE WHEN $2 = 'succeeded' THEN 0 ELSE consecutive_failures + 1 END,
                    failing_since = CASE WHEN $2 = 'succeeded' THEN NULL ELSE coalesce(failing_since, now()) END,
                    disabled_at = CASE WHEN $2 <> 'succeeded' AND consecutive_failures + 1 >= $4
                                            AND coalesce(failing_since, now()) <= now() - make_interval(hours => $5)
                                       THEN now() ELSE disabled_at END,
                    disabled_reason = CASE WHEN $2 <> 'succeeded' AND consecutive_failures + 1 >= $4
                                                AND coalesce(failing_since, now()) <= now() - make_interval(hours => $5)
                                           THEN format('%s failed deliveries in a row since %s; the last: %s',
                                                       consecutive_failures + 1, failing_since, left($3, 512))
                                           ELSE disabled_reason END
              WHERE id = $1",
            endpoint_id,
            status,
            error,
            FAILURE_BUDGET_ATTEMPTS,
            FAILURE_BUDGET_HOURS
        )
        .execute(&mut *tx)
        .await?;
        // The delivery log's view of this attempt (no latency for a call never made).
        let latency = (status != "refused").then_some(latency_ms);
        sqlx::query!(
            "UPDATE outbound_notifications SET last_status_code = $2, last_latency_ms = $3 WHERE id = $1",
            job.id,
            status_code,
            latency
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO webhook_delivery_attempts (organization_id, delivery_id, status, status_code, latency_ms, error)
             VALUES ($1, $2, $3, $4, $5, left($6, 1024))",
            job.organization_id,
            job.id,
            status,
            status_code,
            latency,
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
    fn the_signature_matches_the_specifications_example() {
        // The example of the Standard Webhooks reference libraries.
        let key = webhook_secret::key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_an_overlap_both_signatures_are_sent_current_first() {
        let (a, b) = (vec![1u8; 32], vec![2u8; 32]);
        let header = signature_header(&[a.clone(), b.clone()], "id", 1, b"{}");
        assert_eq!(header, format!("{} {}", signature(&a, "id", 1, b"{}"), signature(&b, "id", 1, b"{}")));
        assert_eq!(signature_header(std::slice::from_ref(&a), "id", 1, b"{}"), signature(&a, "id", 1, b"{}"));
    }
}
