//! Concurrency keys: at most `limit` runs in flight per key value, fleet-wide, the rest waiting
//! in line, skipped, or superseding the run before them; checked against the stand-in's own
//! record of when each run was created and ended.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flyhook_testkit::{HELLO_TASK, TestEnv};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(60);

/// hello.main's `[[tasks]]` policy: a concurrency key of its `name` input.
fn policy(limit: u32, when_full: &str) -> String {
    format!(
        "[[tasks]]\ntask = \"{HELLO_TASK}\"\n\
         concurrency = {{ key = \"/name\", limit = {limit}, when_full = \"{when_full}\" }}\n{}",
        flyhook_testkit::env::FAST_TRACKING
    )
}

fn time(run: &Value, field: &str) -> DateTime<Utc> {
    run[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} of {run}"))
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn limit_one_under_twenty_concurrent_dispatches_never_has_two_runs_in_flight(pool: PgPool) {
    let runs_for = flyte_sim::SimConfig {
        running_for: Duration::from_millis(300),
        ..TestEnv::instant_runs()
    };
    let env = TestEnv::new(&pool, runs_for).await;
    let settings = env.settings_with_file(&policy(1, "queue"));
    let sender = env.start_ingress(settings.clone()).await.sender();
    // Two workers: the limit holds across the fleet, not within one process.
    env.start_worker(&settings);
    env.start_worker(&settings);

    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let sender = sender.clone();
        sends.spawn(async move { sender.send_hello(json!({"name": "one-key"})).await });
    }
    let mut ids = Vec::new();
    while let Some(sent) = sends.join_next().await {
        let (status, body) = sent.unwrap();
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        sender.wait_for_status(id, "succeeded", WAIT).await;
    }

    let mut runs = env.sim_runs().await;
    assert_eq!(runs.len(), 20, "every dispatch ran once");
    runs.sort_by_key(|run| time(run, "created_at"));
    for pair in runs.windows(2) {
        assert!(
            time(&pair[1], "created_at") >= time(&pair[0], "ended_at"),
            "two runs of one key in flight at once: {} and {}",
            pair[0],
            pair[1]
        );
    }
    // And in line: those that waited started in the order they arrived (the first took the
    // free slot as it came, before the others had joined the line).
    let mut arrivals = Vec::new();
    for run in &runs {
        let (_, record) = sender
            .dispatch(run["labels"]["flyhook-dispatch"].as_str().unwrap())
            .await;
        arrivals.push(time(&record, "received_at"));
    }
    assert!(
        arrivals[1..].windows(2).all(|pair| pair[0] <= pair[1]),
        "runs started out of arrival order: {arrivals:?}"
    );
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_full_key_skips_or_supersedes_and_other_keys_go_on(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let skipping = env.settings_with_file(&policy(1, "skip"));
    let sender = env.start_ingress(skipping.clone()).await.sender();
    env.start_worker(&skipping);

    let (_, first) = sender.send_hello(json!({"name": "a"})).await;
    let first = first["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&first, "running", WAIT).await;
    let (_, skipped) = sender.send_hello(json!({"name": "a"})).await;
    let skipped = sender
        .wait_for_status(skipped["id"].as_str().unwrap(), "skipped", WAIT)
        .await;
    let reason = skipped["error"].as_str().unwrap();
    assert!(reason.contains(&first), "names the run in flight: {reason}");
    // Another key is not held up.
    let (_, other) = sender.send_hello(json!({"name": "b"})).await;
    let other = other["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&other, "running", WAIT).await;
    let (_, listed) = sender.get("/dispatches?status=skipped").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

    // The same key under a policy that supersedes: the older run is aborted, the newer starts.
    let superseding = env.settings_with_file(&policy(1, "cancel_previous"));
    let newer_sender = env.start_ingress(superseding).await.sender();
    let (_, newer) = newer_sender.send_hello(json!({"name": "a"})).await;
    let newer = newer["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&newer, "running", WAIT).await;
    let (_, older) = sender.dispatch(&first).await;
    assert_eq!(older["status"], "aborted", "{older}");
    let reason = older["error"].as_str().unwrap();
    assert!(
        reason.contains(&newer),
        "names what superseded it: {reason}"
    );
    let runs = env.sim_runs().await;
    let older_run = runs.iter().find(|run| run["name"] == older["run_name"]);
    assert_eq!(
        older_run.unwrap()["phase"],
        "ACTION_PHASE_ABORTED",
        "aborted in Flyte"
    );

    for id in [&other, &newer] {
        sender.finish_by_cancelling(id).await;
    }
    env.finish().await;
}
