//! What completion callbacks, debounce and concurrency keys cost on the pipeline: the same
//! load (run-task at a rate the pipeline sustains, every dispatch its own key, so nothing is
//! coalesced or held back) through a stack without them, then with each.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use flyhook_testkit::{HELLO_TASK, Receiver};

use crate::load::{Load, Workload};
use crate::stack::{self, Spec};

use super::pipeline::measure_with_starts;
use super::{Options, Rows, measure, run_task, warm};

/// Each request under a key of its own (`X-Flow-Key`).
struct Keyed(Arc<dyn Workload>);

impl Workload for Keyed {
    fn request(&self, client: &reqwest::Client, index: u64) -> reqwest::RequestBuilder {
        self.0
            .request(client, index)
            .header("x-flow-key", index.to_string())
    }
}

pub(super) async fn flow(options: Options, rate: f64) -> anyhow::Result<Rows> {
    let receiver = Receiver::start(&[], 204);
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"bench-callback-secret")
    );
    let policy = |table: &str| format!("[[tasks]]\ntask = \"{HELLO_TASK}\"\n{table}\n");
    let callbacks = format!(
        "[[callbacks]]\nname = \"receiver\"\nurl = \"{}\"\nsecret = {{ env = \"BENCH_WHSEC\" }}\n\
         max_in_flight = 32\n{}",
        receiver.url,
        policy("callback = \"receiver\"")
    );
    let mut rows = Vec::new();
    for (label, config) in [
        ("without", String::new()),
        ("callbacks", callbacks),
        (
            "debounce",
            policy("debounce = { key = \"x-flow-key\", window = \"1s\" }"),
        ),
        (
            "concurrency",
            policy("concurrency = { key = \"x-flow-key\", limit = 1 }"),
        ),
    ] {
        let stack = stack::start(&Spec {
            workers: 2,
            config,
            vars: vec![("BENCH_WHSEC".into(), secret.clone())],
            ..Spec::default()
        })
        .await?;
        let workload: Arc<dyn Workload> = Arc::new(Keyed(run_task(&stack, 1024)));
        let load = Load {
            duration: Duration::from_secs(options.seconds.max(30)),
            ..options.load(Some(rate), 64)
        };
        measure(workload.clone(), warm(load)).await?;
        // The warm-up's dispatches started (debounced ones wait their window first).
        let settled = stack.sim.runs_created().await? + u64::from(stack.backlog().await?);
        stack::wait_for_runs(&stack, settled, Duration::from_secs(30))
            .await
            .ok();
        let called_back = receiver.count();
        let created_before = stack.sim.runs_created().await?;
        let mut f = measure_with_starts(&stack, workload, load).await?;
        if label == "callbacks" {
            // Every run of the measured load called back (or half a minute passed).
            let started = stack.sim.runs_created().await? - created_before;
            flyhook_testkit::wait_until(
                Duration::from_secs(30),
                Duration::from_millis(200),
                "the measured runs' callbacks",
                || async {
                    let delivered = (receiver.count() - called_back) as u64;
                    if delivered >= started {
                        Ok(())
                    } else {
                        Err(format!("{delivered} of {started}"))
                    }
                },
            )
            .await
            .ok();
            let received = receiver.received();
            let delivered = (received.len() - called_back) as f64;
            f.insert(
                "callbacks_per_s".into(),
                delivered / load.duration.as_secs_f64(),
            );
            let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            for request in &received[called_back..] {
                let event = request.json();
                let Some(finished) = event["data"]["finished_at"]
                    .as_str()
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                else {
                    continue;
                };
                let took = request
                    .at
                    .duration_since(SystemTime::from(finished))
                    .unwrap_or_default();
                histogram.saturating_record(took.as_micros().max(1) as u64);
            }
            for (key, q) in [
                ("end_to_callback_p50_ms", 0.5),
                ("end_to_callback_p99_ms", 0.99),
            ] {
                f.insert(key.into(), histogram.value_at_quantile(q) as f64 / 1000.0);
            }
        }
        stack.stop().await?;
        rows.push((format!("{label}, {rate:.0}/s"), f));
    }
    Ok(rows)
}
