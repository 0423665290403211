//! The rules an organization's membership must keep, as the operator declared them: the member
//! limit and the email domains it admits.
//!
//! Every change to who belongs (accepting an invitation, changing a role, removing a member)
//! first locks the organization row through [`lock`]. Membership changes in one organization
//! therefore happen one at a time: two concurrent accepts cannot both take the last seat, and
//! two owners demoting each other cannot leave the organization with none.

use crate::auth::credentials::Email;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug)]
pub struct Policy {
    pub organization_id: Uuid,
    pub display_name: String,
    pub max_members: Option<i32>,
    pub allowed_email_domains: Vec<String>,
}

/// Loads the organization's policy and locks its row until the transaction ends; 404 when the
/// organization is not visible to the transaction or not active.
#[tracing::instrument(skip(conn))]
pub async fn lock(conn: &mut PgConnection, organization_id: Uuid) -> ApiResult<Policy> {
    let row = sqlx::query!(
        "SELECT display_name, max_members, allowed_email_domains FROM organizations
          WHERE id = $1 AND status = 'active' FOR UPDATE",
        organization_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(Policy {
        organization_id,
        display_name: row.display_name,
        max_members: row.max_members,
        allowed_email_domains: row.allowed_email_domains,
    })
}

impl Policy {
    /// Whether the organization admits this address: any, when the list is empty; otherwise
    /// the address's domain must be one of them exactly (a subdomain is another domain).
    pub fn admits(&self, email: &Email) -> bool {
        self.allowed_email_domains.is_empty()
            || self
                .allowed_email_domains
                .iter()
                .any(|d| d.trim().trim_start_matches('@').eq_ignore_ascii_case(email.domain()))
    }

    /// 422 `email_domain_not_allowed` unless [`Policy::admits`] the address.
    pub fn check_domain(&self, email: &Email) -> ApiResult<()> {
        if self.admits(email) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::EmailDomainNotAllowed,
            format!("this organization only admits addresses at {}", self.allowed_email_domains.join(", ")),
        )
        .with_details(ErrorDetails::AllowedDomains {
            field: "email".into(),
            allowed_email_domains: self.allowed_email_domains.clone(),
        }))
    }

    /// 409 `member_limit_reached` when the organization already has `max_members` members.
    pub async fn check_seat(&self, conn: &mut PgConnection) -> ApiResult<()> {
        let Some(max) = self.max_members else { return Ok(()) };
        let members = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM organization_memberships WHERE organization_id = $1"#,
            self.organization_id
        )
        .fetch_one(conn)
        .await?;
        if members >= i64::from(max) {
            return Err(ApiError::new(
                ErrorCode::MemberLimitReached,
                format!("this organization has reached its limit of {max} members"),
            )
            .with_details(ErrorDetails::MemberLimit { max_members: max.into(), members }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(domains: &[&str]) -> Policy {
        Policy {
            organization_id: Uuid::nil(),
            display_name: "Acme".to_owned(),
            max_members: None,
            allowed_email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid email")
    }

    #[test]
    fn an_empty_domain_list_admits_everyone() {
        assert!(policy(&[]).admits(&email("anyone@anywhere.example")));
    }

    #[test]
    fn listed_domains_match_exactly_and_ignore_case() {
        let p = policy(&["Acme.example", "@partner.example"]);
        assert!(p.admits(&email("ALICE@acme.example")));
        assert!(p.admits(&email("bob@partner.example")));
        assert!(!p.admits(&email("eve@evil.example")));
        assert!(!p.admits(&email("eve@sub.acme.example")), "a subdomain is another domain");
        assert!(!p.admits(&email("eve@acme.example.evil.example")));
        assert_eq!(
            p.check_domain(&email("eve@evil.example")).err().map(|e| e.code),
            Some(ErrorCode::EmailDomainNotAllowed)
        );
    }
}
