//! `/ui/session`: signing in to the console with an API key, reading the session (with its
//! CSRF token, for the page's own scripts), and signing out.

use actix_web::http::header::SET_COOKIE;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Gatekeeper};
use crate::error::{ApiError, Problem};
use crate::key_ring::{ApiKey, ApiKeyError};
use crate::routes::Services;
use crate::routes::body::read_json;
use crate::sessions::{self, Session, Sessions};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API key.
    key: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn { key: [REDACTED] }")
    }
}

/// A session's answer carries its CSRF token: no cache may keep it.
const NOT_STORED: (actix_web::http::header::HeaderName, &str) =
    (actix_web::http::header::CACHE_CONTROL, "no-store");

/// A console session, as its page sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    key_name: String,
    scopes: Vec<String>,
    /// Whether the key has every scope (the pages for keys, audit, sources and dead letters).
    unrestricted: bool,
    /// Send it back in `X-CSRF-Token` with every request that changes something.
    csrf_token: String,
    expires_at: DateTime<Utc>,
}

fn view(caller: &Caller, session: &Session) -> SessionView {
    SessionView {
        key_name: caller.key_name.clone(),
        scopes: caller.scopes.iter().map(ToString::to_string).collect(),
        unrestricted: caller.scopes.is_unrestricted(),
        csrf_token: session.csrf_token.clone(),
        expires_at: session.expires_at,
    }
}

/// Trades an API key for a console session: an `HttpOnly`, `SameSite=Strict` cookie (and
/// `Secure` over HTTPS) that stands for the key until it expires, the key is revoked, or the
/// session is signed out. The body must be JSON, so no other site's form can sign a browser in.
#[utoipa::path(
    post,
    path = "/ui/session",
    tag = "console",
    request_body(content = SignIn, content_type = "application/json"),
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionView),
        (status = 401, description = "Not a valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_in(
    req: HttpRequest,
    payload: web::Payload,
    services: web::Data<Services>,
    gatekeeper: web::Data<Gatekeeper>,
    sessions: web::Data<Sessions>,
) -> Result<HttpResponse, ApiError> {
    let sign_in: SignIn = read_json(&req, payload, &services.settings).await?;
    let key = ApiKey::parse(sign_in.key.trim()).map_err(|_| ApiKeyError::Invalid)?;
    let caller = gatekeeper.admit_key(&req, &key)?;
    if let Some(previous) = sessions::token_of(&req) {
        sessions.close_token(&previous).await?;
    }
    let opened = sessions.open(&key).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            SET_COOKIE,
            sessions::cookie(&req, &opened.token, sessions.lifetime_secs()),
        ))
        .insert_header(NOT_STORED)
        .json(view(&caller, &opened.session)))
}

/// The session the cookie stands for (401 without one).
#[utoipa::path(
    get,
    path = "/ui/session",
    tag = "console",
    security(("console_session" = [])),
    responses(
        (status = 200, description = "Signed in", body = SessionView),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(caller: Caller) -> Result<HttpResponse, ApiError> {
    let session = caller
        .session
        .as_ref()
        .ok_or(ApiError::Unauthorized(ApiKeyError::Missing))?;
    Ok(HttpResponse::Ok()
        .insert_header(NOT_STORED)
        .json(view(&caller, session)))
}

/// Ends the session everywhere and clears the cookie (needs `X-CSRF-Token`).
#[utoipa::path(
    delete,
    path = "/ui/session",
    tag = "console",
    security(("console_session" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Without the session's CSRF token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_out(
    req: HttpRequest,
    caller: Caller,
    sessions: web::Data<Sessions>,
) -> Result<HttpResponse, ApiError> {
    let session = caller
        .session
        .as_ref()
        .ok_or(ApiError::Unauthorized(ApiKeyError::Missing))?;
    sessions.close(session).await?;
    Ok(HttpResponse::NoContent()
        .insert_header((SET_COOKIE, sessions::cookie(&req, "", 0)))
        .finish())
}
