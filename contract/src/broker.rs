//! RabbitMQ: connections and the topology both sides declare (idempotently) before use.
//!
//! ```text
//! {prefix}.dispatch (direct) --"dispatch"--> {prefix}.dispatch (quorum queue)
//!                                                |  x-delivery-limit exceeded, or rejected
//!                                                v
//! {prefix}.dead (fanout) ----------------------> {prefix}.dead (quorum queue)
//! ```
//! Retries wait in delay queues, one per power of two seconds, whose expired messages are
//! dead-lettered (at least once) back to the dispatch exchange — delayed redelivery through
//! RabbitMQ itself, no plugin:
//!
//! ```text
//! worker --"retry-4s"--> {prefix}.retry (direct) --> {prefix}.retry.4s (TTL 4 s) --expired--> {prefix}.dispatch
//! ```
//!
//! Quorum queues are always durable and replicate every message before confirming it. The work
//! queue is bounded (`x-max-length` with `reject-publish`): past the bound the broker refuses
//! publishes, and the ingress answers 503 instead of letting a backlog eat the broker's memory.

use anyhow::Context;
use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};

use crate::dispatch::DispatchMessage;

/// The names of one deployment's exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    max_queue_length: u32,
}

/// Deliveries after which the broker dead-letters a message that keeps failing (a poison
/// message, or a worker that crashes on it). The worker gives up earlier on its own terms.
const DELIVERY_LIMIT: i64 = 20;

pub const ROUTING_KEY: &str = "dispatch";

/// Delay queues hold a retry for 1, 2, 4, … 64 seconds.
pub const RETRY_TIERS: u32 = 7;

impl Topology {
    pub fn new(prefix: &str, max_queue_length: u32) -> Topology {
        Topology {
            prefix: prefix.to_string(),
            max_queue_length,
        }
    }

    pub fn exchange(&self) -> String {
        format!("{}.dispatch", self.prefix)
    }

    pub fn work_queue(&self) -> String {
        format!("{}.dispatch", self.prefix)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    pub fn retry_queues(&self) -> impl Iterator<Item = String> + '_ {
        (0..RETRY_TIERS).map(|tier| format!("{}.retry.{}s", self.prefix, 1u64 << tier))
    }

    /// The routing key of the delay queue that holds a message for at least `delay` (or for
    /// the longest delay there is).
    pub fn retry_routing_key(delay: std::time::Duration) -> String {
        let tier = (0..RETRY_TIERS)
            .find(|tier| std::time::Duration::from_secs(1 << tier) >= delay)
            .unwrap_or(RETRY_TIERS - 1);
        format!("retry-{}s", 1u64 << tier)
    }

    /// Deletes every queue and exchange of this prefix, messages included: for tests and
    /// benchmarks, whose quorum queues are not free to leave behind.
    pub async fn delete(&self, channel: &Channel) -> anyhow::Result<()> {
        let queues = [self.work_queue(), self.dead_queue()]
            .into_iter()
            .chain(self.retry_queues());
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .with_context(|| format!("deleting queue {queue}"))?;
        }
        for exchange in [self.exchange(), self.dead_exchange(), self.retry_exchange()] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .with_context(|| format!("deleting exchange {exchange}"))?;
        }
        Ok(())
    }

    /// Declares everything; safe to call from every process at every start.
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .context("declaring the dispatch exchange")?;
        channel
            .exchange_declare(
                self.dead_exchange().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .context("declaring the dead-letter exchange")?;

        let mut work_args = quorum();
        work_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_exchange().into()),
        );
        work_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        work_args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(self.max_queue_length.into()),
        );
        work_args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        channel
            .queue_declare(
                self.work_queue().into(),
                QueueDeclareOptions::durable(),
                work_args,
            )
            .await
            .map_err(|e| mismatch_or(e, &self.work_queue()))
            .context("declaring the work queue")?;
        channel
            .queue_bind(
                self.work_queue().into(),
                self.exchange().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("binding the work queue")?;

        channel
            .exchange_declare(
                self.retry_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .context("declaring the retry exchange")?;
        for (tier, queue) in self.retry_queues().enumerate() {
            let mut args = quorum();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000 << tier));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.exchange().into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(ROUTING_KEY.into()),
            );
            // Expired messages move back with publisher-confirm semantics inside the broker.
            args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
            channel
                .queue_declare(queue.clone().into(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(|e| mismatch_or(e, &queue))
                .with_context(|| format!("declaring the delay queue {queue}"))?;
            channel
                .queue_bind(
                    queue.into(),
                    self.retry_exchange().into(),
                    format!("retry-{}s", 1u64 << tier).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .context("binding a delay queue")?;
        }

        channel
            .queue_declare(
                self.dead_queue().into(),
                QueueDeclareOptions::durable(),
                quorum(),
            )
            .await
            .map_err(|e| mismatch_or(e, &self.dead_queue()))
            .context("declaring the dead-letter queue")?;
        channel
            .queue_bind(
                self.dead_queue().into(),
                self.dead_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("binding the dead-letter queue")?;
        Ok(())
    }
}

/// A queue exists with other arguments than this deployment declares (say `max_queue_length`
/// was changed): RabbitMQ cannot change a queue's arguments in place, so every declare would
/// fail and intake would answer 503 forever. Processes stop at start-up with this instead.
#[derive(Debug, thiserror::Error)]
#[error(
    "queue {queue} exists with other arguments than configured (RabbitMQ: {detail}). A queue's \
     arguments cannot change in place: set the configuration back to the queue's value, or let \
     the workers drain the queue, delete it (rabbitmqctl delete_queue {queue}) and start again \
     so it is declared anew"
)]
pub struct TopologyMismatch {
    pub queue: String,
    pub detail: String,
}

/// RabbitMQ's answer to a declare whose arguments differ from the queue's: a channel-level
/// PRECONDITION_FAILED naming the "inequivalent arg".
fn mismatch_or(error: lapin::Error, queue: &str) -> anyhow::Error {
    let text = error.to_string();
    if text.contains("inequivalent arg") {
        TopologyMismatch {
            queue: queue.to_string(),
            detail: text,
        }
        .into()
    } else {
        error.into()
    }
}

/// Whether `error` (from [`Topology::declare`]) is a [`TopologyMismatch`]: a configuration
/// mistake no retry can mend.
pub fn is_topology_mismatch(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<TopologyMismatch>())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

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

/// Opens a connection named for the RabbitMQ management UI (`flyhook-ingress`, …).
pub async fn connect(url: &SecretString, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // lapin's error names the host and the cause, never the password.
    Connection::connect(url.expose_secret(), properties)
        .await
        .context("connecting to RabbitMQ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_retry_waits_in_the_shortest_delay_queue_that_is_long_enough() {
        for (delay, key) in [
            (Duration::ZERO, "retry-1s"),
            (Duration::from_millis(900), "retry-1s"),
            (Duration::from_millis(1001), "retry-2s"),
            (Duration::from_secs(30), "retry-32s"),
            (Duration::from_secs(3600), "retry-64s"),
        ] {
            assert_eq!(Topology::retry_routing_key(delay), key, "{delay:?}");
        }
        let topology = Topology::new("p", 10);
        let queues: Vec<String> = topology.retry_queues().collect();
        assert_eq!(queues.first().map(String::as_str), Some("p.retry.1s"));
        assert_eq!(queues.last().map(String::as_str), Some("p.retry.64s"));
    }
}
