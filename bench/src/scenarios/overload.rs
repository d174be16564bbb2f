//! Offered load past the knee: what is accepted, what is refused with a `503`, and how fast
//! each answer comes, at rising rates and into a bounded work queue.

use std::time::Duration;

use crate::load::{Load, Report};
use crate::stack::{self, Spec};

use super::{Figures, Options, Rows, figures, measure, run_task, warm_then_measure};

/// The figures of a load that is partly refused: how many 503s, how fast, and anything else.
fn shedding_figures(report: &Report) -> Figures {
    let mut f = figures(report);
    let refused = report.count("503");
    f.insert(
        "503_per_s".into(),
        refused as f64 / report.elapsed.as_secs_f64(),
    );
    f.insert("503_p99_ms".into(), report.refused_ms(0.99));
    let answered: u64 = report.by_status.values().sum();
    f.insert(
        "other_errors".into(),
        (answered - report.ok_count() - refused) as f64,
    );
    f
}

/// Offered load past the knee: what is accepted, what is refused, and how fast each answer is.
pub(super) async fn overload(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for rate in [2000.0, 5000.0, 8000.0, 11000.0, 14000.0, 17000.0, 20000.0] {
        let stack = stack::start(&Spec::default()).await?;
        let load = Load {
            duration: Duration::from_secs(options.seconds.min(10)),
            ..options.load(Some(rate), 1024)
        };
        let report = warm_then_measure(run_task(&stack, 1024), load).await?;
        let mut f = shedding_figures(&report);
        f.insert("offered_per_s".into(), rate);
        stack.stop().await?;
        rows.push((format!("{rate:.0}/s offered"), f));
    }
    // The other bound: a work queue at its length limit refuses publishes.
    let stack = stack::start(&Spec {
        config: "[ingress]\nmax_queue_length = 20000\n".into(),
        ..Spec::default()
    })
    .await?;
    let report = measure(run_task(&stack, 1024), options.load(Some(5000.0), 256)).await?;
    let mut f = shedding_figures(&report);
    f.insert(
        "queue_length_at_end".into(),
        f64::from(stack.backlog().await?),
    );
    stack.stop().await?;
    rows.push((
        "5000/s into a queue bounded at 20,000, no workers".into(),
        f,
    ));
    Ok(rows)
}
