//! Reading what was accepted: `GET /dispatches/{id}` saturated and at a fixed rate, and the
//! ingress's memory with many run-and-wait requests held open.

use std::sync::Arc;
use std::time::Duration;

use crate::cpu;
use crate::load::{self, Load, Workload};
use crate::stack::{self, API_KEY, Spec, memory_mib};
use crate::workloads::{HELLO_TASK, Keeping, RunTask, Status};

use super::{Figures, Options, Rows, figures, measure, run_task, warm};

pub(super) async fn status(options: Options) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec {
        workers: 1,
        ..Spec::default()
    })
    .await?;
    // Dispatches to look up, recorded by the worker first.
    let seeding = Arc::new(Keeping::new(
        RunTask::new(&stack.ingress_url, API_KEY, 256),
        "id",
    ));
    measure(
        seeding.clone(),
        Load {
            rate: Some(2000.0),
            connections: 32,
            duration: Duration::from_secs(3),
        },
    )
    .await?;
    let ids: Vec<String> = seeding.take().into_iter().map(|(id, _)| id).collect();
    stack::wait_for_runs(&stack, ids.len() as u64, Duration::from_secs(60)).await?;
    let workload: Arc<dyn Workload> = Arc::new(Status {
        base: stack.ingress_url.clone(),
        key: API_KEY.into(),
        ids,
    });
    let saturated = options.load(None, 64);
    load::run(warm(saturated), workload.clone()).await?;
    let cpu_before = cpu::Snapshot::take()?;
    let saturated = measure(workload.clone(), saturated).await?;
    let cpu = cpu::Snapshot::take()?.shares_since(&cpu_before, &stack);
    let steady = measure(workload, options.load(Some(2000.0), 64)).await?;
    stack.stop().await?;
    let mut saturated = figures(&saturated);
    saturated.extend(cpu);
    Ok(vec![
        ("GET /dispatches/{id}, saturated".into(), saturated),
        ("GET /dispatches/{id} at 2000/s".into(), figures(&steady)),
    ])
}

/// Ingress memory with `count` run-and-wait requests held open on runs that do not end.
pub(super) async fn waiters(count: usize) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec {
        workers: 1,
        sim_args: vec!["--running-for".into(), "1h".into()],
        ..Spec::default()
    })
    .await?;
    let pid = stack.ingress_pid();
    // Warm: the interface cached, buffers grown by ordinary traffic.
    let warmup = run_task(&stack, 1024);
    measure(
        warmup,
        Load {
            rate: Some(1000.0),
            connections: 64,
            duration: Duration::from_secs(2),
        },
    )
    .await?;
    stack::wait_for_runs(&stack, 1, Duration::from_secs(30)).await?;
    let created_before = stack.sim.runs_created().await?;
    let (before, _) = memory_mib(pid)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(count)
        .build()?;
    let url = format!(
        "{}/run-task-and-wait/{HELLO_TASK}?wait=300s",
        stack.ingress_url
    );
    let mut held = tokio::task::JoinSet::new();
    // Paced at 1,000/s: all at once would trip the ingress's bound on publishes in flight.
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    for n in 0..count {
        pace.tick().await;
        let request = client
            .post(&url)
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"name": format!("waiter-{n}")}));
        held.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    stack::wait_for_runs(
        &stack,
        created_before + count as u64,
        Duration::from_secs(60),
    )
    .await?;
    let (during, _) = memory_mib(pid)?;
    let finished_early = held.try_join_next();
    held.abort_all();
    stack.stop().await?;
    if let Some(answer) = finished_early {
        anyhow::bail!("a run-and-wait request ended before its run did: {answer:?}");
    }
    let mut f = Figures::new();
    f.insert("rss_before_mib".into(), before);
    f.insert("rss_with_waiters_mib".into(), during);
    f.insert("added_mib".into(), during - before);
    Ok(vec![(format!("{count} run-and-wait requests held"), f)])
}
