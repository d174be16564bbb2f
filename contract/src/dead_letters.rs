//! The dead-letter queue, read and replayed from the broker itself (`flyhook dead-letters`), so
//! an operator can see and resend what gave up even while PostgreSQL is away.
//!
//! Reading takes each message without acknowledging it and hands them all back when the
//! channel closes, so a listing leaves the queue as it was. A replayed dispatch is published to
//! the work exchange marked `replay` (the worker may then take it up again from `failed` or
//! `dead_lettered` without asking the store first), confirmed, and only then removed from the
//! dead-letter queue; its outcome is recorded by the worker, once the store is there.

use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use serde::Serialize;

use crate::broker;
use crate::broker::Topology;
use crate::dispatch::DispatchMessage;

/// One message in the dead-letter queue, as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The dispatch it carries (the first, for a fanned-out delivery); `None` if unreadable.
    pub id: Option<String>,
    /// `dispatch`, `ignored`, `delivery`, `callback` or `unreadable`.
    pub kind: &'static str,
    /// `project/domain/name:version` for a dispatch; the destination for a callback.
    pub task: Option<String>,
    /// Why RabbitMQ dead-lettered it: `rejected` (a worker gave up and recorded why),
    /// `delivery_limit`, `expired`, `maxlen`.
    pub reason: Option<String>,
    /// The queue it died in.
    pub queue: Option<String>,
}

impl DeadLetter {
    fn of(delivery: &lapin::message::Delivery) -> DeadLetter {
        let headers = delivery.properties.headers().as_ref();
        let header = |name: &str| headers.and_then(|h| text(h, name));
        let (id, kind, task) = match serde_json::from_slice::<DispatchMessage>(&delivery.data) {
            Ok(DispatchMessage::DispatchV1(d)) => {
                (Some(d.id.to_string()), "dispatch", Some(d.task.to_string()))
            }
            Ok(DispatchMessage::IgnoredV1(i)) => (Some(i.id.to_string()), "ignored", None),
            Ok(DispatchMessage::CallbackV1(c)) => (
                Some(c.dispatch.to_string()),
                "callback",
                Some(c.destination),
            ),
            Ok(DispatchMessage::DeliveryV1(d)) => (
                d.dispatches.first().map(|d| d.id.to_string()),
                "delivery",
                None,
            ),
            Err(_) => (
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string()),
                "unreadable",
                None,
            ),
        };
        DeadLetter {
            id,
            kind,
            task,
            reason: header("x-first-death-reason"),
            queue: header("x-first-death-queue"),
        }
    }
}

fn text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Up to `limit` dead letters, oldest first; the queue is left as it was.
pub async fn list(
    connection: &Connection,
    topology: &Topology,
    limit: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let channel = connection.create_channel().await?;
    let mut listed = Vec::new();
    while listed.len() < limit {
        let Some(message) = get(&channel, topology).await? else {
            break;
        };
        listed.push(DeadLetter::of(&message.delivery));
    }
    // Everything taken goes back, unacknowledged.
    let _ = channel.close(200, "listed".into()).await;
    Ok(listed)
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Sent back to the work queue.
    pub sent: usize,
    /// Left in the dead-letter queue: not chosen, or unreadable.
    pub kept: usize,
}

/// Sends the dead letters `chosen` picks back to the work queue, marked as replays.
pub async fn replay(
    connection: &Connection,
    topology: &Topology,
    chosen: impl Fn(&DeadLetter) -> bool,
) -> anyhow::Result<Replayed> {
    let reader = connection.create_channel().await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut replayed = Replayed::default();
    // Only what is there now: a replay that fails again at once comes back, and must wait
    // for the next replay instead of going round.
    let mut unseen: Option<u32> = None;
    while unseen != Some(0) {
        let Some(message) = get(&reader, topology).await? else {
            break;
        };
        // The first answer says how many more there are.
        unseen = Some(unseen.unwrap_or(message.message_count + 1) - 1);
        let letter = DeadLetter::of(&message.delivery);
        let parsed = serde_json::from_slice::<DispatchMessage>(&message.delivery.data);
        let (true, Ok(mut resent)) = (chosen(&letter), parsed) else {
            replayed.kept += 1;
            continue;
        };
        mark_replay(&mut resent);
        let stored = broker::publish_confirmed(
            &publisher,
            &topology.exchange(),
            &topology.routing_key(&resent),
            &resent,
        )
        .await
        .context("sending a dead letter back")?;
        anyhow::ensure!(
            stored == broker::Published::Stored,
            "the broker refused a replayed dispatch (is the work queue full?); the rest are still dead letters"
        );
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .context("removing a replayed dead letter")?;
        replayed.sent += 1;
    }
    // The ones kept go back, unacknowledged.
    let _ = reader.close(200, "replayed".into()).await;
    let _ = publisher.close(200, "replayed".into()).await;
    Ok(replayed)
}

/// A fresh start: retries (a callback's deliveries) counted from zero, and the worker told it
/// may take a dispatch up again.
fn mark_replay(message: &mut DispatchMessage) {
    let dispatches = match message {
        DispatchMessage::DispatchV1(d) => std::slice::from_mut(d),
        DispatchMessage::DeliveryV1(d) => d.dispatches.as_mut_slice(),
        DispatchMessage::IgnoredV1(_) => &mut [],
        DispatchMessage::CallbackV1(c) => {
            c.attempts = 0;
            &mut []
        }
    };
    for dispatch in dispatches {
        dispatch.replay = true;
        dispatch.retries = 0;
    }
}

async fn get(
    channel: &Channel,
    topology: &Topology,
) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
    channel
        .basic_get(
            topology.dead_queue().as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .context("reading the dead-letter queue")
}
