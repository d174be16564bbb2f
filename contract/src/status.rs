//! Where a dispatch is in its life: the one vocabulary the worker writes, the store keeps, and
//! the ingress answers senders with.

use std::fmt;
use std::str::FromStr;

use flyte_client::ActionPhase;
use serde::{Deserialize, Serialize};

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
    /// Its concurrency key was full and its policy says `when_full = "skip"`: no run.
    Skipped,
    /// One of a debounced burst whose run another dispatch of the burst started.
    Coalesced,
}

impl DispatchStatus {
    pub const ALL: [DispatchStatus; 12] = [
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
        DispatchStatus::Skipped,
        DispatchStatus::Coalesced,
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
            DispatchStatus::Skipped => "skipped",
            DispatchStatus::Coalesced => "coalesced",
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

/// Statuses a dispatch can be replayed from under its own id (its run, if it has one, is
/// found again rather than started twice).
pub const REPLAYABLE: [DispatchStatus; 4] = [
    DispatchStatus::Failed,
    DispatchStatus::DeadLettered,
    DispatchStatus::Aborted,
    DispatchStatus::TimedOut,
];
