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

use super::{Options, Rows, figures, run_task, warm_then_measure};

/// The seed app at its fastest (aiohttp's pooled client, a uvicorn worker per core, no access
/// log) against a canned Flyte that answers at the latency and checks nothing; flyhook with
/// its default configuration and log level (the per-key rate limit aside), its worker starting
/// the runs on flyte-sim at the same latency on the same machine. Both saturated with 64
/// connections, one after the other in the same run.
pub(super) async fn seed(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for latency_ms in [0, 200] {
        let latency = format!("{latency_ms}ms");
        let load = options.load(None, 64);
        let flyte = CannedFlyte::start(Duration::from_millis(latency_ms))?;
        let seed = SeedApp::start(&flyte.url).await?;
        let seed_report =
            warm_then_measure(Arc::new(RunTask::new(&seed.url, API_KEY, 1024)), load).await;
        seed.stop();
        flyte.stop().await;
        let seed_report = seed_report?;
        let stack = stack::start(&Spec {
            workers: 1,
            sim_args: vec!["--latency".into(), format!("*:{latency}")],
            vars: vec![("RUST_LOG".into(), "info".into())],
            ..Spec::default()
        })
        .await?;
        let flyhook_report = warm_then_measure(run_task(&stack, 1024), load).await?;
        stack.stop().await?;
        let ratio =
            flyhook_report.ok_per_second() / seed_report.ok_per_second().max(f64::MIN_POSITIVE);
        let mut flyhook = figures(&flyhook_report);
        flyhook.insert("ratio_to_seed".into(), ratio);
        rows.push((
            format!("seed (FastAPI, aiohttp, 2 workers), Flyte {latency}"),
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
/// `bench/run` prepares.
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
                "--workers",
                &std::thread::available_parallelism()
                    .map_or(2, usize::from)
                    .to_string(),
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

    /// Ends uvicorn and its worker processes, which share its process group.
    fn stop(mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}
