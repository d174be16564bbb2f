//! The `debounce_windows` and `debounce_members` tables: the bursts of a debounced key and
//! the dispatches in each. Every decision about a key is taken under its advisory lock, so
//! however many workers look (or die looking), each burst has exactly one member that runs.

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
    /// The window is open: look again after this long.
    Open(Duration),
    /// The window closed and this dispatch runs for the burst.
    Runs,
    /// The window closed and this dispatch ran for it.
    CoalescedInto(String),
    /// The dispatch has already ended (cancelled while it waited).
    Ended(DispatchStatus),
}

/// Closed windows are kept this long (a late member finds the one it arrived in), then go.
const KEEP_CLOSED: &str = "1 day";

impl DispatchStore {
    /// Joins dispatch `id` (arrived at `received_at`) to the burst of `key`, or tells where
    /// its burst stands. Idempotent: a member asks again until its window has closed.
    pub async fn debounce(
        &self,
        id: &DispatchId,
        received_at: DateTime<Utc>,
        key: &DebounceKey,
    ) -> Result<Burst, sqlx::Error> {
        let (mut transaction, ended) = self.lock_key(&key.scope, &key.value, id).await?;
        if let Some(status) = ended {
            transaction.commit().await?;
            return Ok(Burst::Ended(status));
        }
        let id = id.to_string();
        let window = match member_of(&mut transaction, &id).await? {
            Some(window) => window,
            None => join(&mut transaction, &id, received_at, key).await?,
        };
        let (fires_at, winner): (DateTime<Utc>, Option<String>) =
            sqlx::query_as("SELECT fires_at, winner FROM debounce_windows WHERE id = $1")
                .bind(window)
                .fetch_one(&mut *transaction)
                .await?;
        let winner = match winner {
            Some(winner) => winner,
            None => {
                let left = (fires_at - Utc::now()).to_std().unwrap_or_default();
                if !left.is_zero() {
                    transaction.commit().await?;
                    return Ok(Burst::Open(left));
                }
                close(&mut transaction, window, key.keep).await?
            }
        };
        transaction.commit().await?;
        Ok(if winner == id {
            Burst::Runs
        } else {
            Burst::CoalescedInto(winner)
        })
    }
}

async fn member_of(connection: &mut PgConnection, id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT window_id FROM debounce_members WHERE dispatch_id = $1")
        .bind(id)
        .fetch_optional(connection)
        .await
}

/// Adds a first-time member: to the closed window it arrived within (it reached a worker
/// late), else to the open window, which it keeps open for another `window` (up to
/// `max_wait` after the first), else to a new one.
async fn join(
    connection: &mut PgConnection,
    id: &str,
    received_at: DateTime<Utc>,
    key: &DebounceKey,
) -> Result<i64, sqlx::Error> {
    let window_ms = key.window_ms as f64 / 1000.0;
    let max_wait_ms = key.max_wait_ms as f64 / 1000.0;
    let late: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM debounce_windows WHERE scope = $1 AND value = $2 AND closed_at IS NOT NULL \
           AND opened_at <= $3 AND $3 <= closed_at ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(&key.scope)
    .bind(&key.value)
    .bind(received_at)
    .fetch_optional(&mut *connection)
    .await?;
    let window = match late {
        Some(window) => window,
        None => {
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
            .bind(window_ms)
            .bind(max_wait_ms)
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

/// Closes `window`: the member that runs is its first or last arrival among those not
/// ended (a cancelled member does not run for the others). Old closed windows go.
async fn close(
    connection: &mut PgConnection,
    window: i64,
    keep: Keep,
) -> Result<String, sqlx::Error> {
    let order = match keep {
        Keep::First => "ASC",
        Keep::Last => "DESC",
    };
    let winner: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT m.dispatch_id FROM debounce_members m \
         LEFT JOIN dispatches d ON d.id = m.dispatch_id \
         WHERE m.window_id = $1 AND (d.status IS NULL OR d.status NOT IN {}) \
         ORDER BY m.received_at {order}, m.dispatch_id {order} LIMIT 1",
        ended_statuses()
    )))
    .bind(window)
    .fetch_one(&mut *connection)
    .await?;
    sqlx::query("UPDATE debounce_windows SET closed_at = now(), winner = $2 WHERE id = $1")
        .bind(window)
        .bind(&winner)
        .execute(&mut *connection)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM debounce_windows WHERE id IN (SELECT id FROM debounce_windows \
           WHERE closed_at < now() - interval '{KEEP_CLOSED}' LIMIT 100)"
    )))
    .execute(&mut *connection)
    .await?;
    Ok(winner)
}
