//! The faults, injected into this machine's services while the load flows (workers killed,
//! RabbitMQ and PostgreSQL stopped and started, the suite's cluster losing nodes), and the
//! services brought back whatever happened.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use flyhook_testkit::{Stack, broker, services, wait_until};
use tokio::task::JoinHandle;

use crate::scenario::{Scenario, outage};
use flyhook_testkit::cluster;

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd}"))?;
    anyhow::ensure!(status.success(), "{cmd} {args:?} failed");
    Ok(())
}

/// The installed PostgreSQL version (`15`), as `pg_ctlcluster` wants it.
fn postgres_cluster() -> anyhow::Result<String> {
    let first = std::fs::read_dir("/etc/postgresql")?
        .next()
        .context("no PostgreSQL cluster in /etc/postgresql")??;
    Ok(first.file_name().to_string_lossy().into_owned())
}

fn postgres(action: &str) -> anyhow::Result<()> {
    let cluster = postgres_cluster()?;
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &cluster, "main", action],
    )
}

/// Starts PostgreSQL and RabbitMQ if they are not running, and waits until both answer.
pub async fn services_up() -> anyhow::Result<()> {
    postgres_cluster()?;
    let _ = postgres("start");
    let _ = run("rabbitmqctl", &["start_app"]);
    let every = Duration::from_millis(200);
    wait_until(Duration::from_secs(60), every, "PostgreSQL up", || async {
        sqlx::PgPool::connect(&services::postgres_url("postgres"))
            .await
            .is_ok()
            .then_some(())
    })
    .await?;
    wait_until(Duration::from_secs(60), every, "RabbitMQ up", || async {
        broker::connect().await.is_ok().then_some(())
    })
    .await
}

/// The scenario's fault, while `senders` send the load.
pub async fn inject(
    which: Scenario,
    stack: &mut Stack,
    senders: &[JoinHandle<()>],
) -> anyhow::Result<()> {
    postgres_cluster()?;
    match which {
        Scenario::KillWorkers | Scenario::KillWorkersFlow => {
            while !senders.iter().all(|s| s.is_finished()) {
                // At random moments: every 0.5 to 2.5 s.
                tokio::time::sleep(Duration::from_millis(500 + fastrand::u64(..2000))).await;
                stack.kill_random_worker()?;
            }
        }
        Scenario::RestartRabbitmq => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            run("rabbitmqctl", &["stop_app"])?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            run("rabbitmqctl", &["start_app"])?;
        }
        Scenario::StopPostgres | Scenario::LongPostgresOutage => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            postgres("stop")?;
            tokio::time::sleep(if which == Scenario::StopPostgres {
                Duration::from_secs(10)
            } else {
                outage()
            })
            .await;
            postgres("start")?;
        }
        Scenario::ClusterKillLeader | Scenario::ClusterKillIngressNode => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let node = if which == Scenario::ClusterKillLeader {
                cluster::leader(&stack.topology().work_queue(0)).await?
            } else {
                cluster::node_at(&ingress_node(stack).await?)?
            };
            cluster::kill(node).await?;
            tokio::time::sleep(Duration::from_secs(15)).await;
            cluster::restart(node).await?;
        }
        Scenario::ClusterStopNode => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let node = cluster::leader(&stack.topology().work_queue(1)).await?;
            cluster::stop(node).await?;
            tokio::time::sleep(Duration::from_secs(60)).await;
            cluster::restart(node).await?;
        }
        Scenario::ClusterRollingRestart => {
            for node in 1..=3 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                cluster::stop(node).await?;
                cluster::restart(node).await?;
            }
        }
        Scenario::FlakyFlyte | Scenario::Duplicates | Scenario::Hostile => {}
    }
    Ok(())
}

/// The node the ingress says (`/readyz`) it publishes to.
async fn ingress_node(stack: &Stack) -> anyhow::Result<String> {
    let ready: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/readyz", stack.ingress_url))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .json()
        .await?;
    ready["broker_node"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("the ingress is on no node: {ready}"))
}
