//! The ingress's one error type, and how each error reads on the wire: a problem document
//! (`application/problem+json`) with a stable `code`, a human `message`, and for input errors
//! the `field` at fault. Bad input is always a 4xx; a failing dependency a 503 with
//! `Retry-After`; anything unexpected a 500 whose body says nothing about internals.

use crate::key_ring::ApiKeyError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use flyhook_contract::DispatchStatus;
use flyhook_contract::dispatch::InvalidTaskRef;
use flyte_client::InputError;
use serde::Serialize;

/// The body of every error answer (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The HTTP status, repeated.
    pub status: u16,
    /// Stable and machine-readable; see the list of codes.
    #[schema(value_type = ProblemCode)]
    pub code: &'static str,
    /// For people; may change between versions.
    pub message: String,
    /// The input at fault: a path segment, a task input, a query parameter, a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Unauthorized(#[from] ApiKeyError),
    #[error("this API key's scopes do not cover that task")]
    OutOfScope,
    #[error("this needs an API key with every scope (*)")]
    Forbidden,
    /// Unknown names are refused alike, so a key learns no destination it may not use.
    #[error("this API key may not name that callback destination (Flyhook-Callback)")]
    CallbackNotAllowed,
    #[error("a console action needs the session's X-CSRF-Token header")]
    CsrfRejected,
    #[error("no API key by that name is managed here")]
    KeyNotFound,
    #[error("an API key by that name exists (names are never reused; pick another)")]
    KeyNameTaken,
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("rate limit exceeded for this API key")]
    RateLimited { retry_after_secs: u64 },
    #[error("no such dispatch")]
    DispatchNotFound,
    #[error("invalid path segment {0}")]
    InvalidPath(#[from] InvalidTaskRef),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON object of task inputs")]
    NotAnObject,
    #[error("invalid Idempotency-Key: {0}")]
    InvalidIdempotencyKey(&'static str),
    #[error("the inputs do not fit the task: {0}")]
    InvalidInputs(#[from] InputError),
    #[error(transparent)]
    UnstorableInput(#[from] flyhook_contract::storable::Unstorable),
    #[error(
        "this Idempotency-Key was already used for other inputs; use a new key for a new dispatch"
    )]
    IdempotencyKeyReused,
    #[error("the queue cannot take the dispatch right now; retry")]
    BrokerUnavailable,
    #[error("flyhook is at capacity (too many dispatches in flight or queued); retry")]
    AtCapacity,
    #[error("the status store is unreachable; retry")]
    StoreUnavailable,
    #[error("Flyte did not answer; retry")]
    FlyteUnavailable,
    #[error("the dispatch already finished ({0})")]
    AlreadyFinished(DispatchStatus),
    #[error(
        "only a finished dispatch with known inputs can be replayed; under its own id only when failed, dead_lettered, aborted or timed_out"
    )]
    NotReplayable,
    #[error("no webhook source by that name")]
    UnknownSource,
    #[error("the delivery is not authentic: {0}")]
    SignatureRejected(webhook_signatures::Rejection),
    #[error("invalid query parameter {field}: {reason}")]
    InvalidQuery { field: &'static str, reason: String },
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

/// Every `code` a problem document can carry, for the OpenAPI document.
#[derive(Debug)]
pub struct ProblemCode;

impl utoipa::PartialSchema for ProblemCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ApiError::CODES.iter().copied()))
            .into()
    }
}

impl utoipa::ToSchema for ProblemCode {}

impl ApiError {
    /// PostgreSQL did not answer: logged once here, answered 503 (the caller retries later).
    pub fn store_unavailable(error: sqlx::Error) -> ApiError {
        ApiError::unreachable("status store")(error)
    }

    /// [`ApiError::store_unavailable`] for a part of PostgreSQL named in the log (`audit log`).
    pub fn unreachable(what: &'static str) -> impl Fn(sqlx::Error) -> ApiError {
        move |error| {
            tracing::warn!(error = %error, "{what} unreachable");
            ApiError::StoreUnavailable
        }
    }
}

