//! `flyhook replay`: finished dispatches sent again, chosen by the filters of `GET /dispatches`;
//! with `--callbacks`, their failed completion callbacks instead.

use flyhook_contract::{DispatchId, DispatchStatus};
use flyhook_ingress::Replayer;
use flyhook_store::{DispatchStore, ListFilter};
use tokio_util::sync::CancellationToken;

use crate::Settings;

#[derive(Debug, clap::Args)]
pub struct Replay {
    /// Comma-separated statuses to replay (default: failed,dead_lettered; with --callbacks,
    /// every end).
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    project: Option<String>,
    #[arg(long)]
    domain: Option<String>,
    /// The task name.
    #[arg(long)]
    task: Option<String>,
    /// A webhook source's name.
    #[arg(long)]
    source: Option<String>,
    /// One of the source's routes.
    #[arg(long)]
    route: Option<String>,
    /// Only dispatches received at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only dispatches received before this RFC 3339 time.
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Count what would be replayed, and replay nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    new_run: bool,
    /// Send the failed completion callbacks of the matching dispatches again (same event, same
    /// webhook-id), and replay no dispatch.
    #[arg(long, conflicts_with = "new_run")]
    callbacks: bool,
}

impl Replay {
    /// The dispatches to replay, checked before anything is connected.
    pub fn filter(&self) -> anyhow::Result<ListFilter> {
        let default = if self.callbacks {
            "succeeded,failed,aborted,timed_out,dead_lettered,ignored,skipped,coalesced"
        } else {
            "failed,dead_lettered"
        };
        let statuses = self
            .status
            .as_deref()
            .unwrap_or(default)
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<Vec<DispatchStatus>, _>>()
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(ListFilter {
            statuses: Some(statuses),
            project: self.project.clone(),
            domain: self.domain.clone(),
            task_name: self.task.clone(),
            source: self.source.clone(),
            route: self.route.clone(),
            since: self.since,
            until: self.until,
            before: None,
            within: None,
        })
    }

    pub async fn run(
        self,
        filter: ListFilter,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let store = DispatchStore::new(super::connect(&settings.deployment).await?);
        let ids = store.matching_ids(filter, usize::MAX).await?;
        println!("{} dispatch(es) match", ids.len());
        if self.dry_run || ids.is_empty() {
            return Ok(());
        }
        if self.callbacks {
            let ids = ids
                .iter()
                .map(|id| DispatchId::parse(id))
                .collect::<Result<Vec<_>, _>>()?;
            let resent = store.resend_callbacks(&ids).await?;
            for id in &resent {
                println!("{id}: callback queued again");
            }
            println!(
                "callbacks sent again {}, not failed (or without a callback) {}",
                resent.len(),
                ids.len() - resent.len()
            );
            return Ok(());
        }
        let replayer =
            Replayer::open(&settings.deployment, &settings.ingress, store, shutdown).await?;
        println!("request id {}", replayer.request_id());
        let (mut replayed, mut refused) = (0, 0);
        for id in ids {
            let id = DispatchId::parse(&id)?;
            match replayer.replay(&id, self.new_run).await {
                Ok(accepted) => {
                    replayed += 1;
                    println!("{id} -> {} ({})", accepted.id, accepted.run_name);
                }
                Err(e) => {
                    refused += 1;
                    println!("{id}: {e}");
                }
            }
        }
        replayer.close().await;
        println!("replayed {replayed}, refused {refused}");
        Ok(())
    }
}
