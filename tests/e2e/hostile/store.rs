//! What the store cannot hold fails alone; store errors are told apart by SQLSTATE; while
//! PostgreSQL is away, deliveries are held, not requeued.

use std::time::Duration;

use flyhook_contract::DispatchMessage;
use flyhook_contract::dispatch::Dispatch;
use flyhook_store::StoreFault;
use flyhook_testkit::{TestEnv, eventually};
use serde_json::json;
use sqlx::PgPool;

use super::{WAIT, hello, metric, publish, status_and_error};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_dispatch_the_store_cannot_hold_fails_alone_and_its_batch_goes_on(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.fast_tracking();
    // Queued before any worker runs, so the claims share batches.
    let bad = hello(&settings, json!({"name": "nul\u{0}here"}));
    let good: Vec<Dispatch> = (0..20)
        .map(|i| hello(&settings, json!({ "name": format!("n{i}") })))
        .collect();
    for dispatch in good[..10].iter().chain([&bad]).chain(&good[10..]) {
        publish(
            &env.topology(),
            &DispatchMessage::DispatchV1(dispatch.clone()),
        )
        .await;
    }
    env.start_worker(&settings);

    let (status, error) = eventually(WAIT, "the unstorable dispatch ends failed", || async {
        status_and_error(&pool, &bad.id.to_string())
            .await
            .filter(|(status, _)| status == "failed")
    })
    .await;
    assert_eq!(status, "failed");
    assert!(
        error.as_deref().unwrap_or("").contains("cannot hold"),
        "{error:?}"
    );
    for dispatch in &good {
        eventually(
            WAIT,
            "every other dispatch of its batch succeeds",
            || async {
                status_and_error(&pool, &dispatch.id.to_string())
                    .await
                    .filter(|(status, _)| status == "succeeded")
            },
        )
        .await;
    }
    // It is kept for a human, and its record says why.
    env.wait_for_dead_letters(1, WAIT).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn store_errors_are_told_apart_by_sqlstate(pool: PgPool) {
    let refused = [
        "SELECT '\"\\u0000\"'::jsonb", // 22P05, what a NUL does
        "SELECT 1 / 0",                // 22012
        "SELECT 'x'::int",             // 22P02
        "INSERT INTO dispatches (id, status, run_name, received_at) VALUES ('a', 'nope', 'r', now())", // 23514
        "SELECT array_fill(1, ARRAY[200000000])", // 54000, a program limit
    ];
    for statement in refused {
        let e = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert_eq!(StoreFault::of(&e), StoreFault::Refused, "{statement}: {e}");
    }
    let closed = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{}/x",
            flyhook_testkit::free_port()
        ))
        .unwrap();
    let e = sqlx::query("SELECT 1").execute(&closed).await.unwrap_err();
    assert_eq!(StoreFault::of(&e), StoreFault::Unavailable, "{e}");
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn while_postgres_is_away_deliveries_are_held_not_requeued(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let mut settings = env.fast_tracking();
    let database = env.database_behind_proxy(&mut settings).await;
    database.go_down();
    let worker = env.start_worker(&settings);

    let ids = sender.send_hellos(3).await;
    // All three wait in the worker, unsettled: none goes back to the queue to count towards
    // the broker's delivery limit.
    eventually(WAIT, "the worker holds the three deliveries", || async {
        (metric(&env.http, &worker.ops_base, "flyhook_deliveries_held").await == Some(3.0))
            .then_some(())
    })
    .await;
    assert_eq!(env.ready_messages().await, 0);
    assert!(
        env.sim_runs().await.is_empty(),
        "a run started without a record"
    );

    database.come_back();
    sender.wait_all(&ids, "succeeded", WAIT).await;
    let (redeliveries, attempts): (i32, i32) = sqlx::query_as(
        "SELECT max(redeliveries), max(attempts) FROM dispatches WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((redeliveries, attempts), (0, 1));
    assert_eq!(env.dead_letters().await, 0);
    env.finish().await;
}
