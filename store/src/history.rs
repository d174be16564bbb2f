//! What happened to one dispatch, step by step: the status changes the `dispatch_changed`
//! trigger appends to `dispatch_events`, and the inputs it was asked with. The console's
//! dispatch page draws its timeline from this.

use chrono::{DateTime, Utc};
use flyhook_contract::DispatchId;
use serde::Serialize;

use crate::DispatchStore;

/// One status change, or a change of the run's Flyte phase.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DispatchEvent {
    pub status: String,
    pub flyte_phase: Option<String>,
    /// The attempt it happened in (absent for changes recorded by older versions).
    pub attempts: Option<i32>,
    pub at: DateTime<Utc>,
}

/// Events kept per dispatch in one answer: a run polled for days changes phase a bounded
/// number of times, but a hostile or looping dispatch must not make one page unbounded.
const MAX_EVENTS: i64 = 500;

impl DispatchStore {
    /// The dispatch's events, oldest first (at most [`MAX_EVENTS`], the first ones).
    pub async fn history(&self, id: &DispatchId) -> Result<Vec<DispatchEvent>, sqlx::Error> {
        sqlx::query_as(
            "SELECT status, flyte_phase, attempts, at FROM dispatch_events WHERE dispatch_id = $1 \
             ORDER BY at LIMIT $2",
        )
        .bind(id.to_string())
        .bind(MAX_EVENTS)
        .fetch_all(&self.pool)
        .await
    }
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use crate::DispatchStore;
    use crate::test_support::running;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_dispatch_history_lists_its_status_changes_in_order(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let dispatch = running(&store, "acme").await;
        let events = store.history(&dispatch.id).await.unwrap();
        let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
        assert_eq!(statuses, ["starting", "running"]);
        assert!(events[0].at <= events[1].at);
        assert_eq!(
            events[1].flyte_phase.as_deref(),
            Some("ACTION_PHASE_RUNNING")
        );
        assert_eq!((events[0].attempts, events[1].attempts), (Some(1), Some(1)));
    }
}
