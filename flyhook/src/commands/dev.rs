//! `flyhook dev`: everything on one machine, with development defaults (a built-in key and
//! webhook secret, `flyhook/dev.toml` as the configuration), against the local RabbitMQ and
//! PostgreSQL. `flyhook send` reads the same defaults.

use std::time::Duration;

use anyhow::Context;
use flyhook_ingress::Application;
use flyhook_worker::Worker;
use tokio_util::sync::CancellationToken;

use crate::Settings;

/// The environment `dev` and `send` see: the real one, with development defaults filled in.
pub(super) fn dev_env(name: &str) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let no_real_flyte = env("FLYTE_ENDPOINT").is_none() && env("FLYTE_API_KEY").is_none();
    match name {
        "WEBHOOK_API_KEY" => env(name).or_else(|| Some(DEV_API_KEY.into())),
        "GITHUB_WEBHOOK_SECRET"
        | "LINEAR_WEBHOOK_SECRET"
        | "JIRA_WEBHOOK_SECRET"
        | "CLICKUP_WEBHOOK_SECRET" => env(name).or_else(|| Some(DEV_WEBHOOK_SECRET.into())),
        "FLYHOOK_DEV_CALLBACK_SECRET" => env(name).or_else(|| Some(DEV_CALLBACK_SECRET.into())),
        "FLYTE_CONSOLE_URL" => {
            env(name).or_else(|| no_real_flyte.then(|| "http://127.0.0.1:8090".into()))
        }
        "FLYHOOK_CONFIG" => env(name).or_else(|| {
            let path =
                std::env::temp_dir().join(format!("flyhook-dev-{}.toml", std::process::id()));
            std::fs::write(&path, DEV_CONFIG).ok()?;
            Some(path.to_string_lossy().into_owned())
        }),
        _ => env(name),
    }
}

const DEV_CONFIG: &str = include_str!("../../dev.toml");
const DEV_WEBHOOK_SECRET: &str = "flyhook-dev-secret";
/// `whsec_` and the base64 of `flyhook-dev-callback-secret`.
const DEV_CALLBACK_SECRET: &str = "whsec_Zmx5aG9vay1kZXYtY2FsbGJhY2stc2VjcmV0";

/// The key `flyhook dev` uses when WEBHOOK_API_KEY is not set.
const DEV_API_KEY: &str = "flyhook-dev-key";

/// Runs flyte-sim (unless a real Flyte is configured), the migrations, a worker and an ingress
/// in this process; the first part to stop stops the rest.
pub async fn run(shutdown: CancellationToken) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let settings = Settings::load_for_development(dev_env)?;
    let api_key = dev_env("WEBHOOK_API_KEY").unwrap_or_default();

    let mut tasks = tokio::task::JoinSet::new();
    if env("FLYTE_ENDPOINT").is_none() && env("FLYTE_API_KEY").is_none() {
        let sim = flyte_sim::Simulator::build(flyte_sim::SimConfig::default()).context(
            "starting flyte-sim on 127.0.0.1:8090 (set FLYTE_ENDPOINT to use another Flyte)",
        )?;
        tracing::info!(port = sim.port(), "flyte-sim listening");
        tasks.spawn(async move { sim.run_until_stopped().await.context("flyte-sim") });
    }
    super::migrate::run(&settings.deployment).await?;
    let worker = Worker::build(&settings.deployment, &settings.worker)?;
    let worker_ops_port = worker.ops_port();
    let worker_shutdown = shutdown.clone();
    tasks.spawn(async move { worker.run_until_stopped(worker_shutdown).await });
    let app = Application::build(&settings.deployment, settings.ingress, shutdown.clone()).await?;
    let port = app.port();
    let connected = app
        .publisher()
        .wait_connected(Duration::from_secs(10))
        .await;
    tasks.spawn(async move { app.run_until_stopped().await.context("ingress") });

    println!(
        "\nflyhook dev is up{}. Start a run:\n\n  curl -s -X POST http://127.0.0.1:{port}/run-task/flytesnacks/development/hello.main/v1 \\\n    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n    -d '{{\"name\": \"world\"}}'\n\nthen follow it at the status_url it returns:\n\n  curl -s http://127.0.0.1:{port}/dispatches/<id> -H 'Authorization: Bearer {api_key}'\n\nor send a signed GitHub push, or a Linear issue (see the configuration with FLYHOOK_CONFIG unset: flyhook/dev.toml):\n\n  cargo run -p flyhook -- send --source github examples/github-push.json\n  cargo run -p flyhook -- send --source linear examples/linear-issue.json\n\nWhen a hello.main run or a deploy ends, a signed callback arrives in the stand-in's inbox:\n\n  curl -s http://127.0.0.1:8090/_sim/inbox\n\nThe operator console: http://127.0.0.1:{port}/ui/ (sign in with the key above).\nThe API: http://127.0.0.1:{port}/openapi.json. Metrics: http://127.0.0.1:{port}/metrics (ingress), http://127.0.0.1:{worker_ops_port}/metrics (worker).\n",
        if connected {
            ""
        } else {
            " (still waiting for RabbitMQ: intake answers 503 until it connects)"
        }
    );

    // The first part to stop (or fail) stops the rest.
    let first = tasks.join_next().await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    match first {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(e).context("a flyhook part panicked"),
        None => Ok(()),
    }
}
