//! The broker spread out: one node or a three-node cluster (`scripts/rabbitmq-cluster`), with
//! one work queue or four (`[broker] partitions`). Per shape: saturated intake with no worker,
//! then two workers draining what intake queued into started runs (the whole pipeline).

use std::time::{Duration, Instant};

use flyhook_testkit::cluster;

use crate::load::Load;
use crate::stack::{self, Spec};

use super::{Figures, Options, Rows, figures, measure, run_task, warm};

const DRAINING_WORKERS: usize = 2;

pub(super) async fn scale_out(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for broker in ["1 node", "3-node cluster"] {
        // Started only now, so that the one-node rows share the cores with nothing idle.
        let amqp_url = match broker {
            "1 node" => None,
            _ => Some(cluster::up().await?),
        };
        for partitions in [1, 4] {
            let spec = Spec {
                config: format!("[broker]\npartitions = {partitions}\n"),
                amqp_url: amqp_url.clone(),
                ..Spec::default()
            };
            let measured = intake_then_drain(&spec, options).await;
            if measured.is_err() && amqp_url.is_some() {
                let _ = cluster::destroy().await;
            }
            let (intake, pipeline) = measured?;
            let shape = format!(
                "{broker}, {partitions} partition{}",
                if partitions == 1 { "" } else { "s" }
            );
            rows.push((format!("intake: {shape}"), intake));
            rows.push((format!("pipeline: {shape}"), pipeline));
        }
    }
    cluster::destroy().await?;
    Ok(rows)
}

/// Intake saturated (128 connections) for the run's length, then the time two workers take to
/// turn that backlog into started runs.
async fn intake_then_drain(spec: &Spec, options: Options) -> anyhow::Result<(Figures, Figures)> {
    let mut stack = stack::start(spec).await?;
    let workload = run_task(&stack, 1024);
    let load: Load = options.load(None, 128);
    measure(workload.clone(), warm(load)).await?;
    let intake = figures(&measure(workload, load).await?);

    let backlog = u64::from(stack.backlog().await?);
    let before = stack.sim.runs_created().await?;
    let started = Instant::now();
    stack.add_workers(DRAINING_WORKERS)?;
    stack::wait_for_runs(&stack, before + backlog, Duration::from_secs(600)).await?;
    let mut pipeline = Figures::new();
    pipeline.insert("backlog".into(), backlog as f64);
    pipeline.insert(
        "started_per_s".into(),
        backlog as f64 / started.elapsed().as_secs_f64(),
    );
    stack.stop().await?;
    Ok((intake, pipeline))
}
