//! Accepting a dispatch: choose its id, check its inputs when the task's interface is known,
//! publish it durably, and say where to follow it.
//!
//! Intake never waits on Flyte. Inputs are checked only against an interface already cached;
//! on a miss the dispatch is accepted and the interface fetched in the background for the next
//! request (the worker validates anyway and records `failed` with the reason).
//!
//! Inputs the status store cannot hold (a NUL anywhere) are refused at the door, naming the
//! field, so nothing is accepted that could never be recorded. A provider delivery that fans
//! out to several routes is published as one message, confirmed for all routes or for none.
//! An `Idempotency-Key` reused with other inputs is refused when the first use is recorded
//! (a quick lookup, skipped while PostgreSQL is away: then the worker keeps the first inputs).

use std::time::Duration;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::sources::Source;
use actix_web::http::header::HeaderMap;
use chrono::Utc;
use flyhook_contract::dispatch::{Delivery as DeliveryMessage, DeliveryOrigin, Dispatch, Ignored};
use flyhook_contract::flow::ConcurrencyKey;
use flyhook_contract::principal::Principal;
use flyhook_contract::scopes::Scopes;
use flyhook_contract::storable::unstorable_field;
use flyhook_contract::{DispatchId, DispatchMessage, DispatchStatus, IdIssuer, TaskRef};
use flyhook_store::DispatchStore;
use flyhook_store::{ListFilter, ReplaySource};
use flyte_client::{FlyteClient, TaskId, convert_inputs};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::observe::RequestId;
use crate::policies::TaskPolicies;
use crate::publisher::{PublishError, Publisher};

/// What a provider delivery became.
#[derive(Debug)]
pub enum Delivery {
    Routed(Vec<RoutedDispatch>),
    Ignored(DispatchId),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoutedDispatch {
    pub route: String,
    #[serde(flatten)]
    pub accepted: Accepted,
}

/// What a `202` says.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[schema(value_type = String, example = "0193b4a2f1c07e3a9d5e2b8c4f6a1d0e9b7c3a5f")]
    pub id: DispatchId,
    pub status: DispatchStatus,
    pub status_url: String,
    pub run_name: String,
    pub url: String,
}

/// What a bulk replay matched and did (`POST /dispatches/replay`).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct BulkReplay {
    /// Replayable dispatches the filter matched (or the ids given).
    pub matched: usize,
    /// On a dry run, the dispatches matched: send them back as `ids` to replay exactly these,
    /// not whatever matches the filters by the time the replay is confirmed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub ids: Vec<DispatchId>,
    /// Queued again (none on a dry run).
    pub replayed: usize,
    /// Matched but not queued again (changed since, or the broker refused).
    pub refused: usize,
}

/// The most dispatches one bulk replay takes: a larger set is `flyhook replay`'s, from a
/// shell, not one HTTP request's.
pub const MAX_BULK_REPLAY: usize = 1000;

/// The longest intake waits for the status store to say whether an idempotency key was used
/// before (intake must not depend on PostgreSQL), and how long it then stops asking.
const IDEMPOTENCY_LOOKUP: Duration = Duration::from_millis(250);
const IDEMPOTENCY_LOOKUP_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Intake {
    issuer: IdIssuer,
    publisher: Publisher,
    flyte: FlyteClient,
    store: DispatchStore,
    policies: TaskPolicies,
    /// Until when idempotency lookups are skipped, because the store did not answer the last.
    lookups_paused_until: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Interfaces being fetched, so a burst of misses fetches each once.
    fetching: Arc<Mutex<HashSet<TaskId>>>,
}

fn check_storable(inputs: &Map<String, Value>) -> Result<(), ApiError> {
    match unstorable_field(inputs) {
        Some(unstorable) => Err(ApiError::UnstorableInput(unstorable)),
        None => Ok(()),
    }
}

/// What a replay sends again: the task, its inputs, who sent it, its callback and the
/// concurrency key it ran under (a replay is held to it too; it is debounced no more).
type ReplayParts = (
    TaskRef,
    Map<String, Value>,
    String,
    Option<String>,
    Option<ConcurrencyKey>,
);

fn replay_parts(source: ReplaySource) -> Result<ReplayParts, ApiError> {
    let task = TaskRef::parse(
        &source.project,
        &source.domain,
        &source.task_name,
        &source.task_version,
    )
    .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("a recorded task is invalid: {e}")))?;
    let inputs = match source.inputs {
        Value::Object(map) => map,
        _ => return Err(ApiError::NotReplayable),
    };
    Ok((
        task,
        inputs,
        source.api_key,
        source.callback,
        source.concurrency_key.map(|key| key.0),
    ))
}

