//! Liveness, readiness and metrics, for load balancers, orchestrators and Prometheus.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::routes::Services;

/// Prometheus figures (OpenMetrics text).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Requests, rejections, publish confirms, Flyte calls, audit and keys", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(services: web::Data<Services>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(flyhook_contract::metrics::CONTENT_TYPE)
        .body(flyhook_contract::metrics::render(&services.registry))
}

/// The seed's health check: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Object, example = json!({"status": "ok"})))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Liveness: the process answers (nothing it depends on is looked at, so a dependency going
/// away never gets the ingress restarted).
#[utoipa::path(
    get,
    path = "/livez",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Object, example = json!({"status": "ok"})))
)]
pub async fn livez() -> HttpResponse {
    health().await
}

/// Ready when the broker is connected: that is all intake needs, so an orchestrator keeps
/// sending webhooks while PostgreSQL is away (`"status": "degraded"`: lookups answer 503 until
/// it is back). 503 when the broker is not connected. `broker_node` names the RabbitMQ node
/// publishes go to.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready (or degraded: PostgreSQL away, intake still works)", body = Object,
         example = json!({"status": "ready", "broker": "up", "broker_node": "10.0.0.7:5672", "database": "up"})),
        (status = 503, description = "The broker is not connected", body = Object,
         example = json!({"status": "not_ready", "broker": "down", "broker_node": null, "database": "up"})),
    )
)]
pub async fn readyz(services: web::Data<Services>) -> HttpResponse {
    let node = services.publisher.node();
    let broker = node.is_some();
    let database = tokio::time::timeout(Duration::from_secs(2), services.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let body = json!({
        "status": match (broker, database) {
            (false, _) => "not_ready",
            (true, false) => "degraded",
            (true, true) => "ready",
        },
        "broker": if broker { "up" } else { "down" },
        "broker_node": node,
        "database": if database { "up" } else { "down" },
    });
    if broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}
