//! The ingress alone, no workers: how fast `/run-task` and signed `/hooks` deliveries are
//! accepted, saturated or at a fixed rate, against body size and over a standing backlog.

use std::sync::Arc;
use std::time::Duration;

use crate::load::{self, Load, Workload};
use crate::stack::{self, GITHUB_SECRET, Spec, memory_mib};
use crate::workloads::GithubPush;

use super::{Options, Rows, figures, measure, run_task, warm, warm_then_measure};

pub(super) async fn intake(options: Options) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec::default()).await?;
    let workload = run_task(&stack, 1024);
    let load = options.load(None, 128);
    measure(workload.clone(), warm(load)).await?;
    let report = measure(workload, load).await?;
    let mut f = figures(&report);
    let (_, peak) = memory_mib(stack.ingress_pid())?;
    f.insert("ingress_peak_rss_mib".into(), peak);
    stack.stop().await?;
    Ok(vec![("saturated, 128 connections".into(), f)])
}

pub(super) async fn intake_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec::default()).await?;
    let workload = run_task(&stack, 1024);
    let load = options.load(Some(rate), 64);
    measure(workload.clone(), warm(load)).await?;
    let report = measure(workload, load).await?;
    stack.stop().await?;
    Ok(vec![(format!("{rate:.0}/s"), figures(&report))])
}

pub(super) async fn hooks_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec::default()).await?;
    let workload: Arc<dyn Workload> = Arc::new(GithubPush::new(
        &stack.ingress_url,
        "github",
        GITHUB_SECRET,
        1024,
    ));
    let load = options.load(Some(rate), 64);
    measure(workload.clone(), warm(load)).await?;
    let report = measure(workload, load).await?;
    stack.stop().await?;
    Ok(vec![(
        format!("signed GitHub push at {rate:.0}/s"),
        figures(&report),
    )])
}

pub(super) async fn body_size(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for (label, size) in [
        ("1 KiB", 1024),
        ("64 KiB", 64 * 1024),
        ("1 MiB", 1024 * 1024),
    ] {
        let stack = stack::start(&Spec::default()).await?;
        // Short: a saturated minute of 1 MiB messages would park gigabytes in the broker.
        let load = Load {
            duration: Duration::from_secs(options.seconds.min(5)),
            ..options.load(None, 16)
        };
        let report = warm_then_measure(run_task(&stack, size), load).await?;
        let mut f = figures(&report);
        f.insert("body_kib".into(), size as f64 / 1024.0);
        f.insert(
            "mib_per_s".into(),
            report.ok_per_second() * size as f64 / (1024.0 * 1024.0),
        );
        stack.stop().await?;
        rows.push((label.to_string(), f));
    }
    Ok(rows)
}

/// Intake at 5,000/s with `depth` messages already waiting in the queue.
pub(super) async fn backlog(options: Options, depth: u32) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec::default()).await?;
    let fill = run_task(&stack, 1024);
    while stack.backlog().await? < depth {
        load::run(
            Load {
                rate: None,
                connections: 128,
                duration: Duration::from_secs(2),
            },
            fill.clone(),
        )
        .await?;
    }
    let standing = stack.backlog().await?;
    let report = measure(fill, options.load(Some(5000.0), 64)).await?;
    let mut f = figures(&report);
    f.insert("backlog_before".into(), f64::from(standing));
    stack.stop().await?;
    Ok(vec![(format!("5000/s over a backlog of {depth}"), f)])
}
