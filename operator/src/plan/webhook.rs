//! What a WebhookEndpoint should be in the database.

use super::{Columns, diff};
use chrono::{DateTime, SubsecRound, Utc};
use conclave_credentials::webhook_secret;
use conclave_resources::WebhookEndpoint;
use conclave_resources::validate::InvalidSpec;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The key of the generated Secret that holds the signing secret.
pub const GENERATED_KEY: &str = "signing-secret";

/// The name of the Secret the operator generates when no `signingSecretRef` is given.
pub fn generated_secret_name(endpoint_name: &str) -> String {
    format!("{endpoint_name}-webhook-signing")
}

/// The endpoint's signing secret and, during a rotation's overlap, the one before it with the
/// end of the overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    pub current: String,
    pub previous: Option<(String, DateTime<Utc>)>,
}

/// The columns of `webhook_endpoints` the operator manages. The signing secrets are the plaintext
/// (the database holds them sealed); for a row read back they are `None` when the sealed value
/// cannot be opened with the current at-rest key, which counts as drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub organization_id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub url: String,
    /// Sorted, without duplicates.
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub signing_secret: Option<String>,
    pub previous_signing_secret: Option<String>,
    /// Whole seconds, as the Secret records it.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl Columns for WebhookRow {
    fn changed(&self, found: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        diff(&mut out, "organization_id", &self.organization_id, &found.organization_id);
        diff(&mut out, "workspace_id", &self.workspace_id, &found.workspace_id);
        diff(&mut out, "url", &self.url, &found.url);
        let mut found_events = found.event_types.clone();
        found_events.sort();
        diff(&mut out, "event_types", &self.event_types, &found_events);
        diff(&mut out, "enabled", &self.enabled, &found.enabled);
        diff(&mut out, "signing_secret_sealed", &self.signing_secret, &found.signing_secret);
        diff(&mut out, "previous_signing_secret_sealed", &self.previous_signing_secret, &found.previous_signing_secret);
        diff(
            &mut out,
            "previous_secret_expires_at",
            &self.previous_secret_expires_at,
            &found.previous_secret_expires_at,
        );
        out
    }
}

/// What to do about an endpoint the data plane disabled after its failure budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disabled {
    /// Enable it again: its spec changed since it was disabled, or the re-enable annotation has a
    /// value not acted on yet (kept, so it is acted on once).
    Reenable { handled: Option<String> },
    /// First seen disabled: remember the generation, to notice a later spec change.
    Remember { generation: i64 },
    /// It stays disabled.
    Keep,
}

/// Decides about a disabled endpoint from the generation recorded when it was first seen disabled
/// and the last re-enable request acted on.
pub fn disabled(
    recorded_generation: Option<i64>,
    reenable_handled: Option<&str>,
    generation: i64,
    reenable_request: Option<&str>,
) -> Disabled {
    if let Some(request) = reenable_request
        && reenable_handled != Some(request)
    {
        return Disabled::Reenable { handled: Some(request.to_owned()) };
    }
    match recorded_generation {
        None => Disabled::Remember { generation },
        Some(recorded) if generation > recorded => Disabled::Reenable { handled: reenable_handled.map(str::to_owned) },
        Some(_) => Disabled::Keep,
    }
}

/// Where the endpoint's events come from, once its reference is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub organization_id: Uuid,
    pub workspace_id: Option<Uuid>,
}

