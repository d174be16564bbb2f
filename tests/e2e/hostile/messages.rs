//! Messages that kill their workers or cannot be read end in the dead-letter queue, recorded;
//! dead letters are listed and replayed from the broker alone; a changed queue bound stops
//! start-up with the fix.

use flyhook_contract::IdIssuer;
use flyhook_testkit::env::FAST_TRACKING;
use flyhook_testkit::{TestEnv, broker, eventually};
use flyhook_worker::{Outcome, Worker};
use serde_json::json;
use sqlx::PgPool;

use super::{WAIT, hello, metric, publish_raw, status_and_error};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_message_that_keeps_killing_its_workers_is_dead_lettered_and_recorded(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    // Every start fails for a while, so the dispatch stays `starting` between deliveries.
    env.set_sim_faults(
        json!([{"rpc": "RunService/CreateRun", "code": "unavailable", "rate": 1.0}]),
    )
    .await;
    let settings = env.settings();
    let worker = Worker::build(&settings.deployment, &settings.worker).unwrap();
    let dispatch = hello(&settings, json!({"name": "poison"}));
    // Each call is one delivery RabbitMQ handed back unsettled: what a worker crash looks like.
    let mut outcomes = vec![worker.processor().process(&dispatch, false).await];
    for _ in 0..flyhook_worker::MAX_REDELIVERIES {
        outcomes.push(worker.processor().process(&dispatch, true).await);
    }
    assert!(
        outcomes[..outcomes.len() - 1]
            .iter()
            .all(|o| matches!(o, Outcome::RetryAfter(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.last(), Some(&Outcome::DeadLetter));
    let (status, error) = status_and_error(&pool, &dispatch.id.to_string())
        .await
        .unwrap();
    assert_eq!(status, "dead_lettered");
    assert!(error.unwrap_or_default().contains("without an outcome"));
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn an_unreadable_message_is_recorded_failed_under_its_id(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.settings();
    let id = IdIssuer::new(&settings.ingress.id_secret)
        .issue()
        .to_string();
    publish_raw(&env.topology(), b"{\"type\": \"dispatch_v9\"}", &id).await;
    env.start_worker(&settings);
    let (_, error) = eventually(WAIT, "the unreadable message is recorded", || async {
        status_and_error(&pool, &id)
            .await
            .filter(|(status, _)| status == "failed")
    })
    .await;
    assert!(error.unwrap_or_default().contains("could not be read"));
    env.wait_for_dead_letters(1, WAIT).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn dead_letters_are_listed_and_replayed_from_the_broker_and_recorded_when_the_store_returns(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let mut settings =
        env.settings_with_file(&format!("[worker]\nmax_attempts = 1\n{FAST_TRACKING}"));
    let database = env.database_behind_proxy(&mut settings).await;
    env.set_sim_faults(
        json!([{"rpc": "RunService/CreateRun", "code": "unavailable", "rate": 1.0}]),
    )
    .await;
    let worker = env.start_worker(&settings);
    let (_, accepted) = sender.send_hello(json!({"name": "dead"})).await;
    let id = accepted["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&id, "dead_lettered", WAIT).await;

    let connection = broker::connect().await.unwrap();
    let topology = env.topology();
    let letters = eventually(WAIT, "the dead letter is listed", || async {
        let letters = flyhook_contract::dead_letters::list(&connection, &topology, 10)
            .await
            .unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id.as_deref(), Some(id.as_str()));
    assert_eq!(letters[0].kind, "dispatch");
    assert_eq!(letters[0].reason.as_deref(), Some("rejected"));
    // Listing took nothing away (what it read goes back as its channel closes).
    env.wait_for_dead_letters(1, WAIT).await;

    // Flyte is back, PostgreSQL is not: the replay goes through the broker alone.
    env.set_sim_faults(json!([])).await;
    database.go_down();
    let replayed = flyhook_contract::dead_letters::replay(&connection, &topology, |_| true)
        .await
        .unwrap();
    assert_eq!((replayed.sent, replayed.kept), (1, 0));
    assert_eq!(env.dead_letters().await, 0);
    eventually(
        WAIT,
        "the worker holds the replay until the store returns",
        || async {
            (metric(&env.http, &worker.ops_base, "flyhook_deliveries_held").await == Some(1.0))
                .then_some(())
        },
    )
    .await;
    database.come_back();
    sender.wait_for_status(&id, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 1);
    let _ = connection.close(200, "".into()).await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_changed_queue_bound_stops_start_up_with_the_fix(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let connection = broker::connect().await.unwrap();
    env.topology().declare(&connection).await.unwrap();
    let _ = connection.close(200, "".into()).await;
    let changed = env.settings_with_file("[ingress]\nmax_queue_length = 10\n");

    let refused = flyhook_ingress::Application::build(
        &changed.deployment,
        changed.ingress.clone(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let text = format!("{refused:#}");
    assert!(
        text.contains("x-max-length") && text.contains("rabbitmqctl delete_queue"),
        "{text}"
    );
    let worker = Worker::build(&changed.deployment, &changed.worker).unwrap();
    let stopped = tokio::time::timeout(
        WAIT,
        worker.run_until_stopped(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the worker stops by itself");
    assert!(format!("{:#}", stopped.unwrap_err()).contains("x-max-length"));
    env.finish().await;
}
