//! The `[worker]` section: how many dispatches one worker holds and runs at once, how it paces
//! Flyte, and how the fleet follows runs (`[worker.tracking]`). Every field is optional: the
//! defaults are the `Default` impls below, and the README's configuration section documents
//! them (a test in `flyhook/src/settings.rs` holds the two together).

use std::time::Duration;

use flyhook_contract::config::{Env, at_least_one, millis};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the worker serves `/metrics`, `/livez` and `/readyz`; port 0 picks a free port.
    pub listen: String,
    /// Unacknowledged messages held per worker.
    #[serde(deserialize_with = "at_least_one")]
    pub prefetch: u16,
    /// Dispatches processed at once (cheap: tasks, not threads).
    #[serde(deserialize_with = "at_least_one")]
    pub concurrency: usize,
    /// Completion callbacks delivered at once (and held from the callback queue), apart from
    /// the dispatches: a receiver that is slow or down holds up callbacks only.
    #[serde(deserialize_with = "at_least_one")]
    pub callback_concurrency: usize,
    /// PostgreSQL connections this worker holds, whatever the concurrency: each connection is a
    /// PostgreSQL process, and a fleet must stay below `max_connections`. At least two (the
    /// tracker holds one while the consumer writes).
    #[serde(deserialize_with = "at_least_two")]
    pub database_connections: u32,
    /// Transient failures before a dispatch is dead-lettered.
    #[serde(deserialize_with = "at_least_one")]
    pub max_attempts: u32,
    /// Runs this worker starts per second in one Flyte project; `None` (or 0): no cap. A burst
    /// then waits in the queue instead of flattening Flyte. Per worker: a fleet of N workers
    /// starts at most N times this.
    #[serde(deserialize_with = "cap")]
    pub max_runs_per_second_per_project: Option<u32>,
    /// The partitions (`[broker] partitions`, numbered from 0) this worker consumes; `None`:
    /// all. Partitions left from a larger count are drained whatever this says.
    pub partitions: Option<Vec<u16>>,
    pub tracking: TrackingSettings,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: "127.0.0.1:9090".into(),
            prefetch: 512,
            concurrency: 256,
            callback_concurrency: 32,
            database_connections: 8,
            max_attempts: 5,
            max_runs_per_second_per_project: None,
            partitions: None,
            tracking: TrackingSettings::default(),
        }
    }
}

impl Settings {
    /// `FLYHOOK_WORKER_LISTEN` wins over the file, so replicas of one file can listen apart.
    pub fn with_env(mut self, env: &impl Env) -> Settings {
        if let Some(listen) = env("FLYHOOK_WORKER_LISTEN") {
            self.listen = listen;
        }
        self
    }
}

/// How the fleet follows runs to their end.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingSettings {
    /// First and shortest pause between two looks at a run.
    #[serde(rename = "min_poll_ms", deserialize_with = "millis")]
    pub min_poll: Duration,
    /// Longest pause: long runs are looked at this often.
    #[serde(rename = "max_poll_ms", deserialize_with = "millis")]
    pub max_poll: Duration,
    /// How long a worker holds a run it is looking at; a dead worker's runs are taken over
    /// after this.
    #[serde(rename = "lease_ms", deserialize_with = "millis")]
    pub lease: Duration,
    /// Runs leased at once by one worker.
    #[serde(deserialize_with = "at_least_one")]
    pub batch: i64,
}

impl Default for TrackingSettings {
    fn default() -> TrackingSettings {
        TrackingSettings {
            min_poll: Duration::from_millis(1000),
            max_poll: Duration::from_millis(30_000),
            lease: Duration::from_millis(30_000),
            batch: 100,
        }
    }
}

fn at_least_two<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    u32::deserialize(d).map(|n| n.max(2))
}

fn cap<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    u32::deserialize(d).map(|n| (n > 0).then_some(n))
}
