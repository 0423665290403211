//! Generated Secrets: the rotating credential they hold, and applying them.

use crate::plan::rotation::Rotating;
use chrono::{DateTime, Utc};
use conclave_resources::{ANNOTATION_ROTATION_HANDLED, FIELD_MANAGER};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;

pub const ANNOTATION_ISSUED_AT: &str = "conclave.io/issued-at";
pub const ANNOTATION_PREVIOUS_EXPIRES_AT: &str = "conclave.io/previous-expires-at";
pub const ANNOTATION_CURRENT_KEY_ID: &str = "conclave.io/current-key-id";
pub const ANNOTATION_PREVIOUS_KEY_ID: &str = "conclave.io/previous-key-id";

/// Where a rotating credential sits in its Secret's data.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// Fixed keys for the current and the previous value (`token` / `previous-token`).
    Fixed { current: &'static str, previous: &'static str },
    /// One `<key id>.pem` entry per key, the ids in annotations (the JWT keys directory).
    KeyIds,
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn time(value: Option<&String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value?).ok().map(|t| t.with_timezone(&Utc))
}

/// The credential a Secret holds, or `None` when it holds none (absent, or emptied by hand:
/// then a new one is generated).
pub fn read(secret: Option<&Secret>, layout: Layout) -> Option<Rotating> {
    let secret = secret?;
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let (current, previous) = match layout {
        Layout::Fixed { current, previous } => (text(secret, current)?, text(secret, previous)),
        Layout::KeyIds => {
            let current = annotations.get(ANNOTATION_CURRENT_KEY_ID)?;
            let previous = annotations.get(ANNOTATION_PREVIOUS_KEY_ID);
            (text(secret, &format!("{current}.pem"))?, previous.and_then(|p| text(secret, &format!("{p}.pem"))))
        }
    };
    if current.is_empty() {
        return None;
    }
    let previous_expires_at = time(annotations.get(ANNOTATION_PREVIOUS_EXPIRES_AT));
    Some(Rotating {
        current,
        previous: previous.filter(|_| previous_expires_at.is_some()),
        previous_expires_at,
        issued_at: time(annotations.get(ANNOTATION_ISSUED_AT)),
        rotation_handled: annotations.get(ANNOTATION_ROTATION_HANDLED).cloned(),
    })
}

/// The data and annotations that hold `state`.
pub fn render(state: &Rotating, layout: Layout) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut data = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match layout {
        Layout::Fixed { current, previous } => {
            data.insert(current.to_owned(), state.current.clone());
            if let Some(p) = &state.previous {
                data.insert(previous.to_owned(), p.clone());
            }
        }
        Layout::KeyIds => {
            let id = crate::secrets::key_id(&state.current);
            data.insert(format!("{id}.pem"), state.current.clone());
            annotations.insert(ANNOTATION_CURRENT_KEY_ID.to_owned(), id);
            if let Some(p) = &state.previous {
                let pid = crate::secrets::key_id(p);
                data.insert(format!("{pid}.pem"), p.clone());
                annotations.insert(ANNOTATION_PREVIOUS_KEY_ID.to_owned(), pid);
            }
        }
    }
    if let Some(at) = state.previous_expires_at.filter(|_| state.previous.is_some()) {
        annotations.insert(ANNOTATION_PREVIOUS_EXPIRES_AT.to_owned(), rfc(at));
    }
    if let Some(at) = state.issued_at {
        annotations.insert(ANNOTATION_ISSUED_AT.to_owned(), rfc(at));
    }
    if let Some(handled) = &state.rotation_handled {
        annotations.insert(ANNOTATION_ROTATION_HANDLED.to_owned(), handled.clone());
    }
    (data, annotations)
}

/// Applies a Secret (server-side apply, forced: the operator owns every field it writes, and
/// keys it stops writing are removed).
pub async fn apply(
    api: &Api<Secret>,
    name: &str,
    owner: Option<OwnerReference>,
    data: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret, kube::Error> {
    let patch = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "annotations": annotations,
            "labels": {"app.kubernetes.io/managed-by": "conclave-operator"},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "type": "Opaque",
        "stringData": data,
    });
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn secret(data: BTreeMap<String, String>, annotations: BTreeMap<String, String>) -> Secret {
        Secret {
            metadata: ObjectMeta { annotations: Some(annotations), ..Default::default() },
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
            ..Default::default()
        }
    }

    fn state() -> Rotating {
        Rotating {
            current: "new".into(),
            previous: Some("old".into()),
            previous_expires_at: DateTime::from_timestamp(1_900_000_000, 0),
            issued_at: DateTime::from_timestamp(1_800_000_000, 0),
            rotation_handled: Some("r2".into()),
        }
    }

    #[test]
    fn a_rendered_secret_reads_back_the_same_in_both_layouts() {
        for layout in [Layout::Fixed { current: "token", previous: "previous-token" }, Layout::KeyIds] {
            let (data, annotations) = render(&state(), layout);
            assert_eq!(read(Some(&secret(data, annotations)), layout), Some(state()), "{layout:?}");
        }
    }

    #[test]
    fn the_jwt_layout_names_files_by_key_id() {
        let (data, annotations) = render(&state(), Layout::KeyIds);
        let id = crate::secrets::key_id("new");
        assert_eq!(data.get(&format!("{id}.pem")).map(String::as_str), Some("new"));
        assert_eq!(annotations.get(ANNOTATION_CURRENT_KEY_ID), Some(&id));
    }

    #[test]
    fn a_missing_or_emptied_secret_holds_nothing() {
        let layout = Layout::Fixed { current: "token", previous: "previous-token" };
        assert_eq!(read(None, layout), None);
        let emptied = secret(BTreeMap::from([("token".to_owned(), String::new())]), BTreeMap::new());
        assert_eq!(read(Some(&emptied), layout), None);
    }
}
