//! What the flow-control tables ([`crate::concurrency`], [`crate::debounce`]) share: one
//! transaction-scoped advisory lock per key, so the whole fleet decides about a key one
//! worker at a time, and whether the dispatch asking has already ended. A dispatch asking
//! again only tries the lock: a worker that would wait for it lets the delivery ask again
//! shortly instead, so a crowded key never ties up the workers' connections. A first ask
//! (joining a burst) waits for it, once, so no member is left out of a decision.

use flyhook_contract::{DispatchId, DispatchStatus};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::DispatchStore;
use crate::record::parse_status;

impl DispatchStore {
    /// A transaction holding the lock of key `value` under `scope` for `kind` (`debounce`,
    /// `concurrency`), and the status of dispatch `id` if it has already ended; `None` if
    /// another transaction holds the lock and `wait` is false.
    pub(crate) async fn lock_key(
        &self,
        kind: &str,
        scope: &str,
        value: &str,
        id: &DispatchId,
        wait: bool,
    ) -> Result<Option<(Transaction<'static, Postgres>, Option<DispatchStatus>)>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar(if wait {
            "SELECT true FROM (SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))) AS locked"
        } else {
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0))"
        })
        .bind(kind)
        .bind(scope)
        .bind(value)
        .fetch_one(&mut *transaction)
        .await?;
        if !locked {
            return Ok(None);
        }
        let ended = ended(&mut transaction, id).await?;
        Ok(Some((transaction, ended)))
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
