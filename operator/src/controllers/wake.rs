//! Which events of a watched kind wake the objects that depend on it.

use crate::conditions::ready_in;
use conclave_resources::{Organization, Workspace};
use kube::Resource;
use std::collections::HashMap;
use std::sync::Mutex;

/// Decides which events of a watched kind wake the objects that depend on it: those that change
/// what the dependents read (`part` of the object, its deletion, a new uid), not every write to
/// it. Without it, each status write of an Organization (its counts change as each of its
/// Workspaces is provisioned) re-ran every one of its Workspaces, whose status writes re-ran the
/// Organization: thousands of reconciles that changed nothing.
pub struct Wake<K, S> {
    part: fn(&K) -> S,
    /// The part last seen, by uid. An object's entry goes when its deletion completes.
    seen: Mutex<HashMap<String, (bool, S)>>,
}

/// Objects a [`Wake`] remembers before it starts over.
const MAX_SEEN: usize = 100_000;

impl<K: Resource, S: PartialEq> Wake<K, S> {
    pub fn new(part: fn(&K) -> S) -> Self {
        Self { part, seen: Mutex::new(HashMap::new()) }
    }

    /// Whether this event of `obj` should wake its dependents: the first sight of it, a change
    /// of its part, its deletion starting, or its deletion finishing (no finalizers left).
    pub fn changed(&self, obj: &K) -> bool {
        let meta = obj.meta();
        let key = meta.uid.clone().unwrap_or_else(|| format!("{:?}/{:?}", meta.namespace, meta.name));
        let deleting = meta.deletion_timestamp.is_some();
        let Ok(mut seen) = self.seen.lock() else { return true };
        if deleting && meta.finalizers.as_ref().is_none_or(Vec::is_empty) {
            seen.remove(&key);
            return true;
        }
        if seen.len() >= MAX_SEEN && !seen.contains_key(&key) {
            // Objects whose deletion was never seen (deleted before they had a finalizer, or
            // while the watch was re-listing) would otherwise stay forever; starting over costs
            // one wake of each dependent.
            seen.clear();
        }
        let part = (self.part)(obj);
        let unchanged = seen.get(&key).is_some_and(|(was_deleting, was)| *was_deleting == deleting && *was == part);
        if !unchanged {
            seen.insert(key, (deleting, part));
        }
        !unchanged
    }
}

/// What the kinds that depend on an Organization read of it: its id in PostgreSQL and whether
/// it is Ready.
pub fn organization_part(org: &Organization) -> (Option<String>, bool) {
    let status = org.status.as_ref();
    (status.and_then(|s| s.organization_id.clone()), status.is_some_and(|s| ready_in(&s.conditions)))
}

/// What the kinds that depend on a Workspace read of it: the Organization it names, its id in
/// PostgreSQL and whether it is Ready.
pub fn workspace_part(ws: &Workspace) -> (String, Option<String>, bool) {
    let status = ws.status.as_ref();
    (
        ws.spec.organization_ref.name.clone(),
        status.and_then(|s| s.workspace_id.clone()),
        status.is_some_and(|s| ready_in(&s.conditions)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn organization(uid: &str, organization_id: Option<&str>) -> Organization {
        serde_json::from_value(json!({
            "apiVersion": "conclave.io/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme", "namespace": "t", "uid": uid, "finalizers": ["conclave.io/cleanup"]},
            "spec": {"slug": "acme", "displayName": "Acme"},
            "status": {"organizationId": organization_id, "memberCount": 1},
        }))
        .expect("a valid fixture")
    }

    #[test]
    fn only_changes_that_dependents_read_wake_them() {
        let wake = Wake::new(organization_part);
        let mut org = organization("u1", None);
        assert!(wake.changed(&org), "first sight");
        assert!(!wake.changed(&org), "the same again (a relist)");
        org.status.as_mut().expect("a status").member_count = Some(2);
        assert!(!wake.changed(&org), "a count is not what Workspaces read");
        org.status.as_mut().expect("a status").organization_id = Some("id".into());
        assert!(wake.changed(&org), "provisioned");
        org.status.as_mut().expect("a status").conditions = vec![serde_json::from_value(json!({
            "type": "Ready", "status": "True", "reason": "Provisioned", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .expect("a valid fixture")];
        assert!(wake.changed(&org), "became Ready");
        assert!(!wake.changed(&org));
        assert!(wake.changed(&organization("u2", Some("id"))), "re-created under the same name: a new uid");
        org.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("a valid fixture");
        assert!(wake.changed(&org), "its deletion started");
        assert!(!wake.changed(&org));
        org.metadata.finalizers = None;
        assert!(wake.changed(&org), "its deletion finished");
        assert!(!wake.seen.lock().expect("not poisoned").contains_key("u1"), "and it is forgotten");
    }
}
