//! The scenarios: which fault each injects, its name on the command line and its description
//! in RELIABILITY.md.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    KillWorkers,
    RestartRabbitmq,
    StopPostgres,
    FlakyFlyte,
    Duplicates,
    LongPostgresOutage,
    Hostile,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::KillWorkers,
        Scenario::RestartRabbitmq,
        Scenario::StopPostgres,
        Scenario::FlakyFlyte,
        Scenario::Duplicates,
        Scenario::LongPostgresOutage,
        Scenario::Hostile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillWorkers => "kill-workers",
            Scenario::RestartRabbitmq => "restart-rabbitmq",
            Scenario::StopPostgres => "stop-postgres",
            Scenario::FlakyFlyte => "flaky-flyte",
            Scenario::Duplicates => "duplicates",
            Scenario::LongPostgresOutage => "long-postgres-outage",
            Scenario::Hostile => "hostile",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::KillWorkers => {
                "kill -9 a random worker every 0.5–2.5 s (and start a new one)"
            }
            Scenario::RestartRabbitmq => {
                "RabbitMQ stopped for 5 s (rabbitmqctl stop_app / start_app) during the load"
            }
            Scenario::StopPostgres => "PostgreSQL stopped for 10 s during the load",
            Scenario::FlakyFlyte => {
                "flyte-sim answers 30% of calls `unavailable`, +50 ms on every call"
            }
            Scenario::Duplicates => "every dispatch sent twice with the same Idempotency-Key",
            Scenario::LongPostgresOutage => {
                "PostgreSQL stopped for 5 minutes (FAULT_SUITE_OUTAGE_SECS) from 1 s into the load"
            }
            Scenario::Hostile => {
                "every 10th request hostile: a NUL, 100- and 100,000-deep nesting, a 900 KiB field, and each provider's retry shape (GitHub body replayed under a fresh delivery id, Slack retry signed anew, Stripe event resent)"
            }
        }
    }
}

/// How long the long PostgreSQL outage lasts.
pub fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("FAULT_SUITE_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    )
}
