//! Dependencies going away and coming back, simulated by a TCP proxy in front of the shared
//! RabbitMQ or PostgreSQL (the real services are never stopped inside `cargo test`).

use std::time::Duration;

use flyhook_e2e::{Proxy, Sender, TestEnv};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

async fn ready(env: &TestEnv, base: &str) -> Value {
    env.http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_ingress_answers_503_while_the_broker_is_away_and_accepts_again_when_it_returns(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let broker = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let ingress = env
        .start_ingress(env.settings_with(&[("AMQP_URL", &broker.amqp_url())]))
        .await;
    let sender = Sender::new(&ingress);
    assert_eq!(sender.send_hello(json!({"name": "before"})).await.0, 202);

    broker.go_down();
    let (status, body) = sender.send_hello(json!({"name": "during"})).await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("queue_unavailable")),
        "{body}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while ready(&env, &ingress.base).await["broker"] != "down" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never turned red"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    broker.come_back();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = sender.send_hello(json!({"name": "after"})).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ingress never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready(&env, &ingress.base).await["broker"], "up");
    // Both accepted dispatches are in the queue; the refused one is not.
    assert_eq!(env.ready_messages().await, 2);
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_reconnects_to_the_broker_and_the_backlog_drains(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let broker = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let mut settings = env.fast_tracking();
    settings.deployment.amqp_url = broker.amqp_url().into();
    let worker = env.start_worker(&settings);
    let (_, first) = sender.send_hello(json!({"name": "a"})).await;
    sender
        .wait_for_status(first["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;

    broker.go_down();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, accepted) = sender.send_hello(json!({ "name": format!("n{i}") })).await;
        assert_eq!(status, 202);
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
    broker.come_back();
    for id in &ids {
        sender.wait_for_status(id, "succeeded", WAIT).await;
    }
    assert_eq!(env.sim_runs().await.len(), 6);
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_that_cannot_record_does_not_ack_and_nothing_is_lost(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let mut settings = env.fast_tracking();
    let database = env.database_behind_proxy(&mut settings).await;
    database.go_down();
    let worker = env.start_worker(&settings);

    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let id = accepted["id"].as_str().unwrap();
    // While PostgreSQL is away the worker keeps the message (requeued, never acked) and
    // starts nothing: it could not record that it did.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < deadline {
        assert!(
            env.sim_runs().await.is_empty(),
            "a run started without a record"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    database.come_back();
    sender.wait_for_status(id, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 1);
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}
