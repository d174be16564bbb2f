//! One dispatch, one attempt: claim it in the status store, resolve the task, convert the
//! inputs, create the run under the name derived from the dispatch id, record the result. The
//! caller acks only after this returned, so a crash at any point means a redelivery, and the
//! derived run name makes the redelivery find the run instead of starting a second one.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use flyhook_common::dispatch::{Dispatch, DispatchId, Ignored};
use flyhook_common::store::Claim;
use flyhook_common::{DispatchStatus, DispatchStore};
use flyte_client::messages::{CreateRunRequest, Labels, RunSpec};
use flyte_client::{ActionPhase, Disposition, FlyteClient, FlyteError, StartedRun, convert_inputs};

use crate::batch::{Batcher, WriteError};
use crate::metrics::WorkerMetrics;

/// What to do with the delivery after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished with it (run started, or nothing left to do): ack.
    Done,
    /// The status store is unreachable, so nothing can be recorded: hold off, then put the
    /// delivery back (a worker never acks what it could not record).
    Requeue(Duration),
    /// A transient failure: try again after this long, through the delay queues.
    RetryAfter(Duration),
    /// Given up (recorded `failed` or `dead_lettered` with the reason): to the dead-letter queue.
    DeadLetter,
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

/// Processes dispatches; shared by all of a worker's concurrent tasks.
#[derive(Debug, Clone)]
pub struct Processor {
    store: DispatchStore,
    claims: Batcher<Dispatch, Claim>,
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
        let claims = Batcher::start(MAX_BATCH, |d: &Dispatch| d.id.to_string(), {
            let store = store.clone();
            move |dispatches: Vec<Dispatch>| {
                let store = store.clone();
                async move { store.claim_all(&dispatches).await }
            }
        });
        let runs_started = Batcher::start(
            MAX_BATCH,
            |(id, _, _): &(DispatchId, String, ActionPhase)| id.to_string(),
            {
                let store = store.clone();
                move |started: Vec<(DispatchId, String, ActionPhase)>| {
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

    pub async fn record_ignored(&self, ignored: &Ignored) -> Outcome {
        match self.store.record_ignored(ignored).await {
            Ok(()) => {
                self.metrics.count("ignored");
                Outcome::Done
            }
            Err(e) => {
                tracing::warn!(dispatch = %ignored.id, error = %e, "status store unavailable");
                Outcome::Requeue(backoff(3, None))
            }
        }
    }

    pub async fn process(&self, dispatch: &Dispatch) -> Outcome {
        let id = dispatch.id;
        match self.claims.write(dispatch.clone()).await {
            Ok(Claim::Proceed { .. }) => {}
            Ok(Claim::Settled(status)) => {
                tracing::info!(dispatch = %id, %status, "already handled; dropping this delivery");
                self.metrics.count("already_handled");
                return Outcome::Done;
            }
            // Without a record we must not go on: requeue until the store is back.
            Err(e) => {
                tracing::warn!(dispatch = %id, error = %e, "status store unavailable");
                self.metrics.count("requeued");
                return Outcome::Requeue(backoff(3, None));
            }
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
                        self.abort_cancelled(&started).await;
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
        match result {
            Ok(()) => {
                self.metrics.count(label);
                outcome
            }
            // The outcome is not recorded: keep the message, the next delivery repeats the
            // (idempotent) work and records it.
            Err(e) => {
                tracing::warn!(dispatch = %id, error = %e, "could not record the outcome");
                self.metrics.count("requeued");
                Outcome::Requeue(backoff(attempt as i32, None))
            }
        }
    }

    async fn abort_cancelled(&self, started: &StartedRun) {
        match self
            .flyte
            .abort_run(
                &started.id,
                "the flyhook dispatch was cancelled while starting",
            )
            .await
        {
            Ok(()) => {
                tracing::info!(run = %started.id, "aborted a run whose dispatch was cancelled")
            }
            Err(e) => {
                tracing::warn!(run = %started.id, error = %e, "could not abort the run of a cancelled dispatch")
            }
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
