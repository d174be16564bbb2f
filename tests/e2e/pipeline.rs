//! From `202` to a running Flyte run: idempotency, redelivery, crashes, missing dependencies.

use std::time::Duration;

use flyhook_testkit::env::FAST_TRACKING;
use flyhook_testkit::{TestEnv, answer, eventually, free_port};
use serde_json::json;
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn an_accepted_dispatch_is_queued_at_once_and_running_once_a_worker_takes_it(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();

    let (status, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().unwrap();
    let run_name = accepted["run_name"].as_str().unwrap();
    assert!(
        accepted["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/{run_name}"))
    );
    assert_eq!(accepted["status_url"], format!("/dispatches/{id}"));

    // No worker yet: the id alone proves it was accepted.
    let (code, body) = sender.dispatch(id).await;
    assert_eq!(
        (code, &body["status"], &body["recorded"]),
        (200, &json!("queued"), &json!(false))
    );

    env.start_worker(&env.settings());
    let running = sender.wait_for_status(id, "running", WAIT).await;
    assert_eq!(running["run_name"], run_name);
    assert_eq!(running["attempts"], 1);
    assert_eq!(running["url"], accepted["url"]);

    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["name"], run_name);
    assert_eq!(runs[0]["inputs"], json!({"name": "ann", "count": 1}));
    assert_eq!(runs[0]["create_calls"], 1);

    sender.finish_by_cancelling(id).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_retried_send_and_its_second_delivery_make_one_run(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let send = || async {
        let (status, accepted) = sender
            .send_hello_keyed("delivery-42", json!({"name": "ann"}))
            .await;
        assert_eq!(status, 202, "{accepted}");
        accepted
    };
    let first = send().await;
    let second = send().await;
    assert_eq!(
        first["id"], second["id"],
        "the same key gives the same dispatch"
    );

    // Two messages with one id are now queued; the worker must start one run. One at a time,
    // so the second delivery meets the record of the first (concurrent duplicates are covered
    // by the crash test below: Flyte's `already_exists` stops them).
    let worker =
        env.start_worker(&env.settings_with_file("[worker]\nprefetch = 1\nconcurrency = 1\n"));
    let id = first["id"].as_str().unwrap();
    sender.wait_for_status(id, "running", WAIT).await;
    // Both delivered, then a graceful stop settles what the worker holds: nothing is requeued.
    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    assert_eq!(env.ready_messages().await, 0, "both deliveries were acked");
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["create_calls"], 1,
        "the second delivery found the dispatch running"
    );
    sender.finish_by_cancelling(id).await;

    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn two_deliveries_of_one_dispatch_processed_at_once_make_one_undisturbed_run(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    for _ in 0..2 {
        let (status, accepted) = sender
            .send_hello_keyed("same", json!({"name": "ann"}))
            .await;
        assert_eq!(status, 202, "{accepted}");
    }
    // Both deliveries reach Flyte together: one creates the run, the other meets `already_exists`.
    env.set_sim_faults(json!([{"rpc": "RunService/CreateRun", "latency_ms": 300}]))
        .await;
    let worker = env.start_worker(&env.settings());
    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["create_calls"], 2,
        "both deliveries were processed at once"
    );
    assert_eq!(
        runs[0]["phase"], "ACTION_PHASE_RUNNING",
        "the run was left alone"
    );
    let (_, listed) = sender.get("/dispatches").await;
    let id = listed["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed["items"][0]["status"], "running");
    sender.finish_by_cancelling(&id).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_killed_after_creating_the_run_but_before_acking_makes_one_run(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();

    // Flyte creates the run but holds its answer, so the worker is caught between the run's
    // creation and its ack.
    env.set_sim_faults(json!([{"rpc": "RunService/CreateRun", "latency_after_ms": 600000}]))
        .await;
    let mut doomed_settings = env.settings();
    let broker = env.broker_behind_proxy(&mut doomed_settings).await;
    let doomed = env.start_worker(&doomed_settings);
    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let id = accepted["id"].as_str().unwrap();
    eventually(WAIT, "the run created", || async {
        (!env.sim_runs().await.is_empty()).then_some(())
    })
    .await;
    doomed.kill().await;
    broker.cut(); // its connection dies with it: the broker requeues the unacked delivery

    env.set_sim_faults(json!([])).await;
    env.start_worker(&env.settings());
    let running = sender.wait_for_status(id, "running", WAIT).await;
    assert_eq!(running["attempts"], 2);
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 1, "one run");
    assert_eq!(
        runs[0]["create_calls"], 2,
        "the retry found the run already there"
    );

    sender.finish_by_cancelling(id).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn intake_answers_503_with_retry_after_when_the_broker_is_unreachable(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let ingress = env
        .start_ingress(env.settings_with(&[("AMQP_URL", &url)]))
        .await;
    assert!(!ingress.connected);
    let sender = ingress.sender();
    let response = sender
        .run_task("flytesnacks/development/hello.main/v1")
        .json(&json!({"name": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "queue_unavailable");
    let (status, ready) = sender.probe("/readyz").await;
    assert_eq!((status, &ready["broker"]), (503, &json!("down")));
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn intake_keeps_accepting_while_postgres_is_unreachable_and_nothing_is_lost(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let dead_db = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port());
    let sender = env
        .start_ingress(env.settings_with(&[("DATABASE_URL", &dead_db)]))
        .await
        .sender();

    let (status, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let (code, body) = sender.dispatch(id).await;
    assert_eq!(
        (code, &body["code"]),
        (503, &json!("status_store_unavailable"))
    );
    let (status, ready) = sender.probe("/readyz").await;
    assert_eq!(status, 200, "intake works, so the ingress stays in service");
    assert_eq!(
        (&ready["status"], &ready["database"]),
        (&json!("degraded"), &json!("down"))
    );

    // A worker that can reach the database takes the dispatch: it was not lost.
    env.start_worker(&env.settings());
    let healthy = env.start_ingress(env.settings()).await.sender();
    healthy.wait_for_status(id, "running", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 1);

    healthy.finish_by_cancelling(id).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn permanent_failures_are_recorded_failed_with_the_reason(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let worker = env.start_worker(&env.settings());

    // The interface is not cached yet, so intake accepts; the worker finds the input missing.
    let (status, accepted) = sender.send_hello(json!({"nmae": "typo"})).await;
    assert_eq!(status, 202);
    let failed = sender
        .wait_for_status(accepted["id"].as_str().unwrap(), "failed", WAIT)
        .await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("invalid inputs: name"),
        "{failed}"
    );

    let (_, accepted) = answer(
        sender
            .run_task("flytesnacks/development/no.such.task/v1")
            .json(&json!({})),
    )
    .await;
    let failed = sender
        .wait_for_status(accepted["id"].as_str().unwrap(), "failed", WAIT)
        .await;
    assert!(
        failed["error"].as_str().unwrap().contains("not_found"),
        "{failed}"
    );
    assert!(env.sim_runs().await.is_empty());

    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    assert_eq!(
        env.dead_letters().await,
        2,
        "permanent failures keep their message for replay"
    );
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn transient_flyte_failures_are_retried_and_then_succeed(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.set_sim_faults(json!([{"rpc": "RunService/CreateRun", "code": "unavailable", "count": 2}]))
        .await;
    env.start_worker(&env.settings());
    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let running = sender
        .wait_for_status(accepted["id"].as_str().unwrap(), "running", WAIT)
        .await;
    assert_eq!(running["attempts"], 3);
    assert_eq!(env.sim_runs().await.len(), 1);
    sender
        .finish_by_cancelling(accepted["id"].as_str().unwrap())
        .await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn transient_failures_are_dead_lettered_after_the_configured_attempts(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.set_sim_faults(json!([{"rpc": "RunService/CreateRun", "code": "internal"}]))
        .await;
    // Three attempts, so the test waits for two delay-queue round trips (1 s or 2 s each).
    let worker = env.start_worker(&env.settings_with_file("[worker]\nmax_attempts = 3\n"));
    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let dead = sender
        .wait_for_status(
            accepted["id"].as_str().unwrap(),
            "dead_lettered",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts"),
        "{dead}"
    );
    worker.stop().await;
    assert_eq!(env.ready_messages().await, 0);
    assert_eq!(
        env.dead_letters().await,
        1,
        "the message waits in the dead-letter queue"
    );
    assert_eq!(
        env.sim.calls("RunService/CreateRun").await.unwrap(),
        3,
        "bounded: three tries, no more"
    );
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn replays_keep_the_dispatch_id_unless_a_new_run_is_asked_for(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(
        &env.settings_with_file(&format!("[worker]\nmax_attempts = 2\n{FAST_TRACKING}")),
    );
    let replay = |id: String, body: serde_json::Value| {
        let sender = &sender;
        async move {
            sender
                .post(&format!("/dispatches/{id}/replay"), &body)
                .await
        }
    };

    // Flyte is down long enough for the dispatch to be dead-lettered…
    env.set_sim_faults(json!([{"rpc": "RunService/CreateRun", "code": "unavailable"}]))
        .await;
    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let id = accepted["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&id, "dead_lettered", WAIT).await;
    // …then it is back, and the replay under the same id runs it once.
    env.set_sim_faults(json!([])).await;
    let (status, replayed) = replay(id.clone(), json!({})).await;
    assert_eq!((status, &replayed["id"]), (202, &json!(id)), "{replayed}");
    let done = sender.wait_for_status(&id, "succeeded", WAIT).await;
    assert_eq!(done["outputs"]["o0"], "hello ann");
    assert_eq!(env.sim_runs().await.len(), 1);

    // A succeeded dispatch replays only as a new run.
    let (status, body) = replay(id.clone(), json!({})).await;
    assert_eq!((status, &body["code"]), (409, &json!("not_replayable")));
    let (status, fresh) = replay(id.clone(), json!({"new_run": true})).await;
    assert_eq!(status, 202, "{fresh}");
    assert_ne!(fresh["id"], json!(id));
    sender
        .wait_for_status(fresh["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r["inputs"]["name"] == "ann" && r["create_calls"] == 1)
    );

    let (status, _) = replay("0".repeat(40), json!({})).await;
    assert_eq!(status, 404);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_burst_waits_for_the_per_project_start_rate(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let ids = sender.send_hellos(15).await;
    env.start_worker(&env.settings_with_file("[worker]\nmax_runs_per_second_per_project = 5\n"));
    let started = tokio::time::Instant::now();
    sender.wait_all(&ids, "running", WAIT).await;
    // A burst of 5, then 5 a second: the last 10 runs need at least 2 s. (A lower bound only:
    // a slow machine can take longer, never shorter.)
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "15 runs started in {:?}",
        started.elapsed()
    );
    assert_eq!(env.sim_runs().await.len(), 15);
    for id in &ids {
        sender.finish_by_cancelling(id).await;
    }
    env.finish().await;
}
