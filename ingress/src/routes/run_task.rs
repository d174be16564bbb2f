//! `POST /run-task/{project}/{domain}/{name}/{version}`: the seed's endpoint, made durable.

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use flyhook_common::TaskRef;
use flyhook_common::config::IngressSettings;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::intake::Intake;

pub async fn run_task(
    req: HttpRequest,
    path: web::Path<(String, String, String, String)>,
    payload: web::Payload,
    caller: Caller,
    intake: web::Data<Intake>,
    settings: web::Data<IngressSettings>,
) -> Result<HttpResponse, ApiError> {
    let (project, domain, name, version) = path.into_inner();
    let task = TaskRef::parse(&project, &domain, &name, &version)?;
    let inputs = read_json_object(&req, payload, settings.max_body_bytes).await?;
    let idempotency_key = idempotency_key(&req)?;
    let accepted = intake
        .accept(&caller, task, inputs, idempotency_key)
        .await?;
    Ok(HttpResponse::Accepted().json(accepted))
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey("must be printable ASCII"))?
        .trim();
    match key.len() {
        0 => Err(ApiError::InvalidIdempotencyKey("must not be empty")),
        1..=255 => Ok(Some(key)),
        _ => Err(ApiError::InvalidIdempotencyKey(
            "must be at most 255 characters",
        )),
    }
}

/// Reads a JSON object body of at most `limit` bytes; refuses early on a declared length
/// beyond the limit, and stops reading as soon as the limit is passed.
pub async fn read_json_object(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::UnreadableBody(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::NotAnObject),
        Err(e) => Err(ApiError::MalformedJson(e.to_string())),
    }
}
