//! Concurrency keys, enforced before a run is started: the dispatch takes a slot of its key
//! (held until it ends), or, when every slot is held, waits its turn (its message comes back
//! through the delay queues and asks again; the first in arrival order take the slots that
//! free), is recorded `skipped`, or aborts the oldest run in flight that arrived before it and
//! then waits for its slot.

use std::time::Duration;

use flyhook_contract::dispatch::Dispatch;
use flyhook_contract::flow::{ConcurrencyKey, WhenFull};
use flyhook_store::concurrency::Slot;
use flyte_client::RunId;

use crate::process::{Outcome, Processor};

/// How long a dispatch waits before asking for a slot again: a second, and a second more for
/// every `limit` waiting ahead of it (up to 16 s), so a long line does not ask all at once.
fn wait_for_slot(ahead: i64, limit: u32) -> Duration {
    let rounds = u64::try_from(ahead).unwrap_or(0) / u64::from(limit.max(1));
    Duration::from_secs((1 + rounds).min(16))
}

/// What to do with a dispatch whose key is held: `None` to go on and start its run.
pub async fn admit(
    processor: &Processor,
    dispatch: &Dispatch,
    key: &ConcurrencyKey,
) -> Option<Outcome> {
    let id = &dispatch.id;
    let slot = match processor
        .store()
        .take_slot(id, dispatch.received_at, key)
        .await
    {
        Ok(slot) => slot,
        Err(e) => return Some(processor.unrecorded(id, &e)),
    };
    let (holders, ahead) = match slot {
        Slot::Taken => return None,
        Slot::Busy => return Some(Outcome::WaitTurn(Duration::from_secs(1))),
        Slot::Ended(status) => return Some(processor.ended_while_waiting(id, status)),
        Slot::Full { holders, ahead } => (holders, ahead),
    };
    match key.when_full {
        WhenFull::Queue => {
            processor.metrics().count("waiting_for_slot");
            Some(Outcome::WaitTurn(wait_for_slot(ahead, key.limit)))
        }
        WhenFull::Skip => {
            let reason = format!(
                "skipped: concurrency key {:?} of {} is full ({} in flight: {})",
                key.value,
                key.scope,
                holders.len(),
                holders
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            tracing::info!(dispatch = %id, %reason, "dispatch skipped");
            let recorded = processor.store().record_skipped(dispatch, &reason).await;
            Some(processor.ended_unstarted(id, recorded, "skipped"))
        }
        WhenFull::CancelPrevious => {
            // The oldest beyond what leaves room for this one, of those that arrived before
            // it (a dispatch late to a worker never aborts a newer run); each frees its slot
            // as it ends.
            let surplus = (holders.len() + 1).saturating_sub(key.limit as usize);
            let older = holders
                .iter()
                .filter(|(_, since)| *since < dispatch.received_at);
            for (holder, _) in older.take(surplus) {
                cancel_previous(processor, holder, dispatch).await;
            }
            processor.metrics().count("waiting_for_slot");
            Some(Outcome::WaitTurn(Duration::from_secs(1)))
        }
    }
}

/// Aborts the run of `holder` (a dispatch id), superseded by `newer`. A holder still starting
/// has no run to abort yet: the next ask (a second later) finds it running.
async fn cancel_previous(processor: &Processor, holder: &str, newer: &Dispatch) {
    let Ok(holder_id) = flyhook_contract::DispatchId::parse(holder) else {
        tracing::warn!(dispatch = %holder, "a concurrency slot held under an unreadable id");
        return;
    };
    let record = match processor.store().get(&holder_id).await {
        Ok(Some(record)) if record.status.0 == flyhook_contract::DispatchStatus::Running => record,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(dispatch = %holder, error = %e, "could not read the run to cancel");
            return;
        }
    };
    let (Some(project), Some(domain)) = (record.project, record.domain) else {
        return;
    };
    let flyte = processor.flyte();
    let run = RunId {
        org: flyte.org().to_string(),
        project,
        domain,
        name: record.run_name,
    };
    let reason = format!("superseded by dispatch {} (concurrency key)", newer.id);
    match flyte.abort_run(&run, &reason).await {
        Ok(()) => {}
        Err(e) if e.code == flyte_client::Code::NotFound => {}
        Err(e) => {
            tracing::warn!(dispatch = %holder, error = %e, "could not abort the superseded run; asking again later");
            return;
        }
    }
    match processor.store().record_aborted(&holder_id, &reason).await {
        Ok(_) => {
            tracing::info!(dispatch = %holder, newer = %newer.id, "superseded run aborted");
            processor.metrics().count("superseded");
        }
        Err(e) => {
            tracing::warn!(dispatch = %holder, error = %e, "could not record the superseded run's abort")
        }
    }
}
