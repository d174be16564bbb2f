//! The operator console's reads on a store of 100,000 dispatches: each page's JSON (the
//! overview's figures, the newest dispatches, a filtered list, a page deep in the cursor, a
//! search, one dispatch's history, the sources, the audit log), each at a few pages a second.

use std::sync::Arc;
use std::time::Duration;

use crate::load::{Load, Workload};
use crate::stack::{self, API_KEY, Spec};
use crate::workloads::{Get, HELLO_TASK, Keeping, MixedHellos};

use super::{Options, Rows, figures, measure};

/// Pages asked for per second while one is measured.
const PAGES_PER_SECOND: f64 = 5.0;

/// Sends `count` dispatches through the whole pipeline (so the store holds what a deployment's
/// does: rows, events, audit entries) and waits for their runs; the ids.
async fn seed(stack: &flyhook_testkit::Stack, count: u64) -> anyhow::Result<Vec<String>> {
    let rate = 2500.0;
    let seeding = Arc::new(Keeping::new(
        MixedHellos {
            url: format!("{}/run-task/{HELLO_TASK}", stack.ingress_url),
            key: API_KEY.into(),
        },
        "id",
    ));
    let report = measure(
        seeding.clone(),
        Load {
            rate: Some(rate),
            connections: 64,
            duration: Duration::from_secs_f64(count as f64 / rate),
        },
    )
    .await?;
    let ids: Vec<String> = seeding.take().into_iter().map(|(id, _)| id).collect();
    anyhow::ensure!(
        ids.len() as u64 >= count * 99 / 100,
        "seeding accepted only {} of {count}: {}",
        ids.len(),
        report.summary()
    );
    stack::wait_for_runs(stack, ids.len() as u64, Duration::from_secs(300)).await?;
    Ok(ids)
}

pub(super) async fn console(options: Options, count: u64) -> anyhow::Result<Rows> {
    let stack = stack::start(&Spec {
        workers: 2,
        ..Spec::default()
    })
    .await?;
    let ids = seed(&stack, count).await?;
    let base = stack.ingress_url.clone();
    let some_id = &ids[ids.len() / 2];
    // The cursor half-way down the list: 100 pages of 500 in.
    let sender = flyhook_testkit::Sender::at(&base);
    let mut path = "/dispatches?limit=500".to_string();
    let mut cursor = String::new();
    for _ in 0..100 {
        let (_, page) = sender.get(&path).await;
        cursor = page["next_cursor"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("fewer dispatches listed than seeded"))?
            .to_string();
        path = format!("/dispatches?limit=500&cursor={cursor}");
    }
    let pages = [
        ("overview", "/overview".to_string()),
        ("dispatches, newest 50", "/dispatches".to_string()),
        ("dispatches, failed", "/dispatches?status=failed".into()),
        (
            "dispatches, 50 at 50,000 deep",
            format!("/dispatches?cursor={cursor}"),
        ),
        (
            "dispatches, search by id",
            format!("/dispatches?q={some_id}"),
        ),
        ("dispatch history", format!("/dispatches/{some_id}/history")),
        ("sources", "/sources".into()),
        ("audit, newest 100", "/audit".into()),
    ];
    let mut rows = Rows::new();
    for (name, path) in pages {
        let workload: Arc<dyn Workload> = Arc::new(Get {
            url: format!("{base}{path}"),
            key: API_KEY.into(),
        });
        // A few operators' consoles, not a load test: what one page costs on this store.
        let report = measure(workload, options.load(Some(PAGES_PER_SECOND), 2)).await?;
        anyhow::ensure!(
            report.ok_per_second() > 0.0,
            "{name}: no page served: {}",
            report.summary()
        );
        rows.push((format!("{name} ({count} dispatches)"), figures(&report)));
    }
    stack.stop().await?;
    Ok(rows)
}
