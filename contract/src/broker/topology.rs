//! The exchanges and queues of one deployment, declared (idempotently) by every process
//! before use.
//!
//! ```text
//!                         --"dispatch"----> {prefix}.dispatch     (partition 0)
//! {prefix}.dispatch ------"dispatch.1"--> {prefix}.dispatch.1   (partition 1)
//!   (direct)              --"dispatch.N-1"> {prefix}.dispatch.N-1
//!                                              |  x-delivery-limit exceeded, or rejected
//!                                              v
//! {prefix}.dead (fanout) --------------------> {prefix}.dead (quorum queue)
//! ```
//! The ingress sends each dispatch to one partition, chosen by its id; workers consume them
//! all. One queue is one Raft group whose leader does every write on one core of one node, so
//! `[broker] partitions` above one spreads the work over cores and nodes. A partition beyond
//! the configured count that still exists (the count was lowered) is drained by every worker
//! and otherwise left alone.
//!
//! Retries wait in delay queues, one per power of two seconds, whose expired messages are
//! dead-lettered (at least once) back to the dispatch exchange — delayed redelivery through
//! RabbitMQ itself, no plugin. They come back on partition 0: a retry needs no particular
//! partition, and one set of delay queues serves them all.
//!
//! ```text
//! worker --"retry-4s"--> {prefix}.retry (direct) --> {prefix}.retry.4s (TTL 4 s) --expired--> {prefix}.dispatch
//! ```
//!
//! Completion callbacks (when `[[callbacks]]` are configured) have a queue and delay queues of
//! their own, so a receiver that is slow or down holds up its callbacks and nothing else:
//!
//! ```text
//! {prefix}.dispatch --"callback"--> {prefix}.callbacks
//! worker --"callback-retry-4s"--> {prefix}.retry --> {prefix}.callback-retry.4s
//!                                    --expired--> {prefix}.dispatch --"callback"--> {prefix}.callbacks
//! ```
//!
//! Every queue is a quorum queue: durable, replicated to `[broker] replicas` nodes (as many as
//! the cluster has, up to that), its leader placed on the least loaded node
//! (`x-queue-leader-locator: balanced`), every message replicated to a majority before it is
//! confirmed. The work queues are bounded (`x-max-length` with `reject-publish`, per
//! partition): past the bound the broker refuses publishes, and the ingress answers 503 instead
//! of letting a backlog eat the broker's memory.

use anyhow::Context;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};

use crate::dispatch::{DispatchId, DispatchMessage};

/// The names, bounds and placement of one deployment's exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    max_queue_length: u32,
    partitions: u16,
    replicas: u16,
    callbacks: bool,
}

/// The routing key of the callback queue.
pub const CALLBACK_KEY: &str = "callback";

/// Deliveries after which the broker dead-letters a message that keeps failing (a poison
/// message, or a worker that crashes on it). The worker gives up earlier on its own terms.
const DELIVERY_LIMIT: i64 = 20;

/// Partition 0's routing key, and the one retries come back with.
pub const ROUTING_KEY: &str = "dispatch";

/// Delay queues hold a retry for 1, 2, 4, … 64 seconds.
pub const RETRY_TIERS: u32 = 7;

/// The most partitions a deployment may have: far beyond what a cluster's cores can use, and
/// the bound on how far workers look for partitions left over from a larger count.
pub const MAX_PARTITIONS: u16 = 256;

impl Topology {
    /// `partitions` is at least one and at most [`MAX_PARTITIONS`]; `replicas` at least one.
    pub fn new(prefix: &str, max_queue_length: u32, partitions: u16, replicas: u16) -> Topology {
        Topology {
            prefix: prefix.to_string(),
            max_queue_length,
            partitions: partitions.clamp(1, MAX_PARTITIONS),
            replicas: replicas.max(1),
            callbacks: false,
        }
    }

    /// With the callback queues (declared only where callbacks are configured).
    pub fn with_callbacks(mut self, callbacks: bool) -> Topology {
        self.callbacks = callbacks;
        self
    }

    pub fn has_callbacks(&self) -> bool {
        self.callbacks
    }