impl ApiError {
    /// Every code [`ApiError::code`] returns.
    pub const CODES: [&'static str; 35] = [
        "missing_api_key",
        "invalid_api_key",
        "out_of_scope",
        "forbidden",
        "callback_not_allowed",
        "csrf_token_invalid",
        "key_not_found",
        "key_name_taken",
        "invalid_field",
        "rate_limited",
        "dispatch_not_found",
        "invalid_path",
        "unsupported_media_type",
        "payload_too_large",
        "unreadable_body",
        "body_timeout",
        "malformed_json",
        "inputs_not_an_object",
        "invalid_idempotency_key",
        "invalid_inputs",
        "unstorable_input",
        "idempotency_key_reused",
        "queue_unavailable",
        "at_capacity",
        "status_store_unavailable",
        "flyte_unavailable",
        "already_finished",
        "invalid_query",
        "unknown_source",
        "not_replayable",
        "missing_signature",
        "malformed_signature",
        "stale_timestamp",
        "signature_mismatch",
        "internal_error",
    ];

    /// The stable `code` of the problem document.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::OutOfScope => "out_of_scope",
            ApiError::Forbidden => "forbidden",
            ApiError::CallbackNotAllowed => "callback_not_allowed",
            ApiError::CsrfRejected => "csrf_token_invalid",
            ApiError::KeyNotFound => "key_not_found",
            ApiError::KeyNameTaken => "key_name_taken",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::Unauthorized(ApiKeyError::Missing) => "missing_api_key",
            ApiError::Unauthorized(ApiKeyError::Invalid) => "invalid_api_key",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::DispatchNotFound => "dispatch_not_found",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnreadableBody(_) => "unreadable_body",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::NotAnObject => "inputs_not_an_object",
            ApiError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            ApiError::InvalidInputs(_) => "invalid_inputs",
            ApiError::UnstorableInput(_) => "unstorable_input",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::BrokerUnavailable => "queue_unavailable",
            ApiError::AtCapacity => "at_capacity",
            ApiError::StoreUnavailable => "status_store_unavailable",
            ApiError::FlyteUnavailable => "flyte_unavailable",
            ApiError::AlreadyFinished(_) => "already_finished",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::UnknownSource => "unknown_source",
            ApiError::NotReplayable => "not_replayable",
            ApiError::SignatureRejected(rejection) => rejection.code(),
            ApiError::Unexpected(_) => "internal_error",
        }
    }

    /// Why a request was refused, for `flyhook_rejections`.
    pub fn rejection_reason(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) | ApiError::CsrfRejected => "auth",
            ApiError::OutOfScope | ApiError::Forbidden | ApiError::CallbackNotAllowed => "scope",
            ApiError::SignatureRejected(_) | ApiError::UnknownSource => "signature",
            ApiError::RateLimited { .. } => "rate",
            ApiError::InvalidPath(_)
            | ApiError::UnsupportedMediaType
            | ApiError::PayloadTooLarge { .. }
            | ApiError::UnreadableBody(_)
            | ApiError::BodyTimeout
            | ApiError::MalformedJson(_)
            | ApiError::NotAnObject
            | ApiError::InvalidIdempotencyKey(_)
            | ApiError::InvalidInputs(_)
            | ApiError::UnstorableInput(_)
            | ApiError::IdempotencyKeyReused
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery { .. } => "validation",
            ApiError::DispatchNotFound
            | ApiError::AlreadyFinished(_)
            | ApiError::NotReplayable
            | ApiError::KeyNotFound
            | ApiError::KeyNameTaken => "state",
            ApiError::AtCapacity => "capacity",
            ApiError::BrokerUnavailable
            | ApiError::StoreUnavailable
            | ApiError::FlyteUnavailable => "dependency",
            ApiError::Unexpected(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidPath(e) => Some(e.field),
            ApiError::InvalidInputs(e) => Some(e.field()),
            ApiError::UnstorableInput(e) => Some(e.field()),
            ApiError::InvalidIdempotencyKey(_) | ApiError::IdempotencyKeyReused => {
                Some("Idempotency-Key")
            }
            ApiError::CallbackNotAllowed => Some("Flyhook-Callback"),
            ApiError::InvalidQuery { field, .. } | ApiError::InvalidField { field, .. } => {
                Some(field)
            }
            _ => None,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::BrokerUnavailable
            | ApiError::AtCapacity
            | ApiError::StoreUnavailable
            | ApiError::FlyteUnavailable => Some(1),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) | ApiError::SignatureRejected(_) => StatusCode::UNAUTHORIZED,
            ApiError::OutOfScope
            | ApiError::Forbidden
            | ApiError::CsrfRejected
            | ApiError::CallbackNotAllowed => StatusCode::FORBIDDEN,
            ApiError::UnknownSource => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::DispatchNotFound | ApiError::KeyNotFound => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnreadableBody(_)
            | ApiError::MalformedJson(_)
            | ApiError::InvalidIdempotencyKey(_)
            | ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::AlreadyFinished(_) | ApiError::NotReplayable | ApiError::KeyNameTaken => {
                StatusCode::CONFLICT
            }
            ApiError::InvalidPath(_)
            | ApiError::NotAnObject
            | ApiError::InvalidInputs(_)
            | ApiError::UnstorableInput(_)
            | ApiError::InvalidField { .. }
            | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BrokerUnavailable
            | ApiError::AtCapacity
            | ApiError::StoreUnavailable
            | ApiError::FlyteUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = match self {
            // Internals stay in the logs.
            ApiError::Unexpected(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = Problem {
            status: status.as_u16(),
            code: self.code(),
            message,
            field: self.field().map(str::to_string),
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if let Some(secs) = self.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"flyhook\""),
                ));
            }
            ApiError::SignatureRejected(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Signature realm=\"flyhook-hooks\""),
                ));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_signatures::Rejection;

    #[test]
    fn every_code_is_listed_once() {
        let one_of_each = [
            ApiError::Unauthorized(ApiKeyError::Missing),
            ApiError::Unauthorized(ApiKeyError::Invalid),
            ApiError::OutOfScope,
            ApiError::Forbidden,
            ApiError::CallbackNotAllowed,
            ApiError::CsrfRejected,
            ApiError::KeyNotFound,
            ApiError::KeyNameTaken,
            ApiError::InvalidField {
                field: "name",
                reason: String::new(),
            },
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::DispatchNotFound,
            ApiError::InvalidPath(
                flyhook_contract::TaskRef::parse("P", "d", "n", "v").unwrap_err(),
            ),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::UnreadableBody(String::new()),
            ApiError::BodyTimeout,
            ApiError::MalformedJson(String::new()),
            ApiError::NotAnObject,
            ApiError::InvalidIdempotencyKey(""),
            ApiError::InvalidInputs(InputError::Missing { field: "x".into() }),
            ApiError::UnstorableInput(flyhook_contract::storable::Unstorable::Nul("x".into())),
            ApiError::IdempotencyKeyReused,
            ApiError::BrokerUnavailable,
            ApiError::AtCapacity,
            ApiError::StoreUnavailable,
            ApiError::FlyteUnavailable,
            ApiError::AlreadyFinished(DispatchStatus::Succeeded),
            ApiError::InvalidQuery {
                field: "q",
                reason: String::new(),
            },
            ApiError::UnknownSource,
            ApiError::NotReplayable,
            ApiError::SignatureRejected(Rejection::Missing),
            ApiError::SignatureRejected(Rejection::Malformed),
            ApiError::SignatureRejected(Rejection::Stale),
            ApiError::SignatureRejected(Rejection::Mismatch),
            ApiError::Unexpected(anyhow::anyhow!("x")),
        ];
        let mut codes: Vec<&str> = one_of_each.iter().map(ApiError::code).collect();
        codes.sort_unstable();
        let mut listed = ApiError::CODES.to_vec();
        listed.sort_unstable();
        assert_eq!(codes, listed);
    }
}
