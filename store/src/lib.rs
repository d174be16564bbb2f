//! The status store: PostgreSQL tables, their migrations, and one file per concern, so the
//! ingress, the worker and the CLI each find the writes they own.
//!
//! # Layout
//! - [`DispatchStore`] (this file): the `dispatches` table's handle; [`MIGRATOR`] the schema.
//! - [`record`]: a dispatch as read back; [`claims`]: the worker's start path;
//!   [`tracking`]: leases and run ends; [`control`]: await and cancel; [`listing`]: pages and
//!   filters; [`replay`]: sending a dispatch again.
//! - [`callbacks`]: the callback outbox and each dispatch's callback state; [`concurrency`]:
//!   concurrency keys' slots and lines; [`debounce`]: debounced bursts (both locking a key
//!   through `flow`).
//! - [`history`]: one dispatch's status changes; [`overview`]: the fleet's figures by time.
//! - [`keys`]: API keys managed at run time; [`audit`]: the audit log; [`sessions`]: the
//!   console's sign-ins.
//! - [`fault`]: an error told apart as an outage (hold and retry) or refused data.

pub mod audit;
pub mod callbacks;
pub mod claims;
pub mod concurrency;
pub mod control;
pub mod debounce;
pub mod fault;
mod flow;
pub mod history;
pub mod keys;
pub mod listing;
pub mod overview;
pub mod record;
pub mod replay;
pub mod sessions;
pub mod tracking;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub use claims::{Claim, ClaimRequest};
pub use fault::StoreFault;
pub use listing::ListFilter;
pub use record::DispatchRecord;
pub use replay::ReplaySource;
pub use tracking::{LeasedRun, Poll, RunEnd};

/// The schema, embedded from `migrations/`. Applied migrations are checksummed by sqlx, so their
/// text is never edited, not even a stale comment (the first still names `common/`, this
/// crate's old home): a change is a new migration.
pub static MIGRATOR: Migrator = sqlx::migrate!();

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
}

/// Dispatches as the worker would claim them, for the unit tests of every module.
#[cfg(test)]
mod test_support {
    use chrono::Utc;
    use flyhook_contract::dispatch::Dispatch;
    use flyhook_contract::{IdIssuer, TaskRef};
    use secrecy::SecretString;
    use serde_json::{Value, json};

    use crate::{Claim, ClaimRequest, DispatchStore};

    /// A fresh dispatch of `project/development/task.main/v1` with `inputs`.
    pub fn dispatch(project: &str, inputs: Value) -> Dispatch {
        let issuer = IdIssuer::new(&SecretString::from("store-unit-tests-secret-0123456789"));
        let Value::Object(inputs) = inputs else {
            panic!("inputs are an object")
        };
        Dispatch {
            id: issuer.issue(),
            task: TaskRef::parse(project, "development", "task.main", "v1").unwrap(),
            inputs,
            received_at: Utc::now(),
            api_key: "ci".into(),
            retries: 0,
            request_id: None,
            replay: false,
            delivery: None,
            callback: None,
            concurrency: None,
            debounce: None,
        }
    }

    /// Claims `dispatch` for its first attempt.
    pub async fn claim(store: &DispatchStore, dispatch: &Dispatch) -> Claim {
        let request = ClaimRequest {
            dispatch: dispatch.clone(),
            redelivered: false,
        };
        store.claim_all(&[request]).await.unwrap()[0]
    }

    /// A dispatch claimed and recorded `running`.
    pub async fn running(store: &DispatchStore, project: &str) -> Dispatch {
        let dispatch = dispatch(project, json!({"n": 1}));
        claim(store, &dispatch).await;
        let url = format!("http://flyte.test/runs/{}", dispatch.id.run_name());
        let started = [(dispatch.id, url, flyte_client::ActionPhase::Running)];
        store.record_all_running(&started).await.unwrap();
        dispatch
    }
}
