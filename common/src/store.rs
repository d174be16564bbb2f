//! The status store: one PostgreSQL row per dispatch, for lookup by senders and operators.
//!
//! Every write is conditional on the current status, so a redelivered or duplicated message
//! never moves a dispatch backwards (a `running` dispatch does not become `starting` again, an
//! `aborted` one is not resurrected).

use std::fmt;
use std::str::FromStr;

use std::time::Duration;

use chrono::{DateTime, Utc};
use flyte_client::ActionPhase;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::dispatch::{Dispatch, DispatchId, Ignored};
use crate::storable::{storable_json, storable_text};

/// The schema, embedded from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Where a dispatch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// Nothing more will happen to it (short of a replay).
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            DispatchStatus::Queued | DispatchStatus::Starting | DispatchStatus::Running
        )
    }

    /// The dispatch status a terminal Flyte phase means.
    pub fn for_terminal_phase(phase: ActionPhase) -> Option<DispatchStatus> {
        match phase {
            ActionPhase::Succeeded | ActionPhase::Recovered => Some(DispatchStatus::Succeeded),
            ActionPhase::Failed => Some(DispatchStatus::Failed),
            ActionPhase::Aborted => Some(DispatchStatus::Aborted),
            ActionPhase::TimedOut => Some(DispatchStatus::TimedOut),
            _ => None,
        }
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
    /// The task is unknown only for a dispatch cancelled before any worker saw it.
    pub project: Option<String>,
    pub domain: Option<String>,
    pub task_name: Option<String>,
    pub task_version: Option<String>,
    pub run_name: String,
    pub run_url: Option<String>,
    pub attempts: i32,
    pub error: Option<String>,
    /// `KIND_USER` or `KIND_SYSTEM` for a failed run.
    pub error_kind: Option<String>,
    /// The run's last known Flyte phase (`ACTION_PHASE_RUNNING`).
    pub flyte_phase: Option<String>,
    /// The run's outputs as plain JSON, once it succeeded.
    pub outputs: Option<Value>,
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

/// A delivery of a dispatch, to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub dispatch: Dispatch,
    /// RabbitMQ delivered this message before and it was never settled (a worker died
    /// holding it): counted, so a message that kills its workers is stopped.
    pub redelivered: bool,
}

/// What a worker may do with a delivery, decided by the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead: this is attempt number `attempt` (1 for the first delivery), and the message
    /// came back unsettled `redeliveries` times so far.
    Proceed { attempt: i32, redeliveries: i32 },
    /// Another delivery already took it past starting, it was cancelled, or it is the same
    /// id with other inputs than recorded (a reused idempotency key; the inputs claimed first
    /// win): drop this one.
    Settled(DispatchStatus),
}

