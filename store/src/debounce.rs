//! The `debounce_windows` and `debounce_members` tables: the bursts of a debounced key and
//! the dispatches in each. Every decision about a key is taken under its advisory lock, so
//! however many workers look (or die looking), each burst has exactly one member that runs.
//! A burst's edge is its `fires_at` (on the database's clock): a delivery that arrived by
//! then belongs to it, however late it reaches a worker.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flyhook_contract::flow::{DebounceKey, Keep};
use flyhook_contract::{DispatchId, DispatchStatus};
use sqlx::PgConnection;

use crate::DispatchStore;
use crate::record::ended_statuses;

/// Where one member of a burst stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Burst {
    /// The window is open (or another worker is deciding about the key): look again after
    /// this long.
    Open(Duration),
    /// The window closed and this dispatch runs for the burst.
    Runs,
    /// The window closed and the dispatch named runs for the burst, not this one.
    CoalescedInto(String),
    /// The dispatch has already ended (cancelled while it waited).
    Ended(DispatchStatus),
}

/// Closed windows are kept this long (a late member finds the one it arrived in), then go.
const KEEP_CLOSED: &str = "7 days";

impl DispatchStore {
    /// Joins dispatch `id` (arrived at `received_at`) to the burst of `key`, or tells where
    /// its burst stands. Idempotent: a member asks again until its window has closed.
    pub async fn debounce(
        &self,
        id: &DispatchId,
        received_at: DateTime<Utc>,
        key: &DebounceKey,
    ) -> Result<Burst, sqlx::Error> {
        // Not yet a member: wait for the lock (once), or the burst could be decided without it.
        let joined = member_of(&mut *self.pool.acquire().await?, &id.to_string())
            .await?
            .is_some();
        let Some((mut transaction, ended)) = self
            .lock_key("debounce", &key.scope, &key.value, id, !joined)
            .await?
        else {
            return Ok(Burst::Open(Duration::from_secs(1)));
        };
        if let Some(status) = ended {
            transaction.commit().await?;
            return Ok(Burst::Ended(status));
        }
        let id = id.to_string();
        let window = match member_of(&mut transaction, &id).await? {
            Some(window) => window,
            None => join(&mut transaction, &id, received_at, key).await?,
        };
        let (left, winner): (f64, Option<String>) = sqlx::query_as(
            "SELECT greatest(extract(epoch FROM fires_at - now())::float8, 0), winner \
             FROM debounce_windows WHERE id = $1",
        )
        .bind(window)
        .fetch_one(&mut *transaction)
        .await?;
        let winner = match winner {
            // The one picked ended without a run (cancelled, skipped): another member runs.
            Some(winner) if ended_unstarted(&mut transaction, &winner).await? => {
                close(&mut transaction, window, key.keep).await?
            }
            Some(winner) => Some(winner),
            None if left > 0.0 => {
                transaction.commit().await?;
                return Ok(Burst::Open(Duration::from_secs_f64(left)));
            }
            None => close(&mut transaction, window, key.keep).await?,
        };
        transaction.commit().await?;
        Ok(match winner {
            Some(winner) if winner != id => Burst::CoalescedInto(winner),
            // This one (it asked, so it has not ended).
            _ => Burst::Runs,
        })
    }
}

async fn member_of(connection: &mut PgConnection, id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT window_id FROM debounce_members WHERE dispatch_id = $1")
        .bind(id)
        .fetch_optional(connection)
        .await
}

/// Whether dispatch `id` has ended without a run.
async fn ended_unstarted(connection: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM dispatches WHERE id = $1 AND started_at IS NULL \
                                                    AND status IN {})",
        ended_statuses()
    )))
    .bind(id)
    .fetch_one(connection)
    .await
}

/// Adds a first-time member: to the first closed window whose time it arrived by (it reached a
/// worker only after its burst ran: a backlog, a worker killed holding it; the
/// burst still runs once, so with `keep = last` the run may carry an earlier payload than this
/// one, and with `keep = first` a later one), else to the open
/// window, which it keeps open for another `window` (up to `max_wait` after the first), else
/// to a new window (closing an open one whose time had passed when it arrived).
async fn join(
    connection: &mut PgConnection,
    id: &str,
    received_at: DateTime<Utc>,
    key: &DebounceKey,
) -> Result<i64, sqlx::Error> {
    let late: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM debounce_windows \
         WHERE scope = $1 AND value = $2 AND closed_at IS NOT NULL AND $3 <= fires_at \
         ORDER BY fires_at LIMIT 1",
    )
    .bind(&key.scope)
    .bind(&key.value)
    .bind(received_at)
    .fetch_optional(&mut *connection)
    .await?;
    let window = match late {
        Some(window) => window,
        None => {
            let stale: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM debounce_windows WHERE scope = $1 AND value = $2 \
                   AND closed_at IS NULL AND fires_at < $3",
            )
            .bind(&key.scope)
            .bind(&key.value)
            .bind(received_at)
            .fetch_optional(&mut *connection)
            .await?;
            if let Some(stale) = stale {
                close(&mut *connection, stale, key.keep).await?;
            }
            let window_secs = key.window_ms as f64 / 1000.0;
            let max_wait_secs = key.max_wait_ms as f64 / 1000.0;
            sqlx::query_scalar(
                "INSERT INTO debounce_windows (scope, value, opened_at, last_at, fires_at) \
                 VALUES ($1, $2, $3, $3, $3 + make_interval(secs => least($4, $5))) \
                 ON CONFLICT (scope, value) WHERE closed_at IS NULL DO UPDATE \
                    SET last_at = greatest(debounce_windows.last_at, EXCLUDED.last_at), \
                        fires_at = least( \
                            greatest(debounce_windows.last_at, EXCLUDED.last_at) + make_interval(secs => $4), \
                            debounce_windows.opened_at + make_interval(secs => $5)) \
                 RETURNING id",
            )
            .bind(&key.scope)
            .bind(&key.value)
            .bind(received_at)
            .bind(window_secs)
            .bind(max_wait_secs)
            .fetch_one(&mut *connection)
            .await?
        }
    };
    sqlx::query(
        "INSERT INTO debounce_members (dispatch_id, window_id, received_at) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(window)
    .bind(received_at)
    .execute(&mut *connection)
    .await?;
    Ok(window)
}

/// Closes `window` (or picks again, if its winner ended without a run): the member that runs
/// is its first or last arrival among those not ended; `None` when every member has ended.
/// Windows closed long ago go.
async fn close(
    connection: &mut PgConnection,
    window: i64,
    keep: Keep,
) -> Result<Option<String>, sqlx::Error> {
    let order = match keep {
        Keep::First => "ASC",
        Keep::Last => "DESC",
    };
    let winner: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT m.dispatch_id FROM debounce_members m \
         LEFT JOIN dispatches d ON d.id = m.dispatch_id \
         WHERE m.window_id = $1 AND (d.status IS NULL OR d.status NOT IN {}) \
         ORDER BY m.received_at {order}, m.dispatch_id {order} LIMIT 1",
        ended_statuses()
    )))
    .bind(window)
    .fetch_optional(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE debounce_windows SET closed_at = coalesce(closed_at, now()), winner = $2 \
         WHERE id = $1",
    )
    .bind(window)
    .bind(&winner)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "DELETE FROM debounce_windows WHERE id IN (SELECT id FROM debounce_windows \
           WHERE closed_at < now() - $1::interval LIMIT 100)",
    )
    .bind(KEEP_CLOSED)
    .execute(&mut *connection)
    .await?;
    Ok(winner)
}