    pub fn callback_queue(&self) -> String {
        format!("{}.callbacks", self.prefix)
    }

    fn callback_retry_queues(&self) -> impl Iterator<Item = String> + '_ {
        (0..RETRY_TIERS).map(|tier| format!("{}.callback-retry.{}s", self.prefix, 1u64 << tier))
    }

    pub fn exchange(&self) -> String {
        format!("{}.dispatch", self.prefix)
    }

    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// Partition `partition`'s work queue: `{prefix}.dispatch` for 0 (the name a deployment of
    /// one partition always had), `{prefix}.dispatch.{partition}` after.
    pub fn work_queue(&self, partition: u16) -> String {
        match partition {
            0 => format!("{}.dispatch", self.prefix),
            p => format!("{}.dispatch.{p}", self.prefix),
        }
    }

    /// Every configured partition's work queue, in order.
    pub fn work_queues(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.partitions).map(|p| self.work_queue(p))
    }

    fn partition_key(partition: u16) -> String {
        match partition {
            0 => ROUTING_KEY.to_string(),
            p => format!("{ROUTING_KEY}.{p}"),
        }
    }

    /// The partition of dispatch `id`: the same whenever the ingress sends it (a provider's
    /// retry, a replay), even over all ids, and not one a sender can steer its dispatches to.
    /// Retries come back on partition 0 instead (see above).
    pub fn partition_of(&self, id: &DispatchId) -> u16 {
        (id.spread() % u32::from(self.partitions)) as u16
    }

    /// The routing key that takes `message` to its dispatch's partition (a callback to the
    /// callback queue).
    pub fn routing_key(&self, message: &DispatchMessage) -> String {
        if let DispatchMessage::CallbackV1(_) = message {
            return CALLBACK_KEY.to_string();
        }
        let partition = message.id().map_or(0, |id| self.partition_of(&id));
        Topology::partition_key(partition)
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

    /// The routing key of the delay queue that holds `message` for at least `delay` (or for
    /// the longest delay there is): a callback's own, or the dispatches'.
    pub fn retry_routing_key(message: &DispatchMessage, delay: std::time::Duration) -> String {
        let tier = (0..RETRY_TIERS)
            .find(|tier| std::time::Duration::from_secs(1 << tier) >= delay)
            .unwrap_or(RETRY_TIERS - 1);
        match message {
            DispatchMessage::CallbackV1(_) => format!("callback-retry-{}s", 1u64 << tier),
            _ => format!("retry-{}s", 1u64 << tier),
        }
    }

    /// The longest delay a delay queue holds that is not longer than `delay` (the shortest,
    /// 1 s, for less): what a message that must be back by then waits.
    pub fn tier_at_most(delay: std::time::Duration) -> std::time::Duration {
        let tier = (0..RETRY_TIERS)
            .rev()
            .find(|tier| std::time::Duration::from_secs(1 << tier) <= delay)
            .unwrap_or(0);
        std::time::Duration::from_secs(1 << tier)
    }

    /// The work queues of partitions at and beyond the configured count that still exist (left
    /// by a deployment that had more), to be drained. Partitions are numbered without gaps, so
    /// the first one missing ends the search (operators delete leftovers from the highest down).
    pub async fn leftover_partitions(&self, connection: &Connection) -> anyhow::Result<Vec<u16>> {
        let mut found = Vec::new();
        let channel = connection.create_channel().await?;
        for partition in self.partitions..MAX_PARTITIONS {
            let queue = self.work_queue(partition);
            match super::ready_messages(&channel, &queue).await {
                Ok(_) => found.push(partition),
                // NOT_FOUND closes the channel; nothing more to find.
                Err(e) if refusal_code(&e) == Some(NOT_FOUND) => return Ok(found),
                Err(e) => {
                    return Err(e).with_context(|| format!("looking for the queue {queue}"));
                }
            }
        }
        let _ = channel.close(200, "looked".into()).await;
        Ok(found)
    }

    /// Deletes every queue and exchange of this prefix, messages included: for tests and
    /// benchmarks, whose quorum queues are not free to leave behind.
    pub async fn delete(&self, channel: &Channel) -> anyhow::Result<()> {
        let queues = self
            .work_queues()
            .chain([self.dead_queue(), self.callback_queue()])
            .chain(self.retry_queues())
            .chain(self.callback_retry_queues());
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
    pub async fn declare(&self, connection: &Connection) -> anyhow::Result<()> {
        let mut declarer = Declarer {
            connection,
            channel: connection.create_channel().await?,
            placement: self.placement(),
        };
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for (exchange, kind) in [
            (self.exchange(), ExchangeKind::Direct),
            (self.dead_exchange(), ExchangeKind::Fanout),
            (self.retry_exchange(), ExchangeKind::Direct),
        ] {
            declarer
                .channel
                .exchange_declare(
                    exchange.as_str().into(),
                    kind,
                    durable,
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("declaring the exchange {exchange}"))?;
        }

        for partition in 0..self.partitions {
            let queue = self.work_queue(partition);
            declarer
                .queue(&queue, self.work_queue_arguments())
                .await
                .with_context(|| format!("declaring the work queue {queue}"))?;
            declarer
                .bind(
                    &queue,
                    &self.exchange(),
                    &Topology::partition_key(partition),
                )
                .await?;
        }

        declarer
            .delay_queues(
                self.retry_queues(),
                &self.retry_exchange(),
                "retry",
                &self.exchange(),
                ROUTING_KEY,
            )
            .await?;
        if self.callbacks {
            declarer
                // Dead-lettered and bounded like a work queue.
                .queue(&self.callback_queue(), self.work_queue_arguments())
                .await
                .context("declaring the callback queue")?;
            declarer
                .bind(&self.callback_queue(), &self.exchange(), CALLBACK_KEY)
                .await?;
            declarer
                .delay_queues(
                    self.callback_retry_queues(),
                    &self.retry_exchange(),
                    "callback-retry",
                    &self.exchange(),
                    CALLBACK_KEY,
                )
                .await?;
        }

        declarer
            .queue(&self.dead_queue(), quorum())
            .await
            .context("declaring the dead-letter queue")?;
        declarer
            .bind(&self.dead_queue(), &self.dead_exchange(), "")
            .await?;
        let _ = declarer.channel.close(200, "declared".into()).await;
        Ok(())
    }

    fn work_queue_arguments(&self) -> FieldTable {
        let mut args = quorum();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_exchange().into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(self.max_queue_length.into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args
    }

    /// Where a new queue's replicas and leader go. RabbitMQ takes these only when it creates
    /// a queue (and as many replicas as it has nodes, up to the count). RabbitMQ 3.10 or later
    /// (`balanced`).
    fn placement(&self) -> Placement {
        vec![
            (GROUP_SIZE, AMQPValue::LongLongInt(self.replicas.into())),
            (LEADER_LOCATOR, AMQPValue::LongString("balanced".into())),
        ]
    }
}

/// The arguments that place a queue when it is created; RabbitMQ checks them on every later
/// declare like the others, though they no longer mean anything then.
const PLACEMENT_ARGUMENTS: [&str; 2] = [GROUP_SIZE, LEADER_LOCATOR];
const GROUP_SIZE: &str = "x-quorum-initial-group-size";
const LEADER_LOCATOR: &str = "x-queue-leader-locator";

/// Placement arguments and their values.
type Placement = Vec<(&'static str, AMQPValue)>;

/// Declares queues on one channel, opening a new one when the broker closed it over a refused
/// declare.
struct Declarer<'a> {
    connection: &'a Connection,
    channel: Channel,
    placement: Placement,
}

impl Declarer<'_> {
    /// Declares `queue` with `args` and, if it is new, this deployment's placement. A queue
    /// placed otherwise (made before placement was configured, or under another replica count)
    /// is taken as it is: its replicas are moved with `rabbitmq-queues grow|shrink`, never by a
    /// declare. RabbitMQ names one differing argument at a time, so each placement argument it
    /// names is declared again as the queue has it, until the rest compares equal or another
    /// argument differs: a [`TopologyMismatch`].
    async fn queue(&mut self, queue: &str, args: FieldTable) -> anyhow::Result<()> {
        let mut placement = self.placement.clone();
        let mut refused = None;
        // A round for each placement argument the broker may name, and the first.
        for _ in 0..=PLACEMENT_ARGUMENTS.len() {
            let mut declared = args.clone();
            for (key, value) in &placement {
                declared.insert((*key).into(), value.clone());
            }
            let Err(refusal) = self.declare(queue, declared).await? else {
                return Ok(());
            };
            let Some((arg, current)) = queue_placement(&refusal) else {
                return Err(mismatch(refusal, queue));
            };
            placement.retain(|(key, _)| *key != arg);
            placement.extend(current.map(|value| (arg, value)));
            refused = Some(refusal);
        }
        Err(mismatch(refused.expect("refused at least once"), queue))
    }

    /// `Ok(Err(refusal))` when the broker refused the arguments (the channel is replaced);
    /// `Err` for anything else.
    async fn declare(
        &mut self,
        queue: &str,
        args: FieldTable,
    ) -> anyhow::Result<Result<(), lapin::Error>> {
        match self
            .channel
            .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(e) if e.to_string().contains("inequivalent arg") => {
                self.channel = self.connection.create_channel().await?;
                Ok(Err(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One delay queue per tier, bound on `exchange` as `{key_prefix}-{N}s`, whose expired
    /// messages go back to `back_to` with `back_key`.
    async fn delay_queues(
        &mut self,
        queues: impl Iterator<Item = String>,
        exchange: &str,
        key_prefix: &str,
        back_to: &str,
        back_key: &str,
    ) -> anyhow::Result<()> {
        for (tier, queue) in queues.enumerate() {
            let mut args = quorum();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000 << tier));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(back_to.into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(back_key.into()),
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
            self.queue(&queue, args)
                .await
                .with_context(|| format!("declaring the delay queue {queue}"))?;
            self.bind(&queue, exchange, &format!("{key_prefix}-{}s", 1u64 << tier))
                .await?;
        }
        Ok(())
    }

    async fn bind(&self, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {queue} to {exchange}"))
    }
}

/// The placement argument a refused declare names, and the queue's own value of it (`None`:
/// the queue has none), read from RabbitMQ's answer: "inequivalent arg 'x-quorum-initial-
/// group-size' for queue … received '5' but current is '3'" (or "… current is none", or
/// "… current is the value '3' of type 'signedint'"). `None` for any other refusal, or a value
/// that cannot be read back.
fn queue_placement(refusal: &lapin::Error) -> Option<(&'static str, Option<AMQPValue>)> {
    let text = refusal.to_string();
    let arg = PLACEMENT_ARGUMENTS
        .into_iter()
        .find(|arg| text.contains(&format!("inequivalent arg '{arg}'")))?;
    let current = &text[text.find("but current is ")? + "but current is ".len()..];
    if current.starts_with("none") {
        return Some((arg, None));
    }
    let quoted = current.strip_prefix("the value ").unwrap_or(current);
    let value = quoted.strip_prefix('\'')?.split('\'').next()?;
    let value = match arg {
        GROUP_SIZE => AMQPValue::LongLongInt(value.parse().ok()?),
        _ => AMQPValue::LongString(value.into()),
    };
    Some((arg, Some(value)))
}

/// Lapin's reply code of a refusal by the broker (404, 406, …).
fn refusal_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(refusal) => Some(refusal.get_id()),
        _ => None,
    }
}

const NOT_FOUND: u16 = 404;

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
fn mismatch(refusal: lapin::Error, queue: &str) -> anyhow::Error {
    TopologyMismatch {
        queue: queue.to_string(),
        detail: refusal.to_string(),
    }
    .into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An ignored delivery's message under a fresh id.
    fn ignored(issuer: &crate::IdIssuer) -> DispatchMessage {
        DispatchMessage::IgnoredV1(crate::dispatch::Ignored {
            id: issuer.issue(),
            source: "source:s".into(),
            delivery_id: "d".into(),
            provider_delivery_id: None,
            received_at: chrono::Utc::now(),
            request_id: None,
            callback: None,
        })
    }

    #[test]
    fn a_retry_waits_in_the_shortest_delay_queue_that_is_long_enough() {
        let issuer = crate::IdIssuer::new(&"s".repeat(32).into());
        let dispatch = ignored(&issuer);
        for (delay, key) in [
            (Duration::ZERO, "retry-1s"),
            (Duration::from_millis(900), "retry-1s"),
            (Duration::from_millis(1001), "retry-2s"),
            (Duration::from_secs(30), "retry-32s"),
            (Duration::from_secs(3600), "retry-64s"),
        ] {
            assert_eq!(
                Topology::retry_routing_key(&dispatch, delay),
                key,
                "{delay:?}"
            );
        }
        let callback = DispatchMessage::CallbackV1(crate::callbacks::Callback {
            dispatch: issuer.issue(),
            ending: 1,
            destination: "bot".into(),
            webhook_id: "msg_1".into(),
            event: serde_json::json!({}),
            ended_at: chrono::Utc::now(),
            attempts: 0,
        });
        assert_eq!(
            Topology::retry_routing_key(&callback, Duration::from_secs(3)),
            "callback-retry-4s"
        );
        assert_eq!(
            Topology::new("p", 10, 4, 3).routing_key(&callback),
            CALLBACK_KEY
        );
        let topology = Topology::new("p", 10, 1, 3);
        let queues: Vec<String> = topology.retry_queues().collect();
        assert_eq!(queues.first().map(String::as_str), Some("p.retry.1s"));
        assert_eq!(queues.last().map(String::as_str), Some("p.retry.64s"));
    }

    #[test]
    fn dispatches_spread_over_the_partitions_and_each_always_lands_on_the_same_one() {
        let topology = Topology::new("p", 10, 4, 3);
        let issuer = crate::IdIssuer::new(&"s".repeat(32).into());
        let mut seen = std::collections::HashMap::new();
        for _ in 0..400 {
            let message = ignored(&issuer);
            let key = topology.routing_key(&message);
            assert_eq!(topology.routing_key(&message), key);
            *seen.entry(key).or_insert(0) += 1;
        }
        let mut keys: Vec<&String> = seen.keys().collect();
        keys.sort();
        assert_eq!(keys, ["dispatch", "dispatch.1", "dispatch.2", "dispatch.3"]);
        // 100 expected each; far outside this only if the choice were not spreading.
        assert!(seen.values().all(|n| (50..=150).contains(n)), "{seen:?}");
        assert_eq!(topology.work_queue(0), "p.dispatch");
        assert_eq!(topology.work_queue(3), "p.dispatch.3");
    }

    #[tokio::test]
    async fn queues_placed_otherwise_are_taken_as_they_are_and_other_differences_refused() {
        let nodes =
            super::super::BrokerNodes::parse(&super::super::test_broker_url().into()).unwrap();
        let (connection, _) = nodes.connect("flyhook-test").await.unwrap();
        let prefix = format!("flyhook-test-placement-{:08x}", fastrand::u32(..));
        let before = Topology::new(&prefix, 10, 1, 3);
        // Partition 0 as flyhook declared it before placement was configured.
        let channel = connection.create_channel().await.unwrap();
        channel
            .queue_declare(
                before.work_queue(0).as_str().into(),
                QueueDeclareOptions::durable(),
                before.work_queue_arguments(),
            )
            .await
            .unwrap();
        before.declare(&connection).await.unwrap();
        // Another replica count, and one partition more: the existing queues as they are.
        let grown = Topology::new(&prefix, 10, 2, 5);
        grown.declare(&connection).await.unwrap();
        Topology::new(&prefix, 10, 2, 3)
            .declare(&connection)
            .await
            .unwrap();
        // A changed bound is a mismatch whatever the placement.
        let error = Topology::new(&prefix, 11, 2, 3)
            .declare(&connection)
            .await
            .unwrap_err();
        assert!(is_topology_mismatch(&error), "{error:#}");
        let channel = connection.create_channel().await.unwrap();
        grown.delete(&channel).await.unwrap();
        let _ = connection.close(200, "".into()).await;
    }
}
