//! Console sessions: the browser trades an API key for a session once, and from then on a
//! cookie stands for the key. A session is exactly the key it was opened with: the same scopes,
//! the same rate limit, the same audit name, and it ends the moment the key is revoked or
//! rotated (it names the key by digest, and the gatekeeper no longer knows that digest).
//!
//! The cookie is `HttpOnly` (page scripts cannot read it), `SameSite=Strict` (no other site's
//! page sends it), `Secure` when the request came over HTTPS, and expires with the session.
//! Every request that changes something must also carry the session's CSRF token in
//! `X-CSRF-Token`, which only a page of this origin can read (from `GET /ui/session`): a
//! synchronizer token on top of `SameSite`, for browsers and proxies that do not honour it.

use actix_web::HttpRequest;
use actix_web::http::header::COOKIE;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use flyhook_store::sessions::SessionStore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::key_ring::{ApiKey, ApiKeyError};

/// The cookie's name over plain HTTP (development).
pub const COOKIE_NAME: &str = "flyhook_session";
/// The cookie's name over HTTPS. Browsers take a `__Host-` cookie only from this very host,
/// `Secure`, `Path=/` and without `Domain`, so a sibling subdomain cannot plant one.
const HTTPS_COOKIE_NAME: &str = "__Host-flyhook_session";

fn over_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

fn cookie_name(req: &HttpRequest) -> &'static str {
    if over_https(req) {
        HTTPS_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}
/// The header unsafe requests of a session carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Opens, finds and closes sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: SessionStore,
    lifetime: Duration,
}

/// A live session, as the request that presented its cookie sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The SHA-256 of the cookie's token (what the store keys sessions by).
    digest: [u8; 32],
    /// The SHA-256 of the API key it stands for.
    pub key_digest: [u8; 32],
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A session just opened: the token goes into the cookie, once.
#[derive(Debug)]
pub struct Opened {
    pub token: String,
    pub session: Session,
}

fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("no randomness for a session: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub fn new(store: SessionStore, lifetime: std::time::Duration) -> Sessions {
        Sessions {
            store,
            lifetime: Duration::from_std(lifetime).unwrap_or(Duration::hours(8)),
        }
    }

    /// How long a session lasts, for the cookie's `Max-Age`.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime.num_seconds()
    }

    /// Opens a session for `key` (already authenticated by the caller). Expired sessions are
    /// swept on the way, so the table holds about one lifetime's sign-ins.
    pub async fn open(&self, key: &ApiKey) -> Result<Opened, ApiError> {
        let token = random_token()?;
        let session = Session {
            digest: digest(&token),
            key_digest: key.digest(),
            csrf_token: random_token()?,
            expires_at: Utc::now() + self.lifetime,
        };
        let unreachable = ApiError::unreachable("console sessions");
        if let Err(e) = self.store.purge_expired().await {
            tracing::debug!(error = %e, "expired console sessions not swept");
        }
        self.store
            .open(
                &session.digest,
                &session.key_digest,
                &session.csrf_token,
                session.expires_at,
            )
            .await
            .map_err(unreachable)?;
        Ok(Opened { token, session })
    }

    /// The live session a cookie's token names; a token that names none (expired, signed
    /// out, made up) is an invalid key, 401.
    pub async fn find(&self, token: &str) -> Result<Session, ApiError> {
        let digest = digest(token);
        let stored = self
            .store
            .find(&digest)
            .await
            .map_err(ApiError::unreachable("console sessions"))?
            .ok_or(ApiError::Unauthorized(ApiKeyError::Invalid))?;
        let key_digest = stored
            .key_digest
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::Unauthorized(ApiKeyError::Invalid))?;
        Ok(Session {
            digest,
            key_digest,
            csrf_token: stored.csrf_token,
            expires_at: stored.expires_at,
        })
    }

    /// Ends a session everywhere.
    pub async fn close(&self, session: &Session) -> Result<(), ApiError> {
        self.close_digest(&session.digest).await
    }

    /// Ends the session a cookie's token names, if any (a browser signing in again leaves no
    /// live session behind).
    pub async fn close_token(&self, token: &str) -> Result<(), ApiError> {
        self.close_digest(&digest(token)).await
    }

    async fn close_digest(&self, digest: &[u8; 32]) -> Result<(), ApiError> {
        self.store
            .close(digest)
            .await
            .map_err(ApiError::unreachable("console sessions"))
    }
}

