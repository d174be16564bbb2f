//! A dispatch as senders and operators see it: the row read back whole (`GET /dispatches/{id}`,
//! listings) and what it was asked with.

use chrono::{DateTime, Utc};
use flyhook_contract::{DispatchId, DispatchStatus};
use serde::Serialize;
use serde_json::Value;

use crate::DispatchStore;

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
    /// Who sent it: an API key's name, or `source:<name>` for a provider webhook.
    pub api_key: Option<String>,
    /// A provider webhook's route and the provider's delivery id.
    pub route: Option<String>,
    pub delivery_id: Option<String>,
    /// The request that brought it (absent for dispatches recorded by older versions).
    pub request_id: Option<String>,
    /// The completion callback's destination, and how its last ending's event fared.
    pub callback: Option<String>,
    pub callback_state: Option<String>,
    pub callback_attempts: i32,
    pub callback_answer: Option<String>,
    pub callback_at: Option<DateTime<Utc>>,
    /// How many times it has ended (a replay ends it again).
    pub endings: i32,
    /// For a `coalesced` dispatch: the dispatch of its burst that ran.
    pub coalesced_into: Option<String>,
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

/// The statuses a dispatch ends in, as an SQL list: `('succeeded', …)`, made once.
pub(crate) fn ended_statuses() -> &'static str {
    static ENDED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let ended: Vec<String> = DispatchStatus::ALL
            .into_iter()
            .filter(|status| status.is_terminal())
            .map(|status| format!("'{status}'"))
            .collect();
        format!("({})", ended.join(", "))
    });
    &ENDED
}

/// A status column read as text (by queries that do not go through [`StatusColumn`]).
pub(crate) fn parse_status(text: String) -> Result<DispatchStatus, sqlx::Error> {
    text.parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

pub(crate) const COLUMNS: &str = "id, status, project, domain, task_name, task_version, run_name, run_url, \
                       attempts, error, error_kind, flyte_phase, outputs, received_at, started_at, \
                       finished_at, updated_at, api_key, route, delivery_id, request_id, callback, \
                       callback_state, callback_attempts, callback_answer, callback_at, endings, \
                       coalesced_into";

impl DispatchStore {
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
