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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use flyhook_contract::DispatchStatus;
    use serde_json::json;
    use sqlx::PgPool;

    use crate::DispatchStore;
    use crate::test_support::{claim, dispatch, running};

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn only_a_dispatch_without_a_run_is_aborted_unstarted(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let unseen = dispatch("acme", json!({}));
        assert!(
            store
                .abort_unstarted(&unseen.id, Utc::now(), "stop")
                .await
                .unwrap()
        );
        let record = store.get(&unseen.id).await.unwrap().unwrap();
        assert_eq!(record.status.0, DispatchStatus::Aborted);
        assert_eq!(
            record.project, None,
            "the task is known only to the message"
        );

        let started = running(&store, "acme").await;
        assert!(
            !store
                .abort_unstarted(&started.id, Utc::now(), "stop")
                .await
                .unwrap()
        );
        assert!(store.record_aborted(&started.id, "stop").await.unwrap());
        let record = store.get(&started.id).await.unwrap().unwrap();
        assert_eq!(record.status.0, DispatchStatus::Aborted);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn an_awaited_id_nobody_recorded_reads_queued_until_its_claim(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let awaited = dispatch("acme", json!({"n": 1}));
        store.mark_awaited(&awaited.id, Utc::now()).await.unwrap();
        let record = store.get(&awaited.id).await.unwrap().unwrap();
        assert_eq!(record.status.0, DispatchStatus::Queued);
        claim(&store, &awaited).await;
        let record = store.get(&awaited.id).await.unwrap().unwrap();
        assert_eq!(record.status.0, DispatchStatus::Starting);
        assert_eq!(record.project.as_deref(), Some("acme"));
    }
}
