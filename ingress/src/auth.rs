//! Who is calling: the bearer API key, checked against the keys in memory, then the key's rate
//! limit; what it may touch, by its scopes. Handlers take a [`Caller`] and never see an
//! unauthenticated or over-limit request.
//!
//! Keys are the configured ones plus those managed with `flyhook keys`, which are reloaded from
//! PostgreSQL when it notifies a change (and every `key_refresh`, in case a notification was
//! missed), never per request. While PostgreSQL is away the last loaded keys go on working.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::key_ring::ApiKey;
use crate::key_ring::KeyRing;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use flyhook_contract::TaskRef;
use flyhook_contract::keys::KeyOwner;
use flyhook_contract::keys::RateLimit;
use flyhook_contract::principal::Principal;
use flyhook_contract::scopes::Scopes;
use flyhook_store::DispatchRecord;
use flyhook_store::keys::{KEYS_CHANGED_CHANNEL, KeyStore};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::observe::RequestId;
use crate::pg_listen::follow;
use crate::sessions::{self, Session, Sessions};
use futures_util::future::Either;

/// The keys in force and one rate limiter per key.
#[derive(Debug)]
pub struct Gatekeeper {
    configured: KeyRing,
    default_limit: RateLimit,
    current: RwLock<Arc<Admission>>,
    key_count: Gauge,
}

#[derive(Debug, Default)]
struct Admission {
    keys: KeyRing,
    limiters: HashMap<String, (RateLimit, Arc<DefaultDirectRateLimiter>)>,
}

fn quota(limit: RateLimit) -> Quota {
    let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
    Quota::per_second(per_second).allow_burst(burst)
}

impl Gatekeeper {
    /// Starts with the configured keys; managed ones arrive with [`Gatekeeper::install`].
    pub fn new(configured: KeyRing, default_limit: RateLimit, key_count: Gauge) -> Gatekeeper {
        let gatekeeper = Gatekeeper {
            configured,
            default_limit,
            current: RwLock::default(),
            key_count,
        };
        gatekeeper.install(Vec::new());
        gatekeeper
    }

    /// Puts the configured keys and `managed` in force. A key whose rate did not change keeps
    /// its limiter, so a reload does not hand out a fresh burst.
    pub fn install(&self, managed: Vec<([u8; 32], KeyOwner)>) {
        let previous = self.admission();
        let mut keys = self.configured.clone();
        for (digest, owner) in managed {
            if self.configured.has_name(&owner.name) {
                tracing::warn!(key = %owner.name, "a managed key has a configured key's name; ignoring it");
                continue;
            }
            keys.add_raw_digest(digest, owner);
        }
        let limiters = keys
            .owners()
            .map(|owner| {
                let limit = owner.rate_limit.unwrap_or(self.default_limit);
                let limiter = match previous.limiters.get(&owner.name) {
                    Some((same, limiter)) if *same == limit => limiter.clone(),
                    _ => Arc::new(RateLimiter::direct(quota(limit))),
                };
                (owner.name.clone(), (limit, limiter))
            })
            .collect();
        self.key_count.set(keys.len() as i64);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Admission { keys, limiters });
    }

    /// The keys from the configuration (not revocable at run time), for listings.
    pub fn configured_owners(&self) -> Vec<KeyOwner> {
        let mut owners: Vec<KeyOwner> = self.configured.owners().cloned().collect();
        owners.sort_by(|a, b| a.name.cmp(&b.name));
        owners
    }

    fn admission(&self) -> Arc<Admission> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn admit(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let authorization = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let key = ApiKey::from_authorization_header(authorization)?;
        self.admit_key(req, &key)
    }

    /// Admits a request made with `key` (the bearer key, or the one a console sign-in
    /// presents).
    pub fn admit_key(&self, req: &HttpRequest, key: &ApiKey) -> Result<Caller, ApiError> {
        self.admit_digest(req, &key.digest(), None)
    }

    /// Admits a request for the key with `digest`: the key's owner as now in force, within
    /// the key's rate limit. `session` is the console session it came through, if any.
    fn admit_digest(
        &self,
        req: &HttpRequest,
        digest: &[u8; 32],
        session: Option<Session>,
    ) -> Result<Caller, ApiError> {
        let admission = self.admission();
        let owner = admission.keys.owner_of_digest(digest)?;
        req.extensions_mut()
            .insert(Principal::Key(owner.name.clone()));
        if let Some((_, limiter)) = admission.limiters.get(&owner.name)
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
        Ok(Caller {
            key_name: owner.name.clone(),
            scopes: owner.scopes.clone(),
            request_id: RequestId::of(req),
            session,
        })
    }

    /// Admits a request that carries a console session's cookie: the session must be live,
    /// an unsafe method must carry its CSRF token, and its key must still be in force.
    async fn admit_session(
        self: Arc<Self>,
        req: HttpRequest,
        sessions: web::Data<Sessions>,
        token: String,
    ) -> Result<Caller, ApiError> {
        let session = sessions.find(&token).await?;
        let csrf = session.check_csrf(&req);
        let key_digest = session.key_digest;
        // Admitted first, so a refused forgery is audited under the key it tried to use.
        let caller = self.admit_digest(&req, &key_digest, Some(session))?;
        csrf.map(|()| caller)
    }
}

