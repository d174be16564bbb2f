//! RabbitMQ: connections and the topology both sides declare (idempotently) before use.
//!
//! ```text
//! {prefix}.dispatch (direct) --"dispatch"--> {prefix}.dispatch (quorum queue)
//!                                                |  x-delivery-limit exceeded, or rejected
//!                                                v
//! {prefix}.dead (fanout) ----------------------> {prefix}.dead (quorum queue)
//! ```
//! Quorum queues are always durable and replicate every message before confirming it. The work
//! queue is bounded (`x-max-length` with `reject-publish`): past the bound the broker refuses
//! publishes, and the ingress answers 503 instead of letting a backlog eat the broker's memory.

use anyhow::Context;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};

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
            .queue_declare(
                self.dead_queue().into(),
                QueueDeclareOptions::durable(),
                quorum(),
            )
            .await
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

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Opens a connection named for the RabbitMQ management UI (`flyhook-ingress`, …).
pub async fn connect(url: &SecretString, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // lapin's error names the host and the cause, never the password.
    Connection::connect(url.expose_secret(), properties)
        .await
        .context("connecting to RabbitMQ")
}