/// The row an endpoint declares. The secrets must have the Standard Webhooks format, or no
/// verifier library could check the signatures made with them.
pub fn desired(endpoint: &WebhookEndpoint, scope: Scope, secrets: &Secrets) -> Result<WebhookRow, InvalidSpec> {
    endpoint.spec.validate()?;
    let checked = |secret: &str| webhook_secret::key(secret).map(|_| secret.to_owned());
    let invalid = |e: webhook_secret::InvalidSecret| InvalidSpec(e.to_string());
    let signing_secret = checked(&secrets.current).map_err(invalid)?;
    let previous = match &secrets.previous {
        Some((secret, until)) => Some((checked(secret).map_err(invalid)?, until.trunc_subsecs(0))),
        None => None,
    };
    let events: BTreeSet<String> = endpoint.spec.event_types.iter().cloned().collect();
    Ok(WebhookRow {
        organization_id: scope.organization_id,
        workspace_id: scope.workspace_id,
        url: endpoint.spec.url.clone(),
        event_types: events.into_iter().collect(),
        enabled: endpoint.spec.enabled,
        signing_secret: Some(signing_secret),
        previous_signing_secret: previous.as_ref().map(|(s, _)| s.clone()),
        previous_secret_expires_at: previous.map(|(_, until)| until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{K8sRef, Observed, RowAction, plan_row};
    use conclave_resources::webhook::WebhookEndpointSpec;
    use conclave_resources::{LocalRef, WebhookEndpoint};

    fn mk_endpoint(url: &str, events: &[&str]) -> WebhookEndpoint {
        WebhookEndpoint::new(
            "hook",
            WebhookEndpointSpec {
                workspace_ref: Some(LocalRef { name: "eng".into() }),
                organization_ref: None,
                url: url.into(),
                allow_insecure_http: false,
                event_types: events.iter().map(|e| (*e).to_owned()).collect(),
                signing_secret_ref: None,
                enabled: true,
                secret_overlap_seconds: 3600,
            },
        )
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn secrets(current: &str) -> Secrets {
        Secrets { current: current.to_owned(), previous: None }
    }

    fn scope() -> Scope {
        Scope { organization_id: Uuid::from_u128(1), workspace_id: Some(Uuid::from_u128(2)) }
    }

    #[test]
    fn event_types_are_sorted_and_deduplicated_in_the_desired_row() {
        let row = desired(
            &mk_endpoint("https://hooks.example/x", &["message.created", "member.joined"]),
            scope(),
            &secrets(SECRET),
        )
        .expect("valid");
        assert_eq!(row.event_types, vec!["member.joined", "message.created"]);
        assert_eq!(row.workspace_id, Some(Uuid::from_u128(2)));
    }

    #[test]
    fn a_plain_http_url_is_refused_unless_allowed() {
        let mut endpoint = mk_endpoint("http://receiver.svc/x", &["message.created"]);
        assert!(desired(&endpoint, scope(), &secrets(SECRET)).is_err());
        endpoint.spec.allow_insecure_http = true;
        assert!(desired(&endpoint, scope(), &secrets(SECRET)).is_ok());
    }

    #[test]
    fn a_sealed_secret_that_no_longer_opens_is_drift() {
        let want = desired(&mk_endpoint("https://h.example/x", &["message.created"]), scope(), &secrets(SECRET))
            .expect("valid");
        let mut found = want.clone();
        found.signing_secret = None;
        let me = K8sRef::new("ns", "hook");
        let observed = Observed { id: Uuid::from_u128(9), managed_by: Some(me.clone()), row: found };
        assert_eq!(
            plan_row(&want, &me, Some(&observed), None),
            RowAction::Update { id: Uuid::from_u128(9), changed: vec!["signing_secret_sealed"] }
        );
    }

    #[test]
    fn a_secret_not_in_the_standard_webhooks_format_is_refused() {
        let endpoint = mk_endpoint("https://h.example/x", &["message.created"]);
        let err = desired(&endpoint, scope(), &secrets("a-password")).expect_err("refused");
        assert!(err.0.contains("whsec_"), "{err:?}");
        assert!(!err.0.contains("a-password"), "the secret is not echoed");
        let previous = Secrets { current: SECRET.into(), previous: Some(("whsec_short".into(), Utc::now())) };
        assert!(desired(&endpoint, scope(), &previous).is_err());
    }

    #[test]
    fn the_previous_secret_is_kept_to_the_second_until_its_deadline() {
        let until = DateTime::from_timestamp(1_900_000_000, 999_000_000).expect("time");
        let with_previous = Secrets { current: SECRET.into(), previous: Some((SECRET.replace('M', "N"), until)) };
        let endpoint = mk_endpoint("https://h.example/x", &["message.created"]);
        let row = desired(&endpoint, scope(), &with_previous).expect("valid");
        assert_eq!(row.previous_secret_expires_at, DateTime::from_timestamp(1_900_000_000, 0));
        let mut found = row.clone();
        found.previous_signing_secret = None;
        found.previous_secret_expires_at = None;
        assert_eq!(row.changed(&found), vec!["previous_signing_secret_sealed", "previous_secret_expires_at"]);
    }

    #[test]
    fn a_disabled_endpoint_is_enabled_again_by_a_spec_change_or_a_new_annotation_value_once() {
        assert_eq!(disabled(None, None, 3, None), Disabled::Remember { generation: 3 });
        assert_eq!(disabled(Some(3), None, 3, None), Disabled::Keep);
        assert_eq!(disabled(Some(3), None, 4, None), Disabled::Reenable { handled: None });
        assert_eq!(disabled(Some(3), None, 3, Some("a")), Disabled::Reenable { handled: Some("a".into()) });
        assert_eq!(disabled(Some(3), Some("a"), 3, Some("a")), Disabled::Keep, "a request is acted on once");
        assert_eq!(disabled(Some(3), Some("a"), 3, Some("b")), Disabled::Reenable { handled: Some("b".into()) });
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(desired(&mk_endpoint("https://h.example/x", &["message.created"]), scope(), &secrets("")).is_err());
    }
}
