//! Dependencies going away and coming back, simulated by a TCP proxy in front of the shared
//! RabbitMQ or PostgreSQL (the real services are never stopped inside `cargo test`).

use std::time::Duration;

use flyhook_testkit::{Proxy, Sender, TestEnv, eventually, wait_until};
use serde_json::json;
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_ingress_answers_503_while_the_broker_is_away_and_accepts_again_when_it_returns(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let mut settings = env.settings();
    let broker = env.broker_behind_proxy(&mut settings).await;
    let sender = env.start_ingress(settings).await.sender();
    assert_eq!(sender.send_hello(json!({"name": "before"})).await.0, 202);

    broker.go_down();
    let (status, body) = sender.send_hello(json!({"name": "during"})).await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("queue_unavailable")),
        "{body}"
    );
    eventually(WAIT, "readiness turned red", || async {
        (sender.probe("/readyz").await.1["broker"] == "down").then_some(())
    })
    .await;

    broker.come_back();
    wait_until(
        WAIT,
        Duration::from_millis(50),
        "the ingress reconnected",
        || async {
            let (status, body) = sender.send_hello(json!({"name": "after"})).await;
            assert!(status == 202 || status == 503, "{status}: {body}");
            (status == 202).then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(sender.probe("/readyz").await.1["broker"], "up");
    // Both accepted dispatches are in the queue; the refused one is not.
    assert_eq!(env.ready_messages().await, 2);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_reconnects_to_the_broker_and_the_backlog_drains(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let mut settings = env.fast_tracking();
    let broker = env.broker_behind_proxy(&mut settings).await;
    env.start_worker(&settings);
    let (_, first) = sender.send_hello(json!({"name": "a"})).await;
    sender
        .wait_for_status(first["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;

    broker.go_down();
    let ids = sender.send_hellos(5).await;
    broker.come_back();
    sender.wait_all(&ids, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 6);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_worker_that_cannot_record_does_not_ack_and_nothing_is_lost(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let mut settings = env.fast_tracking();
    let database = env.database_behind_proxy(&mut settings).await;
    database.go_down();
    env.start_worker(&settings);

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
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn an_ingress_and_a_worker_given_three_nodes_move_on_when_theirs_goes(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let mut settings = env.fast_tracking();
    let nodes = env.brokers_behind_proxies(&mut settings, 3).await;
    let sender = env.start_ingress(settings.clone()).await.sender();
    let worker = env.start_worker(&settings);
    let worker_ops = Sender::at(&worker.ops_base);
    let on_node = |ready: (u16, serde_json::Value)| -> Option<String> {
        (ready.0 == 200)
            .then(|| ready.1["broker_node"].as_str().map(str::to_string))
            .flatten()
    };
    let (_, first) = sender.send_hello(json!({"name": "a"})).await;
    sender
        .wait_for_status(first["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;

    // Take away the ingress's node, then the one the worker is on after that: each must move
    // on (the worker once or twice, the ingress once or twice), and both end on the one left.
    let mut gone = Vec::new();
    let ingress_node = on_node(sender.probe("/readyz").await).expect("the ingress on a node");
    gone.push(ingress_node);
    let proxy = |address: &str| nodes.iter().find(|n| n.address() == address).unwrap();
    proxy(&gone[0]).go_down();
    let worker_node = eventually(WAIT, "the worker on a node still up", || async {
        on_node(worker_ops.probe("/readyz").await).filter(|node| !gone.contains(node))
    })
    .await;
    proxy(&worker_node).go_down();
    gone.push(worker_node);
    let up: Vec<String> = nodes
        .iter()
        .map(Proxy::address)
        .filter(|a| !gone.contains(a))
        .collect();
    for (what, ops) in [("the ingress", &sender), ("the worker", &worker_ops)] {
        eventually(WAIT, &format!("{what} on a node still up"), || async {
            on_node(ops.probe("/readyz").await).filter(|node| up.contains(node))
        })
        .await;
    }
    let ids = sender.send_hellos(5).await;
    sender.wait_all(&ids, "succeeded", WAIT).await;
    assert_eq!(env.sim_runs().await.len(), 6);
    env.finish().await;
}
