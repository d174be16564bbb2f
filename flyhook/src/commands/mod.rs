//! One file per command that has arguments or a body of its own, each parsing its arguments and
//! running itself; this file names them, runs the three one-liners (`ingress`, `worker`,
//! `openapi`), and loads the settings only for the commands that need them (`--help`, `probe`
//! and `send` need none).

mod audit;
mod dead_letters;
mod dev;
mod keys;
mod migrate;
mod probe;
mod replay;
mod send;

use anyhow::Context;
use clap::Subcommand;
use flyhook_contract::Deployment;
use flyhook_ingress::Application;
use flyhook_worker::Worker;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::Settings;

#[derive(Debug, Subcommand)]
pub enum Command {
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
    Replay(replay::Replay),
    /// Manage API keys: stored in PostgreSQL as SHA-256 digests, picked up by every ingress
    /// within seconds.
    Keys {
        #[command(subcommand)]
        command: keys::Keys,
    },
    /// The dead-letter queue, read from RabbitMQ itself (so it works while PostgreSQL is away).
    DeadLetters {
        #[command(subcommand)]
        command: dead_letters::DeadLetters,
    },
    /// Read the audit log, newest first.
    Audit(audit::Audit),
    /// Print the OpenAPI 3.1 document of the ingress's HTTP API.
    Openapi,
    /// Exit 0 if `url` answers 2xx within 2 s: a container health check that needs no curl.
    Probe(probe::Probe),
    /// Sign a payload file as a configured source's provider would, and send it to
    /// `POST /hooks/{source}` (without FLYHOOK_CONFIG: the `flyhook dev` configuration).
    Send(send::Send),
}

impl Command {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        match self {
            Command::Ingress => {
                let settings = Settings::from_env()?;
                let app =
                    Application::build(&settings.deployment, settings.ingress, shutdown).await?;
                tracing::info!(port = app.port(), "ingress listening");
                Ok(app.run_until_stopped().await?)
            }
            Command::Worker => {
                let settings = Settings::from_env()?;
                Worker::build(&settings.deployment, &settings.worker)?
                    .run_until_stopped(shutdown)
                    .await
            }
            Command::Migrate => migrate::run(&Settings::from_env()?.deployment).await,
            Command::Dev => dev::run(shutdown).await,
            Command::Replay(replay) => {
                let filter = replay.filter()?;
                replay.run(filter, &Settings::from_env()?, shutdown).await
            }
            Command::Keys { command } => command.run(&Settings::from_env()?.deployment).await,
            Command::DeadLetters { command } => {
                command.run(&Settings::from_env()?.deployment).await
            }
            Command::Audit(audit) => audit.run(&Settings::from_env()?.deployment).await,
            Command::Openapi => {
                println!("{}", flyhook_ingress::openapi_json()?);
                Ok(())
            }
            Command::Probe(probe) => probe.run().await,
            Command::Send(send) => send.run().await,
        }
    }
}

/// A connection pool to the deployment's PostgreSQL, for the commands that read or write it.
async fn connect(deployment: &Deployment) -> anyhow::Result<sqlx::PgPool> {
    sqlx::PgPool::connect(deployment.database_url.expose_secret())
        .await
        .context("connecting to PostgreSQL (DATABASE_URL); has `flyhook migrate` run?")
}