/// The Flyte id of a task reference, in the client's org.
pub fn flyte_task_id(flyte: &FlyteClient, task: &TaskRef) -> TaskId {
    flyte.task_id(task.project(), task.domain(), task.name(), task.version())
}

impl Intake {
    pub fn new(
        issuer: IdIssuer,
        publisher: Publisher,
        flyte: FlyteClient,
        store: DispatchStore,
        policies: TaskPolicies,
    ) -> Intake {
        Intake {
            issuer,
            publisher,
            flyte,
            store,
            policies,
            lookups_paused_until: Arc::default(),
            fetching: Arc::default(),
        }
    }

    pub fn issuer(&self) -> &IdIssuer {
        &self.issuer
    }

    pub fn flyte(&self) -> &FlyteClient {
        &self.flyte
    }

    /// `callback`: the destination the request named (`Flyhook-Callback`), if any; `headers`
    /// the request's (for a concurrency key read from one).
    pub async fn accept(
        &self,
        caller: &Caller,
        task: TaskRef,
        inputs: Map<String, Value>,
        idempotency_key: Option<&str>,
        callback: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Accepted, ApiError> {
        check_storable(&inputs)?;
        let callback = self.policies.callback(&caller.key_name, &task, callback)?;
        let (debounce, concurrency) =
            self.policies
                .flow_keys(&caller.key_name, &task, &inputs, |name| {
                    headers.get(name).and_then(|v| v.to_str().ok())
                });
        self.check_inputs(&task, &inputs)?;
        let id = match idempotency_key {
            Some(key) => {
                let id = self
                    .issuer
                    .issue_for_idempotency_key(&caller.key_name, &task, key);
                self.check_key_not_reused(&id, &inputs).await?;
                id
            }
            None => self.issuer.issue(),
        };
        let sender = &caller.key_name;
        let (mut dispatch, accepted) =
            self.prepare(id, task, inputs, sender, caller.request_id.as_str());
        dispatch.callback = callback;
        dispatch.debounce = debounce;
        dispatch.concurrency = concurrency;
        self.enqueue((dispatch, accepted)).await
    }

    /// Turns a verified provider delivery into one dispatch per matching route, published as
    /// one message, or records it ignored. Ids derive from `dedup_key` (what the provider's
    /// signature covers, see `Scheme::dedup_key`), so a retried or replayed delivery is the same
    /// dispatches and starts nothing new. Inputs are checked only for what cannot be stored (a
    /// provider cannot fix its payload to fit a task: the worker records a mismatch instead).
    /// `delivery_id` is the provider's own id, recorded so the delivery can be found by it.
    pub async fn accept_delivery(
        &self,
        source: &Source,
        dedup_key: &str,
        delivery_id: &str,
        headers: &[(String, String)],
        payload: &Value,
        request_id: &RequestId,
    ) -> Result<Delivery, ApiError> {
        let sender = Principal::Source(source.name.clone()).to_string();
        let mut messages = Vec::new();
        let mut routed = Vec::new();
        for route in source.routes.iter().filter(|r| r.matches(headers, payload)) {
            let id = self
                .issuer
                .issue_for_delivery(&source.name, Some(&route.name), dedup_key);
            let inputs = route.inputs(headers, payload);
            check_storable(&inputs)?;
            let (mut dispatch, accepted) =
                self.prepare(id, route.task.clone(), inputs, &sender, request_id.as_str());
            dispatch.delivery = Some(DeliveryOrigin {
                route: route.name.clone(),
                delivery_id: delivery_id.to_string(),
            });
            dispatch.callback = route.callback.clone();
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            dispatch.debounce = route
                .debounce
                .as_ref()
                .and_then(|p| p.key_for(payload, header));
            dispatch.concurrency = route
                .concurrency
                .as_ref()
                .map(|p| p.key_for(payload, header));
            messages.push(dispatch);
            routed.push(RoutedDispatch {
                route: route.name.clone(),
                accepted,
            });
        }
        if !routed.is_empty() {
            let message = match messages.len() {
                1 => DispatchMessage::DispatchV1(messages.remove(0)),
                _ => DispatchMessage::DeliveryV1(DeliveryMessage {
                    dispatches: messages,
                }),
            };
            self.publish(&message).await?;
            tracing::debug!(%sender, dispatches = routed.len(), "delivery queued");
            return Ok(Delivery::Routed(routed));
        }
        let id = self
            .issuer
            .issue_for_delivery(&source.name, None, dedup_key);
        let message = DispatchMessage::IgnoredV1(Ignored {
            id,
            source: sender,
            delivery_id: dedup_key.to_string(),
            provider_delivery_id: Some(delivery_id.to_string()),
            received_at: Utc::now(),
            request_id: Some(request_id.to_string()),
            callback: source.callback.clone(),
        });
        self.publish(&message).await?;
        Ok(Delivery::Ignored(id))
    }

    /// Sends a finished dispatch again. Under its own id (the default) it cannot start a
    /// second run: a run that exists is found again. With `new_run`, it becomes a new dispatch
    /// (new id, new run) with the same task and inputs. Only a task within `scopes` is replayed.
    pub async fn replay(
        &self,
        store: &DispatchStore,
        id: &DispatchId,
        new_run: bool,
        scopes: &Scopes,
        request_id: &RequestId,
    ) -> Result<Accepted, ApiError> {
        let source = store
            .replay_source(id)
            .await
            .map_err(ApiError::store_unavailable)?;
        let (task, inputs, sender, callback, concurrency) =
            replay_parts(source.ok_or(ApiError::NotReplayable)?)?;
        if !scopes.allows(&task) {
            return Err(ApiError::OutOfScope);
        }
        if new_run {
            let fresh = self.issuer.issue();
            let (mut dispatch, accepted) =
                self.prepare(fresh, task, inputs, &sender, request_id.as_str());
            dispatch.callback = callback;
            dispatch.concurrency = concurrency;
            return self.enqueue((dispatch, accepted)).await;
        }
        let source = store
            .requeue_for_replay(id)
            .await
            .map_err(ApiError::store_unavailable)?
            .ok_or(ApiError::NotReplayable)?;
        let previous = source.previous_status.clone();
        // The record keeps its callback: the claim does not overwrite it with none.
        let (task, inputs, sender, _, concurrency) = replay_parts(source)?;
        let (mut dispatch, accepted) =
            self.prepare(*id, task, inputs, &sender, request_id.as_str());
        dispatch.concurrency = concurrency;
        let sent = self.enqueue((dispatch, accepted)).await;
        if sent.is_err() {
            // Not re-sent: leave the record as it was, or it would wait as `queued` forever.
            let _ = store.undo_requeue(id, &previous).await;
        }
        sent
    }

    /// The dispatches `filter` matches, for a bulk replay (at most [`MAX_BULK_REPLAY`]).
    pub async fn matching(
        &self,
        store: &DispatchStore,
        filter: ListFilter,
    ) -> Result<Vec<DispatchId>, ApiError> {
        let ids = store
            .matching_ids(filter, MAX_BULK_REPLAY + 1)
            .await
            .map_err(ApiError::store_unavailable)?;
        if ids.len() > MAX_BULK_REPLAY {
            return Err(ApiError::InvalidField {
                field: "status",
                reason: format!(
                    "more than {MAX_BULK_REPLAY} dispatches match; narrow the filter, or use `flyhook replay`"
                ),
            });
        }
        Ok(ids
            .iter()
            .filter_map(|id| DispatchId::parse(id).ok())
            .collect())
    }

    /// Replays each of `ids` as [`Intake::replay`] would (one not replayable, or outside
    /// `scopes`, is counted refused); returns what it did and the ids it queued.
    pub async fn replay_each(
        &self,
        store: &DispatchStore,
        ids: &[DispatchId],
        scopes: &Scopes,
        request_id: &RequestId,
    ) -> Result<(BulkReplay, Vec<DispatchId>), ApiError> {
        let mut done = BulkReplay {
            matched: ids.len(),
            ..BulkReplay::default()
        };
        let mut queued = Vec::new();
        for (tried, id) in ids.iter().enumerate() {
            match self.replay(store, id, false, scopes, request_id).await {
                Ok(accepted) => {
                    done.replayed += 1;
                    queued.push(accepted.id);
                }
                // The broker or the store went away: the rest would wait for nothing. Stop:
                // a 503 when nothing was sent, else what was done, the rest counted refused.
                Err(
                    e @ (ApiError::BrokerUnavailable
                    | ApiError::AtCapacity
                    | ApiError::StoreUnavailable),
                ) => {
                    if done.replayed == 0 {
                        return Err(e);
                    }
                    done.refused += ids.len() - tried;
                    break;
                }
                Err(e) => {
                    tracing::info!(dispatch = %id, error = %e, "not replayed");
                    done.refused += 1;
                }
            }
        }
        Ok((done, queued))
    }

    /// Publishes one [`Intake::prepare`]d dispatch; its `202` once the broker confirmed it.
    async fn enqueue(
        &self,
        (dispatch, accepted): (Dispatch, Accepted),
    ) -> Result<Accepted, ApiError> {
        let (id, sender) = (dispatch.id, dispatch.api_key.clone());
        self.publish(&DispatchMessage::DispatchV1(dispatch)).await?;
        // The request's access line names the dispatch at `info`; this line is for tracing.
        tracing::debug!(dispatch = %id, %sender, "dispatch queued");
        Ok(accepted)
    }

    /// The message for a dispatch, and what the `202` will say of it.
    fn prepare(
        &self,
        id: DispatchId,
        task: TaskRef,
        inputs: Map<String, Value>,
        sender: &str,
        request_id: &str,
    ) -> (Dispatch, Accepted) {
        let run = self
            .flyte
            .run_id(task.project(), task.domain(), &id.run_name());
        let accepted = Accepted {
            id,
            status: DispatchStatus::Queued,
            status_url: format!("/dispatches/{id}"),
            run_name: run.name.clone(),
            url: self.flyte.run_url(&run),
        };
        let dispatch = Dispatch {
            id,
            task,
            inputs,
            received_at: Utc::now(),
            api_key: sender.to_string(),
            retries: 0,
            request_id: Some(request_id.to_string()),
            replay: false,
            delivery: None,
            callback: None,
            concurrency: None,
            debounce: None,
        };
        (dispatch, accepted)
    }

    /// Refuses a known idempotency key sent with other inputs than its first use recorded.
    /// Best effort within [`IDEMPOTENCY_LOOKUP`]: without an answer the send goes on, and the
    /// worker keeps the first inputs.
    async fn check_key_not_reused(
        &self,
        id: &DispatchId,
        inputs: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let paused_until = *self
            .lookups_paused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if paused_until.is_some_and(|until| tokio::time::Instant::now() < until) {
            return Ok(());
        }
        match tokio::time::timeout(IDEMPOTENCY_LOOKUP, self.store.recorded_inputs(id)).await {
            Ok(Ok(Some(Value::Object(first)))) if &first != inputs => {
                Err(ApiError::IdempotencyKeyReused)
            }
            Ok(Ok(_)) => Ok(()),
            // No answer: intake goes on without, and stops asking for a while.
            unanswered => {
                if let Ok(Err(e)) = unanswered {
                    tracing::debug!(error = %e, "idempotency key not checked: status store unreachable");
                }
                *self
                    .lookups_paused_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some(tokio::time::Instant::now() + IDEMPOTENCY_LOOKUP_PAUSE);
                Ok(())
            }
        }
    }

    async fn publish(&self, message: &DispatchMessage) -> Result<(), ApiError> {
        self.publisher.publish(message).await.map_err(|e| match e {
            // Shedding load is expected under overload, and a line per refusal would add to it.
            PublishError::Saturated | PublishError::Refused => {
                tracing::debug!(error = %e, "dispatch refused: at capacity");
                ApiError::AtCapacity
            }
            _ => {
                tracing::warn!(error = %e, "dispatch not accepted by the broker");
                ApiError::BrokerUnavailable
            }
        })
    }

    fn check_inputs(&self, task: &TaskRef, inputs: &Map<String, Value>) -> Result<(), ApiError> {
        // (Storability is checked apart: it holds for every task, known or not.)
        let task_id = flyte_task_id(&self.flyte, task);
        match self.flyte.cached_task_spec(&task_id) {
            Some(spec) => convert_inputs(&spec, inputs)
                .map(drop)
                .map_err(ApiError::from),
            None => {
                self.fetch_in_background(task_id);
                Ok(())
            }
        }
    }

    fn fetch_in_background(&self, task_id: TaskId) {
        if !self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.clone())
        {
            return;
        }
        let flyte = self.flyte.clone();
        let fetching = self.fetching.clone();
        tokio::spawn(async move {
            if let Err(e) = flyte.task_spec(&task_id).await {
                tracing::debug!(task = %task_id, error = %e, "task interface not fetched");
            }
            fetching
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&task_id);
        });
    }
}
