//! Input that must be refused at the door, naming what is wrong: a NUL, nesting a worker could
//! not read back, a reused idempotency key.

use flyhook_testkit::TestEnv;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::WAIT;

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_nul_in_the_inputs_is_refused_at_the_door_naming_the_field(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    // 100 levels parse (the parser's limit is 128) but could not be read back by a worker once
    // wrapped in a queue message.
    let deep = (0..100).fold(json!(1), |inner, _| json!([inner]));
    for (inputs, field) in [
        (json!({"a": 1, "b": 2, "label": "nul\u{0}here"}), "label"),
        (json!({"deep": {"list": ["ok", "\u{0}"]}}), "deep.list[1]"),
        (json!({"deep": deep}), &format!("deep{}", "[0]".repeat(63))),
    ] {
        let (status, body) = sender.send_hello(inputs).await;
        assert_eq!(
            (status, &body["code"], &body["field"]),
            (422, &json!("unstorable_input"), &json!(field)),
            "{body}"
        );
    }
    // Nothing was enqueued.
    assert_eq!(env.ready_messages().await, 0);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_reused_idempotency_key_with_other_inputs_is_refused(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());
    let send = |inputs: Value| {
        let sender = sender.clone();
        async move {
            let response = sender
                .run_task("flytesnacks/development/hello.main/v1")
                .header("Idempotency-Key", "order-42")
                .json(&inputs)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, first) = send(json!({"name": "a"})).await;
    assert_eq!(status, 202);
    let id = first["id"].as_str().unwrap();
    sender.wait_for_status(id, "succeeded", WAIT).await;
    // The same send again is the same dispatch...
    let (status, again) = send(json!({"name": "a"})).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]));
    // ...but the same key for other inputs is a mistake, said so.
    let (status, other) = send(json!({"name": "b"})).await;
    assert_eq!(
        (status, &other["code"], &other["field"]),
        (
            422,
            &json!("idempotency_key_reused"),
            &json!("Idempotency-Key")
        ),
        "{other}"
    );
    assert_eq!(env.sim_runs().await.len(), 1);
    env.finish().await;
}
