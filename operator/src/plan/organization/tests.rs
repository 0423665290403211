use super::*;
use crate::plan::{K8sRef, Observed, RowAction, plan_row};
use conclave_resources::organization::{OrganizationLimits, OrganizationSpec, SecurityPolicy};
use conclave_resources::{DeletionPolicy, Organization};
use uuid::Uuid;

fn mk_org(slug: &str) -> Organization {
    Organization::new(
        slug,
        OrganizationSpec {
            slug: slug.into(),
            display_name: "Acme Corp".into(),
            limits: Some(OrganizationLimits {
                max_members: Some(50),
                max_workspaces: None,
                attachment_storage: Some("10Gi".into()),
            }),
            message_retention_days: Some(365),
            security: Some(SecurityPolicy {
                require_totp: true,
                allowed_email_domains: vec!["b.example".into(), "a.example".into()],
                session_lifetime_seconds: Some(3600),
            }),
            initial_owners: vec!["Alice@A.example".into(), "bob@b.example".into()],
            legal_holds: vec![],
            deletion_policy: DeletionPolicy::Retain,
        },
    )
}

fn me() -> K8sRef {
    K8sRef::new("tenants", "acme")
}

fn observed(row: OrganizationRow, managed_by: Option<K8sRef>) -> Observed<OrganizationRow> {
    Observed { id: Uuid::from_u128(42), managed_by, row }
}

#[test]
fn the_desired_row_carries_every_declared_setting() {
    let row = desired(&mk_org("acme")).expect("valid");
    assert_eq!(row.slug, "acme");
    assert_eq!(row.max_members, Some(50));
    assert_eq!(row.max_workspaces, None);
    assert_eq!(row.attachment_quota_bytes, Some(10 * 1024 * 1024 * 1024));
    assert_eq!(row.message_retention_days, Some(365));
    assert!(row.require_totp);
    assert_eq!(row.allowed_email_domains, vec!["a.example", "b.example"]);
    assert_eq!(row.session_lifetime_seconds, Some(3600));
}

#[test]
fn an_invalid_owner_address_makes_the_spec_invalid() {
    let mut org = mk_org("acme");
    org.spec.initial_owners.push("not-an-address".into());
    let err = desired(&org).expect_err("invalid");
    assert!(err.0.contains("not-an-address"), "{err}");
}

#[test]
fn no_row_means_create() {
    let want = desired(&mk_org("acme")).expect("valid");
    assert_eq!(plan_row(&want, &me(), None, None), RowAction::Create);
}

#[test]
fn an_identical_row_is_up_to_date() {
    let want = desired(&mk_org("acme")).expect("valid");
    let found = observed(want.clone(), Some(me()));
    assert_eq!(plan_row(&want, &me(), Some(&found), Some(&found)), RowAction::UpToDate { id: found.id });
}

#[test]
fn drifted_columns_are_named_in_the_update() {
    let want = desired(&mk_org("acme")).expect("valid");
    let mut row = want.clone();
    row.display_name = "Hacked".into();
    row.require_totp = false;
    let found = observed(row, Some(me()));
    assert_eq!(
        plan_row(&want, &me(), Some(&found), Some(&found)),
        RowAction::Update { id: found.id, changed: vec!["display_name", "require_totp"] }
    );
}

#[test]
fn domains_stored_in_another_order_are_not_drift() {
    let want = desired(&mk_org("acme")).expect("valid");
    let mut row = want.clone();
    row.allowed_email_domains.reverse();
    assert!(want.changed(&row).is_empty());
}

#[test]
fn a_retained_row_with_the_same_slug_is_adopted() {
    let want = desired(&mk_org("acme")).expect("valid");
    let mut row = want.clone();
    row.display_name = "Old name".into();
    let found = observed(row, None);
    assert_eq!(
        plan_row(&want, &me(), None, Some(&found)),
        RowAction::Adopt { id: found.id, changed: vec!["display_name"] }
    );
}

#[test]
fn a_slug_managed_by_another_resource_is_a_conflict() {
    let want = desired(&mk_org("acme")).expect("valid");
    let found = observed(want.clone(), Some(K8sRef::new("other-team", "acme")));
    let RowAction::Conflict { message } = plan_row(&want, &me(), None, Some(&found)) else {
        panic!("expected a conflict");
    };
    assert!(message.contains("other-team/acme"), "{message}");
}

#[test]
fn owners_are_invited_once_normalised() {
    let org = mk_org("acme");
    let none = BTreeSet::new();
    assert_eq!(owners_to_invite(&org, &none), vec!["alice@a.example", "bob@b.example"]);
    let known: BTreeSet<String> = ["alice@a.example".to_owned()].into();
    assert_eq!(owners_to_invite(&org, &known), vec!["bob@b.example"]);
}
