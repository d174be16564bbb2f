//! The fault-injection suite: real `flyhook` processes (one ingress, several workers) against
//! the local RabbitMQ and PostgreSQL and an in-process flyte-sim, under a load of dispatches,
//! while one fault at a time is injected. After each scenario every dispatch answered `202`
//! must reach a terminal state, and the stand-in must hold exactly one run per dispatch.
//!
//! It restarts the machine's RabbitMQ and PostgreSQL, so it runs alone, never inside
//! `cargo test`, and always leaves both running. The cluster scenarios run on a cluster of the
//! suite's own (`scripts/rabbitmq-cluster`), destroyed at the end. Everything stays on 127.0.0.1.
//!
//! `scripts/fault-suite [scenario …]` builds `flyhook` and runs this; results go to stdout and
//! to `RELIABILITY.md` (with `--report`).
//!
//! - `scenario`: the scenarios and their descriptions; `faults`: injecting them, and bringing
//!   the services back (the cluster's nodes through `flyhook_testkit::cluster`).
//! - `load`: the senders; `hostile`: the hostile requests mixed in.
//! - `run`: one scenario, from a fresh deployment to its verdict; `report`: RELIABILITY.md.

mod faults;
mod hostile;
mod load;
mod report;
mod run;
mod scenario;

use anyhow::{Context, bail};
use flyhook_testkit::cluster;

use crate::scenario::Scenario;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let report = args.iter().any(|a| a == "--report");
    args.retain(|a| a != "--report");
    let dispatches: usize = std::env::var("FAULT_SUITE_DISPATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let chosen: Vec<Scenario> = if args.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        Scenario::ALL
            .into_iter()
            .filter(|s| args.iter().any(|a| a == s.name()))
            .collect()
    };
    let mut rows = Vec::new();
    let ran = run_all(&chosen, dispatches, &mut rows).await;
    // Whatever happened, the suite's own cluster goes.
    if chosen.iter().any(|which| which.on_cluster()) {
        cluster::destroy().await?;
    }
    ran?;
    let failures = rows.iter().filter(|(_, outcome)| outcome.failed()).count();
    if report {
        std::fs::write("RELIABILITY.md", report::reliability(&rows))?;
    }
    // The closing line test runners are judged by.
    println!(
        "fault-suite: {} passed, {failures} failed",
        rows.len() - failures
    );
    if failures > 0 {
        bail!(
            "a scenario lost or duplicated work, answered bad input with a 5xx, or refused senders longer than it allows"
        );
    }
    Ok(())
}

async fn run_all(
    chosen: &[Scenario],
    dispatches: usize,
    rows: &mut Vec<(Scenario, run::Outcome)>,
) -> anyhow::Result<()> {
    for &which in chosen {
        let outcome = run::scenario(which, dispatches).await;
        // Whatever happened, leave the machine's services running.
        faults::services_up().await?;
        rows.push((which, outcome.with_context(|| which.name())?));
    }
    Ok(())
}