fn parse_status(text: String) -> Result<DispatchStatus, sqlx::Error> {
    text.parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

const COLUMNS: &str = "id, status, project, domain, task_name, task_version, run_name, run_url, \
                       attempts, error, error_kind, flyte_phase, outputs, received_at, started_at, \
                       finished_at, updated_at";

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

    /// Dispatches starting or running (an index-only count).
    pub async fn count_in_flight(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*) FROM dispatches WHERE status IN ('starting', 'running')",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Answers whether the database is reachable.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// Claims dispatches for a start attempt, in one statement: each is recorded `starting`
    /// with its attempt count, unless another delivery already took it further (or recorded
    /// other inputs under the same id). The ids must be distinct; the claims come back in the
    /// order of `requests`.
    pub async fn claim_all(&self, requests: &[ClaimRequest]) -> Result<Vec<Claim>, sqlx::Error> {
        let dispatches: Vec<&Dispatch> = requests.iter().map(|r| &r.dispatch).collect();
        let column =
            |f: fn(&Dispatch) -> String| dispatches.iter().map(|d| f(d)).collect::<Vec<_>>();
        let proceeding: Vec<(String, i32, i32)> = sqlx::query_as(
            "INSERT INTO dispatches (id, status, project, domain, task_name, task_version, api_key, \
                                     run_name, attempts, received_at, inputs, redeliveries) \
             SELECT id, 'starting', project, domain, task_name, task_version, api_key, run_name, 1, \
                    received_at, inputs, redelivered::int \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::text[], $8::timestamptz[], $9::jsonb[], $10::bool[]) \
                  AS t(id, project, domain, task_name, task_version, api_key, run_name, received_at, \
                       inputs, redelivered) \
             ORDER BY id \
             ON CONFLICT (id) DO UPDATE \
                SET status = 'starting', attempts = dispatches.attempts + 1, updated_at = now(), \
                    redeliveries = dispatches.redeliveries + EXCLUDED.redeliveries, \
                    project = EXCLUDED.project, domain = EXCLUDED.domain, \
                    task_name = EXCLUDED.task_name, task_version = EXCLUDED.task_version, \
                    api_key = EXCLUDED.api_key, inputs = EXCLUDED.inputs \
                WHERE dispatches.status IN ('queued', 'starting') \
                  AND (dispatches.inputs IS NULL OR dispatches.inputs = EXCLUDED.inputs) \
             RETURNING id, attempts, redeliveries",
        )
        .bind(column(|d| d.id.to_string()))
        .bind(column(|d| d.task.project().to_string()))
        .bind(column(|d| d.task.domain().to_string()))
        .bind(column(|d| d.task.name().to_string()))
        .bind(column(|d| d.task.version().to_string()))
        .bind(column(|d| d.api_key.clone()))
        .bind(column(|d| d.id.run_name().as_ref().to_string()))
        .bind(dispatches.iter().map(|d| d.received_at).collect::<Vec<_>>())
        .bind(
            dispatches
                .iter()
                .map(|d| Value::Object(d.inputs.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(requests.iter().map(|r| r.redelivered).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let proceeding: std::collections::HashMap<String, (i32, i32)> = proceeding
            .into_iter()
            .map(|(id, attempt, redeliveries)| (id, (attempt, redeliveries)))
            .collect();
        let mut claims = Vec::with_capacity(dispatches.len());
        for dispatch in dispatches {
            let claim = match proceeding.get(&dispatch.id.to_string()) {
                Some(&(attempt, redeliveries)) => Claim::Proceed {
                    attempt,
                    redeliveries,
                },
                None => Claim::Settled(self.settled(dispatch).await?),
            };
            claims.push(claim);
        }
        Ok(claims)
    }

    /// A dispatch another delivery took past starting (or that was cancelled): its status. If
    /// it was cancelled before any worker saw it, this delivery is the first to know its task:
    /// fill that in.
    async fn settled(&self, dispatch: &Dispatch) -> Result<DispatchStatus, sqlx::Error> {
        let status: String = sqlx::query_scalar(
            "UPDATE dispatches SET project = COALESCE(project, $2), domain = COALESCE(domain, $3), \
                    task_name = COALESCE(task_name, $4), task_version = COALESCE(task_version, $5), \
                    api_key = COALESCE(api_key, $6), inputs = COALESCE(inputs, $7) \
             WHERE id = $1 RETURNING status",
        )
        .bind(dispatch.id.to_string())
        .bind(dispatch.task.project())
        .bind(dispatch.task.domain())
        .bind(dispatch.task.name())
        .bind(dispatch.task.version())
        .bind(&dispatch.api_key)
        .bind(Value::Object(dispatch.inputs.clone()))
        .fetch_one(&self.pool)
        .await?;
        parse_status(status)
    }

    /// A dispatch whose claim the store refused (data it cannot hold): recorded `failed` with
    /// the reason and without its inputs, so it ends visibly instead of stalling.
    pub async fn record_refused(
        &self,
        dispatch: &Dispatch,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, project, domain, task_name, task_version, api_key, \
                                     run_name, attempts, error, received_at, finished_at) \
             VALUES ($1, 'failed', $2, $3, $4, $5, $6, $7, 1, $8, $9, now()) \
             ON CONFLICT (id) DO UPDATE SET status = 'failed', error = $8, finished_at = now(), \
                    updated_at = now() \
                WHERE dispatches.status IN ('queued', 'starting')",
        )
        .bind(dispatch.id.to_string())
        .bind(dispatch.task.project())
        .bind(dispatch.task.domain())
        .bind(dispatch.task.name())
        .bind(dispatch.task.version())
        .bind(storable_text(&dispatch.api_key))
        .bind(dispatch.id.run_name().as_ref())
        .bind(storable_text(reason))
        .bind(dispatch.received_at)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// A message whose body no worker can read, known only by the id it was published under:
    /// recorded `failed`, so its sender's status lookups end.
    pub async fn record_unreadable(
        &self,
        id: &DispatchId,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, run_name, error, received_at, finished_at) \
             VALUES ($1, 'failed', $2, $3, now(), now()) \
             ON CONFLICT (id) DO UPDATE SET status = 'failed', error = $3, finished_at = now(), \
                    updated_at = now() \
                WHERE dispatches.status IN ('queued', 'starting')",
        )
        .bind(id.to_string())
        .bind(id.run_name().as_ref())
        .bind(storable_text(reason))
        .execute(&self.pool)
        .await
        .map(drop)
    }

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

    /// Appends to what a dispatch's record says went wrong, whatever its status (an abort
    /// Flyte never confirmed, on an `aborted` dispatch).
    pub async fn note_error(&self, id: &DispatchId, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET error = concat_ws('; ', error, $2), updated_at = now() WHERE id = $1",
        )
            .bind(id.to_string())
            .bind(storable_text(error))
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// A delivery no route wanted. Recording it twice is harmless.
    pub async fn record_ignored(&self, ignored: &Ignored) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, api_key, run_name, error, received_at, finished_at) \
             VALUES ($1, 'ignored', $2, $3, $4, $5, now()) ON CONFLICT (id) DO NOTHING",
        )
        .bind(ignored.id.to_string())
        .bind(&ignored.source)
        .bind(ignored.id.run_name().as_ref())
        .bind(storable_text(&format!(
            "no route matched delivery {}",
            ignored.delivery_id
        )))
        .bind(ignored.received_at)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Records runs started, in one statement: each dispatch still `starting` becomes
    /// `running`; returns each one's status after (anything but `running` means another
    /// delivery or a cancel got there first). The ids must be distinct.
    pub async fn record_all_running(
        &self,
        started: &[(DispatchId, String, ActionPhase)],
    ) -> Result<Vec<DispatchStatus>, sqlx::Error> {
        let ids: Vec<String> = started.iter().map(|(id, _, _)| id.to_string()).collect();
        let updated: Vec<String> = sqlx::query_scalar(
            "UPDATE dispatches d SET status = 'running', run_url = t.run_url, flyte_phase = t.phase, \
                    error = NULL, started_at = now(), next_poll_at = now(), updated_at = now() \
             FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, run_url, phase) \
                   ORDER BY id) t \
             WHERE d.id = t.id AND d.status = 'starting' \
             RETURNING d.id",
        )
        .bind(&ids)
        .bind(started.iter().map(|(_, url, _)| url.clone()).collect::<Vec<_>>())
        .bind(started.iter().map(|(_, _, phase)| phase.to_string()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let updated: std::collections::HashSet<String> = updated.into_iter().collect();
        let mut statuses = Vec::with_capacity(ids.len());
        for id in ids {
            let status = if updated.contains(&id) {
                DispatchStatus::Running
            } else {
                let status: String =
                    sqlx::query_scalar("SELECT status FROM dispatches WHERE id = $1")
                        .bind(&id)
                        .fetch_one(&self.pool)
                        .await?;
                parse_status(status)?
            };
            statuses.push(status);
        }
        Ok(statuses)
    }

    /// The dispatch ends before any run: `failed` (retrying cannot help) or `dead_lettered`
    /// (retries ran out); `error` says why.
    pub async fn record_given_up(
        &self,
        id: &DispatchId,
        status: DispatchStatus,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET status = $3, error = $2, finished_at = now(), updated_at = now() \
             WHERE id = $1 AND status IN ('queued', 'starting')",
        )
        .bind(id.to_string())
        .bind(storable_text(error))
        .bind(status.as_str())
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
        .bind(storable_text(error))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// The inputs a dispatch was recorded with, if it was.
    pub async fn recorded_inputs(&self, id: &DispatchId) -> Result<Option<Value>, sqlx::Error> {
        sqlx::query_scalar("SELECT inputs FROM dispatches WHERE id = $1 AND inputs IS NOT NULL")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
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
}

/// Statuses a dispatch can be replayed from under its own id (its run, if it has one, is
/// found again rather than started twice).
pub const REPLAYABLE: [DispatchStatus; 4] = [
    DispatchStatus::Failed,
    DispatchStatus::DeadLettered,
    DispatchStatus::Aborted,
    DispatchStatus::TimedOut,
];

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

/// Filters of `GET /dispatches`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub statuses: Option<Vec<DispatchStatus>>,
    pub project: Option<String>,
    pub domain: Option<String>,
    pub task_name: Option<String>,
    /// Dispatches from one webhook source (recorded as sent by `source:<name>`).
    pub source: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only dispatches older than this (received_at, id): the cursor of the previous page.
    pub before: Option<(DateTime<Utc>, String)>,
    /// Only dispatches of tasks these scopes cover (a restricted key's view); all when `None`.
    pub within: Option<crate::api_keys::Scopes>,
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

    /// A page of dispatches, newest first.
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: i64,
    ) -> Result<Vec<DispatchRecord>, sqlx::Error> {
        let statuses: Option<Vec<&str>> = filter
            .statuses
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str()).collect());
        let (before_at, before_id) = filter.before.clone().unzip();
        // A restricted key's scopes as three parallel columns; NULL parts match anything.
        let within = filter.within.as_ref().filter(|s| !s.is_unrestricted());
        let scope_column = |part: fn(&crate::api_keys::Scope) -> Option<&str>| {
            within.map(|scopes| {
                scopes
                    .iter()
                    .map(|scope| part(scope).map(str::to_string))
                    .collect::<Vec<_>>()
            })
        };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dispatches \
             WHERE ($1::text[] IS NULL OR status = ANY($1)) \
               AND ($2::text IS NULL OR project = $2) \
               AND ($3::text IS NULL OR domain = $3) \
               AND ($4::text IS NULL OR task_name = $4) \
               AND ($5::timestamptz IS NULL OR received_at >= $5) \
               AND ($6::timestamptz IS NULL OR received_at < $6) \
               AND ($7::timestamptz IS NULL OR (received_at, id) < ($7, $8)) \
               AND ($10::text IS NULL OR api_key = 'source:' || $10) \
               AND ($11::text[] IS NULL OR EXISTS ( \
                    SELECT 1 FROM unnest($11::text[], $12::text[], $13::text[]) AS s(p, d, t) \
                    WHERE project = s.p AND (s.d IS NULL OR domain = s.d) \
                      AND (s.t IS NULL OR task_name = s.t))) \
             ORDER BY received_at DESC, id DESC LIMIT $9"
        )))
        .bind(statuses)
        .bind(&filter.project)
        .bind(&filter.domain)
        .bind(&filter.task_name)
        .bind(filter.since)
        .bind(filter.until)
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .bind(&filter.source)
        .bind(scope_column(|s| s.parts().0))
        .bind(scope_column(|s| s.parts().1))
        .bind(scope_column(|s| s.parts().2))
        .fetch_all(&self.pool)
        .await
    }

    /// What `id` asked for, if it has ended (any terminal status) and its inputs are known.
    pub async fn replay_source(
        &self,
        id: &DispatchId,
    ) -> Result<Option<ReplaySource>, sqlx::Error> {
        sqlx::query_as(
            "SELECT project, domain, task_name, task_version, inputs, api_key, status AS previous_status \
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
                       old.status AS previous_status",
        )
        .bind(id.to_string())
        .bind(statuses)
        .fetch_optional(&self.pool)
        .await
    }

    /// Undoes [`DispatchStore::requeue_for_replay`] when the message could not be re-sent.
    pub async fn undo_requeue(
        &self,
        id: &DispatchId,
        previous_status: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE dispatches SET status = $2, updated_at = now() WHERE id = $1 AND status = 'queued'")
            .bind(id.to_string())
            .bind(previous_status)
            .execute(&self.pool)
            .await
            .map(drop)
    }
}
