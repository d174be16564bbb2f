//! The scenarios of BENCHMARKS.md. Each one deploys a fresh stack (see [`crate::stack`]), loads
//! it, and returns its figures as labelled rows; the runner repeats it and keeps the median of
//! every figure. Here: the list, the figures every load gives, and the medians; the scenarios,
//! by family, in `scenarios/`.

mod ceiling;
mod console;
mod flow;
mod intake;
mod lookups;
mod overload;
mod pipeline;
mod scale_out;
mod seed;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flyhook_testkit::Stack;
use serde_json::Value;

use crate::load::{self, Load, Report, Workload};
use crate::stack::API_KEY;
use crate::workloads::RunTask;

/// Figures of one row, by name.
pub type Figures = BTreeMap<String, f64>;

/// One run of a scenario: its rows, labelled.
pub type Rows = Vec<(String, Figures)>;

pub const NAMES: [&str; 17] = [
    "intake",
    "intake-5k",
    "hooks-5k",
    "pipeline",
    "latency-1k",
    "slow-flyte",
    "status",
    "waiters",
    "body-size",
    "workers",
    "backlog",
    "overload",
    "seed",
    "broker-ceiling",
    "scale-out",
    "console",
    "flow",
];

/// How long each measured load lasts, unless a scenario needs longer.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub seconds: u64,
}

impl Options {
    fn load(&self, rate: Option<f64>, connections: usize) -> Load {
        Load {
            rate,
            connections,
            duration: Duration::from_secs(self.seconds),
        }
    }
}

pub async fn run_once(name: &str, options: Options) -> anyhow::Result<Rows> {
    match name {
        "intake" => intake::intake(options).await,
        "intake-5k" => intake::intake_at(options, 5000.0).await,
        "hooks-5k" => intake::hooks_at(options, 5000.0).await,
        "pipeline" => {
            at_rates(&[800.0, 2500.0, 3000.0], |rate| {
                pipeline::pipeline_at(options, rate)
            })
            .await
        }
        "latency-1k" => {
            at_rates(&[500.0, 1000.0], |rate| pipeline::latency_at(options, rate)).await
        }
        "slow-flyte" => pipeline::slow_flyte(options, 1500.0).await,
        "status" => lookups::status(options).await,
        "waiters" => lookups::waiters(1000).await,
        "body-size" => intake::body_size(options).await,
        "workers" => pipeline::workers(options).await,
        "backlog" => intake::backlog(options, 100_000).await,
        "overload" => overload::overload(options).await,
        "seed" => seed::seed(options).await,
        "broker-ceiling" => ceiling::broker_ceiling(options).await,
        "scale-out" => scale_out::scale_out(options).await,
        "console" => console::console(options, 100_000).await,
        "flow" => flow::flow(options, 800.0).await,
        other => anyhow::bail!("no scenario {other:?}; there are: {}", NAMES.join(", ")),
    }
}

/// The figures every load gives.
fn figures(report: &Report) -> Figures {
    let mut f = Figures::new();
    f.insert("ok_per_s".into(), report.ok_per_second());
    for (key, q) in [
        ("p50_ms", 0.5),
        ("p90_ms", 0.9),
        ("p99_ms", 0.99),
        ("p999_ms", 0.999),
    ] {
        f.insert(key.into(), report.ok_ms(q));
    }
    let refused: u64 = report
        .by_status
        .iter()
        .filter(|(s, _)| !s.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    f.insert("not_2xx".into(), refused as f64);
    f
}

async fn measure(workload: Arc<dyn Workload>, load: Load) -> anyhow::Result<Report> {
    let report = load::run(load, workload).await?;
    eprintln!("    {}", report.summary());
    Ok(report)
}

/// A short load at the same settings first: connections open, the task interface cached, the
/// broker's queue warm.
async fn warm_then_measure(workload: Arc<dyn Workload>, load: Load) -> anyhow::Result<Report> {
    load::run(warm(load), workload.clone()).await?;
    measure(workload, load).await
}

fn run_task(stack: &Stack, body_size: usize) -> Arc<dyn Workload> {
    Arc::new(RunTask::new(&stack.ingress_url, API_KEY, body_size))
}

fn warm(load: Load) -> Load {
    Load {
        duration: Duration::from_secs(2),
        ..load
    }
}

/// Worker settings for a slow Flyte: enough dispatches in hand to keep 200 ms calls
/// overlapping (the default, 256, starts about 1,000 runs/s at that latency).
fn worker_config(concurrency: usize) -> String {
    format!(
        "[worker]\nprefetch = {}\nconcurrency = {concurrency}\n",
        concurrency * 2
    )
}

/// One scenario at several rates, a fresh stack each.
async fn at_rates<F, R>(rates: &[f64], scenario: F) -> anyhow::Result<Rows>
where
    F: Fn(f64) -> R,
    R: std::future::Future<Output = anyhow::Result<Rows>>,
{
    let mut rows = Rows::new();
    for &rate in rates {
        rows.extend(scenario(rate).await?);
    }
    Ok(rows)
}

/// Per figure: the median over runs, and every run's value.
pub type Spread = BTreeMap<String, (f64, Vec<f64>)>;

/// The median of each figure over runs, with every run's value.
pub fn medians(runs: &[Rows]) -> Vec<(String, Spread)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, (label, figures))| {
            let by_figure = figures
                .keys()
                .map(|key| {
                    let mut values: Vec<f64> = runs
                        .iter()
                        .filter_map(|rows| rows.get(i)?.1.get(key).copied())
                        .collect();
                    let all = values.clone();
                    values.sort_by(f64::total_cmp);
                    (key.clone(), (values[values.len() / 2], all))
                })
                .collect();
            (label.clone(), by_figure)
        })
        .collect()
}

/// A scenario's result as JSON, for the report and the plots.
pub fn to_json(name: &str, runs: &[Rows]) -> Value {
    let rows: Vec<Value> = medians(runs)
        .into_iter()
        .map(|(label, figures)| {
            let median: BTreeMap<&String, f64> =
                figures.iter().map(|(k, (m, _))| (k, *m)).collect();
            let all: BTreeMap<&String, &Vec<f64>> =
                figures.iter().map(|(k, (_, a))| (k, a)).collect();
            serde_json::json!({"row": label, "median": median, "runs": all})
        })
        .collect();
    serde_json::json!({"scenario": name, "runs": runs.len(), "rows": rows})
}
