//! Dispatches through the workers into started runs: intake and starts together, the latency
//! from a request to its run, a slow Flyte, and how fast 1, 2 and 4 workers drain a backlog.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flyhook_testkit::Stack;

use crate::cpu;
use crate::load::{Load, Workload};
use crate::stack::{self, API_KEY, Spec};
use crate::workloads::{Keeping, RunTask};

use super::{Figures, Options, Rows, figures, measure, run_task, warm, worker_config};

/// Intake's figures, plus the runs the stand-in created meanwhile, the backlog left (whether
/// the workers kept up) and where the CPU went.
pub(super) async fn measure_with_starts(
    stack: &Stack,
    workload: Arc<dyn Workload>,
    load: Load,
) -> anyhow::Result<Figures> {
    let before = stack.sim.runs_created().await?;
    let cpu_before = cpu::Snapshot::take()?;
    let report = measure(workload, load).await?;
    let cpu = cpu::Snapshot::take()?.shares_since(&cpu_before, stack);
    let started = stack.sim.runs_created().await? - before;
    let mut f = figures(&report);
    f.extend(cpu);
    f.insert(
        "started_per_s".into(),
        started as f64 / report.elapsed.as_secs_f64(),
    );
    f.insert("backlog_at_end".into(), f64::from(stack.backlog().await?));
    Ok(f)
}

pub(super) async fn pipeline_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec {
        workers: 2,
        ..Spec::default()
    })
    .await?;
    let workload = run_task(&stack, 1024);
    let load = Load {
        duration: Duration::from_secs(options.seconds.max(60)),
        ..options.load(Some(rate), 64)
    };
    measure(workload.clone(), warm(load)).await?;
    stack::wait_for_runs(
        &stack,
        stack.sim.runs_created().await? + u64::from(stack.backlog().await?),
        Duration::from_secs(60),
    )
    .await
    .ok();
    let f = measure_with_starts(&stack, workload, load).await?;
    stack.stop().await?;
    Ok(vec![(
        format!("{rate:.0}/s for {} s", load.duration.as_secs()),
        f,
    )])
}

/// From a request's due time to the stand-in's creation of its run.
pub(super) async fn latency_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec {
        workers: 2,
        ..Spec::default()
    })
    .await?;
    let keeping = Arc::new(Keeping::new(
        RunTask::new(&stack.ingress_url, API_KEY, 1024),
        "run_name",
    ));
    let load = options.load(Some(rate), 64);
    measure(keeping.clone(), warm(load)).await?;
    stack::wait_for_runs(
        &stack,
        keeping.take().len() as u64,
        Duration::from_secs(120),
    )
    .await?;
    let created_before = stack.sim.runs_created().await?;
    let report = measure(keeping.clone(), load).await?;
    let sent = keeping.take();
    stack::wait_for_runs(
        &stack,
        created_before + sent.len() as u64,
        Duration::from_secs(120),
    )
    .await?;
    let created: BTreeMap<String, SystemTime> = stack
        .sim
        .runs()
        .await?
        .into_iter()
        .filter_map(|run| {
            let name = run["name"].as_str()?.to_string();
            let at = chrono::DateTime::parse_from_rfc3339(run["created_at"].as_str()?).ok()?;
            Some((name, SystemTime::from(at)))
        })
        .collect();
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut missing = 0u64;
    for (name, due) in &sent {
        match created.get(name) {
            Some(at) => histogram.saturating_record(
                at.duration_since(*due)
                    .unwrap_or_default()
                    .as_micros()
                    .max(1) as u64,
            ),
            None => missing += 1,
        }
    }
    let mut f = figures(&report);
    for (key, q) in [
        ("e2e_p50_ms", 0.5),
        ("e2e_p99_ms", 0.99),
        ("e2e_p999_ms", 0.999),
    ] {
        f.insert(key.into(), histogram.value_at_quantile(q) as f64 / 1000.0);
    }
    f.insert("e2e_max_ms".into(), histogram.max() as f64 / 1000.0);
    f.insert("runs_missing".into(), missing as f64);
    stack.stop().await?;
    Ok(vec![(format!("{rate:.0}/s"), f)])
}

pub(super) async fn slow_flyte(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec {
        workers: 1,
        sim_args: vec!["--latency".into(), "RunService/CreateRun:200ms".into()],
        config: worker_config(1024),
        ..Spec::default()
    })
    .await?;
    let workload = run_task(&stack, 1024);
    let load = options.load(Some(rate), 64);
    measure(workload.clone(), warm(load)).await?;
    let f = measure_with_starts(&stack, workload, load).await?;
    stack.stop().await?;
    Ok(vec![(
        format!("CreateRun takes 200 ms, {rate:.0}/s offered"),
        f,
    )])
}

/// How fast 1, 2 and 4 worker processes drain a standing backlog into started runs.
pub(super) async fn workers(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for count in [1, 2, 4] {
        let mut stack = stack::start(&Spec::default()).await?;
        measure(
            run_task(&stack, 1024),
            Load {
                rate: None,
                connections: 64,
                duration: Duration::from_secs(options.seconds.min(4)),
            },
        )
        .await?;
        let backlog = u64::from(stack.backlog().await?);
        let started = std::time::Instant::now();
        stack.add_workers(count)?;
        stack::wait_for_runs(&stack, backlog, Duration::from_secs(300)).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let mut f = Figures::new();
        f.insert("workers".into(), count as f64);
        f.insert("backlog".into(), backlog as f64);
        f.insert("started_per_s".into(), backlog as f64 / elapsed);
        stack.stop().await?;
        rows.push((
            format!("{count} worker{}", if count == 1 { "" } else { "s" }),
            f,
        ));
    }
    Ok(rows)
}
