//! The Connect protocol as connect-go speaks it over JSON: which requests it takes, how they
//! are decoded and what its errors look like, in one place so every answer has the shape a
//! real Flyte server gives.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use flyte_client::Code;
use serde::de::DeserializeOwned;

/// A Connect error body, with the HTTP status Connect gives `code`.
pub(crate) fn error(code: Code, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(serde_json::json!({ "code": code.as_str(), "message": message.into() }))
}

/// The answer connect-go gives a request that is not Connect-JSON, if this is one.
pub(crate) fn refusal(req: &HttpRequest) -> Option<HttpResponse> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Some(
            HttpResponse::UnsupportedMediaType()
                .insert_header(("Accept-Post", "application/json"))
                .finish(),
        );
    }
    match req.headers().get("connect-protocol-version") {
        Some(version) if version.as_bytes() != b"1" => Some(error(
            Code::InvalidArgument,
            format!("connect-protocol-version must be '1': got {version:?}"),
        )),
        _ => None,
    }
}

/// Parses the (schema-valid) request into the client's types and hands it to `handler`.
pub(crate) fn serve<T: DeserializeOwned>(
    body: &[u8],
    handler: impl FnOnce(T) -> HttpResponse,
) -> HttpResponse {
    match serde_json::from_slice(body) {
        Ok(request) => handler(request),
        Err(e) => error(
            Code::InvalidArgument,
            format!("flyte-sim cannot serve this request: {e}"),
        ),
    }
}
