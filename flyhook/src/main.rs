//! `flyhook`: one binary for every role. Run `flyhook --help`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flyhook_common::store::ListFilter;
use flyhook_common::{DispatchStatus, DispatchStore, Settings, shutdown, telemetry};
use flyhook_ingress::Application;
use flyhook_worker::Worker;
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use tokio_util::sync::CancellationToken;

/// Webhooks in, tracked Flyte runs out.
///
/// Configuration comes from the environment (DATABASE_URL, AMQP_URL, FLYHOOK_LISTEN,
/// FLYHOOK_QUEUE_PREFIX, FLYTE_ENDPOINT, FLYTE_API_KEY, FLYTE_ORG, FLYTE_TOKEN,
/// FLYTE_CONSOLE_URL, WEBHOOK_API_KEY, FLYHOOK_ID_SECRET) and the TOML file named by
/// FLYHOOK_CONFIG. Defaults point at local services.
#[derive(Debug, Parser)]
#[command(name = "flyhook", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP intake: authenticate, validate, enqueue durably, answer status.
    Ingress,
    /// Consume the queue: start Flyte runs and record their status.
    Worker,
    /// Create the database if needed and apply the migrations.
    Migrate,
    /// Everything on one machine: flyte-sim (unless FLYTE_ENDPOINT or FLYTE_API_KEY is set),
    /// migrations, ingress and worker, against the local RabbitMQ and PostgreSQL.
    Dev,
    /// Send finished dispatches again, chosen by filters. Under their own ids they cannot start
    /// a second run; `--new-run` makes each a new dispatch with the same task and inputs.
    Replay {
        /// Comma-separated statuses to replay.
        #[arg(long, default_value = "failed,dead_lettered")]
        status: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        /// The task name.
        #[arg(long)]
        task: Option<String>,
        /// A webhook source's name.
        #[arg(long)]
        source: Option<String>,
        /// Only dispatches received at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only dispatches received before this RFC 3339 time.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Count what would be replayed, and replay nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        new_run: bool,
    },
    /// Sign a payload file as a configured source's provider would, and send it to
    /// `POST /hooks/{source}` (without FLYHOOK_CONFIG: the `flyhook dev` configuration).
    Send {
        /// The source, as named in the config file.
        #[arg(long)]
        source: String,
        /// The payload to send, sent byte for byte.
        file: std::path::PathBuf,
        /// The flyhook ingress.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// GitHub's `X-GitHub-Event` (github sources).
        #[arg(long, default_value = "push")]
        event: String,
        /// The provider's delivery id; a fresh one when absent. Send twice with the same id to
        /// see deduplication.
        #[arg(long)]
        delivery_id: Option<String>,
        #[arg(long, default_value = "application/json")]
        content_type: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let shutdown = shutdown::on_signal();
    match cli.command {
        Command::Ingress => {
            let app = Application::build(Settings::from_env()?, shutdown).await?;
            tracing::info!(port = app.port(), "ingress listening");
            app.run_until_stopped().await?;
        }
        Command::Worker => {
            Worker::build(&Settings::from_env()?)?
                .run_until_stopped(shutdown)
                .await?
        }
        Command::Migrate => migrate(&Settings::from_env()?).await?,
        Command::Dev => dev(shutdown).await?,
        Command::Replay {
            status,
            project,
            domain,
            task,
            source,
            since,
            until,
            dry_run,
            new_run,
        } => {
            let statuses = status
                .split(',')
                .map(|s| s.trim().parse())
                .collect::<Result<Vec<DispatchStatus>, _>>()
                .map_err(|e| anyhow::anyhow!(e))?;
            let filter = ListFilter {
                statuses: Some(statuses),
                project,
                domain,
                task_name: task,
                source,
                since,
                until,
                before: None,
            };
            replay(&Settings::from_env()?, filter, dry_run, new_run, shutdown).await?
        }
        Command::Send {
            source,
            file,
            url,
            event,
            delivery_id,
            content_type,
        } => {
            let delivery_id = delivery_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            send(&source, &file, &url, &event, &delivery_id, &content_type).await?
        }
    }
    Ok(())
}

