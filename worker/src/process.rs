//! One dispatch, one attempt: claim it in the status store, resolve the task, convert the
//! inputs, create the run under the name derived from the dispatch id, record the result. The
//! caller acks only after this returned, so a crash at any point means a redelivery, and the
//! derived run name makes the redelivery find the run instead of starting a second one.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use flyhook_contract::DispatchStatus;
use flyhook_contract::dispatch::{Dispatch, DispatchId, Ignored};
use flyhook_store::{Claim, ClaimRequest};
use flyhook_store::{DispatchStore, StoreFault};
use flyte_client::messages::{CreateRunRequest, Labels, RunSpec};
use flyte_client::{ActionPhase, Disposition, FlyteClient, FlyteError, StartedRun, convert_inputs};

use crate::batch::{Batcher, WriteError};
use crate::metrics::WorkerMetrics;

/// What to do with the delivery after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished with it (run started, or nothing left to do): ack.
    Done,
    /// The status store is unreachable, so nothing can be recorded: hold the delivery
    /// (neither ack, which would lose the outcome, nor requeue, which would count towards
    /// the broker's delivery limit) and process it again once the store is back.
    StoreUnavailable,
    /// A transient failure: try again after this long, through the delay queues.
    RetryAfter(Duration),
    /// Given up (recorded `failed` or `dead_lettered` with the reason): to the dead-letter queue.
    DeadLetter,
    /// Its debounce window is open, or its concurrency key full: the same message comes back
    /// after this long and asks again (nothing failed, so no retry is counted).
    WaitTurn(Duration),
}

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// Retrying cannot help (no such task, inputs that do not fit).
    #[error("{0}")]
    Permanent(String),
    #[error(transparent)]
    Transient(FlyteError),
}

impl From<FlyteError> for StartError {
    fn from(e: FlyteError) -> Self {
        match e.disposition() {
            Disposition::Permanent => StartError::Permanent(e.to_string()),
            Disposition::Retry | Disposition::AlreadyExists => StartError::Transient(e),
        }
    }
}

/// The most dispatches one status write covers.
const MAX_BATCH: usize = 128;

/// Deliveries RabbitMQ may hand back unsettled (the worker holding it died) before the dispatch
/// is recorded `dead_lettered` as a poison message: well below the broker's own delivery limit,
/// which would dead-letter it unrecorded (and counts differently on RabbitMQ 3.10 and 4.x).
pub const MAX_REDELIVERIES: i32 = 10;

/// Tries at aborting the run of a dispatch cancelled while it was starting.
const ABORT_TRIES: u32 = 6;

/// Processes dispatches; shared by all of a worker's concurrent tasks.
#[derive(Debug, Clone)]
pub struct Processor {
    store: DispatchStore,
    claims: Batcher<ClaimRequest, Claim>,
    runs_started: Batcher<(DispatchId, String, ActionPhase), DispatchStatus>,
    flyte: FlyteClient,
    max_attempts: u32,
    /// Caps runs started per second per Flyte project.
    throttle: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    metrics: WorkerMetrics,
}

/// Label that ties a Flyte run back to its dispatch.
pub const DISPATCH_LABEL: &str = "flyhook-dispatch";
/// Label that ties a Flyte run back to the request that brought its dispatch.
pub const REQUEST_LABEL: &str = "flyhook-request-id";

/// Exponential backoff with full jitter, capped at 30 s.
pub fn backoff(attempt: i32, floor: Option<Duration>) -> Duration {
    let exp = 200u64.saturating_mul(1 << attempt.clamp(0, 8));
    let ceiling = Duration::from_millis(exp.min(30_000));
    let jittered = ceiling.mul_f64(fastrand::f64());
    jittered.max(floor.unwrap_or_default())
}

