//! The seed's design (FastAPI, the Flyte call inside the request) against flyhook's
//! `/run-task`, at stand-in latencies of 0 and 200 ms.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::stack::{self, API_KEY, Spec};
use crate::workloads::RunTask;

use super::{Options, Rows, figures, run_task, warm_then_measure, worker_config};

/// The seed's design (FastAPI, the Flyte call inside the request) against flyhook's
/// `/run-task` (with a worker starting the runs on the same machine), at stand-in latencies of
/// 0 and 200 ms.
pub(super) async fn seed(options: Options) -> anyhow::Result<Rows> {
    let mut rows = Rows::new();
    for latency in ["0ms", "200ms"] {
        let stack = stack::start(&Spec {
            workers: 1,
            sim_args: vec!["--latency".into(), format!("*:{latency}")],
            config: worker_config(1024),
            ..Spec::default()
        })
        .await?;
        let seed = SeedApp::start(&stack.sim.url).await?;
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
