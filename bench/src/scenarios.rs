//! The scenarios of BENCHMARKS.md. Each one deploys a fresh stack (see [`crate::stack`]), loads
//! it, and returns its figures as labelled rows; the runner repeats it and keeps the median of
//! every figure.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::Value;

use crate::load::{self, Load, Report, Workload};
use crate::stack::{self, API_KEY, GITHUB_SECRET, Spec, Stack};
use crate::workloads::{GithubPush, HELLO_TASK, Keeping, RunTask, Status};

/// Figures of one row, by name.
pub type Figures = BTreeMap<String, f64>;

/// One run of a scenario: its rows, labelled.
pub type Rows = Vec<(String, Figures)>;

pub const NAMES: [&str; 13] = [
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
        "intake" => intake(options).await,
        "intake-5k" => intake_at(options, 5000.0).await,
        "hooks-5k" => hooks_at(options, 5000.0).await,
        "pipeline" => at_rates(&[800.0, 2500.0, 3000.0], |rate| pipeline_at(options, rate)).await,
        "latency-1k" => at_rates(&[500.0, 1000.0], |rate| latency_at(options, rate)).await,
        "slow-flyte" => slow_flyte(options, 1500.0).await,
        "status" => status(options).await,
        "waiters" => waiters(1000).await,
        "body-size" => body_size(options).await,
        "workers" => workers(options).await,
        "backlog" => backlog(options, 100_000).await,
        "overload" => overload(options).await,
        "seed" => seed(options).await,
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
    load::run(load, workload.clone()).await.map(drop).ok();
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

async fn intake(options: Options) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec::default()).await?;
    let workload = run_task(&stack, 1024);
    let load = options.load(None, 128);
    measure(workload.clone(), warm(load)).await?;
    let report = measure(workload, load).await?;
    let mut f = figures(&report);
    let (_, peak) = stack::memory_mib(stack.ingress_pid())?;
    f.insert("ingress_peak_rss_mib".into(), peak);
    stack.stop().await?;
    Ok(vec![("saturated, 128 connections".into(), f)])
}

async fn intake_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec::default()).await?;
    let workload = run_task(&stack, 1024);
    let load = options.load(Some(rate), 64);
    measure(workload.clone(), warm(load)).await?;
    let report = measure(workload, load).await?;
    stack.stop().await?;
    Ok(vec![(format!("{rate:.0}/s"), figures(&report))])
}

async fn hooks_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec::default()).await?;
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

