//! Following runs to their end: outputs, errors, waiting, cancelling, listing, takeover.

use std::time::Duration;

use flyhook_testkit::{HELLO_TASK as HELLO, Sender, TestEnv, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

async fn run_and_wait(sender: &Sender, task: &str, inputs: Value, query: &str) -> (u16, Value) {
    sender
        .post(&format!("/run-task-and-wait/{task}{query}"), &inputs)
        .await
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn run_and_wait_returns_outputs_errors_and_timeouts_as_the_run_ended(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());

    let (status, body) = run_and_wait(&sender, HELLO, json!({"name": "ann"}), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["outputs"], json!({"o0": "hello ann"}));
    assert_eq!(body["flyte_phase"], "ACTION_PHASE_SUCCEEDED");
    assert!(
        body["url"]
            .as_str()
            .unwrap()
            .contains(body["run_name"].as_str().unwrap())
    );

    let (_, body) = run_and_wait(
        &sender,
        "flytesnacks/development/types.echo/v1",
        json!({"i": 9007199254740993_i64, "items": [1, 2], "tags": {"k": "v"}}),
        "",
    )
    .await;
    assert_eq!(
        body["outputs"],
        json!({"o0": 9007199254740993_i64, "o1": [1, 2], "o2": {"k": "v"}})
    );

    let (status, body) = run_and_wait(&sender, HELLO, json!({"name": "fail"}), "").await;
    assert_eq!((status, &body["status"]), (200, &json!("failed")), "{body}");
    assert_eq!(body["error"], "ValueError: asked to fail");
    assert_eq!(body["error_kind"], "user");

    let (_, body) = run_and_wait(&sender, HELLO, json!({"name": "timeout"}), "").await;
    assert_eq!(body["status"], "timed_out");
    assert!(
        body["error"].as_str().unwrap().contains("deadline"),
        "{body}"
    );

    // `?wait=` on the plain endpoint does the same.
    let response = sender
        .run_task(&format!("{HELLO}?wait=10s"))
        .json(&json!({"name": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["outputs"]["o0"],
        "hello bob"
    );

    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_wait_that_runs_out_answers_202_with_the_status_url(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());
    let started = tokio::time::Instant::now();
    let (status, body) = run_and_wait(&sender, HELLO, json!({"name": "ann"}), "?wait=500ms").await;
    assert_eq!(status, 202, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["status_url"], format!("/dispatches/{id}"));
    let (status, body) = run_and_wait(&sender, HELLO, json!({"name": "x"}), "?wait=soon").await;
    assert_eq!((status, &body["field"]), (400, &json!("wait")));

    sender.wait_for_status(id, "running", WAIT).await;
    sender.finish_by_cancelling(id).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn many_concurrent_waiters_are_all_answered(pool: PgPool) {
    let env = TestEnv::new(
        &pool,
        flyte_sim::SimConfig {
            queued_for: Duration::from_millis(200),
            running_for: Duration::from_millis(500),
            ..flyte_sim::SimConfig::default()
        },
    )
    .await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());
    let waits: Vec<_> = (0..200)
        .map(|i| {
            let sender = sender.clone();
            tokio::spawn(async move {
                run_and_wait(
                    &sender,
                    HELLO,
                    json!({"name": format!("n{i}")}),
                    "?wait=60s",
                )
                .await
            })
        })
        .collect();
    for (i, wait) in waits.into_iter().enumerate() {
        let (status, body) = wait.await.unwrap();
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("succeeded")),
            "{i}: {body}"
        );
        assert_eq!(body["outputs"]["o0"], format!("hello n{i}"));
    }
    assert_eq!(env.sim_runs().await.len(), 200);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn cancelling_works_in_every_state(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();

    // Queued, no worker has seen it: recorded aborted, and the worker drops the message.
    let (_, queued) = sender.send_hello(json!({"name": "never"})).await;
    let queued_id = queued["id"].as_str().unwrap();
    let (status, body) = sender.cancel(queued_id).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("aborted")),
        "{body}"
    );
    let worker = env.start_worker(&env.fast_tracking());

    // Running: aborted in Flyte, with the reason.
    let (_, running) = sender.send_hello(json!({"name": "ann"})).await;
    let running_id = running["id"].as_str().unwrap();
    sender.wait_for_status(running_id, "running", WAIT).await;
    let (status, body) = sender.cancel(running_id).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("aborted")),
        "{body}"
    );
    let run = env
        .sim
        .run(running["run_name"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(run["phase"], "ACTION_PHASE_ABORTED");

    // Finished: a conflict.
    let (status, body) = sender.cancel(running_id).await;
    assert_eq!((status, &body["code"]), (409, &json!("already_finished")));

    // Running, and the tracker records the abort before the cancel does (Flyte aborts the run
    // but holds its answer): still this cancel's success.
    let (_, raced) = sender.send_hello(json!({"name": "bob"})).await;
    let raced_id = raced["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&raced_id, "running", WAIT).await;
    env.set_sim_faults(json!([{"rpc": "RunService/AbortRun", "latency_after_ms": 5000}]))
        .await;
    let cancelling = tokio::spawn({
        let sender = sender.clone();
        let id = raced_id.clone();
        async move { sender.cancel(&id).await }
    });
    eventually(WAIT, "the tracker to record the abort", || async {
        let (_, body) = sender.dispatch(&raced_id).await;
        (body["status"] == "aborted").then_some(())
    })
    .await;
    assert!(
        !cancelling.is_finished(),
        "the tracker recorded the abort while the cancel waited for Flyte's answer"
    );
    let (status, body) = cancelling.await.unwrap();
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("aborted")),
        "{body}"
    );
    env.set_sim_faults(json!([])).await;

    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await; // settles what it holds: the cancelled dispatch's message was dropped
    assert_eq!(env.ready_messages().await, 0);
    let (_, body) = sender.dispatch(queued_id).await;
    assert_eq!(body["status"], "aborted");
    assert_eq!(
        body["task"]["name"], "hello.main",
        "the worker filled in the task"
    );
    let runs = env.sim_runs().await;
    assert!(
        runs.iter().all(|run| run["name"] != queued["run_name"]),
        "the cancelled-while-queued dispatch started no run: {runs:?}"
    );
    assert_eq!(runs.len(), 2);

    let (status, _) = sender.cancel(&"0".repeat(40)).await;
    assert_eq!(status, 404);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_dead_trackers_runs_are_taken_over_when_its_lease_expires(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let tracking = "[worker.tracking]\nmin_poll_ms = 50\nmax_poll_ms = 200\nlease_ms = 1000\n";

    // The first worker starts the run, then hangs looking at it (Flyte never answers).
    env.set_sim_faults(json!([{"rpc": "RunService/GetRunDetails", "latency_ms": 600000}]))
        .await;
    let mut doomed_settings = env.settings_with_file(tracking);
    let broker = env.broker_behind_proxy(&mut doomed_settings).await;
    let doomed = env.start_worker(&doomed_settings);
    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let id = accepted["id"].as_str().unwrap();
    sender.wait_for_status(id, "running", WAIT).await;
    eventually(WAIT, "the tracker looked", || async {
        (env.sim.calls("RunService/GetRunDetails").await.unwrap() > 0).then_some(())
    })
    .await;
    doomed.kill().await;
    broker.cut();

    env.set_sim_faults(json!([])).await;
    env.start_worker(&env.settings_with_file(tracking));
    let done = sender.wait_for_status(id, "succeeded", WAIT).await;
    assert_eq!(done["outputs"]["o0"], "hello ann");
    assert_eq!(env.sim_runs().await.len(), 1);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn dispatches_list_newest_first_with_filters_and_cursors(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());
    let mut ids = Vec::new();
    for name in ["a", "b", "fail", "c", "d"] {
        let (_, body) = run_and_wait(&sender, HELLO, json!({ "name": name }), "").await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let list = |query: String| {
        let sender = &sender;
        async move { sender.get(&format!("/dispatches{query}")).await }
    };
    let ids_of = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };

    let (_, all) = list(String::new()).await;
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(ids_of(&all), newest_first);

    let (_, failed) = list("?status=failed".into()).await;
    assert_eq!(ids_of(&failed), vec![ids[2].clone()]);
    let (_, none) = list("?project=elsewhere".into()).await;
    assert!(ids_of(&none).is_empty());
    let (_, by_task) = list("?task=hello.main&status=succeeded,failed".into()).await;
    assert_eq!(ids_of(&by_task).len(), 5);

    let mut paged = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let (status, page) = list(query.clone()).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    for bad in [
        "?status=sleeping",
        "?limit=0",
        "?cursor=nonsense",
        "?colour=red",
    ] {
        let (status, body) = list(bad.into()).await;
        assert_eq!(
            (status, &body["code"]),
            (400, &json!("invalid_query")),
            "{bad}"
        );
    }
    env.finish().await;
}
