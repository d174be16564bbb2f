//! The seed's design (FastAPI, the Flyte call inside the request) at its fastest against
//! flyhook's `/run-task` as a user runs it, at Flyte latencies of 0 and 200 ms.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::canned_flyte::CannedFlyte;
use crate::stack::{self, API_KEY, Spec};
use crate::workloads::RunTask;

use super::{Options, Rows, figures, measure, run_task, warm, warm_then_measure};

/// The seed app at its fastest (aiohttp's pooled client, a uvicorn worker per core, no access
/// log) against a canned Flyte that answers at the latency and checks nothing; flyhook with
/// its default configuration and log level (the per-key rate limit aside), its worker starting
/// the runs on flyte-sim at the same latency on the same machine. Both saturated with 64
/// connections, one after the other in the same run. flyhook's rows also say how many runs its
/// worker started meanwhile: intake is not the whole pipeline.
pub(super) async fn seed(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    for latency_ms in [0, 200] {
        let latency = format!("{latency_ms}ms");
        let load = options.load(None, 64);
        let seed_report = {
            let flyte = CannedFlyte::start(Duration::from_millis(latency_ms))?;
            let seed = SeedApp::start(&flyte.url, cores).await?;
            warm_then_measure(Arc::new(RunTask::new(&seed.url, API_KEY, 1024)), load).await?
        };
        let stack = stack::start(&Spec {
            workers: 1,
            sim_args: vec!["--latency".into(), format!("*:{latency}")],
            vars: vec![stack::default_logs()],
            ..Spec::default()
        })
        .await?;
        let workload = run_task(&stack, 1024);
        measure(workload.clone(), warm(load)).await?;
        let created_before = stack.sim.runs_created().await?;
        let flyhook_report = measure(workload, load).await?;
        let started = stack.sim.runs_created().await? - created_before;
        stack.stop().await?;
        let mut flyhook = figures(&flyhook_report);
        flyhook.insert(
            "ratio_to_seed".into(),
            flyhook_report.ok_per_second() / seed_report.ok_per_second().max(f64::MIN_POSITIVE),
        );
        flyhook.insert(
            "started_per_s".into(),
            started as f64 / flyhook_report.elapsed.as_secs_f64(),
        );
        rows.push((
            format!("seed (FastAPI, aiohttp, {cores} workers), Flyte {latency}"),
            figures(&seed_report),
        ));
        rows.push((
            format!("flyhook (defaults, info logs), Flyte {latency}"),
            flyhook,
        ));
    }
    Ok(rows)
}

/// `bench/seed/app.py` under uvicorn (a worker process per core), from the virtualenv
/// `bench/run` prepares; stopped, with its workers, when dropped.
struct SeedApp {
    url: String,
    child: Child,
}

impl SeedApp {
    async fn start(flyte_endpoint: &str, workers: usize) -> anyhow::Result<SeedApp> {
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
                "--workers",
                &workers.to_string(),
                "--log-level",
                "warning",
                "--no-access-log",
            ])
            .current_dir(&dir)
            .process_group(0)
            .env("WEBHOOK_API_KEY", API_KEY)
            .env("FLYTE_ENDPOINT", flyte_endpoint)
            .stdout(Stdio::null())
            .spawn()
            .context("starting uvicorn")?;
        // Dropped on the way out of any failure below: nothing is left running.
        let seed = SeedApp {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while http.get(format!("{}/docs", seed.url)).send().await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the seed app did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(seed)
    }

    /// Signals uvicorn's process group (uvicorn and its workers): `signal`, by `kill`.
    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        // A group already gone is fine: `kill`'s complaint about it is not shown.
        let sent = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
        if let Err(e) = sent {
            eprintln!("could not signal the seed app: {e}");
        }
    }
}

impl Drop for SeedApp {
    /// SIGTERM to uvicorn and its workers, 10 s for them to end, then SIGKILL.
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (a worker uvicorn did not take down with it).
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}
