//! Debounce, before a run is started: a dispatch joins its key's burst and comes back (through
//! the delay queues) until the burst's window has closed; then the one member picked runs and
//! the others are recorded `coalesced`, naming it. Nothing is held in memory: a worker killed
//! while a window is open leaves the members' messages in the broker and the burst in
//! PostgreSQL, and whoever looks next decides the same.

use std::time::Duration;

use flyhook_contract::dispatch::Dispatch;
use flyhook_contract::flow::DebounceKey;
use flyhook_store::debounce::Burst;

use crate::process::{Outcome, Processor};

/// The longest a member waits before it looks again (the longest delay queue).
const LONGEST_LOOK: Duration = Duration::from_secs(64);

/// What to do with a member of a burst: `None` to go on and start its run.
pub async fn admit(
    processor: &Processor,
    dispatch: &Dispatch,
    key: &DebounceKey,
) -> Option<Outcome> {
    let id = &dispatch.id;
    let burst = match processor
        .store()
        .debounce(id, dispatch.received_at, key)
        .await
    {
        Ok(burst) => burst,
        Err(e) => return Some(processor.unrecorded(id, &e)),
    };
    match burst {
        Burst::Runs => None,
        Burst::Open(left) => Some(Outcome::WaitTurn(left.min(LONGEST_LOOK))),
        Burst::Ended(status) => Some(processor.ended_while_waiting(id, status)),
        Burst::CoalescedInto(ran) => {
            tracing::info!(dispatch = %id, %ran, "coalesced into its burst's run");
            let recorded = processor.store().record_coalesced(dispatch, &ran).await;
            Some(processor.ended_unstarted(id, recorded, "coalesced"))
        }
    }
}