/// Loads the managed keys (waiting at most 2 s: a replica starting while PostgreSQL is away
/// must still take requests with the configured keys), then keeps them current until
/// `shutdown`.
pub async fn keep_keys_current(
    gatekeeper: Arc<Gatekeeper>,
    pool: PgPool,
    refresh: Duration,
    shutdown: CancellationToken,
) {
    let store = KeyStore::new(pool.clone());
    match tokio::time::timeout(Duration::from_secs(2), store.live()).await {
        Ok(Ok(managed)) => gatekeeper.install(managed),
        Ok(Err(e)) => tracing::warn!(error = %e, "managed API keys not loaded yet"),
        Err(_) => tracing::warn!("managed API keys not loaded yet: PostgreSQL is slow to answer"),
    }
    let reload = Arc::new(Notify::new());
    let heard = reload.clone();
    tokio::spawn(follow(
        pool,
        KEYS_CHANGED_CHANNEL,
        Some(refresh),
        shutdown.clone(),
        move |_| heard.notify_one(),
    ));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = reload.notified() => {}
            }
            match store.live().await {
                Ok(managed) => gatekeeper.install(managed),
                Err(e) => {
                    tracing::warn!(error = %e, "could not reload API keys; the last ones stay in force")
                }
            }
        }
    });
}

/// An authenticated caller within its rate limit.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The name of the API key used (never the key itself).
    pub key_name: String,
    pub scopes: Scopes,
    pub request_id: RequestId,
    /// The console session the request came through (`None` for a bearer key).
    pub session: Option<Session>,
}

impl Caller {
    /// Refuses a task outside the key's scopes.
    pub fn may_use(&self, task: &TaskRef) -> Result<(), ApiError> {
        if self.scopes.allows(task) {
            Ok(())
        } else {
            Err(ApiError::OutOfScope)
        }
    }

    /// Refuses a recorded dispatch of a task outside the key's scopes.
    pub fn may_see(&self, record: &DispatchRecord) -> Result<(), ApiError> {
        if self.scopes.is_unrestricted() {
            return Ok(());
        }
        let task = match (
            &record.project,
            &record.domain,
            &record.task_name,
            &record.task_version,
        ) {
            (Some(p), Some(d), Some(n), Some(v)) => TaskRef::parse(p, d, n, v).ok(),
            _ => None,
        };
        task.ok_or(ApiError::OutOfScope)
            .and_then(|task| self.may_use(&task))
    }

    /// Refuses a key restricted to some tasks (the audit log is for unrestricted keys).
    pub fn must_be_unrestricted(&self) -> Result<(), ApiError> {
        if self.scopes.is_unrestricted() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Admitting a request through a console session (it reads PostgreSQL).
type SessionAdmission =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Caller, ApiError>>>>;

/// A bearer key is checked in memory, at once; a console session needs one look into
/// PostgreSQL, so only requests without an `Authorization` header pay for a future.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Either<Ready<Result<Caller, ApiError>>, SessionAdmission>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(gatekeeper) = req.app_data::<web::Data<Gatekeeper>>() else {
            return Either::Left(ready(Err(ApiError::Unexpected(anyhow::anyhow!(
                "Gatekeeper missing from app data"
            )))));
        };
        // A bearer request (the intake's hot path) never reads its cookies.
        if req
            .headers()
            .contains_key(actix_web::http::header::AUTHORIZATION)
        {
            return Either::Left(ready(gatekeeper.admit(req)));
        }
        match (
            sessions::token_of(req),
            req.app_data::<web::Data<Sessions>>(),
        ) {
            (Some(token), Some(sessions)) => Either::Right(Box::pin(
                gatekeeper
                    .clone()
                    .into_inner()
                    .admit_session(req.clone(), sessions.clone(), token),
            )),
            _ => Either::Left(ready(gatekeeper.admit(req))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn request(key: &str) -> HttpRequest {
        actix_web::test::TestRequest::default()
            .insert_header(("Authorization", format!("Bearer {key}")))
            .to_http_request()
    }

    fn owner(name: &str, scopes: &[&str]) -> KeyOwner {
        KeyOwner {
            name: name.into(),
            rate_limit: Some(RateLimit {
                per_second: 1,
                burst: 1,
            }),
            scopes: Scopes::parse_all(scopes).unwrap(),
        }
    }

    fn digest(key: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes()).into()
    }

    #[test]
    fn a_reload_keeps_each_keys_limiter_and_drops_revoked_keys() {
        let mut configured = KeyRing::default();
        configured
            .add_key(&SecretString::from("static-key"), owner("static", &["*"]))
            .unwrap();
        let gatekeeper = Gatekeeper::new(
            configured,
            RateLimit {
                per_second: 1000,
                burst: 1000,
            },
            Gauge::default(),
        );
        gatekeeper.install(vec![(digest("managed-key"), owner("ci", &["acme"]))]);
        assert_eq!(gatekeeper.key_count.get(), 2);
        let caller = gatekeeper.admit(&request("managed-key")).unwrap();
        assert_eq!(caller.key_name, "ci");
        assert!(!caller.scopes.is_unrestricted());
        assert!(gatekeeper.admit(&request("static-key")).is_ok());

        // The same keys again: the spent burst stays spent.
        gatekeeper.install(vec![(digest("managed-key"), owner("ci", &["acme"]))]);
        for key in ["managed-key", "static-key"] {
            assert!(matches!(
                gatekeeper.admit(&request(key)),
                Err(ApiError::RateLimited { .. })
            ));
        }

        // Revoked: no longer loaded, so no longer accepted; the configured key stays.
        gatekeeper.install(Vec::new());
        assert!(matches!(
            gatekeeper.admit(&request("managed-key")),
            Err(ApiError::Unauthorized(_))
        ));
        assert_eq!(gatekeeper.key_count.get(), 1);
    }
}
