//! Writes the audit log off the request path: requests hand their entry to a bounded buffer and
//! go on; one task writes what has gathered in a single statement. While PostgreSQL is away
//! entries wait in the buffer (intake does not need PostgreSQL, so it must not stall on the
//! audit log); beyond the buffer they are dropped and counted (`flyhook_audit_entries_dropped`).
//! Another task deletes entries past the retention period.

use std::time::Duration;

use crate::settings::AuditSettings;
use chrono::Utc;
use flyhook_store::audit::{AuditEntry, AuditStore};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The most entries one statement writes.
const MAX_BATCH: usize = 500;
/// How long the writer lets entries gather before writing: one statement per this long (or
/// per full batch) instead of one per request at moderate rates.
const LINGER: Duration = Duration::from_millis(50);
/// How often entries past retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Takes audit entries; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    buffer: mpsc::Sender<AuditEntry>,
    dropped: Counter,
}

/// The writer; [`AuditWriter::close`] writes what is left and stops it.
#[derive(Debug)]
pub struct AuditWriter {
    closing: CancellationToken,
    task: JoinHandle<()>,
}

impl AuditLog {
    /// Starts the writer and the retention task (which stops with `shutdown`).
    pub fn start(
        store: AuditStore,
        settings: &AuditSettings,
        written: Counter,
        dropped: Counter,
        shutdown: CancellationToken,
    ) -> (AuditLog, AuditWriter) {
        let (buffer, entries) = mpsc::channel(settings.buffer);
        let closing = CancellationToken::new();
        let task = tokio::spawn(write_batches(
            store.clone(),
            entries,
            written,
            closing.clone(),
        ));
        tokio::spawn(purge_expired(store, settings.retention, shutdown));
        (AuditLog { buffer, dropped }, AuditWriter { closing, task })
    }

    /// Hands an entry to the writer without waiting.
    pub fn record(&self, entry: AuditEntry) {
        if self.buffer.try_send(entry).is_err() {
            if self.dropped.get().is_multiple_of(1000) {
                tracing::warn!(
                    dropped = self.dropped.get() + 1,
                    "audit buffer full; dropping entries"
                );
            }
            self.dropped.inc();
        }
    }
}

impl AuditWriter {
    /// Writes what is buffered (one attempt, bounded) and stops; call after the HTTP server
    /// stopped, so no request is left to record.
    pub async fn close(self) {
        self.closing.cancel();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("audit entries still unwritten at shutdown are lost");
        }
    }
}

async fn write_batches(
    store: AuditStore,
    mut entries: mpsc::Receiver<AuditEntry>,
    written: Counter,
    closing: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut backoff = Duration::from_millis(100);
    loop {
        if batch.is_empty() {
            tokio::select! {
                received = entries.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    if batch.len() < MAX_BATCH {
                        tokio::select! {
                            _ = tokio::time::sleep(LINGER) => {}
                            _ = closing.cancelled() => {}
                        }
                        while batch.len() < MAX_BATCH && let Ok(entry) = entries.try_recv() {
                            batch.push(entry);
                        }
                    }
                }
                _ = closing.cancelled() => {
                    while let Ok(entry) = entries.try_recv() {
                        batch.push(entry);
                    }
                    if !batch.is_empty() && store.append(&batch).await.is_ok() {
                        written.inc_by(batch.len() as u64);
                    }
                    return;
                }
            }
        }
        match store.append(&batch).await {
            Ok(()) => {
                written.inc_by(batch.len() as u64);
                batch.clear();
                backoff = Duration::from_millis(100);
            }
            // Keep the batch (later entries wait in the buffer) and try again.
            Err(e) => {
                tracing::warn!(error = %e, entries = batch.len(), "could not write the audit log; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = closing.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn purge_expired(store: AuditStore, retention: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let cutoff = Utc::now() - retention;
        match store.purge_before(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "audit entries past retention deleted"),
            Err(e) => tracing::debug!(error = %e, "audit retention not applied this time"),
        }
    }
}
