//! Holding on while PostgreSQL is away. A worker that cannot record must not settle what it
//! holds (an ack would lose the outcome), and must not hand it back either: every requeue
//! counts towards the broker's delivery limit, so a long outage would dead-letter every
//! webhook accepted during it, unrecorded. So deliveries wait here, unsettled, while one probe
//! per worker looks for the store; the prefetch bound then keeps the broker from sending more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flyhook_store::DispatchStore;
use tokio::sync::watch;

/// The first and the longest pause between two probes of an unreachable store.
const FIRST_PROBE: Duration = Duration::from_millis(200);
const LONGEST_PROBE: Duration = Duration::from_secs(5);

/// Shared by a worker's deliveries: cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreGate {
    store: DispatchStore,
    reachable: Arc<watch::Sender<bool>>,
    probing: Arc<AtomicBool>,
}

impl StoreGate {
    pub fn new(store: DispatchStore) -> StoreGate {
        StoreGate {
            store,
            reachable: Arc::new(watch::Sender::new(true)),
            probing: Arc::default(),
        }
    }

    /// Returns once the store answers again (call after a call to it failed for an outage).
    pub async fn wait_until_reachable(&self) {
        let mut reachable = self.reachable.subscribe();
        self.reachable.send_replace(false);
        if !self.probing.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().probe());
        }
        let _ = reachable.wait_for(|up| *up).await;
    }

    async fn probe(self) {
        let mut pause = FIRST_PROBE;
        while let Err(e) = self.store.ping().await {
            tracing::warn!(error = %e, retry_in = ?pause, "status store unreachable; holding deliveries");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PROBE);
        }
        tracing::info!("status store reachable again");
        self.probing.store(false, Ordering::Release);
        self.reachable.send_replace(true);
    }
}
