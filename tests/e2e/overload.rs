//! Past its capacity the ingress sheds load with a quick `503` + `Retry-After`, never with
//! unbounded latency or an unbounded queue: publishes awaiting a confirm are bounded, and so is
//! the work queue's length.

use flyhook_testkit::TestEnv;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn past_the_bound_on_publishes_in_flight_intake_answers_503_at_once(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let mut settings = env.settings_with_file("[ingress]\nmax_in_flight_publishes = 1\n");
    let broker = env.broker_behind_proxy(&mut settings).await;
    let ingress = env.start_ingress(settings).await;
    assert!(ingress.connected);
    let sender = ingress.sender();

    // A broker that stops confirming holds the one publish allowed in flight.
    broker.pause();
    let mut first = tokio::spawn({
        let sender = sender.clone();
        async move { sender.send_hello(json!({"name": "first"})).await }
    });
    let mut second = tokio::spawn({
        let sender = sender.clone();
        async move { sender.send_hello(json!({"name": "second"})).await }
    });
    // Whichever took the slot waits for its confirm; the other is refused while the broker
    // still holds every byte.
    let (refused, held) = tokio::select! {
        answer = &mut first => (answer.unwrap(), second),
        answer = &mut second => (answer.unwrap(), first),
    };
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_eq!(refused.1["code"], "at_capacity", "{}", refused.1);

    broker.resume();
    let (status, body) = held.await.unwrap();
    assert_eq!(
        status, 202,
        "the held publish is confirmed once the broker answers: {body}"
    );
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_full_work_queue_refuses_intake_with_503_and_keeps_what_it_holds(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let sender = env
        .start_ingress(env.settings_with_file("[ingress]\nmax_queue_length = 3\n"))
        .await
        .sender();
    let mut accepted = 0;
    let mut refused = 0;
    for n in 0..10 {
        let (status, body) = sender.send_hello(json!({"name": format!("n{n}")})).await;
        match status {
            202 => accepted += 1,
            503 => {
                assert_eq!(body["code"], "at_capacity", "{body}");
                refused += 1;
            }
            _ => panic!("{status}: {body}"),
        }
        if n < 3 {
            assert_eq!(status, 202, "below the bound: {body}");
        }
    }
    // A quorum queue enforces its bound once it is over it, so one more may get in; past that,
    // every publish is refused.
    assert!(refused >= 6, "{accepted} accepted, {refused} refused");
    assert_eq!(
        env.ready_messages().await,
        accepted,
        "every 202 is in the queue and no 503 is"
    );
    env.finish().await;
}
