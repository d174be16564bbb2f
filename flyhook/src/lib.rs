//! `flyhook`: one binary for every role. Run `flyhook --help`.
//!
//! # Layout
//! - [`Cli`]: the command line; `commands`: one file per command.
//! - [`settings`]: one deployment's settings, each section handed to the role that owns it.
//! - `telemetry`, `shutdown`: logging and the one shutdown signal, for the whole process.

mod commands;
pub mod settings;
mod shutdown;
mod telemetry;

use clap::Parser;

pub use settings::Settings;

/// Webhooks in, tracked Flyte runs out.
///
/// Configuration comes from the environment (DATABASE_URL, AMQP_URL, FLYHOOK_LISTEN,
/// FLYHOOK_QUEUE_PREFIX, FLYTE_ENDPOINT, FLYTE_API_KEY, FLYTE_ORG, FLYTE_TOKEN,
/// FLYTE_CONSOLE_URL, WEBHOOK_API_KEY, FLYHOOK_ID_SECRET, FLYHOOK_WORKER_LISTEN,
/// FLYHOOK_LOG_FORMAT=json) and the TOML file named by FLYHOOK_CONFIG. Defaults point at local
/// services.
#[derive(Debug, Parser)]
#[command(name = "flyhook", version)]
pub struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

/// Sets up logging, reads the command line, and runs its command until it ends or the
/// shutdown signal comes.
pub async fn run() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    cli.command.run(shutdown::on_signal()).await
}