/// Intake's figures, plus the runs the stand-in created meanwhile and the backlog left: whether
/// the workers kept up.
async fn measure_with_starts(
    stack: &Stack,
    workload: Arc<dyn Workload>,
    load: Load,
) -> anyhow::Result<Figures> {
    let before = stack.runs_created().await?;
    let report = measure(workload, load).await?;
    let started = stack.runs_created().await? - before;
    let mut f = figures(&report);
    f.insert(
        "started_per_s".into(),
        started as f64 / report.elapsed.as_secs_f64(),
    );
    f.insert("backlog_at_end".into(), f64::from(stack.backlog().await?));
    Ok(f)
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

async fn pipeline_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec {
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
    stack
        .wait_for_runs(
            stack.runs_created().await? + u64::from(stack.backlog().await?),
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
async fn latency_at(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec {
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
    stack
        .wait_for_runs(keeping.take().len() as u64, Duration::from_secs(120))
        .await?;
    let created_before = stack.runs_created().await?;
    let report = measure(keeping.clone(), load).await?;
    let sent = keeping.take();
    stack
        .wait_for_runs(created_before + sent.len() as u64, Duration::from_secs(120))
        .await?;
    let created: BTreeMap<String, SystemTime> = stack
        .sim_runs()
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

async fn slow_flyte(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec {
        workers: 1,
        sim_args: vec!["--latency".into(), "RunService/CreateRun:200ms".into()],
        config: worker_config(1024),
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

async fn status(options: Options) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec {
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
    stack
        .wait_for_runs(ids.len() as u64, Duration::from_secs(60))
        .await?;
    let workload: Arc<dyn Workload> = Arc::new(Status {
        base: stack.ingress_url.clone(),
        key: API_KEY.into(),
        ids,
    });
    let saturated = warm_then_measure(workload.clone(), options.load(None, 64)).await?;
    let steady = measure(workload, options.load(Some(2000.0), 64)).await?;
    stack.stop().await?;
    Ok(vec![
        (
            "GET /dispatches/{id}, saturated".into(),
            figures(&saturated),
        ),
        ("GET /dispatches/{id} at 2000/s".into(), figures(&steady)),
    ])
}

/// Ingress memory with `count` run-and-wait requests held open on runs that do not end.
async fn waiters(count: usize) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec {
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
    stack.wait_for_runs(1, Duration::from_secs(30)).await?;
    let created_before = stack.runs_created().await?;
    let (before, _) = stack::memory_mib(pid)?;
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
    stack
        .wait_for_runs(created_before + count as u64, Duration::from_secs(60))
        .await?;
    let (during, _) = stack::memory_mib(pid)?;
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

async fn body_size(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for (label, size) in [
        ("1 KiB", 1024),
        ("64 KiB", 64 * 1024),
        ("1 MiB", 1024 * 1024),
    ] {
        let stack = Stack::start(&Spec::default()).await?;
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

/// How fast 1, 2 and 4 worker processes drain a standing backlog into started runs.
async fn workers(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for count in [1, 2, 4] {
        let mut stack = Stack::start(&Spec::default()).await?;
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
        stack
            .wait_for_runs(backlog, Duration::from_secs(300))
            .await?;
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

/// Intake at 5,000/s with `depth` messages already waiting in the queue.
async fn backlog(options: Options, depth: u32) -> anyhow::Result<Rows> {
    let stack = Stack::start(&Spec::default()).await?;
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
async fn overload(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for rate in [2000.0, 5000.0, 8000.0, 11000.0, 14000.0, 17000.0, 20000.0] {
        let stack = Stack::start(&Spec::default()).await?;
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
    let stack = Stack::start(&Spec {
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

/// The seed's design (FastAPI, the Flyte call inside the request) against flyhook's
/// `/run-task` (with a worker starting the runs on the same machine), at stand-in latencies of
/// 0 and 200 ms.
async fn seed(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for latency in ["0ms", "200ms"] {
        let stack = Stack::start(&Spec {
            workers: 1,
            sim_args: vec!["--latency".into(), format!("*:{latency}")],
            config: worker_config(1024),
        })
        .await?;
        let seed = SeedApp::start(&stack.sim_url).await?;
        let load = options.load(None, 64);
        let seed_report =
            warm_then_measure(Arc::new(RunTask::new(&seed.url, API_KEY, 1024)), load).await;
        seed.stop();
        let seed_report = seed_report?;
        let flyhook_report = warm_then_measure(run_task(&stack, 1024), load).await?;
        stack.stop().await?;
        let ratio =
            flyhook_report.ok_per_second() / seed_report.ok_per_second().max(f64::MIN_POSITIVE);
        let mut flyhook = figures(&flyhook_report);
        flyhook.insert("ratio_to_seed".into(), ratio);
        rows.push((
            format!("seed (FastAPI), Flyte {latency}"),
            figures(&seed_report),
        ));
        rows.push((format!("flyhook, Flyte {latency}"), flyhook));
    }
    Ok(rows)
}

/// `bench/seed/app.py` under uvicorn, from the virtualenv `bench/run` prepares.
struct SeedApp {
    url: String,
    child: Child,
}

impl SeedApp {
    async fn start(flyte_endpoint: &str) -> anyhow::Result<SeedApp> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seed");
        let uvicorn = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/uvicorn");
        anyhow::ensure!(
            uvicorn.exists(),
            "{} is missing: run bench/run, which makes it",
            uvicorn.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&uvicorn)
            .args([
                "app:app",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-level",
                "warning",
                "--no-access-log",
            ])
            .current_dir(&dir)
            .env("WEBHOOK_API_KEY", API_KEY)
            .env("FLYTE_ENDPOINT", flyte_endpoint)
            .stdout(Stdio::null())
            .spawn()
            .context("starting uvicorn")?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while http.get(format!("{url}/docs")).send().await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the seed app did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(SeedApp { url, child })
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
