use super::*;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use conclave_resources::workspace::WorkspaceSpec;
use conclave_resources::{DeletionPolicy, LocalRef, Workspace};
use uuid::Uuid;

fn mk_workspace(channels: &[&str]) -> Workspace {
    Workspace::new(
        "eng",
        WorkspaceSpec {
            organization_ref: LocalRef { name: "acme".into() },
            slug: "eng".into(),
            display_name: "Engineering".into(),
            message_retention_days: None,
            guest_access: true,
            default_channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            deletion_policy: DeletionPolicy::Delete,
        },
    )
}

#[test]
fn the_desired_row_follows_the_spec() {
    let row = desired(&mk_workspace(&[])).expect("valid");
    assert_eq!(
        row,
        WorkspaceRow {
            slug: "eng".into(),
            display_name: "Engineering".into(),
            message_retention_days: None,
            guest_access: true
        }
    );
}

#[test]
fn only_missing_channels_are_created() {
    let ws = mk_workspace(&["general", "random", "general-2"]);
    let existing: BTreeSet<String> = ["random".to_owned()].into();
    assert_eq!(channels_to_create(&ws, &existing), vec!["general", "general-2"]);
}

#[test]
fn a_channel_name_that_is_not_a_slug_is_invalid() {
    assert!(desired(&mk_workspace(&["Bad Name"])).is_err());
}

#[test]
fn a_guest_access_change_is_an_update() {
    let want = desired(&mk_workspace(&[])).expect("valid");
    let me = K8sRef::new("tenants", "eng");
    let mut row = want.clone();
    row.guest_access = false;
    let found = Observed { id: Uuid::from_u128(3), managed_by: Some(me.clone()), row };
    assert_eq!(
        plan_row(&want, &me, Some(&found), None),
        RowAction::Update { id: found.id, changed: vec!["guest_access"] }
    );
}
