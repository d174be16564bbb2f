//! `GET /overview`: the console's first page as figures.

use actix_web::{HttpResponse, web};

use crate::auth::Caller;
use crate::console::Overview;
use crate::error::{ApiError, Problem};
use crate::routes::Services;

/// Dispatches accepted, started, failed and dead-lettered over the last hour and day, runs in
/// flight, and (for a key with every scope) queue depths and refusals by reason.
#[utoipa::path(
    get,
    path = "/overview",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The figures, within the key's scopes", body = Overview),
        (status = 503, description = "PostgreSQL is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn overview(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let overview = services.console.overview(&caller.scopes).await?;
    Ok(HttpResponse::Ok().json(overview))
}
