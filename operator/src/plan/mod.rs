//! The desired state: pure functions from a resource and what was observed to what must be
//! done. Nothing here does I/O, so each decision here is unit-tested without a database or a
//! cluster.

pub mod bot;
pub mod dataplane;
pub mod organization;
pub mod rotation;
pub mod webhook;
pub mod workspace;

use uuid::Uuid;

/// The Kubernetes object that manages a row (`k8s_namespace`, `k8s_name` columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sRef {
    pub namespace: String,
    pub name: String,
}

impl K8sRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

/// A row as found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed<R> {
    pub id: Uuid,
    /// The resource that manages it, if any (`None` once detached by `Retain`).
    pub managed_by: Option<K8sRef>,
    pub row: R,
}

/// The managed columns of a row type, compared field by field so drift can be named.
pub trait Columns {
    /// The names of the columns whose values differ between `self` (desired) and `found`.
    fn changed(&self, found: &Self) -> Vec<&'static str>;
}

/// What to do with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAction {
    /// No row exists: insert it.
    Create,
    /// An unmanaged row with the same identity exists (left by `Retain`): take it over and
    /// bring it to the desired state.
    Adopt { id: Uuid, changed: Vec<&'static str> },
    /// Our row differs (a spec change, or drift): update these columns.
    Update { id: Uuid, changed: Vec<&'static str> },
    /// Our row is as declared.
    UpToDate { id: Uuid },
    /// The identity is taken by a row another resource manages.
    Conflict { message: String },
}

/// Decides what to do with a row, given the row this resource manages (`ours`, looked up by
/// its Kubernetes reference) and the row holding the same identity (`same_identity`, such as
/// the same slug), if the kind has one.
pub fn plan_row<R: Columns>(
    desired: &R,
    me: &K8sRef,
    ours: Option<&Observed<R>>,
    same_identity: Option<&Observed<R>>,
) -> RowAction {
    if let Some(found) = ours {
        if let Some(other) = same_identity
            && other.id != found.id
        {
            return RowAction::Conflict {
                message: format!("its identity is taken by another row ({}); rename one of them", other.id),
            };
        }
        let changed = desired.changed(&found.row);
        return if changed.is_empty() {
            RowAction::UpToDate { id: found.id }
        } else {
            RowAction::Update { id: found.id, changed }
        };
    }
    match same_identity {
        None => RowAction::Create,
        Some(other) => match &other.managed_by {
            None => RowAction::Adopt { id: other.id, changed: desired.changed(&other.row) },
            Some(owner) if owner == me => RowAction::Update { id: other.id, changed: desired.changed(&other.row) },
            Some(owner) => {
                RowAction::Conflict { message: format!("it is already managed by {}/{}", owner.namespace, owner.name) }
            }
        },
    }
}

/// Pushes `name` into `out` when the two values differ.
pub(crate) fn diff<T: PartialEq>(out: &mut Vec<&'static str>, name: &'static str, a: &T, b: &T) {
    if a != b {
        out.push(name);
    }
}
