//! Completion callbacks' side of the store: the `callback_outbox` table (filled by a trigger in
//! the transaction that ends a dispatch, emptied by workers once the broker holds the event),
//! and each dispatch's callback state as its deliveries go.

use flyhook_contract::DispatchId;
use flyhook_contract::storable::storable_text;
use sqlx::{Postgres, Transaction};

use crate::DispatchStore;
use crate::record::{COLUMNS, DispatchRecord, ended_statuses};

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
    /// Takes up to `limit` of the oldest endings whose events are due, each with the record
    /// as that ending left it.
    pub async fn due_callbacks(&self, limit: i64) -> Result<DueCallbacks, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let due = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH due AS (SELECT ending, snapshot, created_at FROM callback_outbox \
                          ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             SELECT due.ending, {COLUMNS} \
             FROM due, jsonb_populate_record(NULL::dispatches, due.snapshot) \
             ORDER BY due.created_at"
        )))
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        Ok(DueCallbacks { transaction, due })
    }

    /// Whether ending `ending`'s callback was delivered already.
    pub async fn callback_delivered(
        &self,
        id: &DispatchId,
        ending: i32,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dispatches WHERE id = $1 AND endings = $2 \
                                                       AND callback_state = 'delivered')",
        )
        .bind(id.to_string())
        .bind(ending)
        .fetch_one(&self.pool)
        .await
    }

    /// Records one delivery of ending `ending`'s callback (a later ending's is left alone, and
    /// so is one delivered already: another copy of the event failing changes nothing).
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
             WHERE id = $1 AND endings = $2 AND callback_state IS DISTINCT FROM 'delivered'",
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

    /// Sends the callbacks of these ended dispatches again (`flyhook replay --callbacks`): those
    /// that failed, and those still pending or retrying a quarter of an hour after the end (a
    /// lost state write, a message the broker gave up on). Each becomes pending, so the trigger
    /// puts its last ending back in the outbox, under the same `webhook-id`. Returns the ids
    /// whose callback is sent again.
    pub async fn resend_callbacks(&self, ids: &[DispatchId]) -> Result<Vec<String>, sqlx::Error> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        // The trigger queues a state that changes to pending; one pending already is queued
        // here (its outbox row, if it still has one, is kept).
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH resent AS ( \
                UPDATE dispatches d SET callback_state = 'pending', callback_attempts = 0, \
                    callback_at = now() \
                WHERE id = ANY($1) AND callback IS NOT NULL AND endings > 0 \
                  AND status IN {} \
                  AND (callback_state = 'failed' \
                       OR (callback_state IN ('pending', 'retrying') \
                           AND coalesce(callback_at, finished_at, updated_at) \
                               < now() - interval '15 minutes')) \
                RETURNING d.id, d.endings, to_jsonb(d) - 'inputs' AS snapshot), \
             queued AS ( \
                INSERT INTO callback_outbox (dispatch_id, ending, snapshot) \
                SELECT id, endings, snapshot FROM resent ON CONFLICT DO NOTHING) \
             SELECT id FROM resent",
            ended_statuses()
        )))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }
}
