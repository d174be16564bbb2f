//! A three-node RabbitMQ cluster of the tests' own (`scripts/rabbitmq-cluster`), run beside the
//! machine's broker for the fault suite's cluster scenarios and the scale-out benchmarks.

use std::process::Command;

use anyhow::Context;

/// Runs `scripts/rabbitmq-cluster` with `args` (off the async threads: a restart waits for the
/// node to rejoin) and returns what it printed.
async fn script(args: &[&str]) -> anyhow::Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbitmq-cluster");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || Command::new(path).args(&args).output())
        .await?
        .with_context(|| format!("running {path}"))?;
    anyhow::ensure!(
        output.status.success(),
        "scripts/rabbitmq-cluster {shown} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

/// Starts whichever nodes are not running and returns the cluster's `AMQP_URL`.
pub async fn up() -> anyhow::Result<String> {
    script(&["start"]).await
}

pub async fn destroy() -> anyhow::Result<()> {
    script(&["destroy"]).await.map(drop)
}

/// `kill -9` node `node` (1 to 3).
pub async fn kill(node: u8) -> anyhow::Result<()> {
    script(&["kill", &node.to_string()]).await.map(drop)
}

/// Stops node `node` the orderly way.
pub async fn stop(node: u8) -> anyhow::Result<()> {
    script(&["stop-node", &node.to_string()]).await.map(drop)
}

/// Starts node `node` again and waits until it has rejoined.
pub async fn restart(node: u8) -> anyhow::Result<()> {
    script(&["restart", &node.to_string()]).await.map(drop)
}

/// The node that leads `queue` (in the default virtual host).
pub async fn leader(queue: &str) -> anyhow::Result<u8> {
    let node = script(&["leader", queue]).await?;
    node.parse()
        .with_context(|| format!("the leader of {queue}: {node:?}"))
}

/// Every queue's ready and unacknowledged messages, consumers and leader (in the default virtual
/// host), as `rabbitmqctl list_queues` prints them: what a failed scenario reports.
pub async fn queues() -> anyhow::Result<String> {
    script(&["queues"]).await
}

/// The node listening for AMQP at `address` (`127.0.0.1:5682` is node 2).
pub fn node_at(address: &str) -> anyhow::Result<u8> {
    let port: u16 = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {address:?}"))?;
    match port.checked_sub(5680) {
        Some(node @ 1..=3) => Ok(node as u8),
        _ => anyhow::bail!("{address} is not a node of the suite's cluster"),
    }
}
