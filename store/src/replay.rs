//! Sending a finished dispatch again: back to `queued` under its own id (its run, if any, is
//! found again rather than started twice), or its task and inputs for a new dispatch.

use flyhook_contract::DispatchId;
use flyhook_contract::flow::ConcurrencyKey;
use flyhook_contract::status::REPLAYABLE;
use serde_json::Value;

use crate::DispatchStore;

/// What a replay re-sends: the dispatch's task and inputs, and the status it had.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReplaySource {
    pub project: String,
    pub domain: String,
    pub task_name: String,
    pub task_version: String,
    pub inputs: Value,
    pub api_key: String,
    pub previous_status: String,
    /// The completion callback's destination, kept by a replay.
    pub callback: Option<String>,
    /// The concurrency key it ran under, which holds its replay too.
    pub concurrency_key: Option<sqlx::types::Json<ConcurrencyKey>>,
}

impl DispatchStore {
    /// A dispatch sent again from the dead-letter queue may be taken up again: back to
    /// `queued` from `failed` or `dead_lettered` (what the dead-letter queue holds; never from
    /// `aborted`, so a cancel stays a cancel), its poison count cleared.
    pub async fn reopen_for_replay(&self, id: &DispatchId) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET status = 'queued', error = NULL, finished_at = NULL, \
                    redeliveries = 0, look_failures = 0, updated_at = now() \
             WHERE id = $1 AND status IN ('failed', 'dead_lettered')",
        )
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// What `id` asked for, if it has ended (any terminal status) and its inputs are known.
    pub async fn replay_source(
        &self,
        id: &DispatchId,
    ) -> Result<Option<ReplaySource>, sqlx::Error> {
        sqlx::query_as(
            "SELECT project, domain, task_name, task_version, inputs, api_key, status AS previous_status, \
                    callback, concurrency_key \
             FROM dispatches WHERE id = $1 AND project IS NOT NULL AND inputs IS NOT NULL \
               AND status NOT IN ('queued', 'starting', 'running')",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
    }

    /// Puts a replayable dispatch back to `queued` so its next delivery is processed; returns
    /// what to re-send, or `None` if it is not in a replayable state (or not known).
    pub async fn requeue_for_replay(
        &self,
        id: &DispatchId,
    ) -> Result<Option<ReplaySource>, sqlx::Error> {
        let statuses: Vec<&str> = REPLAYABLE.iter().map(|s| s.as_str()).collect();
        sqlx::query_as(
            "WITH old AS (SELECT id, status FROM dispatches WHERE id = $1 FOR UPDATE) \
             UPDATE dispatches d SET status = 'queued', error = NULL, finished_at = NULL, \
                    next_poll_at = NULL, lease_owner = NULL, lease_expires_at = NULL, \
                    redeliveries = 0, look_failures = 0, updated_at = now() \
             FROM old WHERE d.id = old.id AND old.status = ANY($2) \
               AND d.project IS NOT NULL AND d.inputs IS NOT NULL \
             RETURNING d.project, d.domain, d.task_name, d.task_version, d.inputs, d.api_key, \
                       old.status AS previous_status, d.callback, d.concurrency_key",
        )
        .bind(id.to_string())
        .bind(statuses)
        .fetch_optional(&self.pool)
        .await
    }

    /// Undoes [`DispatchStore::requeue_for_replay`] when the message could not be re-sent:
    /// no new ending (so no second callback), only the status it had.
    pub async fn undo_requeue(
        &self,
        id: &DispatchId,
        previous_status: &str,
    ) -> Result<(), sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT set_config('flyhook.restoring', 'on', true)")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("UPDATE dispatches SET status = $2, updated_at = now() WHERE id = $1 AND status = 'queued'")
            .bind(id.to_string())
            .bind(previous_status)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use flyhook_contract::DispatchStatus;
    use serde_json::json;
    use sqlx::PgPool;

    use crate::DispatchStore;
    use crate::test_support::{claim, dispatch};

    async fn status(store: &DispatchStore, id: &flyhook_contract::DispatchId) -> DispatchStatus {
        store.get(id).await.unwrap().unwrap().status.0
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_failed_dispatch_is_requeued_with_its_inputs_and_the_requeue_can_be_undone(
        pool: PgPool,
    ) {
        let store = DispatchStore::new(pool);
        let failed = dispatch("acme", json!({"n": 7}));
        claim(&store, &failed).await;
        store
            .record_given_up(&failed.id, DispatchStatus::Failed, "no")
            .await
            .unwrap();
        let source = store.requeue_for_replay(&failed.id).await.unwrap().unwrap();
        assert_eq!(source.inputs, json!({"n": 7}));
        assert_eq!(status(&store, &failed.id).await, DispatchStatus::Queued);
        assert!(
            store
                .requeue_for_replay(&failed.id)
                .await
                .unwrap()
                .is_none()
        );
        store
            .undo_requeue(&failed.id, &source.previous_status)
            .await
            .unwrap();
        assert_eq!(status(&store, &failed.id).await, DispatchStatus::Failed);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_dead_letter_replay_never_reopens_a_cancel(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let cancelled = dispatch("acme", json!({}));
        store
            .abort_unstarted(&cancelled.id, Utc::now(), "stop")
            .await
            .unwrap();
        store.reopen_for_replay(&cancelled.id).await.unwrap();
        assert_eq!(status(&store, &cancelled.id).await, DispatchStatus::Aborted);

        let dead = dispatch("acme", json!({}));
        claim(&store, &dead).await;
        store
            .record_given_up(&dead.id, DispatchStatus::DeadLettered, "retries ran out")
            .await
            .unwrap();
        store.reopen_for_replay(&dead.id).await.unwrap();
        assert_eq!(status(&store, &dead.id).await, DispatchStatus::Queued);
    }
}