impl Processor {
    /// Starts the status writers, so call within a Tokio runtime.
    pub fn new(
        store: DispatchStore,
        flyte: FlyteClient,
        max_attempts: u32,
        max_runs_per_second_per_project: Option<u32>,
        metrics: WorkerMetrics,
    ) -> Processor {
        let throttle = max_runs_per_second_per_project
            .and_then(NonZeroU32::new)
            .map(|rate| Arc::new(RateLimiter::keyed(Quota::per_second(rate))));
        let claims = Batcher::start(MAX_BATCH, |r: &ClaimRequest| r.dispatch.id.to_string(), {
            let store = store.clone();
            move |requests: Arc<[ClaimRequest]>| {
                let store = store.clone();
                async move { store.claim_all(&requests).await }
            }
        });
        let runs_started = Batcher::start(
            MAX_BATCH,
            |(id, _, _): &(DispatchId, String, ActionPhase)| id.to_string(),
            {
                let store = store.clone();
                move |started: Arc<[(DispatchId, String, ActionPhase)]>| {
                    let store = store.clone();
                    async move { store.record_all_running(&started).await }
                }
            },
        );
        Processor {
            store,
            claims,
            runs_started,
            flyte,
            max_attempts,
            throttle,
            metrics,
        }
    }

    pub fn store(&self) -> &DispatchStore {
        &self.store
    }

    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    pub(crate) fn flyte(&self) -> &FlyteClient {
        &self.flyte
    }

    pub async fn record_ignored(&self, ignored: &Ignored) -> Outcome {
        match self.store.record_ignored(ignored).await {
            Ok(()) => {
                self.metrics.count("ignored");
                Outcome::Done
            }
            Err(e) => self.unrecorded(&ignored.id, &e),
        }
    }

    /// What to do when a store call about `id` failed: hold on through an outage; data the
    /// store refuses is kept in the dead-letter queue (its texts are made storable before
    /// they are written, so this is a defect, and said loudly).
    pub(crate) fn unrecorded(&self, id: &DispatchId, e: &sqlx::Error) -> Outcome {
        match StoreFault::of(e) {
            StoreFault::Unavailable => {
                tracing::warn!(dispatch = %id, error = %e, "status store unavailable; holding the delivery");
                Outcome::StoreUnavailable
            }
            StoreFault::Refused => {
                tracing::error!(dispatch = %id, error = %e, "the status store refused a record; dead-lettering the delivery");
                self.metrics.count("refused");
                Outcome::DeadLetter
            }
        }
    }

    /// A dispatch found ended while it waited (for its burst, for a slot): its delivery goes.
    pub(crate) fn ended_while_waiting(&self, id: &DispatchId, status: DispatchStatus) -> Outcome {
        tracing::info!(dispatch = %id, %status, "ended while waiting to start; dropping this delivery");
        self.metrics.count("already_handled");
        Outcome::Done
    }

    /// A dispatch ended before any run (`skipped`, `coalesced`), once that is recorded
    /// (counted as `label`); held or dead-lettered as the store's answer says otherwise.
    pub(crate) fn ended_unstarted(
        &self,
        id: &DispatchId,
        recorded: Result<(), sqlx::Error>,
        label: &'static str,
    ) -> Outcome {
        match recorded {
            Ok(()) => {
                self.metrics.count(label);
                Outcome::Done
            }
            Err(e) => self.unrecorded(id, &e),
        }
    }

    /// A message whose body cannot be read, published under `id`: recorded `failed`.
    pub async fn record_unreadable(&self, id: &DispatchId, reason: &str) -> Outcome {
        match self.store.record_unreadable(id, reason).await {
            Ok(()) => Outcome::DeadLetter,
            Err(e) => match self.unrecorded(id, &e) {
                Outcome::StoreUnavailable => Outcome::StoreUnavailable,
                _ => Outcome::DeadLetter,
            },
        }
    }

