//! Who is calling: the bearer API key, checked against the key ring, then the key's rate limit.
//! Handlers take a [`Caller`] and never see an unauthenticated or over-limit request.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::num::NonZeroU32;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use flyhook_common::api_keys::{ApiKey, KeyRing, RateLimit};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The key ring and one rate limiter per key name. Keys are known at start-up, so the set of
/// limiters is fixed and cannot grow with traffic.
#[derive(Debug)]
pub struct Gatekeeper {
    keys: KeyRing,
    limiters: HashMap<String, DefaultDirectRateLimiter>,
}

fn quota(limit: RateLimit) -> Quota {
    let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
    Quota::per_second(per_second).allow_burst(burst)
}

impl Gatekeeper {
    pub fn new(keys: KeyRing, default_limit: RateLimit) -> Gatekeeper {
        let limiters = keys
            .owners()
            .map(|owner| {
                let limit = owner.rate_limit.unwrap_or(default_limit);
                (owner.name.clone(), RateLimiter::direct(quota(limit)))
            })
            .collect();
        Gatekeeper { keys, limiters }
    }

    fn admit(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let key = ApiKey::from_authorization_header(authorization)?;
        let owner = self.keys.authenticate(&key)?;
        if let Some(limiter) = self.limiters.get(&owner.name)
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
        Ok(Caller {
            key_name: owner.name.clone(),
        })
    }
}

/// An authenticated caller within its rate limit.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The name of the API key used (never the key itself).
    pub key_name: String,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(gatekeeper) = req.app_data::<web::Data<Gatekeeper>>() else {
            return ready(Err(ApiError::Unexpected(anyhow::anyhow!(
                "Gatekeeper missing from app data"
            ))));
        };
        let authorization = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        ready(gatekeeper.admit(authorization))
    }
}
