//! The status store: one PostgreSQL row per dispatch, for lookup by senders and operators.
//!
//! Every write is conditional on the current status, so a redelivered or duplicated message
//! never moves a dispatch backwards (a `running` dispatch does not become `starting` again, an
//! `aborted` one is not resurrected).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::dispatch::{Dispatch, DispatchId};

/// The schema, embedded from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Where a dispatch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchStatus {
    Queued,
    Starting,
    Running,
    Succeeded,
    Failed,
    Aborted,
    TimedOut,
    Ignored,
    Rejected,
    DeadLettered,
}

impl DispatchStatus {
    pub const ALL: [DispatchStatus; 10] = [
        DispatchStatus::Queued,
        DispatchStatus::Starting,
        DispatchStatus::Running,
        DispatchStatus::Succeeded,
        DispatchStatus::Failed,
        DispatchStatus::Aborted,
        DispatchStatus::TimedOut,
        DispatchStatus::Ignored,
        DispatchStatus::Rejected,
        DispatchStatus::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DispatchStatus::Queued => "queued",
            DispatchStatus::Starting => "starting",
            DispatchStatus::Running => "running",
            DispatchStatus::Succeeded => "succeeded",
            DispatchStatus::Failed => "failed",
            DispatchStatus::Aborted => "aborted",
            DispatchStatus::TimedOut => "timed_out",
            DispatchStatus::Ignored => "ignored",
            DispatchStatus::Rejected => "rejected",
            DispatchStatus::DeadLettered => "dead_lettered",
        }
    }

    /// No worker will start a run for it (any more).
    pub fn is_past_starting(self) -> bool {
        !matches!(self, DispatchStatus::Queued | DispatchStatus::Starting)
    }
}

impl fmt::Display for DispatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DispatchStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DispatchStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown dispatch status {s:?}"))
    }
}

/// A dispatch as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DispatchRecord {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub status: StatusColumn,
    pub project: String,
    pub domain: String,
    pub task_name: String,
    pub task_version: String,
    pub run_name: String,
    pub run_url: Option<String>,
    pub attempts: i32,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A status read from the database (sqlx converts through `String`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StatusColumn(pub DispatchStatus);

impl TryFrom<String> for StatusColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map(StatusColumn)
    }
}

/// What a worker may do with a delivery, decided by the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead: this is attempt number `attempt` (1 for the first delivery).
    Proceed { attempt: i32 },
    /// Another delivery already took it past starting (or it was cancelled): drop this one.
    Settled(DispatchStatus),
}

const COLUMNS: &str = "id, status, project, domain, task_name, task_version, run_name, run_url, \
                       attempts, error, received_at, started_at, finished_at, updated_at";

/// Access to the `dispatches` table.
#[derive(Debug, Clone)]
pub struct DispatchStore {
    pool: PgPool,
}

impl DispatchStore {
    pub fn new(pool: PgPool) -> DispatchStore {
        DispatchStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Answers whether the database is reachable.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// Records that a worker starts on `dispatch`, unless an earlier delivery got further.
    pub async fn claim(&self, dispatch: &Dispatch) -> Result<Claim, sqlx::Error> {
        let id = dispatch.id.to_string();
        let attempt: Option<i32> = sqlx::query_scalar(
            "INSERT INTO dispatches (id, status, project, domain, task_name, task_version, api_key, \
                                     run_name, attempts, received_at) \
             VALUES ($1, 'starting', $2, $3, $4, $5, $6, $7, 1, $8) \
             ON CONFLICT (id) DO UPDATE \
                SET status = 'starting', attempts = dispatches.attempts + 1, updated_at = now() \
                WHERE dispatches.status IN ('queued', 'starting') \
             RETURNING attempts",
        )
        .bind(&id)
        .bind(dispatch.task.project())
        .bind(dispatch.task.domain())
        .bind(dispatch.task.name())
        .bind(dispatch.task.version())
        .bind(&dispatch.api_key)
        .bind(dispatch.id.run_name().as_ref())
        .bind(dispatch.received_at)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(attempt) = attempt {
            return Ok(Claim::Proceed { attempt });
        }
        let status: String = sqlx::query_scalar("SELECT status FROM dispatches WHERE id = $1")
            .bind(&id)
            .fetch_one(&self.pool)
            .await?;
        let status = status
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?;
        Ok(Claim::Settled(status))
    }

    /// The run exists in Flyte.
    pub async fn record_running(&self, id: &DispatchId, run_url: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET status = 'running', run_url = $2, error = NULL, \
                                   started_at = now(), updated_at = now() \
             WHERE id = $1 AND status = 'starting'",
        )
        .bind(id.to_string())
        .bind(run_url)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// The dispatch cannot succeed; `error` says why.
    pub async fn record_failed(&self, id: &DispatchId, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET status = 'failed', error = $2, finished_at = now(), updated_at = now() \
             WHERE id = $1 AND status IN ('queued', 'starting')",
        )
        .bind(id.to_string())
        .bind(error)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// An attempt failed in a way worth retrying; the dispatch stays `starting`.
    pub async fn record_retryable_error(
        &self,
        id: &DispatchId,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET error = $2, updated_at = now() WHERE id = $1 AND status = 'starting'",
        )
        .bind(id.to_string())
        .bind(error)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn get(&self, id: &DispatchId) -> Result<Option<DispatchRecord>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dispatches WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
    }
}