async fn replay(
    settings: &Settings,
    mut filter: ListFilter,
    dry_run: bool,
    new_run: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(settings.database_url.expose_secret())
        .await
        .context("connecting to PostgreSQL")?;
    let store = DispatchStore::new(pool);
    // Collect first, so replayed dispatches (back to `queued`) do not shift the pages.
    let mut ids = Vec::new();
    loop {
        let page = store.list(&filter, 500).await?;
        let Some(last) = page.last() else { break };
        filter.before = Some((last.received_at, last.id.clone()));
        ids.extend(page.into_iter().map(|record| record.id));
    }
    println!("{} dispatch(es) match", ids.len());
    if dry_run || ids.is_empty() {
        return Ok(());
    }
    let publisher = flyhook_ingress::publisher::Publisher::start(
        settings.amqp_url.clone(),
        settings.topology(),
        1,
        settings.ingress.publish_timeout,
        settings.ingress.max_in_flight_publishes,
        shutdown,
    );
    anyhow::ensure!(
        publisher.wait_connected(Duration::from_secs(10)).await,
        "RabbitMQ is not reachable"
    );
    let intake = flyhook_ingress::intake::Intake::new(
        flyhook_common::IdIssuer::new(&settings.id_secret),
        publisher.clone(),
        flyte_client::FlyteClient::new(settings.flyte.clone())?,
    );
    let (mut replayed, mut refused) = (0, 0);
    for id in ids {
        let id = flyhook_common::DispatchId::parse(&id)?;
        match intake.replay(&store, &id, new_run).await {
            Ok(accepted) => {
                replayed += 1;
                println!("{id} -> {} ({})", accepted.id, accepted.run_name);
            }
            Err(e) => {
                refused += 1;
                println!("{id}: {e}");
            }
        }
    }
    publisher.close().await;
    println!("replayed {replayed}, refused {refused}");
    Ok(())
}

/// The environment `dev` and `send` see: the real one, with development defaults filled in.
fn dev_env(name: &str) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let no_real_flyte = env("FLYTE_ENDPOINT").is_none() && env("FLYTE_API_KEY").is_none();
    match name {
        "WEBHOOK_API_KEY" => env(name).or_else(|| Some(DEV_API_KEY.into())),
        "GITHUB_WEBHOOK_SECRET" => env(name).or_else(|| Some(DEV_GITHUB_SECRET.into())),
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

const DEV_CONFIG: &str = include_str!("../dev.toml");
const DEV_GITHUB_SECRET: &str = "flyhook-dev-secret";

async fn send(
    source: &str,
    file: &std::path::Path,
    url: &str,
    event: &str,
    delivery_id: &str,
    content_type: &str,
) -> anyhow::Result<()> {
    let settings = Settings::load(dev_env)?;
    let source = settings
        .sources
        .get(source)
        .with_context(|| format!("no source {source:?} in the configuration"))?;
    let secret = source.secrets.first().context("the source has no secret")?;
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let now = chrono::Utc::now().timestamp();
    let mut request = reqwest::Client::new()
        .post(format!(
            "{}/hooks/{}",
            url.trim_end_matches('/'),
            source.name
        ))
        .header("Content-Type", content_type);
    for (name, value) in source.scheme.sign(secret, &body, now, delivery_id) {
        request = request.header(name, value);
    }
    if source.scheme == flyhook_common::signatures::Scheme::GitHub {
        request = request.header("X-GitHub-Event", event);
    }
    let response = request.body(body).send().await.context("sending")?;
    let status = response.status();
    println!(
        "HTTP {status}\n{}",
        response.text().await.unwrap_or_default()
    );
    anyhow::ensure!(status.is_success(), "the delivery was refused");
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.database_url.expose_secret();
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("reaching PostgreSQL")?
    {
        sqlx::Postgres::create_database(url)
            .await
            .context("creating the database")?;
        tracing::info!("database created");
    }
    let pool = sqlx::PgPool::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    flyhook_common::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}

/// The key `flyhook dev` uses when WEBHOOK_API_KEY is not set.
const DEV_API_KEY: &str = "flyhook-dev-key";

async fn dev(shutdown: CancellationToken) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let settings = Settings::load(dev_env)?;
    let api_key = dev_env("WEBHOOK_API_KEY").unwrap_or_default();

    let mut tasks = tokio::task::JoinSet::new();
    if env("FLYTE_ENDPOINT").is_none() && env("FLYTE_API_KEY").is_none() {
        let sim = flyte_sim::Simulator::build(flyte_sim::SimConfig::default()).context(
            "starting flyte-sim on 127.0.0.1:8090 (set FLYTE_ENDPOINT to use another Flyte)",
        )?;
        tracing::info!(port = sim.port(), "flyte-sim listening");
        tasks.spawn(async move { sim.run_until_stopped().await.context("flyte-sim") });
    }
    migrate(&settings).await?;
    let worker = Worker::build(&settings)?;
    let worker_shutdown = shutdown.clone();
    tasks.spawn(async move { worker.run_until_stopped(worker_shutdown).await });
    let app = Application::build(settings, shutdown.clone()).await?;
    let port = app.port();
    let connected = app
        .publisher()
        .wait_connected(Duration::from_secs(10))
        .await;
    tasks.spawn(async move { app.run_until_stopped().await.context("ingress") });

    println!(
        "\nflyhook dev is up{}. Start a run:\n\n  curl -s -X POST http://127.0.0.1:{port}/run-task/flytesnacks/development/hello.main/v1 \\\n    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n    -d '{{\"name\": \"world\"}}'\n\nthen follow it at the status_url it returns:\n\n  curl -s http://127.0.0.1:{port}/dispatches/<id> -H 'Authorization: Bearer {api_key}'\n\nor send a signed GitHub push (see the configuration with FLYHOOK_CONFIG unset: flyhook/dev.toml):\n\n  cargo run -p flyhook -- send --source github examples/github-push.json\n",
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
