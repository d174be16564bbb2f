//! The one piece of state every handler shares. Each part has its own lock, so counting a call
//! or checking a token never waits for the run table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::SimConfig;
use crate::faults::Fault;
use crate::runs::RunTable;

/// Call counts and rejections, for tests and benchmarks.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Calls per RPC (`RunService/CreateRun`) that passed the schema check.
    pub calls: BTreeMap<String, u64>,
    /// Requests refused for not matching the schema.
    pub schema_rejections: u64,
    /// The last schema problem seen, to make a failing test say why.
    pub last_schema_rejection: Option<String>,
    pub tokens_issued: u64,
    pub unauthenticated: u64,
    /// Runs created (a run name counts once, however often CreateRun was called for it).
    #[serde(default)]
    pub runs_created: u64,
}

#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) runs: Mutex<RunTable>,
    /// Starts as `config.faults`; `/_sim/faults` replaces it and counted rules count down.
    pub(crate) faults: Mutex<Vec<Fault>>,
    /// Issued OAuth2 tokens and when they expire.
    pub(crate) tokens: Mutex<HashMap<String, Instant>>,
    pub(crate) stats: Mutex<Stats>,
    /// The last callbacks posted to `/_sim/inbox`, newest last.
    pub(crate) inbox: Mutex<std::collections::VecDeque<serde_json::Value>>,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Sim {
        Sim {
            faults: Mutex::new(config.faults.clone()),
            config,
            runs: Mutex::default(),
            tokens: Mutex::default(),
            stats: Mutex::default(),
            inbox: Mutex::default(),
        }
    }
}

/// Locks a mutex even if a handler panicked while holding it: every critical section here
/// leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
