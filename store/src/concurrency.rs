//! The `concurrency_slots` table: who holds a concurrency key's slots and who waits for one.
//! Taking a slot happens under a transaction-scoped advisory lock of the key, so the whole
//! fleet agrees; a slot is freed by the trigger that ends its dispatch (see the migration).

use chrono::{DateTime, Utc};
use flyhook_contract::flow::{ConcurrencyKey, WhenFull};
use flyhook_contract::{DispatchId, DispatchStatus};

use crate::DispatchStore;
use crate::record::ended_statuses;

/// What asking for a slot came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// This dispatch holds one (now, or since an earlier delivery).
    Taken,
    /// Every slot is held, or others wait ahead: `holders` hold them (oldest first, with
    /// their arrival), `ahead` wait before this one. It waits in line, unless its policy
    /// skips (then it is out of line).
    Full {
        holders: Vec<(String, DateTime<Utc>)>,
        ahead: i64,
    },
    /// Another worker is deciding about this key right now: ask again shortly.
    Busy,
    /// The dispatch has already ended (cancelled while it waited): drop the delivery.
    Ended(DispatchStatus),
}

impl DispatchStore {
    /// Asks for a slot of `key` for dispatch `id`, which arrived at `received_at` (its place
    /// in line). Idempotent: a dispatch that holds one keeps it. The first `limit - held`
    /// waiters in arrival order may take a free slot, whichever of them asks first.
    pub async fn take_slot(
        &self,
        id: &DispatchId,
        received_at: DateTime<Utc>,
        key: &ConcurrencyKey,
    ) -> Result<Slot, sqlx::Error> {
        // In line first, lock or no lock: one that finds the key busy still holds its place.
        let holding: bool = sqlx::query_scalar(
            "INSERT INTO concurrency_slots (dispatch_id, scope, value, since) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (dispatch_id) DO UPDATE SET seen_at = now() \
             RETURNING holding",
        )
        .bind(id.to_string())
        .bind(&key.scope)
        .bind(&key.value)
        .bind(received_at)
        .fetch_one(&self.pool)
        .await?;
        let Some((mut transaction, ended)) = self
            .lock_key("concurrency", &key.scope, &key.value, id, false)
            .await?
        else {
            return Ok(Slot::Busy);
        };
        let id = id.to_string();
        if let Some(status) = ended {
            sqlx::query("DELETE FROM concurrency_slots WHERE dispatch_id = $1")
                .bind(&id)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            return Ok(Slot::Ended(status));
        }
        if holding {
            transaction.commit().await?;
            return Ok(Slot::Taken);
        }
        // Rows of dispatches that ended in a race with their taking, and of waiters never
        // recorded whose messages stopped asking (a waiter asks at least every 16 s).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM concurrency_slots s WHERE s.scope = $1 AND s.value = $2 AND ( \
                EXISTS (SELECT 1 FROM dispatches d WHERE d.id = s.dispatch_id AND d.status IN {}) \
                OR (s.seen_at < now() - interval '10 minutes' \
                    AND NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.id = s.dispatch_id)))",
            ended_statuses()
        )))
        .bind(&key.scope)
        .bind(&key.value)
        .execute(&mut *transaction)
        .await?;
        let (held, ahead): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE holding), \
                    count(*) FILTER (WHERE NOT holding AND (since, dispatch_id) < ($3, $4)) \
             FROM concurrency_slots WHERE scope = $1 AND value = $2",
        )
        .bind(&key.scope)
        .bind(&key.value)
        .bind(received_at)
        .bind(&id)
        .fetch_one(&mut *transaction)
        .await?;
        let slot = if ahead < i64::from(key.limit) - held {
            sqlx::query("UPDATE concurrency_slots SET holding = true WHERE dispatch_id = $1")
                .bind(&id)
                .execute(&mut *transaction)
                .await?;
            Slot::Taken
        } else {
            if key.when_full == WhenFull::Skip {
                sqlx::query("DELETE FROM concurrency_slots WHERE dispatch_id = $1")
                    .bind(&id)
                    .execute(&mut *transaction)
                    .await?;
            }
            let holders = sqlx::query_as(
                "SELECT dispatch_id, since FROM concurrency_slots \
                 WHERE scope = $1 AND value = $2 AND holding ORDER BY since, dispatch_id LIMIT 100",
            )
            .bind(&key.scope)
            .bind(&key.value)
            .fetch_all(&mut *transaction)
            .await?;
            Slot::Full { holders, ahead }
        };
        transaction.commit().await?;
        Ok(slot)
    }

    /// Concurrency slots held and dispatches waiting for one, fleet-wide (a metric).
    pub async fn slots_in_use(&self) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE holding), count(*) FILTER (WHERE NOT holding) \
             FROM concurrency_slots",
        )
        .fetch_one(&self.pool)
        .await
    }
}
