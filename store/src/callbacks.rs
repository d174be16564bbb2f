//! Completion callbacks' side of the store: the `callback_outbox` table (filled by a trigger in
//! the transaction that ends a dispatch, emptied by workers once the broker holds the event),
//! and each dispatch's callback state as its deliveries go.

use flyhook_contract::DispatchId;
use flyhook_contract::storable::storable_text;
use sqlx::{Postgres, Transaction};

use crate::DispatchStore;
use crate::record::{COLUMNS, DispatchRecord};

/// One ending whose event is still to be queued.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueCallback {
    pub ending: i32,
    #[sqlx(flatten)]
    pub record: DispatchRecord,
}

/// Endings taken from the outbox, locked (other workers skip them) until [`DueCallbacks::done`].
#[derive(Debug)]
pub struct DueCallbacks {
    transaction: Transaction<'static, Postgres>,
    pub due: Vec<DueCallback>,
}

impl DueCallbacks {
    /// Deletes the endings whose events the broker confirmed, and lets the rest go for the
    /// next look (by this worker or another).
    pub async fn done(mut self, queued: &[(String, i32)]) -> Result<(), sqlx::Error> {
        let (ids, endings): (Vec<String>, Vec<i32>) = queued.iter().cloned().unzip();
        sqlx::query(
            "DELETE FROM callback_outbox o USING unnest($1::text[], $2::int[]) AS q(id, ending) \
             WHERE o.dispatch_id = q.id AND o.ending = q.ending",
        )
        .bind(ids)
        .bind(endings)
        .execute(&mut *self.transaction)
        .await?;
        self.transaction.commit().await
    }
}

/// Where one delivery of a callback left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackState {
    /// Failed; another delivery follows.
    Retrying,
    Delivered,
    /// Given up: dead-lettered (`flyhook replay --callbacks` sends it again).
    Failed,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Retrying => "retrying",
            CallbackState::Delivered => "delivered",
            CallbackState::Failed => "failed",
        }
    }
}

impl DispatchStore {
    /// Takes up to `limit` of the oldest endings whose events are due, with their records.
    pub async fn due_callbacks(&self, limit: i64) -> Result<DueCallbacks, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let due = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT o.ending, {} FROM callback_outbox o JOIN dispatches d ON d.id = o.dispatch_id \
             ORDER BY o.created_at LIMIT $1 FOR UPDATE OF o SKIP LOCKED",
            prefixed(COLUMNS, "d.")
        )))
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        Ok(DueCallbacks { transaction, due })
    }

    /// Records one delivery of ending `ending`'s callback (a later ending's is left alone).
    pub async fn record_callback(
        &self,
        id: &DispatchId,
        ending: i32,
        state: CallbackState,
        attempts: i32,
        answer: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET callback_state = $3, callback_attempts = $4, \
                    callback_answer = $5, callback_at = now() \
             WHERE id = $1 AND endings = $2",
        )
        .bind(id.to_string())
        .bind(ending)
        .bind(state.as_str())
        .bind(attempts)
        .bind(storable_text(answer))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Sends the failed callbacks of these ended dispatches again (`flyhook replay
    /// --callbacks`): each becomes pending, so the trigger puts its last ending back in the
    /// outbox, under the same `webhook-id`. Returns the ids whose callback is sent again.
    pub async fn resend_callbacks(&self, ids: &[DispatchId]) -> Result<Vec<String>, sqlx::Error> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sqlx::query_scalar(
            "UPDATE dispatches SET callback_state = 'pending', callback_attempts = 0 \
             WHERE id = ANY($1) AND callback IS NOT NULL AND callback_state = 'failed' \
             RETURNING id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }
}

/// `a, b` as `d.a, d.b`.
fn prefixed(columns: &str, prefix: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{prefix}{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
