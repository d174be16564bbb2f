//! `flyhook`: one binary for every role. Run `flyhook --help`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flyhook_common::api_keys::{RateLimit, Scopes};
use flyhook_common::audit::{AuditFilter, AuditStore};
use flyhook_common::key_store::KeyStore;
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
/// FLYTE_CONSOLE_URL, WEBHOOK_API_KEY, FLYHOOK_ID_SECRET, FLYHOOK_WORKER_LISTEN,
/// FLYHOOK_LOG_FORMAT=json) and the TOML file named by FLYHOOK_CONFIG. Defaults point at local
/// services.
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
    /// Manage API keys: stored in PostgreSQL as SHA-256 digests, picked up by every ingress
    /// within seconds.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The dead-letter queue, read from RabbitMQ itself (so it works while PostgreSQL is away).
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Read the audit log, newest first.
    Audit {
        /// An API key's name, or `source:<name>`.
        #[arg(long)]
        principal: Option<String>,
        /// A route pattern, e.g. `/run-task/{project}/{domain}/{name}/{version}`.
        #[arg(long)]
        route: Option<String>,
        /// `accepted`, `ok`, or an error code such as `out_of_scope`.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        dispatch_id: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
        /// Entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Entries before this RFC 3339 time.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI 3.1 document of the ingress's HTTP API.
    Openapi,
    /// Exit 0 if `url` answers 2xx within 2 s: a container health check that needs no curl.
    Probe { url: String },
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
        /// The provider's delivery id; a fresh one when absent. Deliveries are deduplicated by
        /// what the signature covers: the same file sent twice is the same dispatches, whatever
        /// the id, except for schemes that sign the id (standard-webhooks, hmac with `{id}`).
        #[arg(long)]
        delivery_id: Option<String>,
        #[arg(long, default_value = "application/json")]
        content_type: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// What is there and why, oldest first; the queue is left as it was.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the work queue as replays; the workers record their outcome
    /// (once PostgreSQL is reachable). Under their own ids they cannot start a second run.
    Replay {
        /// Only the dead letters of these dispatch ids (repeat); every readable one when absent.
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a key and print it: the only time it is shown.
    Create {
        /// A name for the key, shown in logs and the audit log; never reused.
        #[arg(long)]
        name: String,
        /// What it may start: `*`, `project`, `project/domain` or `project/domain/task`.
        /// Repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Requests per second (the ingress's default when absent).
        #[arg(long)]
        rate: Option<u32>,
        /// Requests allowed at once above the rate (the rate when absent).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
    },
    /// List keys (never the keys themselves), revoked ones included.
    List,
    /// Revoke a key: every ingress refuses it within seconds.
    Revoke { name: String },
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
                within: None,
            };
            replay(&Settings::from_env()?, filter, dry_run, new_run, shutdown).await?
        }
        Command::Keys { command } => keys(&Settings::from_env()?, command).await?,
        Command::DeadLetters { command } => dead_letters(&Settings::from_env()?, command).await?,
        Command::Audit {
            principal,
            route,
            outcome,
            dispatch_id,
            request_id,
            since,
            until,
            limit,
            json,
        } => {
            let filter = AuditFilter {
                principal,
                route,
                outcome,
                dispatch_id,
                request_id,
                since,
                until,
                before_id: None,
            };
            audit(&Settings::from_env()?, filter, limit, json).await?
        }
        Command::Openapi => {
            use flyhook_ingress::openapi::ApiDoc;
            use utoipa::OpenApi;
            println!("{}", ApiDoc::openapi().to_pretty_json()?);
        }
        Command::Probe { url } => {
            let status = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .with_context(|| format!("GET {url}"))?
                .status();
            anyhow::ensure!(status.is_success(), "GET {url}: {status}");
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

async fn connect(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    sqlx::PgPool::connect(settings.database_url.expose_secret())
        .await
        .context("connecting to PostgreSQL (DATABASE_URL); has `flyhook migrate` run?")
}

async fn dead_letters(settings: &Settings, command: DeadLettersCommand) -> anyhow::Result<()> {
    use flyhook_common::dead_letters;
    let connection = flyhook_common::broker::connect(&settings.amqp_url, "flyhook-cli").await?;
    let topology = settings.topology();
    match command {
        DeadLettersCommand::List { limit, json } => {
            let letters = dead_letters::list(&connection, &topology, limit).await?;
            for letter in &letters {
                if json {
                    println!("{}", serde_json::to_string(letter)?);
                } else {
                    println!(
                        "{:<40}  {:<10}  {:<14}  {}",
                        letter.id.as_deref().unwrap_or("-"),
                        letter.kind,
                        letter.reason.as_deref().unwrap_or("-"),
                        letter.task.as_deref().unwrap_or("-"),
                    );
                }
            }
            if !json {
                println!("{} dead letter(s) listed", letters.len());
            }
        }
        DeadLettersCommand::Replay { ids } => {
            let replayed = dead_letters::replay(&connection, &topology, |letter| {
                ids.is_empty() || letter.id.as_ref().is_some_and(|id| ids.contains(id))
            })
            .await?;
            println!(
                "{} replayed, {} left in the dead-letter queue",
                replayed.sent, replayed.kept
            );
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    let store = KeyStore::new(connect(settings).await?);
    match command {
        KeysCommand::Create {
            name,
            scopes,
            rate,
            burst,
        } => {
            let scopes = Scopes::parse_all(&scopes)?;
            let rate = rate
                .map(|per_second| {
                    anyhow::ensure!(per_second > 0, "--rate must be at least 1");
                    Ok(RateLimit {
                        per_second,
                        burst: burst.unwrap_or(per_second).max(1),
                    })
                })
                .transpose()?;
            let (key, listing) = store.create(&name, &scopes, rate).await?;
            println!("{}", key.expose_secret());
            eprintln!(
                "key {:?} created (scopes {}); it is shown only now, and only its SHA-256 is kept",
                listing.name, scopes
            );
        }
        KeysCommand::List => {
            println!(
                "{:<24} {:<14} {:<32} {:>10} {:<25} REVOKED",
                "NAME", "PREFIX", "SCOPES", "RATE/S", "CREATED"
            );
            for key in store.list().await? {
                println!(
                    "{:<24} {:<14} {:<32} {:>10} {:<25} {}",
                    key.name,
                    key.prefix,
                    key.scopes.join(","),
                    key.rate_per_second
                        .map_or_else(|| "default".to_string(), |r| r.to_string()),
                    key.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    key.revoked_at.map_or_else(
                        || "-".to_string(),
                        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                );
            }
        }
        KeysCommand::Revoke { name } => {
            let key = store.revoke(&name).await?;
            eprintln!("key {:?} ({}) revoked", key.name, key.prefix);
        }
    }
    Ok(())
}

async fn audit(
    settings: &Settings,
    filter: AuditFilter,
    limit: i64,
    json: bool,
) -> anyhow::Result<()> {
    let store = AuditStore::new(connect(settings).await?);
    let entries = store.list(&filter, limit.clamp(1, 10_000)).await?;
    for entry in entries {
        if json {
            println!("{}", serde_json::to_string(&entry)?);
        } else {
            println!(
                "{} {:>3} {:<24} {} {} {} {} {}",
                entry
                    .at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                entry.status,
                entry.outcome,
                entry.method,
                entry.path,
                entry.principal.as_deref().unwrap_or("-"),
                entry.request_id,
                entry.dispatch_ids.join(","),
            );
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
    let store = DispatchStore::new(connect(settings).await?);
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
        flyhook_common::metrics::latency_histogram(),
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
        store.clone(),
    );
    // One request id for the whole replay, so its runs can be found together.
    let request_id = flyhook_ingress::observe::RequestId::fresh();
    println!("request id {request_id}");
    let (mut replayed, mut refused) = (0, 0);
    for id in ids {
        let id = flyhook_common::DispatchId::parse(&id)?;
        match intake
            .replay(&store, &id, new_run, &Scopes::unrestricted(), &request_id)
            .await
        {
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
    let settings = Settings::load_for_development(dev_env)?;
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
    migrate(&settings).await?;
    let worker = Worker::build(&settings)?;
    let worker_ops_port = worker.ops_port();
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
        "\nflyhook dev is up{}. Start a run:\n\n  curl -s -X POST http://127.0.0.1:{port}/run-task/flytesnacks/development/hello.main/v1 \\\n    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n    -d '{{\"name\": \"world\"}}'\n\nthen follow it at the status_url it returns:\n\n  curl -s http://127.0.0.1:{port}/dispatches/<id> -H 'Authorization: Bearer {api_key}'\n\nor send a signed GitHub push (see the configuration with FLYHOOK_CONFIG unset: flyhook/dev.toml):\n\n  cargo run -p flyhook -- send --source github examples/github-push.json\n\nThe API: http://127.0.0.1:{port}/openapi.json. Metrics: http://127.0.0.1:{port}/metrics (ingress), http://127.0.0.1:{worker_ops_port}/metrics (worker).\n",
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
