//! Liveness and readiness, for load balancers and orchestrators.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use flyhook_common::DispatchStore;
use serde_json::json;

use crate::publisher::Publisher;

/// The seed's health check: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the broker is connected and the status store answers; 503 naming what is not.
pub async fn readyz(
    publisher: web::Data<Publisher>,
    store: web::Data<DispatchStore>,
) -> HttpResponse {
    let broker = publisher.is_connected();
    let database = tokio::time::timeout(Duration::from_secs(2), store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let body = json!({
        "status": if broker && database { "ready" } else { "not_ready" },
        "broker": if broker { "up" } else { "down" },
        "database": if database { "up" } else { "down" },
    });
    if broker && database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}
