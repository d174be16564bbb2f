//! What every request passes through: a request id (the caller's `X-Request-Id` when it is a
//! usable one, else a fresh one) that every log line of the request carries and the answer
//! echoes; the access log line; the request metrics; and, for invocations, the audit entry.

use std::fmt;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};
use flyhook_contract::DispatchId;
use flyhook_contract::principal::Principal;
use flyhook_store::audit::AuditEntry;
use tracing::Instrument;

use crate::audit::AuditLog;
use crate::error::ApiError;
use crate::metrics::{IngressMetrics, ReasonLabels, RequestLabels, RouteLabels};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Identifies one request across the ingress's logs, the queue message, the worker's logs, the
/// Flyte run's labels and the audit log. Usable as a Kubernetes label value (which Flyte run
/// labels are): 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    fn parse(text: &str) -> Option<RequestId> {
        let bytes = text.as_bytes();
        let usable = (1..=63).contains(&bytes.len())
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        usable.then(|| RequestId(text.to_string()))
    }

    /// A new random id (32 hex digits).
    pub fn fresh() -> RequestId {
        RequestId(format!("{:032x}", fastrand::u128(..)))
    }

    /// The caller's id if usable, else a fresh one.
    fn for_header(value: Option<&HeaderValue>) -> RequestId {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::fresh)
    }

    /// The id the middleware gave this request (a fresh one outside it).
    pub fn of(req: &HttpRequest) -> RequestId {
        req.extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::fresh)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pattern of the route a request matched (set on each resource when the app is built).
#[derive(Debug, Clone, Copy)]
pub struct RoutePattern(pub &'static str);

/// The dispatches a request created or acted on, for its access line and audit entry.
#[derive(Debug, Default)]
struct TouchedDispatches(Vec<String>);

/// Dispatch ids as one field of the access line: comma-separated, `-` for none, the first
/// [`IdList::SHOWN`] and a count of the rest (a bulk replay touches a thousand; log collectors
/// split or cut long lines). The audit entry keeps them all.
struct IdList<'a>(&'a [String]);

impl IdList<'_> {
    const SHOWN: usize = 10;
}

impl fmt::Display for IdList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((first, rest)) = self.0.split_first() else {
            return f.write_str("-");
        };
        f.write_str(first)?;
        let shown = rest.len().min(IdList::SHOWN - 1);
        rest[..shown].iter().try_for_each(|id| write!(f, ",{id}"))?;
        match rest.len() - shown {
            0 => Ok(()),
            more => write!(f, ",+{more} more"),
        }
    }
}

/// Notes dispatches for the request's access line and audit entry.
pub fn note_dispatches(req: &HttpRequest, ids: impl IntoIterator<Item = DispatchId>) {
    let mut extensions = req.extensions_mut();
    let touched = extensions.get_mut::<TouchedDispatches>();
    let ids = ids.into_iter().map(|id| id.to_string());
    match touched {
        Some(touched) => touched.0.extend(ids),
        None => {
            extensions.insert(TouchedDispatches(ids.collect()));
        }
    }
}

/// Invocations are audited: anything that changes something, and reading the audit log itself.
fn is_invocation(method: &Method, route: &str) -> bool {
    !method.is_safe() || route == "/audit"
}

/// A method as a label: the standard ones by name, anything else as `OTHER` (so a client
/// cannot grow the label set).
fn method_label(method: &Method) -> &'static str {
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .into_iter()
        .find(|name| *name == method.as_str())
        .unwrap_or("OTHER")
}

fn outcome(status: StatusCode, error: Option<&ApiError>) -> String {
    match error {
        Some(error) => error.code().to_string(),
        None if status == StatusCode::ACCEPTED => "accepted".into(),
        None if status.is_success() => "ok".into(),
        None => format!("http_{}", status.as_u16()),
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = RequestId::for_header(req.headers().get(REQUEST_ID_HEADER));
    req.extensions_mut().insert(request_id.clone());
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.call(req).instrument(span.clone()).await?;

    let elapsed = started.elapsed();
    let status = response.status();
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let request = response.request();
    let route = request
        .app_data::<RoutePattern>()
        .map_or("unmatched", |pattern| pattern.0);
    let error = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>());
    if let Some(metrics) = request.app_data::<web::Data<IngressMetrics>>() {
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(&method),
                status: status.as_u16(),
            })
            .inc();
        metrics
            .request_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = error.map(ApiError::rejection_reason) {
            metrics
                .rejections
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }
    let principal = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.to_string());
    let dispatch_ids = request
        .extensions_mut()
        .remove::<TouchedDispatches>()
        .unwrap_or_default()
        .0;
    // One line per request, the dispatches it queued or acted on included. Field values are
    // only evaluated when the access log is enabled.
    span.in_scope(|| {
        tracing::info!(
            target: "flyhook::access",
            method = %method,
            // As written, not escaped: HTTP parsing refuses spaces and line breaks in a path.
            path = %request.path(),
            status = status.as_u16(),
            // Whole microseconds: an integer is cheaper to write than a float's shortest form.
            elapsed_us = elapsed.as_micros() as u64,
            principal = principal.as_deref().unwrap_or("-"),
            dispatches = %IdList(&dispatch_ids),
            client = %request.peer_addr().map_or_else(|| "-".to_string(), |a| a.ip().to_string()),
        )
    });
    if is_invocation(&method, route)
        && let Some(audit) = request.app_data::<web::Data<AuditLog>>()
    {
        audit.record(AuditEntry {
            id: 0,
            at: chrono::Utc::now(),
            request_id: request_id.to_string(),
            principal,
            method: method.to_string(),
            route: route.to_string(),
            path: request.path().to_string(),
            status: status.as_u16() as i16,
            outcome: outcome(status, error),
            dispatch_ids,
            client_addr: request.peer_addr().map(|a| a.ip().to_string()),
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_request_ids_are_kept_and_others_replaced() {
        for kept in [
            "abc",
            "a-b_c.d",
            "0123456789abcdef0123456789abcdef",
            &"a".repeat(63),
        ] {
            let value = HeaderValue::from_str(kept).unwrap();
            assert_eq!(RequestId::for_header(Some(&value)).as_str(), kept);
        }
        for replaced in ["", "-abc", "abc-", "a b", "a/b", &"a".repeat(64), "é"] {
            let Ok(value) = HeaderValue::from_str(replaced) else {
                continue;
            };
            let id = RequestId::for_header(Some(&value));
            assert_ne!(id.as_str(), replaced);
            assert!(RequestId::parse(id.as_str()).is_some());
        }
        assert_eq!(RequestId::for_header(None).as_str().len(), 32);
    }

    #[test]
    fn access_lines_name_ten_dispatches_and_count_the_rest() {
        let ids: Vec<String> = (0..12).map(|n| format!("d{n}")).collect();
        assert_eq!(IdList(&[]).to_string(), "-");
        assert_eq!(IdList(&ids[..1]).to_string(), "d0");
        assert_eq!(
            IdList(&ids[..10]).to_string(),
            "d0,d1,d2,d3,d4,d5,d6,d7,d8,d9"
        );
        assert_eq!(
            IdList(&ids).to_string(),
            "d0,d1,d2,d3,d4,d5,d6,d7,d8,d9,+2 more"
        );
    }
}
