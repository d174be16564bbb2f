//! Completion callbacks, from the outbox to the receiver. When a dispatch ends with a
//! destination, a trigger puts the ending (and the row as it left it) in `callback_outbox` in
//! the same transaction; [`Callbacks::relay`] builds the event and queues it (confirmed) on
//! the callback queue, then empties the row; [`Callbacks::deliver`] signs it per Standard
//! Webhooks and POSTs it. A failure goes back through the callback delay queues with a growing
//! pause, up to the destination's `max_attempts`, then to the dead-letter queue; each try is
//! recorded on the dispatch. A destination takes at most its `max_in_flight` of a worker's
//! callback slots: the rest of its events come back a second later, so other destinations
//! keep flowing past a receiver that hangs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flyhook_contract::broker::{ConfirmChannel, Published, Topology};
use flyhook_contract::callbacks::{Callback, Destination, Destinations};
use flyhook_contract::{DispatchId, DispatchMessage};
use flyhook_store::callbacks::{CallbackState, DueCallback};
use flyhook_store::{DispatchRecord, DispatchStore};
use flyte_client::FlyteClient;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use webhook_signatures::{Scheme, UnixMillis};

use crate::metrics::WorkerMetrics;
use crate::process::Outcome;

/// Relays and delivers callback events; one per worker.
#[derive(Debug)]
pub struct Callbacks {
    destinations: Destinations,
    /// Each destination's share of the callback slots.
    in_flight: HashMap<String, Arc<Semaphore>>,
    http: reqwest::Client,
    store: DispatchStore,
    flyte: FlyteClient,
    metrics: WorkerMetrics,
}

/// The most of a receiver's answer kept on the record.
const ANSWER_BYTES: usize = 512;

