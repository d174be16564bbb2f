//! `GET /audit`: the audit log, newest first, for keys with every scope.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use flyhook_store::audit::{AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::Services;
use crate::routes::{page_limit, parsed_query, refuse_nul, trim_page};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// An API key's name, or `source:<name>`.
    principal: Option<String>,
    /// A route pattern, e.g. `/run-task/{project}/{domain}/{name}/{version}`.
    route: Option<String>,
    /// `accepted`, `ok`, or an error code.
    outcome: Option<String>,
    dispatch_id: Option<String>,
    request_id: Option<String>,
    /// Entries at or after this RFC 3339 time.
    since: Option<DateTime<Utc>>,
    /// Entries before this RFC 3339 time.
    until: Option<DateTime<Utc>>,
    /// 1 to 1000; 100 by default.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<i64>,
}

const MAX_PAGE: i64 = 1000;

/// Reads the audit log.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "operations",
    params(AuditQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of entries, newest first", body = AuditPage),
        (status = 400, description = "A query parameter is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key does not have every scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit exceeded", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL is unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit(
    query: Result<web::Query<AuditQuery>, actix_web::Error>,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let query = parsed_query(query)?;
    refuse_nul(&[
        ("principal", query.principal.as_deref()),
        ("route", query.route.as_deref()),
        ("outcome", query.outcome.as_deref()),
        ("dispatch_id", query.dispatch_id.as_deref()),
        ("request_id", query.request_id.as_deref()),
    ])?;
    let limit = page_limit(query.limit, 100, MAX_PAGE)?;
    let filter = AuditFilter {
        principal: query.principal,
        route: query.route,
        outcome: query.outcome,
        dispatch_id: query.dispatch_id,
        request_id: query.request_id,
        since: query.since,
        until: query.until,
        before_id: query.cursor,
    };
    let mut items = services
        .audit_store
        .list(&filter, limit + 1)
        .await
        .map_err(ApiError::unreachable("audit log"))?;
    let next_cursor = trim_page(&mut items, limit).map(|entry| entry.id);
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}
