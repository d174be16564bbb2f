//! The scenarios: which fault each injects, its name on the command line and its description
//! in RELIABILITY.md.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    KillWorkers,
    /// Workers killed while bursts are open and callbacks in flight.
    KillWorkersFlow,
    RestartRabbitmq,
    StopPostgres,
    FlakyFlyte,
    Duplicates,
    LongPostgresOutage,
    Hostile,
    /// `kill -9` the node that leads partition 0's work queue.
    ClusterKillLeader,
    /// `kill -9` the node the ingress publishes to.
    ClusterKillIngressNode,
    /// The node leading partition 1 stopped for a minute, then started.
    ClusterStopNode,
    /// Every node restarted, one after the other.
    ClusterRollingRestart,
}

impl Scenario {
    pub const ALL: [Scenario; 12] = [
        Scenario::KillWorkers,
        Scenario::KillWorkersFlow,
        Scenario::RestartRabbitmq,
        Scenario::StopPostgres,
        Scenario::FlakyFlyte,
        Scenario::Duplicates,
        Scenario::LongPostgresOutage,
        Scenario::Hostile,
        Scenario::ClusterKillLeader,
        Scenario::ClusterKillIngressNode,
        Scenario::ClusterStopNode,
        Scenario::ClusterRollingRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillWorkers => "kill-workers",
            Scenario::KillWorkersFlow => "kill-workers-flow",
            Scenario::RestartRabbitmq => "restart-rabbitmq",
            Scenario::StopPostgres => "stop-postgres",
            Scenario::FlakyFlyte => "flaky-flyte",
            Scenario::Duplicates => "duplicates",
            Scenario::LongPostgresOutage => "long-postgres-outage",
            Scenario::Hostile => "hostile",
            Scenario::ClusterKillLeader => "cluster-kill-leader",
            Scenario::ClusterKillIngressNode => "cluster-kill-ingress-node",
            Scenario::ClusterStopNode => "cluster-stop-node",
            Scenario::ClusterRollingRestart => "cluster-rolling-restart",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::KillWorkers => {
                "kill -9 a random worker every 0.5–2.5 s (and start a new one)"
            }
            Scenario::KillWorkersFlow => {
                "kill -9 a random worker every 0.5–2.5 s while every dispatch is debounced (bursts of 10 by key, 2 s window) and calls back to a receiver whose first 200 answers are 503: one run per burst, every dispatch's callback delivered"
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
            Scenario::ClusterKillLeader => {
                "3-node cluster, 3 partitions: `kill -9` the node leading partition 0's queue 2 s into the load, started again 15 s later"
            }
            Scenario::ClusterKillIngressNode => {
                "3-node cluster, 3 partitions: `kill -9` the node the ingress is connected to 2 s into the load, started again 15 s later"
            }
            Scenario::ClusterStopNode => {
                "3-node cluster, 3 partitions: the node leading partition 1's queue stopped for 60 s, then started; the load paced over 75 s"
            }
            Scenario::ClusterRollingRestart => {
                "3-node cluster, 3 partitions: each node stopped and started in turn (rejoined before the next); the load paced over 60 s"
            }
            Scenario::Hostile => {
                "every 10th request hostile: a NUL, 100- and 100,000-deep nesting, a 900 KiB field, and each provider's retry shape (GitHub body replayed under a fresh delivery id, Slack retry signed anew, Stripe event resent)"
            }
        }
    }
}

impl Scenario {
    /// Whether it runs on the suite's own RabbitMQ cluster instead of the machine's broker.
    pub fn on_cluster(self) -> bool {
        matches!(
            self,
            Scenario::ClusterKillLeader
                | Scenario::ClusterKillIngressNode
                | Scenario::ClusterStopNode
                | Scenario::ClusterRollingRestart
        )
    }

    /// The most seconds of the load in which senders may see a 5xx or no answer: a cluster
    /// that lost a node must serve from the others within seconds (before a fix for RabbitMQ
    /// 3.10's nacks after a leader loss, an ingress on the killed node answered 503 for 17 s).
    pub fn refused_seconds_allowed(self) -> Option<usize> {
        self.on_cluster().then_some(8)
    }

    /// Whether its dispatches are debounced and call back (see `run::FLOW`).
    pub fn with_flow_control(self) -> bool {
        self == Scenario::KillWorkersFlow
    }

    /// How long the load is spread over (instead of sent as fast as it goes), so that it
    /// flows for the whole of a long fault.
    pub fn load_lasts(self) -> Option<Duration> {
        match self {
            Scenario::ClusterStopNode => Some(Duration::from_secs(75)),
            Scenario::ClusterRollingRestart => Some(Duration::from_secs(60)),
            _ => None,
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
