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

    // Replayed, the superseded dispatch is held to its key too: full, and its policy skips.
    let (status, _) = sender
        .post(&format!("/dispatches/{first}/replay"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let replayed = sender.wait_for_status(&first, "skipped", WAIT).await;
    assert!(
        replayed["error"].as_str().unwrap().contains(&newer),
        "{replayed}"
    );

    for id in [&other, &newer] {
        sender.finish_by_cancelling(id).await;
    }
    env.finish().await;
}

/// hello.main's `[[tasks]]` policy: a burst of one `count` is one run, the last one's.
fn debounce_policy(window: &str) -> String {
    format!(
        "[[tasks]]\ntask = \"{HELLO_TASK}\"\n\
         debounce = {{ key = \"/count\", window = \"{window}\", max_wait = \"30s\", keep = \"last\" }}\n{}",
        flyhook_testkit::env::FAST_TRACKING
    )
}

/// Waits until `count` dispatches are `coalesced`; their records.
async fn coalesced(sender: &flyhook_testkit::Sender, count: usize) -> Vec<Value> {
    flyhook_testkit::eventually(WAIT, &format!("{count} coalesced"), || async {
        let (_, listed) = sender.get("/dispatches?status=coalesced&limit=500").await;
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        if items.len() == count {
            Ok(items)
        } else {
            Err(format!("{} so far", items.len()))
        }
    })
    .await
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_burst_of_fifty_with_one_key_makes_one_run_and_another_key_its_own(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.settings_with_file(&debounce_policy("3s"));
    let sender = env.start_ingress(settings.clone()).await.sender();
    env.start_worker(&settings);

    let mut sent = Vec::new();
    for n in 0..50 {
        let (status, body) = sender
            .send_hello(json!({"name": format!("a{n}"), "count": 1}))
            .await;
        assert_eq!(status, 202, "{body}");
        sent.push(body["id"].as_str().unwrap().to_string());
        if n % 5 == 0 {
            let (_, body) = sender
                .send_hello(json!({"name": format!("b{n}"), "count": 2}))
                .await;
            sent.push(body["id"].as_str().unwrap().to_string());
        }
    }
    let coalesced = coalesced(&sender, 58).await;
    // The two that run, as the coalesced ones name them, to their end.
    let mut ran: Vec<String> = coalesced
        .iter()
        .map(|record| record["coalesced_into"].as_str().unwrap().to_string())
        .collect();
    ran.sort_unstable();
    ran.dedup();
    assert_eq!(ran.len(), 2, "one per key: {ran:?}");
    for id in &ran {
        sender.wait_for_status(id, "succeeded", WAIT).await;
    }
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 2, "one run per key: {runs:?}");
    let mut names: Vec<&str> = runs
        .iter()
        .map(|r| r["inputs"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["a49", "b45"],
        "each burst ran with its last payload"
    );
    // The runs are those of the dispatches the coalesced ones name.
    let mut run_by: Vec<String> = runs
        .iter()
        .map(|r| {
            r["labels"]["flyhook-dispatch"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    run_by.sort_unstable();
    assert_eq!(run_by, ran);
    assert_eq!(coalesced.len() + ran.len(), sent.len());
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_killed_while_a_window_is_open_changes_nothing(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.settings_with_file(&debounce_policy("2s"));
    let sender = env.start_ingress(settings.clone()).await.sender();
    let mut doomed_settings = settings.clone();
    let broker = env.broker_behind_proxy(&mut doomed_settings).await;
    let doomed = env.start_worker(&doomed_settings);

    for n in 0..5 {
        sender
            .send_hello(json!({"name": format!("n{n}"), "count": 7}))
            .await;
    }
    flyhook_testkit::eventually(WAIT, "the burst's five members", || async {
        let members: i64 = sqlx::query_scalar("SELECT count(*) FROM debounce_members")
            .fetch_one(&pool)
            .await
            .unwrap();
        (members == 5).then_some(())
    })
    .await;
    doomed.kill().await;
    broker.cut();

    env.start_worker(&settings);
    let coalesced = coalesced(&sender, 4).await;
    let ran = coalesced[0]["coalesced_into"].as_str().unwrap();
    assert!(
        coalesced.iter().all(|r| r["coalesced_into"] == ran),
        "{coalesced:?}"
    );
    sender.wait_for_status(ran, "succeeded", WAIT).await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 1, "still one run: {runs:?}");
    // With one of the burst's payloads (the last, unless a member reached a worker only after
    // the burst had been decided).
    let ran = runs[0]["inputs"]["name"].as_str().unwrap();
    assert!(["n0", "n1", "n2", "n3", "n4"].contains(&ran), "{ran}");
    env.finish().await;
}
