//! A flyhook deployment on this machine for one benchmark run: flyte-sim, the ingress and
//! workers as separate release-built processes (as in production), against the local RabbitMQ
//! and PostgreSQL, with a database and queue names of the run's own, removed afterwards.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use flyhook_contract::broker::Topology;
use serde_json::Value;
use sqlx::migrate::MigrateDatabase;

pub const API_KEY: &str = "bench-key-2c7e9a4f1d6b3e8a0f5c2d9e7b1a";
pub const GITHUB_SECRET: &str = "bench-github-secret";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// What to deploy.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub workers: usize,
    /// Extra `flyte-sim` arguments (`--latency RunService/CreateRun:200ms`).
    pub sim_args: Vec<String>,
    /// Appended to the base configuration file.
    pub config: String,
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

#[derive(Debug)]
pub struct Stack {
    pub ingress_url: String,
    pub sim_url: String,
    pub http: reqwest::Client,
    ingress: Reaped,
    workers: Vec<Reaped>,
    sim: Reaped,
    env: Vec<(String, String)>,
    database_url: String,
    prefix: String,
    config_file: PathBuf,
}

/// Where the release binaries are: beside this one.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe().context("locating flyhook-bench")?;
    let path = here.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: cargo build --release -p flyhook -p flyte-sim",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process killed when dropped, so a run that fails half way leaves none behind to skew
/// the next one.
#[derive(Debug)]
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &PathBuf, args: &[String], env: &[(String, String)]) -> anyhow::Result<Reaped> {
    Command::new(program)
        .args(args)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Reaped)
        .with_context(|| format!("starting {}", program.display()))
}

impl Stack {
    pub async fn start(spec: &Spec) -> anyhow::Result<Stack> {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let sim_port = free_port()?;
        let ingress_port = free_port()?;
        let sim_url = format!("http://127.0.0.1:{sim_port}");
        let mut sim_args = vec!["--listen".to_string(), format!("127.0.0.1:{sim_port}")];
        // Runs end at once unless the spec says otherwise.
        for lifecycle in ["--queued-for", "--running-for"] {
            if !spec.sim_args.iter().any(|a| a == lifecycle) {
                sim_args.extend([lifecycle.to_string(), "0s".into()]);
            }
        }
        sim_args.extend(spec.sim_args.iter().cloned());
        let sim = spawn(&binary("flyte-sim")?, &sim_args, &[])?;

        let database_url = format!("{POSTGRES}/bench_{tag}");
        let config_file = std::env::temp_dir().join(format!("flyhook-bench-{tag}.toml"));
        // The spec's tables first: they may open `[ingress]`, which the base only extends.
        std::fs::write(&config_file, format!("{}\n{BASE_CONFIG}", spec.config))?;
        let prefix = format!("bench-{tag}");
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.as_str()),
            ("AMQP_URL", AMQP_URL),
            ("FLYHOOK_LISTEN", &format!("127.0.0.1:{ingress_port}")),
            ("FLYHOOK_QUEUE_PREFIX", &prefix),
            // Several workers on one machine: each takes a free port for its metrics.
            ("FLYHOOK_WORKER_LISTEN", "127.0.0.1:0"),
            ("FLYTE_ENDPOINT", &sim_url),
            ("WEBHOOK_API_KEY", API_KEY),
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            (
                "FLYHOOK_CONFIG",
                config_file.to_str().context("utf-8 temp dir")?,
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let flyhook = binary("flyhook")?;
        let migrated = Command::new(&flyhook)
            .arg("migrate")
            .envs(env.iter().cloned())
            .env("RUST_LOG", "warn")
            .status()
            .context("flyhook migrate")?;
        anyhow::ensure!(migrated.success(), "flyhook migrate failed");
        let ingress = spawn(&flyhook, &["ingress".into()], &env)?;
        let mut stack = Stack {
            ingress_url: format!("http://127.0.0.1:{ingress_port}"),
            sim_url,
            http: reqwest::Client::new(),
            ingress,
            workers: Vec::new(),
            sim,
            env,
            database_url,
            prefix,
            config_file,
        };
        stack.wait_ready().await?;
        stack.add_workers(spec.workers)?;
        Ok(stack)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.ingress_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the ingress did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn add_workers(&mut self, count: usize) -> anyhow::Result<()> {
        let flyhook = binary("flyhook")?;
        for _ in 0..count {
            self.workers
                .push(spawn(&flyhook, &["worker".into()], &self.env)?);
        }
        Ok(())
    }

    pub fn ingress_pid(&self) -> u32 {
        self.ingress.0.id()
    }

    /// One of the stand-in's inspection endpoints (`/_sim/stats`, `/_sim/runs`).
    async fn sim_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self
            .http
            .get(format!("{}{path}", self.sim_url))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Runs the stand-in has created.
    pub async fn runs_created(&self) -> anyhow::Result<u64> {
        let stats: Value = self.sim_get("/_sim/stats").await?;
        stats["runs_created"]
            .as_u64()
            .with_context(|| format!("no runs_created in {stats}"))
    }

    /// Every run the stand-in holds.
    pub async fn sim_runs(&self) -> anyhow::Result<Vec<Value>> {
        self.sim_get("/_sim/runs").await
    }

    /// Messages ready in the work queue.
    pub async fn backlog(&self) -> anyhow::Result<u32> {
        let connection = lapin::Connection::connect(AMQP_URL, Default::default()).await?;
        let channel = connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                Topology::new(&self.prefix, 0).work_queue().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await?;
        let _ = connection.close(200, "".into()).await;
        Ok(queue.message_count())
    }

    /// Waits until the stand-in has created `count` runs, or `within` passes.
    pub async fn wait_for_runs(&self, count: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let created = self.runs_created().await?;
            if created >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {created} of {count} runs created within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every process and removes the run's database, queues and configuration.
    pub async fn stop(self) -> anyhow::Result<()> {
        drop((self.workers, self.ingress, self.sim));
        let _ = std::fs::remove_file(&self.config_file);
        let connection = lapin::Connection::connect(AMQP_URL, Default::default()).await?;
        let channel = connection.create_channel().await?;
        Topology::new(&self.prefix, 0).delete(&channel).await?;
        let _ = connection.close(200, "".into()).await;
        sqlx::Postgres::force_drop_database(&self.database_url)
            .await
            .context("dropping the run's database")?;
        Ok(())
    }
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
