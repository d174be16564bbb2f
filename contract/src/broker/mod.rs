//! RabbitMQ: which nodes to connect to ([`nodes`]), the topology every process declares
//! ([`topology`]), and publishing so that nothing is lost.

pub mod nodes;
pub mod topology;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::{BasicProperties, Channel, Connection};

use crate::dispatch::DispatchMessage;

pub use nodes::{BrokerNodes, ConnectedNode};
pub use topology::{
    MAX_PARTITIONS, RETRY_TIERS, ROUTING_KEY, Topology, TopologyMismatch, is_topology_mismatch,
};

/// Messages ready in `queue` (a passive declare: the broker closes the channel with NOT_FOUND
/// when the queue does not exist).
pub async fn ready_messages(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await?;
    Ok(declared.message_count())
}

/// What the broker said to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Confirmed: stored (on a quorum of the queue's replicas).
    Stored,
    /// Nacked: the queue is full, or could not take it now.
    Refused,
    /// Returned: no queue is bound for its routing key.
    Unroutable,
}

/// Publishes a message the way nothing gets lost: persistent, `mandatory` (an unroutable
/// message comes back instead of vanishing), on a confirm-mode channel, and waits for the
/// broker's confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &DispatchMessage,
) -> anyhow::Result<Published> {
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
    Ok(match (confirmation.is_ack(), confirmation.take_message()) {
        (_, Some(_returned)) => Published::Unroutable,
        (true, None) => Published::Stored,
        (false, None) => Published::Refused,
    })
}

/// A confirm-mode channel that is replaced by a fresh one when the broker nacks on it.
///
/// RabbitMQ 3.10 goes on nacking every publish a channel sends to a quorum queue once that
/// channel published to it while it had no leader (its leader's node just died), even after a
/// new leader took over, while a new channel is served at once (seen on the fault suite's
/// cluster). So a nack renews the channel, at most once a second: a full queue nacks too, and
/// must not make channels churn.
pub struct ConfirmChannel {
    connection: Arc<Connection>,
    current: Mutex<Current>,
}

struct Current {
    channel: Channel,
    opened: Instant,
}

/// How long a replaced channel stays open for the publishes still awaiting its confirms.
const RETIRED_CHANNEL_LINGERS: Duration = Duration::from_secs(30);

impl std::fmt::Debug for ConfirmChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmChannel").finish_non_exhaustive()
    }
}

impl ConfirmChannel {
    pub async fn open(connection: &Arc<Connection>) -> anyhow::Result<ConfirmChannel> {
        Ok(ConfirmChannel {
            connection: connection.clone(),
            current: Mutex::new(Current {
                channel: confirm_channel(connection).await?,
                opened: Instant::now(),
            }),
        })
    }

    fn channel(&self) -> Channel {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .channel
            .clone()
    }

    pub fn is_connected(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .channel
            .status()
            .connected()
    }

    /// [`publish_confirmed`] on the current channel, which a [`Published::Refused`] renews.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &DispatchMessage,
    ) -> anyhow::Result<Published> {
        let channel = self.channel();
        // A channel the broker closed (say over a message it would not take) is renewed too.
        let published = match publish_confirmed(&channel, exchange, routing_key, message).await {
            Ok(published) => published,
            Err(e) => {
                self.renew(&channel).await;
                return Err(e);
            }
        };
        if published == Published::Refused {
            self.renew(&channel).await;
        }
        Ok(published)
    }

    async fn renew(&self, nacked: &Channel) {
        let due = |current: &Current| {
            current.channel.id() == nacked.id()
                && current.opened.elapsed() >= Duration::from_secs(1)
        };
        if !due(&self.current.lock().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let Ok(fresh) = confirm_channel(&self.connection).await else {
            return; // The connection is going: its supervisor will see.
        };
        let retired = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if !due(&current) {
                None
            } else {
                Some(std::mem::replace(
                    &mut *current,
                    Current {
                        channel: fresh.clone(),
                        opened: Instant::now(),
                    },
                ))
            }
        };
        let Some(Current {
            channel: retired, ..
        }) = retired
        else {
            // Another publish renewed it first.
            let _ = fresh.close(200, "not needed".into()).await;
            return;
        };
        tracing::info!(
            channel = retired.id(),
            "renewed a confirm channel the broker nacked on"
        );
        tokio::spawn(async move {
            tokio::time::sleep(RETIRED_CHANNEL_LINGERS).await;
            let _ = retired.close(200, "renewed".into()).await;
        });
    }
}

async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// The local RabbitMQ, in the tests' virtual host when `scripts/test` made one.
#[cfg(test)]
fn test_broker_url() -> String {
    let vhost = std::env::var("FLYHOOK_TEST_VHOST").unwrap_or_else(|_| "%2f".into());
    format!("amqp://guest:guest@127.0.0.1:5672/{vhost}")
}
