//! `flyte-sim`: see the crate documentation, or `flyte-sim --help`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flyte_sim::catalogue::parse_duration;
use flyte_sim::{Catalogue, Fault, OnDuplicate, SimAuth, SimConfig, Simulator};

/// A local Flyte 2 server speaking Connect-JSON, strictly checked against the official schema.
///
/// Serves TaskService/GetTaskDetails, RunService/CreateRun, GetRunDetails, AbortRun,
/// DataProxyService/GetActionData and AuthMetadataService at Flyte's paths. Runs go
/// QUEUED → RUNNING → SUCCEEDED (or as the task's rules say). Inspect with
/// GET /_sim/runs, GET /_sim/stats; inject faults with PUT /_sim/faults.
#[derive(Debug, Parser)]
#[command(name = "flyte-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FLYTE_SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,

    /// TOML file of deployed tasks (see flyte-sim/tasks.toml); the built-in set when absent.
    #[arg(long, env = "FLYTE_SIM_TASKS")]
    tasks: Option<PathBuf>,

    /// How long a new run stays QUEUED.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    queued_for: Duration,

    /// How long a run stays RUNNING before it ends (a task or rule may override).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    running_for: Duration,

    /// What CreateRun does with a run name that exists.
    #[arg(long, value_enum, default_value = "already-exists")]
    on_duplicate: OnDuplicate,

    /// Fail calls: RPC:CODE[:RATE], e.g. RunService/CreateRun:unavailable:0.3 or '*:internal:0.1'.
    /// Repeatable.
    #[arg(long = "fault", value_parser = Fault::parse_error_rule)]
    faults: Vec<Fault>,

    /// Slow calls down: RPC:DURATION, e.g. RunService/CreateRun:200ms or '*:50ms'. Repeatable.
    #[arg(long = "latency", value_parser = Fault::parse_latency_rule)]
    latencies: Vec<Fault>,

    /// Require this static bearer token on every RPC.
    #[arg(long, env = "FLYTE_SIM_BEARER_TOKEN", conflicts_with = "client_id")]
    bearer_token: Option<String>,

    /// Require OAuth2 client-credentials tokens for this client id (with --client-secret).
    #[arg(long, env = "FLYTE_SIM_CLIENT_ID", requires = "client_secret")]
    client_id: Option<String>,

    /// The secret of --client-id.
    #[arg(
        long,
        env = "FLYTE_SIM_CLIENT_SECRET",
        requires = "client_id",
        hide_env_values = true
    )]
    client_secret: Option<String>,

    /// Lifetime of issued OAuth2 tokens.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    token_ttl: Duration,

    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let catalogue = match &args.tasks {
        Some(path) => Catalogue::load(path)?,
        None => Catalogue::built_in(),
    };
    let auth = match (args.bearer_token, args.client_id, args.client_secret) {
        (Some(token), _, _) => SimAuth::Bearer(token),
        (None, Some(client_id), Some(client_secret)) => SimAuth::ClientCredentials {
            client_id,
            client_secret,
            token_ttl: args.token_ttl,
        },
        _ => SimAuth::None,
    };
    let config = SimConfig {
        listen: args.listen,
        catalogue,
        queued_for: args.queued_for,
        running_for: args.running_for,
        on_duplicate: args.on_duplicate,
        faults: args.faults.into_iter().chain(args.latencies).collect(),
        auth,
        workers: args.workers,
    };
    let sim = Simulator::build(config).context("starting flyte-sim")?;
    tracing::info!(port = sim.port(), "flyte-sim listening");
    sim.run_until_stopped().await?;
    Ok(())
}
