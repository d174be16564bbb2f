//! A deployment's side of the shared RabbitMQ in tests: connecting, how many messages wait in
//! one of its queues, and deleting its queues and exchanges afterwards (quorum queues left
//! behind slow the broker for everyone after).

use anyhow::Context;
use flyhook_contract::broker::Topology;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::services::amqp_url;

/// A connection to the local RabbitMQ, in the tests' virtual host.
pub async fn connect() -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .context("connecting to RabbitMQ")
}

/// Messages ready (not held by a consumer) in `queue`, which must exist.
pub async fn queue_length(queue: &str) -> anyhow::Result<u32> {
    let connection = connect().await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("the queue {queue}"))?;
    let _ = connection.close(200, "".into()).await;
    Ok(declared.message_count())
}

/// Deletes every queue and exchange of `topology`, messages included.
pub async fn delete_topology(topology: &Topology) -> anyhow::Result<()> {
    let connection = connect().await?;
    let channel = connection.create_channel().await?;
    let deleted = topology.delete(&channel).await;
    let _ = connection.close(200, "".into()).await;
    deleted
}
