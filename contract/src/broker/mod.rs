//! RabbitMQ: which nodes to connect to ([`nodes`]), the topology every process declares
//! ([`topology`]), and publishing so that nothing is lost.

pub mod nodes;
pub mod topology;

use anyhow::Context;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

use crate::dispatch::DispatchMessage;

pub use nodes::{BrokerNodes, ConnectedNode};
pub use topology::{
    MAX_PARTITIONS, RETRY_TIERS, ROUTING_KEY, Topology, TopologyMismatch, is_topology_mismatch,
};

/// Publishes a message the way nothing gets lost: persistent, `mandatory` (an unroutable
/// message comes back instead of vanishing), on a confirm-mode channel, and waits for the
/// broker's confirm. `Ok(true)`: stored; `Ok(false)`: refused (nacked — a full queue — or
/// returned unroutable).
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &DispatchMessage,
) -> anyhow::Result<bool> {
    let body = serde_json::to_vec(message).context("encoding the message")?;
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2) // persistent
        .with_content_type("application/json".into());
    // The id outside the body too: a message whose body cannot be read is still recorded.
    if let Some(id) = message.id() {
        properties = properties.with_message_id(id.to_string().into());
    }
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            properties,
        )
        .await?
        .await?;
    Ok(confirmation.is_ack() && confirmation.take_message().is_none())
}

/// The local RabbitMQ, in the tests' virtual host when `scripts/test` made one.
#[cfg(test)]
fn test_broker_url() -> String {
    let vhost = std::env::var("FLYHOOK_TEST_VHOST").unwrap_or_else(|_| "%2f".into());
    format!("amqp://guest:guest@127.0.0.1:5672/{vhost}")
}
