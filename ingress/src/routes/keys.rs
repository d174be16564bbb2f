//! `/keys`: the managed API keys, for keys with every scope, as `flyhook keys` does from a
//! shell: list, create (the key is shown once), revoke.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use flyhook_contract::keys::{KeyOwner, RateLimit};
use flyhook_contract::scopes::Scopes;
use flyhook_store::keys::{KeyListing, KeyStore, KeyStoreError};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Gatekeeper};
use crate::error::{ApiError, Problem};
use crate::routes::Services;
use crate::routes::body::read_json;

/// A key as listed (never the key itself).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    name: String,
    /// The key's first characters, to tell keys apart; absent for configured keys.
    prefix: Option<String>,
    scopes: Vec<String>,
    rate_per_second: Option<i32>,
    rate_burst: Option<i32>,
    created_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// Made with `flyhook keys create` or `POST /keys` (revocable here); configured keys come
    /// from the environment or the configuration file.
    managed: bool,
}

/// A rate as the store's columns hold it (a rate beyond `i32` is shown as its largest value).
fn column(rate: Option<RateLimit>, part: fn(RateLimit) -> u32) -> Option<i32> {
    rate.map(|r| i32::try_from(part(r)).unwrap_or(i32::MAX))
}

impl From<KeyOwner> for KeyView {
    fn from(owner: KeyOwner) -> KeyView {
        KeyView {
            scopes: owner.scopes.iter().map(ToString::to_string).collect(),
            rate_per_second: column(owner.rate_limit, |r| r.per_second),
            rate_burst: column(owner.rate_limit, |r| r.burst),
            name: owner.name,
            prefix: None,
            created_at: None,
            revoked_at: None,
            managed: false,
        }
    }
}

impl From<KeyListing> for KeyView {
    fn from(listing: KeyListing) -> KeyView {
        KeyView {
            name: listing.name,
            prefix: Some(listing.prefix),
            scopes: listing.scopes,
            rate_per_second: listing.rate_per_second,
            rate_burst: listing.rate_burst,
            created_at: Some(listing.created_at),
            revoked_at: listing.revoked_at,
            managed: true,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Configured keys first, then managed ones, newest first.
    items: Vec<KeyView>,
}

fn key_store(services: &Services) -> KeyStore {
    KeyStore::new(services.store.pool().clone())
}

fn store_error(error: KeyStoreError) -> ApiError {
    match error {
        KeyStoreError::NameTaken(_) => ApiError::KeyNameTaken,
        KeyStoreError::NotFound(_) => ApiError::KeyNotFound,
        KeyStoreError::InvalidName => ApiError::InvalidField {
            field: "name",
            reason: KeyStoreError::InvalidName.to_string(),
        },
        KeyStoreError::Database(e) => ApiError::unreachable("API keys")(e),
    }
}

/// Lists every key, revoked managed keys included.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 403, description = "The key does not have every scope", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_keys(
    caller: Caller,
    services: web::Data<Services>,
    gatekeeper: web::Data<Gatekeeper>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let mut items: Vec<KeyView> = gatekeeper
        .configured_owners()
        .into_iter()
        .map(KeyView::from)
        .collect();
    let managed = key_store(&services).list().await.map_err(store_error)?;
    items.extend(managed.into_iter().map(KeyView::from));
    Ok(HttpResponse::Ok().json(KeyList { items }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// 1 to 64 letters, digits, `_`, `.` or `-`; never reused.
    name: String,
    /// `*`, `project`, `project/domain` or `project/domain/task`.
    scopes: Vec<String>,
    /// The key's own rate; the default rate when absent.
    rate_per_second: Option<u32>,
    /// The burst; `rate_per_second` when absent.
    rate_burst: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key: shown this once, stored only as its SHA-256.
    key: String,
    listing: KeyView,
}

/// Creates a managed key; every ingress replica takes it up within seconds.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "operations",
    request_body(content = NewKey, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created; the key is in the answer, once", body = CreatedKey),
        (status = 403, description = "The key does not have every scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid name, scope or rate", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_key(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    services: web::Data<Services>,
    gatekeeper: web::Data<Gatekeeper>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let new: NewKey = read_json(&req, payload, &services.settings).await?;
    // A managed key under a configured key's name would never be honoured.
    if gatekeeper
        .configured_owners()
        .iter()
        .any(|owner| owner.name == new.name)
    {
        return Err(ApiError::KeyNameTaken);
    }
    let scopes = Scopes::parse_all(&new.scopes).map_err(|e| ApiError::InvalidField {
        field: "scopes",
        reason: e.to_string(),
    })?;
    // The store keeps rates as PostgreSQL integers.
    const MAX_RATE: u32 = i32::MAX as u32;
    let rate = match (new.rate_per_second, new.rate_burst) {
        (None, None) => None,
        (Some(per_second @ 1..=MAX_RATE), burst)
            if burst.is_none_or(|b| (1..=MAX_RATE).contains(&b)) =>
        {
            Some(RateLimit {
                per_second,
                burst: burst.unwrap_or(per_second),
            })
        }
        _ => {
            return Err(ApiError::InvalidField {
                field: "rate_per_second",
                reason: format!(
                    "a rate needs rate_per_second from 1 to {MAX_RATE}, and a burst in the same range"
                ),
            });
        }
    };
    let (key, listing) = key_store(&services)
        .create(&new.name, &scopes, rate)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(CreatedKey {
        key: key.expose_secret().to_string(),
        listing: listing.into(),
    }))
}

/// Revokes a managed key: every ingress replica refuses it, and ends its console sessions,
/// within seconds. Revoking it again changes nothing.
#[utoipa::path(
    post,
    path = "/keys/{name}/revoke",
    tag = "operations",
    params(("name" = String, Path, description = "The key's name")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Revoked", body = KeyView),
        (status = 403, description = "The key does not have every scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No managed key by that name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_key(
    path: web::Path<String>,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let listing = key_store(&services)
        .revoke(&path)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(KeyView::from(listing)))
}
