//! What a WebhookEndpoint should be in the database.

use super::{Columns, diff};
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

/// The columns of `webhook_endpoints` the operator manages. `signing_secret` is the plaintext
/// (the database holds it sealed); for a row read back it is `None` when the sealed value cannot
/// be opened with the current at-rest key, which counts as drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub organization_id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub url: String,
    /// Sorted, without duplicates.
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub signing_secret: Option<String>,
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
        out
    }
}

/// Where the endpoint's events come from, once its reference is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub organization_id: Uuid,
    pub workspace_id: Option<Uuid>,
}

/// The row an endpoint declares.
pub fn desired(endpoint: &WebhookEndpoint, scope: Scope, signing_secret: &str) -> Result<WebhookRow, InvalidSpec> {
    endpoint.spec.validate()?;
    if signing_secret.is_empty() || signing_secret.len() > 200 {
        return Err(InvalidSpec("the signing secret must have 1 to 200 bytes".into()));
    }
    let events: BTreeSet<String> = endpoint.spec.event_types.iter().cloned().collect();
    Ok(WebhookRow {
        organization_id: scope.organization_id,
        workspace_id: scope.workspace_id,
        url: endpoint.spec.url.clone(),
        event_types: events.into_iter().collect(),
        enabled: endpoint.spec.enabled,
        signing_secret: Some(signing_secret.to_owned()),
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
            },
        )
    }

    fn scope() -> Scope {
        Scope { organization_id: Uuid::from_u128(1), workspace_id: Some(Uuid::from_u128(2)) }
    }

    #[test]
    fn event_types_are_sorted_and_deduplicated_in_the_desired_row() {
        let row = desired(&mk_endpoint("https://hooks.example/x", &["message.created", "member.joined"]), scope(), "s")
            .expect("valid");
        assert_eq!(row.event_types, vec!["member.joined", "message.created"]);
        assert_eq!(row.workspace_id, Some(Uuid::from_u128(2)));
    }

    #[test]
    fn a_plain_http_url_is_refused_unless_allowed() {
        let mut endpoint = mk_endpoint("http://receiver.svc/x", &["message.created"]);
        assert!(desired(&endpoint, scope(), "s").is_err());
        endpoint.spec.allow_insecure_http = true;
        assert!(desired(&endpoint, scope(), "s").is_ok());
    }

    #[test]
    fn a_sealed_secret_that_no_longer_opens_is_drift() {
        let want = desired(&mk_endpoint("https://h.example/x", &["message.created"]), scope(), "s").expect("valid");
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
    fn an_empty_secret_is_refused() {
        assert!(desired(&mk_endpoint("https://h.example/x", &["message.created"]), scope(), "").is_err());
    }
}
