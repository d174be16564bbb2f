//! One delivery, from the broker's hand to its settlement: processed (held while the status
//! store is away), then acked, retried through a delay queue, split into one message per
//! dispatch, or dead-lettered. Nothing is acked before its outcome is recorded.

use std::sync::Arc;
use std::time::Duration;

use flyhook_contract::broker::{ConfirmChannel, Published, Topology};
use flyhook_contract::dispatch::Dispatch;
use flyhook_contract::{DispatchId, DispatchMessage};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::callbacks::Callbacks;
use crate::process::{Outcome, Processor};
use crate::store_gate::StoreGate;

/// Puts messages into the delay queues, confirmed, before the original is acked: retries, and
/// the dispatches a fanned-out delivery splits into. A delay queue has no length bound and
/// hands its messages to the work queue at least once, so a full work queue delays a split
/// instead of refusing it.
#[derive(Debug)]
pub struct Retrier {
    channel: ConfirmChannel,
    exchange: String,
}

impl Retrier {
    pub(crate) async fn open(
        connection: &Arc<lapin::Connection>,
        topology: &Topology,
    ) -> anyhow::Result<Retrier> {
        Ok(Retrier {
            channel: ConfirmChannel::open(connection).await?,
            exchange: topology.retry_exchange(),
        })
    }

    /// Queues each dispatch of a fanned-out delivery on its own, through the shortest delay.
    async fn queue_each(&self, dispatches: Vec<Dispatch>) -> anyhow::Result<()> {
        for dispatch in dispatches {
            self.publish(&DispatchMessage::DispatchV1(dispatch), Duration::ZERO)
                .await?;
        }
        Ok(())
    }

    async fn publish(&self, message: &DispatchMessage, delay: Duration) -> anyhow::Result<()> {
        let routing_key = Topology::retry_routing_key(message, delay);
        let published = self
            .channel
            .publish(&self.exchange, &routing_key, message)
            .await?;
        anyhow::ensure!(
            published == Published::Stored,
            "the broker did not take the retry ({published:?})"
        );
        Ok(())
    }
}

/// What a delivery waits on while the status store is away: the store coming back, or the
/// worker stopping (then it goes back to the queue).
#[derive(Debug, Clone)]
pub struct Hold {
    pub gate: StoreGate,
    pub shutdown: CancellationToken,
    /// Deliveries held now (a metric).
    pub held_now: prometheus_client::metrics::gauge::Gauge,
}

const REQUEUE: BasicNackOptions = BasicNackOptions {
    requeue: true,
    multiple: false,
};

/// Processes one delivery and settles it with the broker.
pub async fn handle(
    processor: &Processor,
    callbacks: &Callbacks,
    retrier: &Retrier,
    hold: &Hold,
    delivery: Delivery,
) {
    let message = match serde_json::from_slice::<DispatchMessage>(&delivery.data) {
        Ok(message) => message,
        Err(e) => return dead_letter_unreadable(processor, hold, delivery, e).await,
    };
    // Every line about this delivery names the dispatch and the request that brought it.
    let span = tracing::info_span!(
        "dispatch",
        dispatch = %message.id().map(|id| id.to_string()).unwrap_or_default(),
        request_id = message.request_id().unwrap_or("-")
    );
    process_and_settle(processor, callbacks, retrier, hold, delivery, message)
        .instrument(span)
        .await
}

/// A body no worker can read: recorded `failed` under the id it was published with (when it
/// has one), then kept in the dead-letter queue for a human.
async fn dead_letter_unreadable(
    processor: &Processor,
    hold: &Hold,
    delivery: Delivery,
    error: serde_json::Error,
) {
    tracing::error!(error = %error, "unreadable message; dead-lettering it");
    processor.metrics().count("unreadable");
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .and_then(|id| DispatchId::parse(id.as_str()).ok());
    if let Some(id) = id {
        let reason = format!("the queue message could not be read: {error}");
        let recorded = holding(hold, |_| processor.record_unreadable(&id, &reason)).await;
        if recorded.is_none() {
            return settle(delivery.nack(REQUEUE).await);
        }
    }
    settle(delivery.reject(BasicRejectOptions { requeue: false }).await);
}

