//! Following runs to their end, shared by the whole fleet.
//!
//! Each worker leases due runs from PostgreSQL (`FOR UPDATE SKIP LOCKED`, then a lease with an
//! expiry), asks Flyte how each is doing, and records the phase, or the end with outputs or
//! error. A lease is held only while a worker looks at a run, so no run is polled by two
//! workers, and a worker that dies mid-look loses its runs to the others when the lease expires.
//! Runs are looked at less often as they age (a tenth of their age, within the configured
//! bounds). A run Flyte keeps answering about with a permanent error (not found, permission
//! denied) ends `failed` after a few looks, instead of being looked at forever; an unreachable
//! Flyte is only waited out.

use std::time::Duration;

use crate::settings::TrackingSettings;
use flyhook_contract::DispatchStatus;
use flyhook_store::DispatchStore;
use flyhook_store::{LeasedRun, Poll, RunEnd};
use flyte_client::messages::{ErrorKind, RunDetails};
use flyte_client::{ActionPhase, Disposition, FlyteClient, FlyteError, RunId};
use tokio_util::sync::CancellationToken;

/// How often an idle tracker looks for due runs.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// Looks in a row answered with a permanent error after which a run ends `failed`. The pause
/// between such looks doubles (from `min_poll`, up to `max_poll`), so with the defaults a run
/// ends after about three minutes of Flyte not knowing it, not after a blink.
pub const MAX_LOOK_FAILURES: i32 = 10;

/// What one look at a run found.
enum Seen {
    Ended(String, RunEnd),
    /// Still going (or not known); look again after the pause.
    Going(Poll),
}

#[derive(Debug, Clone)]
pub struct Tracker {
    store: DispatchStore,
    flyte: FlyteClient,
    settings: TrackingSettings,
    /// This worker's name in leases.
    owner: String,
}

impl Tracker {
    pub fn new(store: DispatchStore, flyte: FlyteClient, settings: TrackingSettings) -> Tracker {
        Tracker {
            store,
            flyte,
            settings,
            owner: format!("tracker-{:016x}", fastrand::u64(..)),
        }
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let looked_at = match self.track_due_runs().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot lease runs or record what was seen; status store unavailable?");
                    0
                }
            };
            // A full batch means more are due: go on at once.
            if looked_at < self.settings.batch as usize {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(IDLE_TICK) => {}
                }
            }
        }
    }

    /// Leases the due runs and looks at each; records what was seen in two statements (the
    /// runs that ended, the runs still going); returns how many.
    pub async fn track_due_runs(&self) -> Result<usize, sqlx::Error> {
        let runs = self
            .store
            .lease_due_runs(&self.owner, self.settings.lease, self.settings.batch)
            .await?;
        let count = runs.len();
        let mut looks = tokio::task::JoinSet::new();
        for run in runs {
            let tracker = self.clone();
            looks.spawn(async move { tracker.look_at(run).await });
        }
        let (mut ends, mut polls) = (Vec::new(), Vec::new());
        while let Some(seen) = looks.join_next().await {
            match seen {
                Ok(Seen::Ended(id, end)) => ends.push((id, end)),
                Ok(Seen::Going(poll)) => polls.push(poll),
                // Its lease expires and someone looks again.
                Err(e) => tracing::warn!(error = %e, "looking at a run failed"),
            }
        }
        // Unrecorded looks are not lost: the leases expire and the runs are looked at again.
        self.store.record_run_ends(&self.owner, &ends).await?;
        self.store.record_polls(&self.owner, &polls).await?;
        Ok(count)
    }

    fn next_poll(&self, run: &LeasedRun) -> Duration {
        let age = run
            .started_at
            .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
            .unwrap_or_default();
        (age / 10).clamp(self.settings.min_poll, self.settings.max_poll)
    }

    async fn look_at(&self, run: LeasedRun) -> Seen {
        let run_id = RunId {
            org: self.flyte.org().to_string(),
            project: run.project.clone().unwrap_or_default(),
            domain: run.domain.clone().unwrap_or_default(),
            name: run.run_name.clone(),
        };
        let failed_look = |e: FlyteError| {
            // An outage is waited out; a run Flyte cannot report ends after a few looks.
            let look_failures = match e.disposition() {
                Disposition::Permanent => run.look_failures + 1,
                Disposition::Retry | Disposition::AlreadyExists => run.look_failures,
            };
            if look_failures >= MAX_LOOK_FAILURES {
                tracing::warn!(dispatch = %run.id, error = %e, "Flyte cannot report the run; it ends failed");
                return Seen::Ended(
                    run.id.clone(),
                    RunEnd {
                        status: DispatchStatus::Failed,
                        phase: None,
                        outputs: None,
                        error: Some(format!(
                            "Flyte could not report the run {look_failures} times in a row: {e}"
                        )),
                        error_kind: Some("system".into()),
                    },
                );
            }
            tracing::info!(dispatch = %run.id, error = %e, "could not look at the run; later");
            let doubling = self
                .settings
                .min_poll
                .saturating_mul(1 << look_failures.clamp(0, 16))
                .min(self.settings.max_poll);
            Seen::Going(Poll {
                id: run.id.clone(),
                phase: None,
                pause: self
                    .next_poll(&run)
                    .max(doubling)
                    .max(e.retry_after.unwrap_or_default()),
                look_failures,
            })
        };
        match self.flyte.get_run_details(&run_id).await {
            Ok(details) if details.action.status.phase.is_terminal() => {
                match self.ending(&run_id, &details).await {
                    Ok(end) => {
                        tracing::info!(dispatch = %run.id, status = %end.status, "run ended");
                        Seen::Ended(run.id.clone(), end)
                    }
                    Err(e) => failed_look(e),
                }
            }
            Ok(details) => Seen::Going(Poll {
                id: run.id.clone(),
                phase: Some(details.action.status.phase),
                pause: self.next_poll(&run),
                look_failures: 0,
            }),
            Err(e) => failed_look(e),
        }
    }

    /// What to record for a run in a terminal phase: outputs on success, the reason otherwise.
    async fn ending(&self, run_id: &RunId, details: &RunDetails) -> Result<RunEnd, FlyteError> {
        let action = &details.action;
        let phase = action.status.phase;
        let status = DispatchStatus::for_terminal_phase(phase).unwrap_or(DispatchStatus::Failed);
        let mut end = RunEnd {
            status,
            phase: Some(phase),
            outputs: None,
            error: None,
            error_kind: None,
        };
        match phase {
            ActionPhase::Succeeded | ActionPhase::Recovered => {
                let outputs = self.flyte.get_outputs(run_id).await?;
                end.outputs =
                    Some(flyte_client::outputs::literals_to_json(&outputs.literals).into());
            }
            _ => {
                if let Some(info) = &action.error_info {
                    end.error = Some(info.message.clone());
                    end.error_kind = Some(
                        match info.kind {
                            ErrorKind::User => "user",
                            ErrorKind::System => "system",
                            _ => "unspecified",
                        }
                        .to_string(),
                    );
                }
                if let Some(info) = &action.abort_info {
                    end.error = Some(format!("aborted: {}", info.reason));
                }
                if end.error.is_none() {
                    end.error = Some(format!("the run ended in {phase}"));
                }
            }
        }
        Ok(end)
    }
}
