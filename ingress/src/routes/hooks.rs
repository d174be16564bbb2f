//! `POST /hooks/{source}`: provider webhooks, verified on the raw bytes before anything is
//! parsed, then routed to tasks. `POST /github-webhook` is the seed's endpoint, an alias of the
//! configured GitHub source.

use std::sync::Arc;

use crate::sources::Source;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use flyhook_contract::DispatchId;
use flyhook_contract::principal::Principal;
use serde::Serialize;
use serde_json::{Map, Value};
use webhook_signatures::UnixMillis;

use crate::error::{ApiError, Problem};
use crate::intake::{Delivery, RoutedDispatch};
use crate::observe::{RequestId, note_dispatches};
use crate::routes::Services;
use crate::routes::body::read_body;

/// A provider's answers to a delivery (besides the problem documents).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookQueued {
    /// `queued`.
    status: &'static str,
    /// The provider's id of the delivery when it sends one, else the key the dispatches derive
    /// from (an event id, or a digest of the body).
    delivery_id: String,
    /// One per matching route.
    dispatches: Vec<RoutedDispatch>,
}

/// A verified delivery no route wanted: recorded, so it can be looked up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HookIgnored {
    /// `ignored`.
    status: &'static str,
    delivery_id: String,
    #[schema(value_type = String)]
    id: DispatchId,
    status_url: String,
}

/// Receives a provider webhook, verified by the source's signature scheme on the raw bytes.
#[utoipa::path(
    post,
    path = "/hooks/{source}",
    tag = "intake",
    params(("source" = String, Path, description = "A configured source's name")),
    request_body(content = Object, content_type = "application/json", description = "The provider's payload (JSON, or a form for GitHub and Slack)"),
    responses(
        (status = 202, description = "Routed: one dispatch per matching route", body = HookQueued),
        (status = 200, description = "Verified but no route matched (recorded `ignored`), or a provider handshake (Slack's challenge, GitHub's ping)", body = HookIgnored),
        (status = 401, description = "The signature is missing, malformed, stale or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No source by that name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let source = services.sources.get(&path).ok_or(ApiError::UnknownSource)?;
    handle(req, source, payload, services).await
}

/// The seed's GitHub endpoint: the configured GitHub source.
#[utoipa::path(
    post,
    path = "/github-webhook",
    tag = "intake",
    request_body(content = Object, content_type = "application/json", description = "GitHub's payload"),
    responses(
        (status = 202, description = "Routed: one dispatch per matching route", body = HookQueued),
        (status = 200, description = "Verified but no route matched, or a ping", body = HookIgnored),
        (status = 401, description = "The signature is missing, malformed or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No GitHub source is configured", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn github_webhook(
    req: HttpRequest,
    payload: web::Payload,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let source = services
        .sources
        .github_alias()
        .ok_or(ApiError::UnknownSource)?;
    handle(req, source, payload, services).await
}

async fn handle(
    req: HttpRequest,
    source: Arc<Source>,
    payload: web::Payload,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    req.extensions_mut()
        .insert(Principal::Source(source.name.clone()));
    let body = read_body(&req, payload, &services.settings).await?;
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let verified = source
        .scheme
        .verify(
            &source.secrets,
            headers.as_slice(),
            &body,
            UnixMillis::now(),
            source.tolerance_secs,
        )
        .map_err(|rejection| {
            tracing::info!(source = %source.name, reason = rejection.code(), "delivery refused");
            ApiError::SignatureRejected(rejection)
        })?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let payload = parse_payload(content_type, &body)?;

    if let Some(answer) = source.scheme.handshake(headers.as_slice(), &payload) {
        return Ok(HttpResponse::Ok().json(answer));
    }
    // Dispatch ids derive from what the signature covers; the provider's own id is only echoed.
    let dedup_key = source.scheme.dedup_key(&verified, &body);
    let delivery_id = verified.delivery_id.unwrap_or_else(|| dedup_key.clone());
    let request_id = RequestId::of(&req);
    match services
        .intake
        .accept_delivery(
            &source,
            &dedup_key,
            &delivery_id,
            &headers,
            &payload,
            &request_id,
        )
        .await?
    {
        Delivery::Routed(dispatches) => {
            note_dispatches(&req, dispatches.iter().map(|d| d.accepted.id));
            Ok(HttpResponse::Accepted().json(HookQueued {
                status: "queued",
                delivery_id,
                dispatches,
            }))
        }
        Delivery::Ignored(id) => {
            note_dispatches(&req, [id]);
            Ok(HttpResponse::Ok().json(HookIgnored {
                status: "ignored",
                delivery_id,
                status_url: format!("/dispatches/{id}"),
                id,
            }))
        }
    }
}

/// JSON, or a form (GitHub and Slack send both): a form whose one field `payload` holds JSON
/// is that JSON; any other form is an object of its fields.
fn parse_payload(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()));
    }
    if essence == "application/x-www-form-urlencoded" {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::MalformedJson(format!("unreadable form: {e}")))?;
        if let [(name, json)] = fields.as_slice()
            && name == "payload"
        {
            return serde_json::from_str(json).map_err(|e| ApiError::MalformedJson(e.to_string()));
        }
        return Ok(Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>(),
        ));
    }
    Err(ApiError::UnsupportedMediaType)
}