    /// One attempt at `dispatch`; `redelivered`: RabbitMQ handed this message out before and it
    /// was never settled.
    pub async fn process(&self, dispatch: &Dispatch, redelivered: bool) -> Outcome {
        let id = dispatch.id;
        if dispatch.replay
            && let Err(e) = self.store.reopen_for_replay(&id).await
        {
            return self.unrecorded(&id, &e);
        }
        // Its burst, then a slot: a dispatch waiting for either is not yet being attempted.
        if let Some(key) = &dispatch.debounce
            && let Some(outcome) = crate::debounce::admit(self, dispatch, key).await
        {
            return outcome;
        }
        if let Some(key) = &dispatch.concurrency
            && let Some(outcome) = crate::concurrency::admit(self, dispatch, key).await
        {
            return outcome;
        }
        let request = ClaimRequest {
            dispatch: dispatch.clone(),
            redelivered,
        };
        match self.claims.write(request).await {
            Ok(Claim::Proceed { redeliveries, .. }) if redeliveries >= MAX_REDELIVERIES => {
                let reason = format!(
                    "delivered {} times without an outcome (did it stop the workers that took it?); kept in the dead-letter queue",
                    redeliveries + 1
                );
                tracing::error!(dispatch = %id, %reason, "poison message dead-lettered");
                return self
                    .settle_recorded(
                        &id,
                        self.store
                            .record_given_up(&id, DispatchStatus::DeadLettered, &reason)
                            .await
                            .map_err(WriteError::from),
                        Outcome::DeadLetter,
                        "poisoned",
                    )
                    .await;
            }
            Ok(Claim::Proceed { .. }) => {}
            Ok(Claim::Settled(status)) => {
                tracing::info!(dispatch = %id, %status, "already handled; dropping this delivery");
                self.metrics.count("already_handled");
                return Outcome::Done;
            }
            // This one dispatch's data: it ends `failed`, the others of its batch went on.
            Err(e) if StoreFault::of(&e) == StoreFault::Refused => {
                let reason = format!("the status store cannot hold this dispatch: {e}");
                tracing::warn!(dispatch = %id, %reason, "dispatch failed");
                let recorded = self
                    .store
                    .record_refused(dispatch, &reason)
                    .await
                    .map_err(WriteError::from);
                return self
                    .settle_recorded(&id, recorded, Outcome::DeadLetter, "refused")
                    .await;
            }
            // Without a record we must not go on.
            Err(e) => return self.unrecorded(&id, &e),
        };
        // The count the message carries; the record's `attempts` also counts crash redeliveries.
        let attempt = dispatch.retries + 1;
        let (result, outcome, label) = match self.start_run(dispatch).await {
            Ok(started) => {
                let url = self.flyte.run_url(&started.id);
                tracing::info!(dispatch = %id, run = %started.id, already_existed = started.already_existed, "run started");
                if !started.already_existed {
                    let waited = (chrono::Utc::now() - dispatch.received_at)
                        .to_std()
                        .unwrap_or_default();
                    self.metrics
                        .accept_to_run_started
                        .observe(waited.as_secs_f64());
                }
                let recorded = match self
                    .runs_started
                    .write((id, url, started.status.phase))
                    .await
                {
                    // Cancelled while we were starting it: the run must not go on.
                    Ok(DispatchStatus::Aborted) => {
                        self.abort_cancelled(&id, &started).await;
                        Ok(())
                    }
                    // Running (by us, or by another delivery of the same dispatch) or beyond.
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                (recorded, Outcome::Done, "started")
            }
            Err(StartError::Permanent(reason)) => {
                tracing::warn!(dispatch = %id, %reason, "dispatch failed");
                let recorded = self
                    .store
                    .record_given_up(&id, DispatchStatus::Failed, &reason)
                    .await
                    .map_err(WriteError::from);
                (recorded, Outcome::DeadLetter, "failed")
            }
            Err(StartError::Transient(e)) if attempt >= self.max_attempts => {
                let reason = format!("gave up after {attempt} attempts: {e}");
                tracing::warn!(dispatch = %id, %reason, "dispatch dead-lettered");
                let recorded = self
                    .store
                    .record_given_up(&id, DispatchStatus::DeadLettered, &reason)
                    .await
                    .map_err(WriteError::from);
                (recorded, Outcome::DeadLetter, "dead_lettered")
            }
            Err(StartError::Transient(e)) => {
                tracing::info!(dispatch = %id, attempt, error = %e, "will retry");
                let recorded = self
                    .store
                    .record_retryable_error(&id, &e.to_string())
                    .await
                    .map_err(WriteError::from);
                (
                    recorded,
                    Outcome::RetryAfter(backoff(attempt as i32, e.retry_after)),
                    "retried",
                )
            }
        };
        self.settle_recorded(&id, result, outcome, label).await
    }

    /// The outcome once it is recorded; if it could not be, the delivery is held and the
    /// next try repeats the (idempotent) work and records it.
    async fn settle_recorded(
        &self,
        id: &DispatchId,
        recorded: Result<(), WriteError>,
        outcome: Outcome,
        label: &'static str,
    ) -> Outcome {
        match recorded {
            Ok(()) => {
                self.metrics.count(label);
                outcome
            }
            Err(e) => {
                tracing::warn!(dispatch = %id, error = %e, "could not record the outcome");
                self.unrecorded(id, &e)
            }
        }
    }

    /// Aborts the run of a dispatch cancelled while it was starting, retrying until Flyte
    /// confirms; if it never does, the dispatch's record says so.
    async fn abort_cancelled(&self, id: &DispatchId, started: &StartedRun) {
        let mut last_error = None;
        for attempt in 0..ABORT_TRIES {
            // 1, 2, 4, … 16 s: a Flyte that blinks is waited out (about half a minute).
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
            }
            match self
                .flyte
                .abort_run(
                    &started.id,
                    "the flyhook dispatch was cancelled while starting",
                )
                .await
            {
                Ok(()) => {
                    tracing::info!(run = %started.id, "aborted a run whose dispatch was cancelled");
                    return;
                }
                // Nothing left to abort.
                Err(e) if e.code == flyte_client::Code::NotFound => return,
                Err(e) => {
                    tracing::warn!(run = %started.id, attempt, error = %e, "could not abort the run of a cancelled dispatch");
                    let permanent = e.disposition() == Disposition::Permanent;
                    last_error = Some(e);
                    if permanent {
                        break;
                    }
                }
            }
        }
        let note = format!(
            "cancelled while starting; Flyte did not confirm the abort of run {}: {}",
            started.id.name,
            last_error.map_or_else(String::new, |e| e.to_string())
        );
        if let Err(e) = self.store.note_error(id, &note).await {
            tracing::warn!(dispatch = %id, error = %e, %note, "could not record that the abort is unconfirmed");
        }
    }

