//! What senders and operators ask of one dispatch besides reading it: to be told when it
//! changes (run-and-wait) and to cancel it before or after its run started.

use chrono::{DateTime, Utc};
use flyhook_contract::DispatchId;
use flyhook_contract::storable::storable_text;

use crate::DispatchStore;

impl DispatchStore {
    /// Asks for a notification when the dispatch changes (see the migration `notify_awaited`).
    /// An id no worker has recorded yet gets a `queued` row, which the worker's claim completes.
    pub async fn mark_awaited(
        &self,
        id: &DispatchId,
        received_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, run_name, received_at, awaited) \
             VALUES ($1, 'queued', $2, $3, true) \
             ON CONFLICT (id) DO UPDATE SET awaited = true WHERE NOT dispatches.awaited",
        )
        .bind(id.to_string())
        .bind(id.run_name().as_ref())
        .bind(received_at)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Cancels a dispatch no worker has started a run for. An id never recorded gets a row
    /// (without its task, which only the message knows). Returns false if it got further.
    pub async fn abort_unstarted(
        &self,
        id: &DispatchId,
        received_at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, run_name, error, received_at, finished_at) \
             VALUES ($1, 'aborted', $2, $3, $4, now()) \
             ON CONFLICT (id) DO UPDATE SET status = 'aborted', error = $3, finished_at = now(), \
                    updated_at = now() \
                WHERE dispatches.status IN ('queued', 'starting')",
        )
        .bind(id.to_string())
        .bind(id.run_name().as_ref())
        .bind(storable_text(reason))
        .bind(received_at)
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected() == 1)
    }

    /// Flyte accepted the abort of a running dispatch's run.
    pub async fn record_aborted(&self, id: &DispatchId, reason: &str) -> Result<bool, sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET status = 'aborted', error = $2, finished_at = now(), \
                    next_poll_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(storable_text(reason))
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected() == 1)
    }
}
