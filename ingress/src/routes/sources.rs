//! `GET /sources`: the configured webhook sources, their routes and recent deliveries.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::auth::Caller;
use crate::console::SourceView;
use crate::error::{ApiError, Problem};
use crate::routes::Services;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceList {
    items: Vec<SourceView>,
}

/// Every source with its routes, the last day of its deliveries (dispatched, ignored,
/// refused and why) and its latest requests. For keys with every scope: sources are
/// configuration, not any one task's.
#[utoipa::path(
    get,
    path = "/sources",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The sources, by name", body = SourceList),
        (status = 403, description = "The key does not have every scope", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_sources(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let items = services.console.sources(&services.sources).await?;
    Ok(HttpResponse::Ok().json(SourceList { items }))
}
