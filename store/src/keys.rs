//! API keys managed at run time (`flyhook keys`): stored in PostgreSQL as SHA-256 digests, with
//! their scopes and rates. The ingress loads the live ones into memory (see
//! `flyhook_ingress::auth`) and never queries this table per request.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;

use flyhook_contract::keys::{GeneratedKey, KeyOwner, RateLimit};
use flyhook_contract::scopes::Scopes;

/// The channel PostgreSQL notifies on whenever a key is created or revoked.
pub const KEYS_CHANGED_CHANNEL: &str = "flyhook_api_keys";

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("a key named {0:?} exists (names are never reused; pick another)")]
    NameTaken(String),
    #[error("no key named {0:?}")]
    NotFound(String),
    #[error("the key name must be 1 to 64 letters, digits, '_', '.' or '-'")]
    InvalidName,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A key as listings show it (never the key).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct KeyListing {
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub rate_per_second: Option<i32>,
    pub rate_burst: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct LiveKey {
    name: String,
    digest: Vec<u8>,
    scopes: Vec<String>,
    rate_per_second: Option<i32>,
    rate_burst: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct KeyStore {
    pool: PgPool,
}

impl KeyStore {
    pub fn new(pool: PgPool) -> KeyStore {
        KeyStore { pool }
    }

    /// Generates a key, stores its digest, and returns the key: the only time it is seen.
    pub async fn create(
        &self,
        name: &str,
        scopes: &Scopes,
        rate: Option<RateLimit>,
    ) -> Result<(SecretString, KeyListing), KeyStoreError> {
        let valid_name = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid_name {
            return Err(KeyStoreError::InvalidName);
        }
        let generated =
            GeneratedKey::generate().map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let scope_texts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        let listing = sqlx::query_as(
            "INSERT INTO api_keys (name, prefix, digest, scopes, rate_per_second, rate_burst) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING \
             RETURNING name, prefix, scopes, rate_per_second, rate_burst, created_at, revoked_at",
        )
        .bind(name)
        .bind(&generated.display_prefix)
        .bind(generated.digest.as_slice())
        .bind(&scope_texts)
        .bind(rate.map(|r| r.per_second as i32))
        .bind(rate.map(|r| r.burst as i32))
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| KeyStoreError::NameTaken(name.to_string()))?;
        Ok((generated.key, listing))
    }

    /// Every key, revoked ones included, newest first.
    pub async fn list(&self) -> Result<Vec<KeyListing>, KeyStoreError> {
        Ok(sqlx::query_as(
            "SELECT name, prefix, scopes, rate_per_second, rate_burst, created_at, revoked_at \
             FROM api_keys ORDER BY created_at DESC, name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a key, and ends its console sessions in the same statement (the ingresses
    /// would refuse them within a reload anyway); revoking a revoked key changes nothing.
    pub async fn revoke(&self, name: &str) -> Result<KeyListing, KeyStoreError> {
        sqlx::query_as(
            "WITH revoked AS ( \
                UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1 \
                RETURNING name, prefix, digest, scopes, rate_per_second, rate_burst, created_at, \
                          revoked_at), \
             ended AS (DELETE FROM console_sessions \
                       WHERE key_digest IN (SELECT digest FROM revoked)) \
             SELECT name, prefix, scopes, rate_per_second, rate_burst, created_at, revoked_at \
             FROM revoked",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| KeyStoreError::NotFound(name.to_string()))
    }

    /// The keys that work now, as (digest, owner). A row that no longer parses (edited by
    /// hand) is skipped with a warning rather than failing every other key.
    pub async fn live(&self) -> Result<Vec<([u8; 32], KeyOwner)>, KeyStoreError> {
        let rows: Vec<LiveKey> = sqlx::query_as(
            "SELECT name, digest, scopes, rate_per_second, rate_burst FROM api_keys \
             WHERE revoked_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let digest: [u8; 32] = row.digest.as_slice().try_into().ok()?;
                let scopes = Scopes::parse_all(&row.scopes)
                    .inspect_err(
                        |e| tracing::warn!(key = %row.name, error = %e, "skipping a stored key"),
                    )
                    .ok()?;
                let rate_limit = row.rate_per_second.map(|per_second| RateLimit {
                    per_second: per_second.max(1) as u32,
                    burst: row.rate_burst.unwrap_or(per_second).max(1) as u32,
                });
                Some((
                    digest,
                    KeyOwner {
                        name: row.name,
                        rate_limit,
                        scopes,
                    },
                ))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use flyhook_contract::keys::{RateLimit, key_digest_hex};
    use flyhook_contract::scopes::Scopes;
    use secrecy::ExposeSecret;
    use sqlx::PgPool;

    use super::{KeyStore, KeyStoreError};

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_created_key_is_live_by_its_digest_until_revoked_and_its_name_is_never_reused(
        pool: PgPool,
    ) {
        let store = KeyStore::new(pool);
        let scopes = Scopes::parse_all(&["acme/prod"]).unwrap();
        let rate = RateLimit::new(5, Some(10)).unwrap();
        let (key, listing) = store.create("ci", &scopes, Some(rate)).await.unwrap();
        assert!(key.expose_secret().starts_with(&listing.prefix));
        let live = store.live().await.unwrap();
        let digest = key_digest_hex(key.expose_secret());
        let (stored, owner) = &live[0];
        assert_eq!(
            stored
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            digest
        );
        assert_eq!(
            (owner.scopes.clone(), owner.rate_limit),
            (scopes.clone(), Some(rate))
        );

        store.revoke("ci").await.unwrap();
        assert!(store.live().await.unwrap().is_empty());
        assert!(matches!(
            store.create("ci", &scopes, None).await,
            Err(KeyStoreError::NameTaken(_))
        ));
        assert!(matches!(
            store.create("no spaces", &scopes, None).await,
            Err(KeyStoreError::InvalidName)
        ));
        assert!(matches!(
            store.revoke("nobody").await,
            Err(KeyStoreError::NotFound(_))
        ));
    }
}
