//! Console sessions: a browser signs in with an API key once and gets a random token in a
//! cookie; only the token's SHA-256 is stored here, beside the key's own digest and the
//! session's CSRF token. Kept in PostgreSQL so every ingress replica honours every session and
//! a sign-out ends it everywhere.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A live session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredSession {
    /// The SHA-256 of the API key the session was opened with.
    pub key_digest: Vec<u8>,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SessionStore {
    pool: PgPool,
}

impl SessionStore {
    pub fn new(pool: PgPool) -> SessionStore {
        SessionStore { pool }
    }

    /// Stores a new session under the digest of its token.
    pub async fn open(
        &self,
        digest: &[u8; 32],
        key_digest: &[u8; 32],
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO console_sessions (digest, key_digest, csrf_token, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(digest.as_slice())
        .bind(key_digest.as_slice())
        .bind(csrf_token)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// The session a token's digest names, unless it expired.
    pub async fn find(&self, digest: &[u8; 32]) -> Result<Option<StoredSession>, sqlx::Error> {
        sqlx::query_as(
            "SELECT key_digest, csrf_token, expires_at FROM console_sessions \
             WHERE digest = $1 AND expires_at > now()",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await
    }

    /// Ends a session (signing out twice changes nothing).
    pub async fn close(&self, digest: &[u8; 32]) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM console_sessions WHERE digest = $1")
            .bind(digest.as_slice())
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Deletes expired sessions; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        Ok(
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= now()")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use sqlx::PgPool;

    use super::SessionStore;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_session_is_found_until_it_expires_or_is_closed(pool: PgPool) {
        let store = SessionStore::new(pool);
        let (live, stale) = ([1u8; 32], [2u8; 32]);
        let soon = Utc::now() + Duration::hours(1);
        store.open(&live, &[9; 32], "csrf", soon).await.unwrap();
        store
            .open(&stale, &[9; 32], "csrf", Utc::now() - Duration::seconds(1))
            .await
            .unwrap();

        let found = store.find(&live).await.unwrap().unwrap();
        assert_eq!(
            (found.key_digest, found.csrf_token),
            (vec![9; 32], "csrf".into())
        );
        assert_eq!(store.find(&stale).await.unwrap(), None, "expired");
        assert_eq!(store.find(&[3; 32]).await.unwrap(), None, "never opened");
        assert_eq!(store.purge_expired().await.unwrap(), 1);

        store.close(&live).await.unwrap();
        assert_eq!(store.find(&live).await.unwrap(), None, "signed out");
    }
}
