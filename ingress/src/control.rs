//! What senders do with a dispatch after intake: wait for it to end, cancel it, list them.

use std::time::Duration;

use flyhook_contract::{DispatchId, DispatchStatus, IdIssuer};
use flyhook_store::DispatchStore;
use flyhook_store::history::DispatchEvent;
use flyhook_store::{DispatchRecord, ListFilter};
use flyte_client::{Code, FlyteClient, RunId, RunName};
use serde_json::Value;

use crate::error::ApiError;
use crate::waiters::Waiters;

/// How often a waiter looks again even without a notification, in case one was missed.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Control {
    store: DispatchStore,
    flyte: FlyteClient,
    waiters: Waiters,
}

/// Where a waited-on dispatch got to.
#[derive(Debug)]
pub enum Waited {
    Finished(DispatchRecord),
    /// Still going when the wait ended (the record, if there was one).
    Pending(Option<DispatchRecord>),
}

impl Control {
    pub fn new(store: DispatchStore, flyte: FlyteClient, waiters: Waiters) -> Control {
        Control {
            store,
            flyte,
            waiters,
        }
    }

    pub async fn get(&self, id: &DispatchId) -> Result<Option<DispatchRecord>, ApiError> {
        self.store
            .get(id)
            .await
            .map_err(ApiError::store_unavailable)
    }

    /// Holds until the dispatch is terminal or `within` passes. Holds nothing else: the queue
    /// message was acked long ago, or is waiting for a worker.
    pub async fn wait(&self, id: &DispatchId, within: Duration) -> Waited {
        let guard = self.waiters.watch(&id.to_string());
        let deadline = tokio::time::Instant::now() + within;
        let mut last = None;
        let mut marked = false;
        loop {
            // Register for the wake-up before reading, so a change in between is not missed.
            let notified = guard.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Only marked dispatches are notified about; marking before reading means a change
            // after the read is heard.
            if !marked {
                let received_at = id.issued_at().unwrap_or_else(chrono::Utc::now);
                match self.store.mark_awaited(id, received_at).await {
                    Ok(()) => marked = true,
                    Err(e) => tracing::debug!(error = %e, "status store unreachable while waiting"),
                }
            }
            match self.store.get(id).await {
                Ok(Some(record)) if record.status.0.is_terminal() => {
                    return Waited::Finished(record);
                }
                Ok(record) => last = record.or(last),
                // The store is away; keep waiting, the answer will say `202`.
                Err(e) => tracing::debug!(error = %e, "status store unreachable while waiting"),
            }
            let next_look = deadline.min(tokio::time::Instant::now() + RECHECK);
            let _ = tokio::time::timeout_at(next_look, notified).await;
            if tokio::time::Instant::now() >= deadline {
                return Waited::Pending(last);
            }
        }
    }

    /// Cancels the dispatch: one not yet started is recorded `aborted` (the worker drops its
    /// message), a running one is aborted in Flyte, a finished one is a conflict.
    pub async fn cancel(&self, id: &DispatchId, reason: &str) -> Result<DispatchRecord, ApiError> {
        // A worker may move the dispatch on between our read and our write; every write is
        // conditional, so look again and decide again (a dispatch only moves forward).
        for _ in 0..3 {
            let record = self.get(id).await?;
            let status = record
                .as_ref()
                .map_or(DispatchStatus::Queued, |r| r.status.0);
            match status {
                DispatchStatus::Queued | DispatchStatus::Starting => {
                    let received_at = record
                        .as_ref()
                        .map(|r| r.received_at)
                        .or_else(|| id.issued_at())
                        .unwrap_or_else(chrono::Utc::now);
                    if self
                        .store
                        .abort_unstarted(id, received_at, &format!("cancelled: {reason}"))
                        .await
                        .map_err(ApiError::store_unavailable)?
                    {
                        return self.recorded(id).await;
                    }
                }
                DispatchStatus::Running => {
                    let record = record.ok_or(ApiError::StoreUnavailable)?;
                    self.abort_in_flyte(&record, reason).await?;
                    let recorded_by_us = self
                        .store
                        .record_aborted(id, &format!("cancelled: {reason}"))
                        .await
                        .map_err(ApiError::store_unavailable)?;
                    let now = self.recorded(id).await?;
                    // A tracker may have seen the abort we asked for and recorded it first:
                    // that is this cancel succeeding, not a conflict.
                    if recorded_by_us || now.status.0 == DispatchStatus::Aborted {
                        return Ok(now);
                    }
                }
                finished => return Err(ApiError::AlreadyFinished(finished)),
            }
        }
        Err(ApiError::Unexpected(anyhow::anyhow!(
            "dispatch {id} kept changing while being cancelled"
        )))
    }

    async fn recorded(&self, id: &DispatchId) -> Result<DispatchRecord, ApiError> {
        self.get(id)
            .await?
            .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("dispatch {id} vanished")))
    }

    async fn abort_in_flyte(&self, record: &DispatchRecord, reason: &str) -> Result<(), ApiError> {
        let run = RunId {
            org: self.flyte.org().to_string(),
            project: record.project.clone().unwrap_or_default(),
            domain: record.domain.clone().unwrap_or_default(),
            name: record.run_name.clone(),
        };
        match self.flyte.abort_run(&run, reason).await {
            Ok(()) => Ok(()),
            // Nothing left to abort.
            Err(e) if e.code == Code::NotFound => Ok(()),
            Err(e) => {
                tracing::warn!(run = %run, error = %e, "Flyte did not abort the run");
                Err(ApiError::FlyteUnavailable)
            }
        }
    }

    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: i64,
    ) -> Result<Vec<DispatchRecord>, ApiError> {
        self.store
            .list(filter, limit)
            .await
            .map_err(ApiError::store_unavailable)
    }

    /// What the console's search box names: a dispatch id, a run name (read back to its
    /// dispatch id), or a provider's delivery id. The records found, newest first (at most
    /// 100), and the dispatch id the text is, if this deployment issued it and no worker has
    /// recorded it yet (it is `queued`; a run name proves no issue, so it names none).
    pub async fn find(
        &self,
        text: &str,
        issuer: &IdIssuer,
    ) -> Result<(Vec<DispatchRecord>, Option<DispatchId>), ApiError> {
        let text = text.trim();
        let issued = DispatchId::parse(text).ok().filter(|id| issuer.verify(id));
        let named =
            issued.or_else(|| RunName::dispatch_uuid(text).map(|uuid| issuer.for_uuid(uuid)));
        let records = self
            .store
            .find(named.as_slice(), text)
            .await
            .map_err(ApiError::store_unavailable)?;
        let unrecorded = issued.filter(|id| {
            let id = id.to_string();
            !records.iter().any(|record| record.id == id)
        });
        Ok((records, unrecorded))
    }

    /// The status changes of one dispatch, oldest first.
    pub async fn history(&self, id: &DispatchId) -> Result<Vec<DispatchEvent>, ApiError> {
        self.store
            .history(id)
            .await
            .map_err(ApiError::store_unavailable)
    }

    /// The inputs a dispatch was recorded with.
    pub async fn inputs(&self, id: &DispatchId) -> Result<Option<Value>, ApiError> {
        self.store
            .recorded_inputs(id)
            .await
            .map_err(ApiError::store_unavailable)
    }
}
