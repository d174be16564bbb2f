//! The status store: PostgreSQL tables, their migrations, and one file per concern, so the
//! ingress, the worker and the CLI each find the writes they own.
//!
//! # Layout
//! - [`DispatchStore`] (this file): the `dispatches` table's handle; [`MIGRATOR`] the schema.
//! - [`record`]: a dispatch as read back; [`claims`]: the worker's start path;
//!   [`tracking`]: leases and run ends; [`control`]: await and cancel; [`listing`]: pages and
//!   filters; [`replay`]: sending a dispatch again.
//! - [`keys`]: API keys managed at run time; [`audit`]: the audit log.
//! - [`fault`]: an error told apart as an outage (hold and retry) or refused data.

pub mod audit;
pub mod claims;
pub mod control;
pub mod fault;
pub mod keys;
pub mod listing;
pub mod record;
pub mod replay;
pub mod tracking;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

pub use claims::{Claim, ClaimRequest};
pub use fault::StoreFault;
pub use listing::ListFilter;
pub use record::DispatchRecord;
pub use replay::ReplaySource;
pub use tracking::{LeasedRun, Poll, RunEnd};

/// The schema, embedded from `migrations/`.
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
