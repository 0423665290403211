//! Reading the audit trail: an organization's admins and owners list and filter its entries,
//! export them as JSON lines, and verify the hash chain (`conclave_audit_verify`). Entries name
//! people by pseudonym; the answer resolves each pseudonym while its link to the person exists.

use crate::AppState;
use crate::audit::{self, Actor};
use crate::context::admin_tx;
use crate::context::session::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, ClientIp};
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use conclave_protocol::compliance::{AuditEntry, AuditPage, AuditPerson, AuditVerification};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How many entries an export reads per query.
const EXPORT_PAGE: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(export)).routes(routes!(verify))
}

/// What to select: every field optional, all given ones must match.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Filter {
    /// A user (or device) id, or the pseudonym an entry shows.
    actor_id: Option<Uuid>,
    /// An action (`legal_hold.placed`) or its domain (`legal_hold`).
    action: Option<String>,
    target_type: Option<String>,
    /// A target's id (a user's id finds the entries naming their pseudonym).
    target_id: Option<Uuid>,
    /// Entries at or after this time.
    since: Option<DateTime<Utc>>,
    /// Entries before this time.
    until: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1-200, default 50 (ignored by the export).
    limit: Option<i64>,
}

impl Filter {
    fn before_seq(&self) -> ApiResult<Option<i64>> {
        match &self.cursor {
            None => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(seq) if seq > 0 => Ok(Some(seq)),
                _ => Err(ApiError::validation("cursor", "is not a cursor this API returned")),
            },
        }
    }
}

struct Row {
    id: Uuid,
    chain_seq: i64,
    actor_kind: String,
    actor_user_id: Option<Uuid>,
    actor_subject: Option<Uuid>,
    actor_device_id: Option<Uuid>,
    device_subject: Option<Uuid>,
    action: String,
    target_type: Option<String>,
    target_id: Option<Uuid>,
    target_subject: Option<Uuid>,
    ip: Option<String>,
    details: serde_json::Value,
    created_at: DateTime<Utc>,
    hash: String,
}

fn person(pseudonym: Option<Uuid>, id: Option<Uuid>) -> Option<AuditPerson> {
    pseudonym.map(|pseudonym| AuditPerson { pseudonym, id })
}

impl From<Row> for AuditEntry {
    fn from(row: Row) -> Self {
        let is_person = matches!(row.target_type.as_deref(), Some("user" | "member" | "device"));
        Self {
            id: row.id,
            chain_seq: row.chain_seq,
            actor_kind: row.actor_kind,
            actor: person(row.actor_user_id, row.actor_subject),
            actor_device: person(row.actor_device_id, row.device_subject),
            action: row.action,
            target_type: row.target_type,
            target_person: if is_person { person(row.target_id, row.target_subject) } else { None },
            target_id: row.target_id,
            ip_address: row.ip,
            details: row.details,
            created_at: row.created_at,
            hash: row.hash,
        }
    }
}

