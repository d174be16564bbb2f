//! The deployment of one benchmark run: the test kit's [`Stack`] of release-built processes
//! (flyte-sim too, apart, as production runs Flyte) with the configuration every run shares,
//! and what the scenarios measure of it beyond the kit: runs created, memory.

use std::time::Duration;

use anyhow::Context;
use flyhook_testkit::wait::wait_until;
use flyhook_testkit::{Flyte, Profile, Stack, StackSpec};

pub use flyhook_testkit::API_KEY;

pub const GITHUB_SECRET: &str = "bench-github-secret";

/// The processes' logs as a user gets them: no `RUST_LOG`, so flyhook's own default filter
/// (`info`, an access line per request). A deployment without it logs at `warn`.
pub fn default_logs() -> (String, String) {
    ("RUST_LOG".into(), String::new())
}

/// What to deploy.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub workers: usize,
    /// Extra `flyte-sim` arguments (`--latency RunService/CreateRun:200ms`).
    pub sim_args: Vec<String>,
    /// Appended to the base configuration file.
    pub config: String,
    /// `AMQP_URL` (a cluster's nodes); the machine's broker when absent.
    pub amqp_url: Option<String>,
    /// Variables beside the deployment's own (a callback destination's secret).
    pub vars: Vec<(String, String)>,
}

/// The configuration every run shares: no rate limit in the way (the load is the point), a
/// GitHub source, trackers that look at runs as a production fleet would.
const BASE_CONFIG: &str = r#"
[ingress.rate_limit]
per_second = 10000000
burst = 10000000

[[sources]]
name = "github"
scheme = "github"
secrets = [{ env = "GITHUB_WEBHOOK_SECRET" }]

[[sources.routes]]
name = "hello-on-push"
task = "flytesnacks/development/hello.main/v1"
when = [{ header = "X-GitHub-Event", equals = "push" }]
inputs = { name = "/pusher/name" }
"#;

/// Deploys `spec`: the stand-in (runs end at once unless its arguments say otherwise), the
/// ingress, then the workers.
pub async fn start(spec: &Spec) -> anyhow::Result<Stack> {
    let mut sim_args = Vec::new();
    for lifecycle in ["--queued-for", "--running-for"] {
        if !spec.sim_args.iter().any(|a| a == lifecycle) {
            sim_args.extend([lifecycle.to_string(), "0s".into()]);
        }
    }
    sim_args.extend(spec.sim_args.iter().cloned());
    Stack::start(StackSpec {
        kind: "bench".into(),
        profile: Profile::Release,
        workers: spec.workers,
        flyte: Flyte::Binary(sim_args),
        // The spec's tables first: they may open `[ingress]`, which the base only extends.
        config: format!("{}\n{BASE_CONFIG}", spec.config),
        vars: [(
            "GITHUB_WEBHOOK_SECRET".to_string(),
            GITHUB_SECRET.to_string(),
        )]
        .into_iter()
        .chain(
            spec.amqp_url
                .iter()
                .map(|url| ("AMQP_URL".into(), url.clone())),
        )
        .chain(spec.vars.iter().cloned())
        .collect(),
        show_logs: true,
    })
    .await
}

/// Waits until the stand-in has created `count` runs, or `within` passes.
pub async fn wait_for_runs(stack: &Stack, count: u64, within: Duration) -> anyhow::Result<()> {
    wait_until(
        within,
        Duration::from_millis(100),
        &format!("{count} runs created"),
        || async {
            match stack.sim.runs_created().await {
                Ok(created) if created >= count => Ok(()),
                Ok(created) => Err(format!("{created} created")),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await
}

/// Resident memory of a process: (now, peak), in MiB, from `/proc`.
pub fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("no value")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
