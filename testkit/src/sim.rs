//! The Flyte stand-in of one test or run, started in this process or as the `flyte-sim` binary,
//! and what its `/_sim` endpoints show and change (runs, call counts, faults).

use std::time::Duration;

use anyhow::Context;
use flyte_sim::{SimConfig, Simulator};
use serde_json::Value;

use crate::binaries::{self, Profile, Reaped};
use crate::services::free_port;

/// Runs that end at once.
pub fn instant_runs() -> SimConfig {
    SimConfig {
        queued_for: Duration::ZERO,
        running_for: Duration::ZERO,
        ..SimConfig::default()
    }
}

/// Runs that stay running for an hour.
pub fn long_runs() -> SimConfig {
    SimConfig {
        queued_for: Duration::ZERO,
        running_for: Duration::from_secs(3600),
        ..SimConfig::default()
    }
}

/// A running flyte-sim, by its base URL.
#[derive(Debug, Clone)]
pub struct Sim {
    pub url: String,
    http: reqwest::Client,
}

impl Sim {
    /// Starts one in this process, on a free port, for as long as the runtime lives.
    pub fn start(config: SimConfig) -> anyhow::Result<Sim> {
        let sim = Simulator::build(SimConfig {
            listen: "127.0.0.1:0".into(),
            ..config
        })
        .context("flyte-sim starts")?;
        let url = format!("http://127.0.0.1:{}", sim.port());
        tokio::spawn(sim.run_until_stopped());
        Ok(Sim::at(url))
    }

    /// Spawns the `flyte-sim` binary of `profile` on a free port, with `args` (`--latency …`).
    pub fn spawn(profile: Profile, args: &[String]) -> anyhow::Result<(Sim, Reaped)> {
        let port = free_port();
        let mut all = vec!["--listen".to_string(), format!("127.0.0.1:{port}")];
        all.extend(args.iter().cloned());
        let child = binaries::spawn(
            &binaries::binary("flyte-sim", profile)?,
            &all,
            &Default::default(),
            true,
        )?;
        Ok((Sim::at(format!("http://127.0.0.1:{port}")), child))
    }

    pub fn at(url: String) -> Sim {
        Sim {
            url,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .context("flyte-sim answers")?;
        response.json().await.context("flyte-sim's JSON")
    }

    /// Every run the stand-in holds.
    pub async fn runs(&self) -> anyhow::Result<Vec<Value>> {
        Ok(serde_json::from_value(self.get("/_sim/runs").await?)?)
    }

    /// One run, by its name, in flytesnacks/development.
    pub async fn run(&self, name: &str) -> anyhow::Result<Value> {
        self.get(&format!("/_sim/runs/flytesnacks/development/{name}"))
            .await
    }

    /// The counts: `runs_created`, `calls` by RPC.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.get("/_sim/stats").await
    }

    /// Runs the stand-in has created.
    pub async fn runs_created(&self) -> anyhow::Result<u64> {
        let stats = self.stats().await?;
        stats["runs_created"]
            .as_u64()
            .with_context(|| format!("no runs_created in {stats}"))
    }

    /// Calls of one RPC (`RunService/CreateRun`) so far.
    pub async fn calls(&self, rpc: &str) -> anyhow::Result<u64> {
        Ok(self.stats().await?["calls"][rpc].as_u64().unwrap_or(0))
    }

    /// Replaces every fault rule (`[]`: none).
    pub async fn set_faults(&self, faults: Value) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}/_sim/faults", self.url))
            .json(&faults)
            .send()
            .await
            .context("flyte-sim answers")?;
        anyhow::ensure!(
            response.status() == 204,
            "flyte-sim refused the faults: {}",
            response.status()
        );
        Ok(())
    }
}