/// One page of matching entries older than `before_seq`, newest first.
async fn page(
    conn: &mut PgConnection,
    organization_id: Uuid,
    filter: &Filter,
    before_seq: Option<i64>,
    limit: i64,
) -> ApiResult<Vec<AuditEntry>> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT a.id, a.chain_seq, a.actor_kind, a.actor_user_id, pa.subject_id AS "actor_subject?",
                  a.actor_device_id, pd.subject_id AS "device_subject?", a.action, a.target_type, a.target_id,
                  pt.subject_id AS "target_subject?", host(a.ip_address) AS ip, a.details, a.created_at,
                  encode(a.hash, 'hex') AS "hash!"
             FROM audit_logs a
             LEFT JOIN audit_pseudonyms pa ON pa.pseudonym = a.actor_user_id
             LEFT JOIN audit_pseudonyms pd ON pd.pseudonym = a.actor_device_id
             LEFT JOIN audit_pseudonyms pt ON pt.pseudonym = a.target_id AND a.target_type IN ('user', 'member', 'device')
            WHERE a.organization_id = $1
              AND ($2::uuid IS NULL OR a.actor_user_id = coalesce((SELECT p.pseudonym FROM audit_pseudonyms p WHERE p.subject_id = $2), $2))
              AND ($3::text IS NULL OR a.action = $3 OR starts_with(a.action, $3 || '.'))
              AND ($4::text IS NULL OR a.target_type = $4)
              AND ($5::uuid IS NULL OR a.target_id = coalesce((SELECT p.pseudonym FROM audit_pseudonyms p WHERE p.subject_id = $5), $5))
              AND ($6::timestamptz IS NULL OR a.created_at >= $6)
              AND ($7::timestamptz IS NULL OR a.created_at < $7)
              AND ($8::bigint IS NULL OR a.chain_seq < $8)
            ORDER BY a.chain_seq DESC
            LIMIT $9"#,
        organization_id,
        filter.actor_id,
        filter.action,
        filter.target_type,
        filter.target_id,
        filter.since,
        filter.until,
        before_seq,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(AuditEntry::from).collect())
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/audit",
    tag = "compliance",
    operation_id = "list_audit_entries",
    params(Filter),
    responses(
        (status = 200, description = "Matching entries, newest first", body = AuditPage),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`, `invalid_query`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, filter), fields(user_id = %auth.user_id))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiQuery(filter): ApiQuery<Filter>,
) -> ApiResult<axum::Json<AuditPage>> {
    let limit = crate::limits::page_limit(filter.limit, crate::limits::DEFAULT_PAGE)?;
    let before = filter.before_seq()?;
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    let mut entries = page(&mut tx, organization_id, &filter, before, limit + 1).await?;
    tx.commit().await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.chain_seq.to_string())
    } else {
        None
    };
    Ok(axum::Json(AuditPage { entries, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/audit/export",
    tag = "compliance",
    operation_id = "export_audit_entries",
    params(Filter),
    responses(
        (status = 200, description = "Every matching entry as JSON lines (one `AuditEntry` per line), newest first; the export itself is audited (`audit.exported`)", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`, `invalid_query`", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth, filter), fields(user_id = %auth.user_id))]
async fn export(
    State(state): State<AppState>,
    auth: AuthUser,
    ip: ClientIp,
    ApiPath(organization_id): ApiPath<Uuid>,
    ApiQuery(filter): ApiQuery<Filter>,
) -> ApiResult<Response> {
    let mut before = filter.before_seq()?;
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    // Recorded first, so the export is in the trail whatever it is used for; the pages below
    // start before it (the first page reads from the head as it was).
    let head = sqlx::query_scalar!(
        r#"SELECT coalesce(max(chain_seq), 0) + 1 AS "head!" FROM audit_logs WHERE organization_id = $1"#,
        organization_id
    )
    .fetch_one(&mut *tx)
    .await?;
    before = Some(before.map_or(head, |b| b.min(head)));
    audit::record(
        &mut tx,
        audit::Entry {
            organization_id: Some(organization_id),
            actor: Actor::of(auth),
            action: "audit.exported",
            target: None,
            ip: ip.0,
            details: json!({
                "action": filter.action, "target_type": filter.target_type,
                "since": filter.since, "until": filter.until,
            }),
        },
    )
    .await?;
    // One transaction, so the export is one consistent snapshot of the trail.
    let mut lines = Vec::new();
    loop {
        let entries = page(&mut tx, organization_id, &filter, before, EXPORT_PAGE).await?;
        let Some(last) = entries.last() else { break };
        before = Some(last.chain_seq);
        for entry in &entries {
            serde_json::to_writer(&mut lines, entry).map_err(|_| ApiError::internal())?;
            lines.push(b'\n');
        }
        if (entries.len() as i64) < EXPORT_PAGE {
            break;
        }
    }
    tx.commit().await?;
    let mut response = Body::from(lines).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/organizations/{organization_id}/audit/verify",
    tag = "compliance",
    operation_id = "verify_audit_chain",
    responses(
        (status = 200, description = "Whether every entry of the organization's chain is intact, and the first that is not", body = AuditVerification),
        (status = 403, description = "`insufficient_role`: admins and owners only", body = crate::error::ErrorBody),
    )
)]
#[tracing::instrument(skip(state, auth), fields(user_id = %auth.user_id))]
async fn verify(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(organization_id): ApiPath<Uuid>,
) -> ApiResult<axum::Json<AuditVerification>> {
    let (mut tx, _) = admin_tx(&state, auth, organization_id).await?;
    // The same check the operator shows in the Organization's status.
    let check = sqlx::query!(
        r#"SELECT entries AS "entries!", first_broken_seq, first_broken_id, problem FROM conclave_audit_check($1)"#,
        organization_id
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(axum::Json(AuditVerification {
        intact: check.first_broken_seq.is_none(),
        entries: check.entries,
        first_broken_seq: check.first_broken_seq,
        first_broken_id: check.first_broken_id,
        problem: check.problem,
        verified_at: Utc::now(),
    }))
}
