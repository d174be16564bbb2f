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
    /// Every slot is held (by these dispatches, oldest first), or others wait ahead: this one
    /// waits in line, unless its policy skips (then it is out of line).
    Full { holders: Vec<String> },
    /// The dispatch has already ended (cancelled while it waited): drop the delivery.
    Ended(DispatchStatus),
}

impl DispatchStore {
    /// Asks for a slot of `key` for dispatch `id`, which arrived at `received_at` (its place
    /// in line). Idempotent: a dispatch that holds one keeps it.
    pub async fn take_slot(
        &self,
        id: &DispatchId,
        received_at: DateTime<Utc>,
        key: &ConcurrencyKey,
    ) -> Result<Slot, sqlx::Error> {
        let (mut transaction, ended) = self.lock_key(&key.scope, &key.value, id).await?;
        let id = id.to_string();
        if let Some(status) = ended {
            sqlx::query("DELETE FROM concurrency_slots WHERE dispatch_id = $1")
                .bind(&id)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            return Ok(Slot::Ended(status));
        }
        // A dispatch that ended while a slot was being taken for it (a race the lock of its
        // key does not cover) frees its slot here.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM concurrency_slots s USING dispatches d \
             WHERE s.scope = $1 AND s.value = $2 AND d.id = s.dispatch_id AND d.status IN {}",
            ended_statuses()
        )))
        .bind(&key.scope)
        .bind(&key.value)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO concurrency_slots (dispatch_id, scope, value, since) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (dispatch_id) DO NOTHING",
        )
        .bind(&id)
        .bind(&key.scope)
        .bind(&key.value)
        .bind(received_at)
        .execute(&mut *transaction)
        .await?;
        let line: Vec<(String, bool)> = sqlx::query_as(
            "SELECT dispatch_id, holding FROM concurrency_slots WHERE scope = $1 AND value = $2 \
             ORDER BY since, dispatch_id",
        )
        .bind(&key.scope)
        .bind(&key.value)
        .fetch_all(&mut *transaction)
        .await?;
        let holders: Vec<String> = line
            .iter()
            .filter(|(_, holding)| *holding)
            .map(|(id, _)| id.clone())
            .collect();
        let holds = line.iter().any(|(d, holding)| *d == id && *holding);
        // First in line among those waiting, and a slot free.
        let next = line.iter().find(|(_, holding)| !holding).map(|(d, _)| d) == Some(&id);
        let slot = if holds {
            Slot::Taken
        } else if next && holders.len() < key.limit as usize {
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
            Slot::Full { holders }
        };
        transaction.commit().await?;
        Ok(slot)
    }
}