impl Session {
    /// Refuses a request that changes something without this session's CSRF token.
    pub fn check_csrf(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if req.method().is_safe() {
            return Ok(());
        }
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(presented.ct_eq(self.csrf_token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::CsrfRejected)
        }
    }
}

/// The session token a request's cookie carries, if it carries exactly one. Over plain HTTP,
/// two cookies of that name mean one was planted (a sibling subdomain can set cookies for this
/// host): neither is trusted, so a planted session cannot stand in for the operator's own. Over
/// HTTPS the `__Host-` name keeps planted cookies out altogether.
pub fn token_of(req: &HttpRequest) -> Option<String> {
    let name = cookie_name(req);
    let mut tokens = req
        .headers()
        .get_all(COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (cookie, value) = pair.trim().split_once('=')?;
            (cookie == name && !value.is_empty()).then(|| value.to_string())
        });
    let token = tokens.next()?;
    tokens.next().is_none().then_some(token)
}

/// The `Set-Cookie` value that keeps `token` for `max_age_secs` (0 clears it).
pub fn cookie(req: &HttpRequest, token: &str, max_age_secs: i64) -> String {
    let secure = if over_https(req) { "; Secure" } else { "" };
    let name = cookie_name(req);
    format!("{name}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_token_is_read_from_among_other_cookies() {
        let req = TestRequest::default()
            .insert_header((COOKIE, "a=1; flyhook_session=tok-en; b=2"))
            .to_http_request();
        assert_eq!(token_of(&req).as_deref(), Some("tok-en"));
        let without = TestRequest::default()
            .insert_header((COOKIE, "flyhook_sessionx=1; flyhook_session="))
            .to_http_request();
        assert_eq!(token_of(&without), None);
        let planted = TestRequest::default()
            .insert_header((COOKIE, "flyhook_session=planted; flyhook_session=mine"))
            .to_http_request();
        assert_eq!(token_of(&planted), None, "two sessions: neither trusted");
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let plain = TestRequest::default().to_http_request();
        let set = cookie(&plain, "t", 60);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        let tls = TestRequest::default()
            .insert_header(("X-Forwarded-Proto", "https"))
            .to_http_request();
        let secure = cookie(&tls, "t", 60);
        assert!(secure.starts_with("__Host-flyhook_session=t;") && secure.ends_with("; Secure"));
        // Over HTTPS only the __Host- cookie counts: a plain one may have been planted.
        let planted = TestRequest::default()
            .insert_header(("X-Forwarded-Proto", "https"))
            .insert_header((COOKIE, "flyhook_session=planted"))
            .to_http_request();
        assert_eq!(token_of(&planted), None);
    }

    #[test]
    fn unsafe_methods_need_the_csrf_token() {
        let session = Session {
            digest: [0; 32],
            key_digest: [0; 32],
            csrf_token: "right".into(),
            expires_at: Utc::now(),
        };
        let get = TestRequest::get().to_http_request();
        assert!(session.check_csrf(&get).is_ok());
        for header in [None, Some("wrong"), Some("")] {
            let mut post = TestRequest::post();
            if let Some(value) = header {
                post = post.insert_header((CSRF_HEADER, value));
            }
            assert!(matches!(
                session.check_csrf(&post.to_http_request()),
                Err(ApiError::CsrfRejected)
            ));
        }
        let right = TestRequest::delete()
            .insert_header((CSRF_HEADER, "right"))
            .to_http_request();
        assert!(session.check_csrf(&right).is_ok());
    }
}