    async fn start_run(&self, dispatch: &Dispatch) -> Result<StartedRun, StartError> {
        let task = &dispatch.task;
        let task_id =
            self.flyte
                .task_id(task.project(), task.domain(), task.name(), task.version());
        let spec = self.flyte.task_spec(&task_id).await?;
        let inputs = convert_inputs(&spec, &dispatch.inputs)
            .map_err(|e| StartError::Permanent(format!("invalid inputs: {e}")))?;
        let run_id = self
            .flyte
            .run_id(task.project(), task.domain(), &dispatch.id.run_name());
        if let Some(throttle) = &self.throttle {
            throttle.until_key_ready(&task.project().to_string()).await;
        }
        let request = CreateRunRequest {
            run_id,
            task_id,
            inputs,
            run_spec: Some(RunSpec {
                labels: Some(Labels {
                    values: BTreeMap::from_iter(
                        [
                            (DISPATCH_LABEL, Some(dispatch.id.to_string())),
                            (REQUEST_LABEL, dispatch.request_id.clone()),
                        ]
                        .into_iter()
                        .filter_map(|(label, value)| Some((label.to_string(), value?))),
                    ),
                }),
            }),
        };
        Ok(self.flyte.create_run(&request).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_the_servers_floor() {
        for attempt in 0..20 {
            let d = backoff(attempt, None);
            assert!(d <= Duration::from_secs(30), "{attempt}: {d:?}");
        }
        assert!(backoff(1, None) <= Duration::from_millis(400));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}
