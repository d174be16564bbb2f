//! Following started runs to their end across the fleet: trackers lease due runs (a dead
//! tracker's lease expires and another takes over), record each look, and write each end once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flyhook_contract::DispatchStatus;
use flyhook_contract::storable::{storable_json, storable_text};
use flyte_client::ActionPhase;
use serde_json::Value;

use crate::DispatchStore;

/// A running dispatch a tracker has leased.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeasedRun {
    pub id: String,
    pub project: Option<String>,
    pub domain: Option<String>,
    pub run_name: String,
    pub polls: i32,
    pub started_at: Option<DateTime<Utc>>,
    /// Looks in a row that Flyte answered with a permanent error.
    pub look_failures: i32,
}

/// How a run ended, as recorded.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: DispatchStatus,
    /// Flyte's terminal phase; `None` when Flyte could not report the run at all.
    pub phase: Option<ActionPhase>,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
}

/// One look at a run still going, as the lease holder records it.
#[derive(Debug, Clone)]
pub struct Poll {
    pub id: String,
    /// The phase Flyte reported; `None` when the look failed.
    pub phase: Option<ActionPhase>,
    /// How long until the next look.
    pub pause: Duration,
    /// Looks in a row Flyte has answered with a permanent error, this one included.
    pub look_failures: i32,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl DispatchStore {
    /// Dispatches starting or running (an index-only count).
    pub async fn count_in_flight(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*) FROM dispatches WHERE status IN ('starting', 'running')",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Leases up to `limit` running dispatches due for a look, for `lease`. Rows leased by a
    /// live tracker are skipped (`SKIP LOCKED` for the instant of the claim, the lease after it);
    /// an expired lease (its tracker died) is taken over.
    pub async fn lease_due_runs(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<LeasedRun>, sqlx::Error> {
        sqlx::query_as(
            "WITH due AS ( \
                SELECT id FROM dispatches \
                WHERE status = 'running' AND next_poll_at <= now() \
                  AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE dispatches d \
                SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2 / 1000.0) \
             FROM due WHERE d.id = due.id \
             RETURNING d.id, d.project, d.domain, d.run_name, d.polls, d.started_at, d.look_failures",
        )
        .bind(owner)
        .bind(millis(lease))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Records what the lease holder saw of runs still going (their phase, when known) and
    /// hands them back, to be looked at again after each one's pause; one statement for all.
    pub async fn record_polls(&self, owner: &str, polls: &[Poll]) -> Result<(), sqlx::Error> {
        if polls.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE dispatches d SET flyte_phase = COALESCE(t.phase, d.flyte_phase), \
                    polls = d.polls + 1, next_poll_at = now() + make_interval(secs => t.pause_ms / 1000.0), \
                    look_failures = t.look_failures, \
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
             FROM unnest($2::text[], $3::text[], $4::float8[], $5::int[]) \
                  AS t(id, phase, pause_ms, look_failures) \
             WHERE d.id = t.id AND d.lease_owner = $1 AND d.status = 'running'",
        )
        .bind(owner)
        .bind(polls.iter().map(|p| p.id.clone()).collect::<Vec<_>>())
        .bind(
            polls
                .iter()
                .map(|p| p.phase.map(|p| p.to_string()))
                .collect::<Vec<_>>(),
        )
        .bind(polls.iter().map(|p| millis(p.pause)).collect::<Vec<_>>())
        .bind(polls.iter().map(|p| p.look_failures).collect::<Vec<_>>())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Records runs that ended, in one statement. Only the lease holder of a still-running
    /// dispatch writes its end.
    pub async fn record_run_ends(
        &self,
        owner: &str,
        ends: &[(String, RunEnd)],
    ) -> Result<(), sqlx::Error> {
        if ends.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE dispatches d SET status = t.status, flyte_phase = COALESCE(t.phase, d.flyte_phase), \
                    outputs = t.outputs, \
                    error = t.error, error_kind = t.error_kind, finished_at = now(), \
                    polls = d.polls + 1, next_poll_at = NULL, lease_owner = NULL, \
                    lease_expires_at = NULL, updated_at = now() \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[]) \
                  AS t(id, status, phase, outputs, error, error_kind) \
             WHERE d.id = t.id AND d.lease_owner = $1 AND d.status = 'running'",
        )
        .bind(owner)
        .bind(ends.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .bind(ends.iter().map(|(_, e)| e.status.as_str()).collect::<Vec<_>>())
        .bind(
            ends.iter()
                .map(|(_, e)| e.phase.map(|p| p.to_string()))
                .collect::<Vec<_>>(),
        )
        // What Flyte sends back is made storable: its texts may hold a NUL.
        .bind(
            ends.iter()
                .map(|(_, e)| e.outputs.clone().map(storable_json))
                .collect::<Vec<_>>(),
        )
        .bind(
            ends.iter()
                .map(|(_, e)| e.error.as_deref().map(|t| storable_text(t).into_owned()))
                .collect::<Vec<_>>(),
        )
        .bind(
            ends.iter()
                .map(|(_, e)| e.error_kind.as_deref().map(|t| storable_text(t).into_owned()))
                .collect::<Vec<_>>(),
        )
        .execute(&self.pool)
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flyhook_contract::DispatchStatus;
    use flyte_client::ActionPhase;
    use sqlx::PgPool;

    use super::RunEnd;
    use crate::DispatchStore;
    use crate::test_support::running;

    const LEASE: Duration = Duration::from_secs(60);

    fn succeeded() -> RunEnd {
        RunEnd {
            status: DispatchStatus::Succeeded,
            phase: Some(ActionPhase::Succeeded),
            outputs: Some(serde_json::json!({"o": "ok\u{0}"})),
            error: None,
            error_kind: None,
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_leased_run_is_not_leased_twice_and_only_its_holder_writes_its_end(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let dispatch = running(&store, "acme").await;
        assert_eq!(store.count_in_flight().await.unwrap(), 1);
        let leased = store.lease_due_runs("tracker-a", LEASE, 10).await.unwrap();
        assert_eq!(leased.len(), 1);
        assert!(
            store
                .lease_due_runs("tracker-b", LEASE, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let id = dispatch.id.to_string();
        store
            .record_run_ends("tracker-b", &[(id.clone(), succeeded())])
            .await
            .unwrap();
        let record = store.get(&dispatch.id).await.unwrap().unwrap();
        assert_eq!(
            record.status.0,
            DispatchStatus::Running,
            "not the lease holder"
        );

        store
            .record_run_ends("tracker-a", &[(id, succeeded())])
            .await
            .unwrap();
        let record = store.get(&dispatch.id).await.unwrap().unwrap();
        assert_eq!(record.status.0, DispatchStatus::Succeeded);
        assert_eq!(
            record.outputs,
            Some(serde_json::json!({"o": "ok\u{fffd}"})),
            "a NUL from Flyte is stored as U+FFFD"
        );
        assert_eq!(store.count_in_flight().await.unwrap(), 0);
    }
}
