//! Request bodies read within the `[ingress]` limits (size, and time: a slow-loris guard), for
//! every handler that takes one: `run-task` reads a JSON object, `hooks` the raw bytes a
//! signature covers.

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, BytesMut};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::settings::IngressSettings;

/// Reads a JSON object body within the size and time limits.
pub async fn read_json_object(
    req: &HttpRequest,
    payload: web::Payload,
    settings: &IngressSettings,
) -> Result<Map<String, Value>, ApiError> {
    match read_json_value(req, payload, settings).await? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::NotAnObject),
    }
}

/// Reads a JSON body of the shape `T` (a console action's request) within the limits; a body
/// of another shape is a 422 saying what did not fit.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    settings: &IngressSettings,
) -> Result<T, ApiError> {
    let value = read_json_value(req, payload, settings).await?;
    serde_json::from_value(value).map_err(|e| ApiError::InvalidField {
        field: "body",
        reason: e.to_string(),
    })
}

async fn read_json_value(
    req: &HttpRequest,
    payload: web::Payload,
    settings: &IngressSettings,
) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = read_body(req, payload, settings).await?;
    serde_json::from_slice::<Value>(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// Reads the raw body: at most `max_body_bytes` (refused early on a declared length beyond
/// it, and as soon as a streamed body passes it), within `body_read_timeout` (a body trickled
/// in slowly holds a connection, not the server).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    settings: &IngressSettings,
) -> Result<web::Bytes, ApiError> {
    let limit = settings.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::UnreadableBody(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(settings.body_read_timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}
