//! What the flow-control tables ([`crate::concurrency`], [`crate::debounce`]) share: one
//! transaction-scoped advisory lock per key, so the whole fleet decides about a key one
//! worker at a time, and whether the dispatch asking has already ended.

use flyhook_contract::{DispatchId, DispatchStatus};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::DispatchStore;
use crate::record::parse_status;

impl DispatchStore {
    /// A transaction holding the lock of key `value` under `scope`, and the status of dispatch
    /// `id` if it has already ended.
    pub(crate) async fn lock_key(
        &self,
        scope: &str,
        value: &str,
        id: &DispatchId,
    ) -> Result<(Transaction<'static, Postgres>, Option<DispatchStatus>), sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))")
            .bind(scope)
            .bind(value)
            .execute(&mut *transaction)
            .await?;
        let ended = ended(&mut transaction, id).await?;
        Ok((transaction, ended))
    }
}

async fn ended(
    connection: &mut PgConnection,
    id: &DispatchId,
) -> Result<Option<DispatchStatus>, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM dispatches WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(connection)
        .await?;
    Ok(status
        .map(parse_status)
        .transpose()?
        .filter(|status| status.is_terminal()))
}
