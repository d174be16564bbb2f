//! A deployment's side of RabbitMQ in tests (the shared broker, or a cluster of the fault
//! suite's): connecting, how many messages wait in its queues, and deleting its queues and
//! exchanges afterwards (quorum queues left behind slow the broker for everyone after).

use anyhow::Context;
use flyhook_contract::broker::{BrokerNodes, Topology};

use crate::services::amqp_url;

/// A connection to the local RabbitMQ, in the tests' virtual host.
pub async fn connect() -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .context("connecting to RabbitMQ")
}

/// Messages ready (not held by a consumer) in `queue`, which must exist.
pub async fn queue_length(nodes: &BrokerNodes, queue: &str) -> anyhow::Result<u32> {
    queues_length(nodes, [queue.to_string()]).await
}

/// Messages ready in all of `topology`'s work queues.
pub async fn backlog(nodes: &BrokerNodes, topology: &Topology) -> anyhow::Result<u32> {
    queues_length(nodes, topology.work_queues()).await
}

/// Messages ready in all of `queues`, which must exist.
pub async fn queues_length(
    nodes: &BrokerNodes,
    queues: impl IntoIterator<Item = String>,
) -> anyhow::Result<u32> {
    let (connection, _) = nodes.connect("flyhook-test").await?;
    let channel = connection.create_channel().await?;
    let mut total = 0;
    for queue in queues {
        total += flyhook_contract::broker::ready_messages(&channel, &queue)
            .await
            .with_context(|| format!("the queue {queue}"))?;
    }
    let _ = connection.close(200, "".into()).await;
    Ok(total)
}

/// Deletes every queue and exchange of `topology`, messages included.
pub async fn delete_topology(nodes: &BrokerNodes, topology: &Topology) -> anyhow::Result<()> {
    let (connection, _) = nodes.connect("flyhook-test").await?;
    let channel = connection.create_channel().await?;
    let deleted = topology.delete(&channel).await;
    let _ = connection.close(200, "".into()).await;
    deleted
}