/// Runs `attempt` until its outcome is anything but "store unavailable", waiting for the store
/// in between, and a growing pause besides (an error that is no outage, say a missing column,
/// must not become a tight loop against a store that answers pings); `None` if the worker stops
/// first. `attempt` is told whether it is the first.
async fn holding<F, Fut>(hold: &Hold, mut attempt: F) -> Option<Outcome>
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    for tries in 0.. {
        let outcome = attempt(tries == 0).await;
        if outcome != Outcome::StoreUnavailable {
            return Some(outcome);
        }
        hold.held_now.inc();
        let stopping = tokio::select! {
            _ = hold.shutdown.cancelled() => true,
            _ = async {
                hold.gate.wait_until_reachable().await;
                tokio::time::sleep(crate::process::backoff(tries, None)).await;
            } => false,
        };
        hold.held_now.dec();
        if stopping {
            return None;
        }
    }
    unreachable!("the loop above ends only by returning")
}

async fn process_and_settle(
    processor: &Processor,
    callbacks: &Callbacks,
    retrier: &Retrier,
    hold: &Hold,
    delivery: Delivery,
    message: DispatchMessage,
) {
    let redelivered = delivery.redelivered;
    let message = match message {
        DispatchMessage::DeliveryV1(bundle) => {
            return split_and_settle(processor, retrier, delivery, bundle.dispatches).await;
        }
        single => single,
    };
    let outcome = match &message {
        // Only the first try counts as the broker's redelivery: later ones are ours.
        DispatchMessage::DispatchV1(dispatch) => {
            holding(hold, |first| {
                processor.process(dispatch, first && redelivered)
            })
            .await
        }
        DispatchMessage::IgnoredV1(ignored) => {
            holding(hold, |_| processor.record_ignored(ignored)).await
        }
        DispatchMessage::CallbackV1(callback) => Some(callbacks.deliver(callback).await),
        DispatchMessage::DeliveryV1(_) => unreachable!("split above"),
    };
    // Stopping while held: back to the queue for the next worker.
    let Some(outcome) = outcome else {
        return settle(delivery.nack(REQUEUE).await);
    };
    let settled = match outcome {
        Outcome::Done => delivery.ack(BasicAckOptions::default()).await,
        Outcome::DeadLetter => delivery.reject(BasicRejectOptions { requeue: false }).await,
        Outcome::StoreUnavailable => unreachable!("holding() returns only other outcomes"),
        Outcome::WaitTurn(delay) => {
            let mut next = message;
            if let DispatchMessage::DispatchV1(dispatch) = &mut next {
                // Reopened once already (see the retries below).
                dispatch.replay = false;
            }
            // Back no later than asked: the longest delay queue within the wait.
            match retrier.publish(&next, Topology::tier_at_most(delay)).await {
                Ok(()) => delivery.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not put the dispatch back in line; requeueing");
                    tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                    delivery.nack(REQUEUE).await
                }
            }
        }
        Outcome::RetryAfter(delay) => {
            let mut next = message;
            match &mut next {
                DispatchMessage::DispatchV1(dispatch) => {
                    dispatch.retries += 1;
                    // Reopened once already: a later delivery must not reopen it again (it
                    // may have been cancelled meanwhile).
                    dispatch.replay = false;
                }
                DispatchMessage::CallbackV1(callback) => callback.attempts += 1,
                _ => {}
            }
            // The retry is safely in a delay queue before the original goes.
            match retrier.publish(&next, delay).await {
                Ok(()) => delivery.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not schedule the retry; requeueing");
                    tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                    delivery.nack(REQUEUE).await
                }
            }
        }
    };
    settle(settled);
}

/// A fanned-out delivery becomes one message per dispatch, each confirmed before the delivery
/// is acked (a crash in between repeats some: their ids are the same, so nothing runs twice).
/// Nothing is recorded yet, so nothing can be lost by waiting for the store.
async fn split_and_settle(
    processor: &Processor,
    retrier: &Retrier,
    delivery: Delivery,
    dispatches: Vec<Dispatch>,
) {
    let settled = match retrier.queue_each(dispatches).await {
        Ok(()) => {
            processor.metrics().count("split");
            delivery.ack(BasicAckOptions::default()).await
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not split the delivery; requeueing");
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery.nack(REQUEUE).await
        }
    };
    settle(settled);
}

fn settle(result: lapin::Result<bool>) {
    if let Err(e) = result {
        // The channel is gone; the broker redelivers, and processing is idempotent.
        tracing::warn!(error = %e, "could not settle a delivery; it will be redelivered");
    }
}