impl Callbacks {
    pub fn new(
        destinations: Destinations,
        store: DispatchStore,
        flyte: FlyteClient,
        metrics: WorkerMetrics,
    ) -> anyhow::Result<Callbacks> {
        let in_flight = destinations
            .all()
            .map(|d| (d.name.clone(), Arc::new(Semaphore::new(d.max_in_flight))))
            .collect();
        let http = reqwest::Client::builder()
            // A receiver's redirect is not followed: the operator named this URL, not another.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("flyhook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Callbacks {
            destinations,
            in_flight,
            http,
            store,
            flyte,
            metrics,
        })
    }

    /// One delivery of `callback`, recorded on its dispatch. 2xx is done; 410 (the receiver
    /// says it is gone) is recorded and not retried, and disables nothing; anything else is
    /// retried until the destination's `max_attempts`. A copy of an event already delivered
    /// (the relay or a resend sent it twice) is dropped.
    pub async fn deliver(&self, callback: &Callback) -> Outcome {
        let Some(destination) = self.destinations.get(&callback.destination) else {
            let answer = format!(
                "destination {:?} is no longer configured",
                callback.destination
            );
            return self
                .record(
                    callback,
                    CallbackState::Failed,
                    &answer,
                    Outcome::DeadLetter,
                )
                .await;
        };
        let Some(_slot) = self
            .in_flight
            .get(&destination.name)
            .and_then(|slots| slots.clone().try_acquire_owned().ok())
        else {
            return Outcome::WaitTurn(WAIT_FOR_DESTINATION);
        };
        if let Ok(true) = self
            .store
            .callback_delivered(&callback.dispatch, callback.ending)
            .await
        {
            return Outcome::Done;
        }
        let attempts = callback.attempts + 1;
        let started = std::time::Instant::now();
        let result = self.post(destination, callback).await;
        let labels = &destination.name;
        match result {
            Ok(status) if status.is_success() => {
                let latency = (Utc::now() - callback.ended_at)
                    .to_std()
                    .unwrap_or_default();
                self.metrics.callback_delivered(labels, latency);
                let answer = format!("{status}");
                tracing::info!(dispatch = %callback.dispatch, destination = %labels, attempts, took = ?started.elapsed(), "callback delivered");
                self.record(callback, CallbackState::Delivered, &answer, Outcome::Done)
                    .await
            }
            Ok(status) if status == reqwest::StatusCode::GONE => {
                self.metrics.count_callback(labels, "gone");
                let answer = format!("{status}: the receiver says it is gone; not retried");
                tracing::warn!(dispatch = %callback.dispatch, destination = %labels, "callback receiver answered 410");
                self.record(callback, CallbackState::Failed, &answer, Outcome::Done)
                    .await
            }
            failed => {
                let answer = match failed {
                    Ok(status) => format!("{status}"),
                    Err(e) => format!("no answer: {e}"),
                };
                tracing::info!(dispatch = %callback.dispatch, destination = %labels, attempts, %answer, "callback not delivered");
                if attempts >= destination.max_attempts {
                    self.metrics.count_callback(labels, "gave_up");
                    let answer = format!("gave up after {attempts} attempts; last: {answer}");
                    self.record(
                        callback,
                        CallbackState::Failed,
                        &answer,
                        Outcome::DeadLetter,
                    )
                    .await
                } else {
                    self.metrics.count_callback(labels, "retried");
                    let pause = pause_after(attempts);
                    self.record(
                        callback,
                        CallbackState::Retrying,
                        &answer,
                        Outcome::RetryAfter(pause),
                    )
                    .await
                }
            }
        }
    }

    /// The signed POST; the receiver's status, or why there was none.
    async fn post(
        &self,
        destination: &Destination,
        callback: &Callback,
    ) -> Result<reqwest::StatusCode, String> {
        let event = serde_json::to_vec(&callback.event).map_err(|e| e.to_string())?;
        let signed = Scheme::StandardWebhooks.sign(
            &destination.secret,
            &event,
            UnixMillis::now(),
            &callback.webhook_id,
        );
        let mut request = self
            .http
            .post(&destination.url)
            .timeout(destination.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(signed.body.into_owned());
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| without_url(&e))?;
        Ok(response.status())
    }

    /// Records this delivery against its ending (trying a few times), then goes on with
    /// `outcome` whether or not that could be recorded: holding a delivered callback until the
    /// store is back would only POST it again. A state left behind shows as `pending` or
    /// `retrying` long after the end, which `flyhook replay --callbacks` sends again.
    async fn record(
        &self,
        callback: &Callback,
        state: CallbackState,
        answer: &str,
        outcome: Outcome,
    ) -> Outcome {
        let answer = truncated(answer);
        for pause in [100, 400, 1600].map(Duration::from_millis) {
            let recorded = self
                .store
                .record_callback(
                    &callback.dispatch,
                    callback.ending,
                    state,
                    (callback.attempts + 1) as i32,
                    &answer,
                )
                .await;
            match recorded {
                Ok(()) => return outcome,
                Err(e) => {
                    tracing::warn!(dispatch = %callback.dispatch, error = %e, state = state.as_str(), "could not record the callback's state");
                    tokio::time::sleep(pause).await;
                }
            }
        }
        outcome
    }

    /// Moves due endings from the outbox to the callback queue until `shutdown`: each event
    /// confirmed by the broker before its row goes. Every worker runs one, callbacks
    /// configured or not (an ending whose destination it does not know is recorded failed);
    /// `SKIP LOCKED` keeps them apart.
    pub async fn relay(
        &self,
        channel: ConfirmChannel,
        topology: Topology,
        shutdown: CancellationToken,
    ) {
        loop {
            let moved =
                tokio::time::timeout(RELAY_BOUND, self.relay_once(&channel, &topology)).await;
            let busy = match moved {
                Ok(Ok(moved)) => moved == RELAY_BATCH as usize,
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not move callbacks to the queue");
                    false
                }
                Err(_) => {
                    tracing::warn!("moving callbacks to the queue took too long; trying again");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELAY_EVERY) => {}
            }
        }
    }

    /// One look: the endings it took off the outbox.
    async fn relay_once(
        &self,
        channel: &ConfirmChannel,
        topology: &Topology,
    ) -> anyhow::Result<usize> {
        let taken = self.store.due_callbacks(RELAY_BATCH).await?;
        if taken.due.is_empty() {
            return Ok(0);
        }
        let mut done = Vec::with_capacity(taken.due.len());
        let mut refused = None;
        for due in &taken.due {
            let message = self.message(due);
            if let DispatchMessage::CallbackV1(callback) = &message
                && self.destinations.get(&callback.destination).is_none()
            {
                let answer = format!("destination {:?} is not configured", callback.destination);
                self.record(callback, CallbackState::Failed, &answer, Outcome::Done)
                    .await;
                done.push((due.record.id.clone(), due.ending));
                continue;
            }
            match channel
                .publish(
                    &topology.exchange(),
                    &topology.routing_key(&message),
                    &message,
                )
                .await
            {
                Ok(Published::Stored) => done.push((due.record.id.clone(), due.ending)),
                // Full or unroutable: the rest waits in the outbox for the next look.
                Ok(other) => {
                    refused = Some(format!("{other:?}"));
                    break;
                }
                Err(e) => {
                    refused = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        let moved = done.len();
        taken.done(&done).await?;
        if let Some(refused) = refused {
            anyhow::bail!("the broker did not take a callback ({refused}); {moved} moved");
        }
        Ok(moved)
    }

    fn message(&self, due: &DueCallback) -> DispatchMessage {
        let record = &due.record;
        let dispatch = DispatchId::parse(&record.id).expect("the store holds dispatch ids");
        DispatchMessage::CallbackV1(Callback {
            dispatch,
            ending: due.ending,
            destination: record.callback.clone().unwrap_or_default(),
            webhook_id: Callback::webhook_id(&dispatch, due.ending),
            event: event(record, due.ending, &self.flyte),
            ended_at: record.finished_at.unwrap_or(record.updated_at),
            attempts: 0,
        })
    }
}

/// How long to wait after `attempts` failed deliveries: 1, 2, 4 … 64 s, the upper half
/// jittered, so receivers coming back are not met by every retry at once.
fn pause_after(attempts: u32) -> Duration {
    let ceiling = Duration::from_secs(1 << attempts.saturating_sub(1).min(6));
    ceiling / 2 + (ceiling / 2).mul_f64(fastrand::f64())
}

/// An error without the URL (which may hold a token in its query).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(error);
    let mut deepest = None;
    while let Some(next) = cause {
        deepest = Some(next.to_string());
        cause = next.source();
    }
    match deepest {
        Some(detail) => format!("{kind} ({detail})"),
        None => kind.to_string(),
    }
}

fn truncated(text: &str) -> String {
    if text.len() <= ANSWER_BYTES {
        return text.to_string();
    }
    let mut end = ANSWER_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The event a destination is sent: Standard Webhooks' `{type, timestamp, data}`, `data` the
/// dispatch as `GET /dispatches/{id}` showed its `ending`-th end.
fn event(record: &DispatchRecord, ending: i32, flyte: &FlyteClient) -> Value {
    let task = match (
        &record.project,
        &record.domain,
        &record.task_name,
        &record.task_version,
    ) {
        (Some(project), Some(domain), Some(name), Some(version)) => {
            json!({"project": project, "domain": domain, "name": name, "version": version})
        }
        _ => Value::Null,
    };
    let url = record.run_url.clone().or_else(|| {
        Some(flyte.run_url(&flyte_client::RunId {
            org: flyte.org().to_string(),
            project: record.project.clone()?,
            domain: record.domain.clone()?,
            name: record.run_name.clone(),
        }))
    });
    let status = record.status.0;
    let outputs_truncated = record
        .outputs
        .as_ref()
        .is_some_and(|outputs| outputs.to_string().len() > MAX_OUTPUTS_BYTES);
    let outputs = record.outputs.as_ref().filter(|_| !outputs_truncated);
    json!({
        "type": format!("dispatch.{status}"),
        "timestamp": record.finished_at.unwrap_or(record.updated_at),
        "data": {
            "id": record.id,
            "status": status,
            "task": task,
            "delivery_id": record.delivery_id,
            "route": record.route,
            "request_id": record.request_id,
            "run_name": record.run_name,
            "url": url,
            "outputs": outputs,
            "outputs_truncated": outputs_truncated,
            "ending": ending,
            "error": record.error,
            "error_kind": record.error_kind,
            "attempts": record.attempts,
            "received_at": record.received_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
        }
    })
}

/// How many endings one look at the outbox takes.
const RELAY_BATCH: i64 = 100;
/// How often an idle relay looks at the outbox.
const RELAY_EVERY: Duration = Duration::from_millis(200);
/// The longest one look may hold its rows (and a database connection).
const RELAY_BOUND: Duration = Duration::from_secs(30);
/// How long an event whose destination has no free slot waits before it is tried again.
const WAIT_FOR_DESTINATION: Duration = Duration::from_secs(1);
/// Outputs larger than this are left out of the event (`outputs_truncated`): the receiver
/// reads them from `GET /dispatches/{id}`.
const MAX_OUTPUTS_BYTES: usize = 256 * 1024;
