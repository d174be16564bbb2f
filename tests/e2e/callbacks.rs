//! Completion callbacks: signed events a receiver verifies with the official Standard Webhooks
//! library, at least once through failures, given up into the dead-letter queue, sent again.

use std::time::Duration;

use base64::Engine;
use flyhook_contract::DispatchId;
use flyhook_store::DispatchStore;
use flyhook_testkit::receiver::Received;
use flyhook_testkit::{HELLO_TASK, Receiver, TestEnv, eventually, free_port};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

/// A fresh Standard Webhooks secret, set as `BOT_WHSEC` in `env`.
fn secret(env: &mut TestEnv) -> String {
    let bytes: Vec<u8> = (0..24).map(|_| fastrand::u8(..)).collect();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    env.set_var("BOT_WHSEC", &secret);
    secret
}

/// `[[callbacks]]` "bot" at `url` (for the key `default`), "private" (for no key), and
/// hello.main's `[[tasks]]` policy naming "bot"; trackers that look often.
fn config(url: &str, max_attempts: u32) -> String {
    format!(
        "[[callbacks]]\nname = \"bot\"\nurl = \"{url}\"\nsecret = {{ env = \"BOT_WHSEC\" }}\n\
         senders = [\"default\"]\nmax_attempts = {max_attempts}\ntimeout_ms = 2000\n\
         [[callbacks]]\nname = \"private\"\nurl = \"{url}\"\nsecret = {{ env = \"BOT_WHSEC\" }}\n\
         [[tasks]]\ntask = \"{HELLO_TASK}\"\ncallback = \"bot\"\n\
         {}",
        flyhook_testkit::env::FAST_TRACKING
    )
}

/// What the official Standard Webhooks library says of a request, as a receiver would ask.
fn verified(secret: &str, received: &Received) -> Result<(), standardwebhooks::WebhookError> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &received.headers {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&received.body, &headers)
}

fn verify(secret: &str, received: &Received) {
    verified(secret, received)
        .expect("the official Standard Webhooks library verifies the callback");
}

async fn callback_state(sender: &flyhook_testkit::Sender, id: &str, state: &str) -> Value {
    eventually(WAIT, &format!("the callback {state}"), || async {
        let (_, body) = sender.dispatch(id).await;
        if body["callback"]["state"] == state {
            Ok(body)
        } else {
            Err(body.to_string())
        }
    })
    .await
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_run_that_ends_is_called_back_signed_through_failures_once_per_ending(pool: PgPool) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let secret = secret(&mut env);
    // Fails twice, then recovers.
    let receiver = Receiver::start(&[500, 503], 200);
    let settings = env.settings_with_file(&config(&receiver.url, 10));
    let sender = env.start_ingress(settings.clone()).await.sender();
    env.start_worker(&settings);

    // A run that fails (the stand-in fails hello.main for "fail"), so it can be replayed.
    let (status, accepted) = sender.send_hello(json!({"name": "fail"})).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    let record = callback_state(&sender, id, "delivered").await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["callback"]["destination"], "bot");
    assert_eq!(record["callback"]["attempts"], 3, "{record}");
    assert!(
        record["callback"]["last_answer"]
            .as_str()
            .unwrap()
            .starts_with("200"),
        "{record}"
    );

    let received = receiver.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    let webhook_id = record["callback"]["webhook_id"].as_str().unwrap();
    for request in &received {
        verify(&secret, request);
        assert_eq!(
            request.header("webhook-id"),
            Some(webhook_id),
            "one id per ending"
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    let event = received[2].json();
    assert_eq!(event["type"], "dispatch.failed");
    assert_eq!(event["data"]["id"], id);
    assert_eq!(event["data"]["status"], "failed");
    assert_eq!(event["data"]["run_name"], accepted["run_name"]);
    assert_eq!(event["data"]["url"], accepted["url"]);
    assert_eq!(event["data"]["task"]["name"], "hello.main");
    assert_eq!(event["data"]["error"], record["error"], "{event}");
    assert!(event["data"]["outputs"].is_null(), "{event}");
    assert_eq!(event["data"]["ending"], 1);
    assert!(event["data"]["finished_at"].is_string(), "{event}");
    // A body changed on the way is refused by the same library.
    let mut tampered = received[2].clone();
    tampered.body.extend_from_slice(b" ");
    assert!(verified(&secret, &tampered).is_err());

    // Replayed, it ends again: a second event under a new id; the first is not sent again.
    let (status, _) = sender
        .post(&format!("/dispatches/{id}/replay"), &json!({}))
        .await;
    assert_eq!(status, 202);
    eventually(WAIT, "the second ending's callback", || async {
        let received = receiver.received();
        (received.len() == 4).then(|| received[3].clone())
    })
    .await;
    let second = &receiver.received()[3];
    verify(&secret, second);
    assert_ne!(second.header("webhook-id"), Some(webhook_id));
    let record = callback_state(&sender, id, "delivered").await;
    assert_eq!(
        record["callback"]["webhook_id"].as_str(),
        second.header("webhook-id")
    );
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_request_names_only_a_destination_its_key_may_use_and_a_cancel_is_called_back(
    pool: PgPool,
) {
    let mut env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let secret = secret(&mut env);
    let receiver = Receiver::start(&[], 204);
    let settings = env.settings_with_file(&config(&receiver.url, 10));
    let sender = env.start_ingress(settings.clone()).await.sender();

    // The key `default` is not one of "private"'s senders; an unknown name is refused alike.
    for name in ["private", "nobody"] {
        let response = sender
            .run_task(HELLO_TASK)
            .header("flyhook-callback", name)
            .json(&json!({"name": "ann"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "callback_not_allowed");
        assert_eq!(body["field"], "Flyhook-Callback");
    }
    assert_eq!(env.ready_messages().await, 0, "nothing refused was queued");

    env.start_worker(&settings);
    let response = sender
        .run_task(HELLO_TASK)
        .header("flyhook-callback", "bot")
        .json(&json!({"name": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    sender.wait_for_status(id, "running", WAIT).await;
    sender.finish_by_cancelling(id).await;
    let record = callback_state(&sender, id, "delivered").await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one ending, one delivery");
    verify(&secret, &received[0]);
    let event = received[0].json();
    assert_eq!(event["type"], "dispatch.aborted");
    assert!(
        event["data"]["error"]
            .as_str()
            .unwrap()
            .contains("test is over"),
        "{event}"
    );
    assert_eq!(record["callback"]["attempts"], 1);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_receiver_down_for_good_is_dead_lettered_and_sent_again_on_request(pool: PgPool) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let secret = secret(&mut env);
    let port = free_port();
    let settings =
        env.settings_with_file(&config(&format!("http://127.0.0.1:{port}/flyte-done"), 2));
    let sender = env.start_ingress(settings.clone()).await.sender();
    env.start_worker(&settings);

    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let id = accepted["id"].as_str().unwrap();
    let record = callback_state(&sender, id, "failed").await;
    assert_eq!(record["callback"]["attempts"], 2, "{record}");
    let answer = record["callback"]["last_answer"].as_str().unwrap();
    assert!(answer.starts_with("gave up after 2 attempts"), "{answer}");
    assert!(answer.contains("could not connect"), "{answer}");
    assert!(
        !answer.contains(&port.to_string()),
        "no URL in the answer: {answer}"
    );
    eventually(WAIT, "the callback in the dead-letter queue", || async {
        (env.dead_letters().await == 1).then_some(())
    })
    .await;

    // The receiver comes back; `flyhook replay --callbacks` sends the same event again.
    let receiver = Receiver::start_on(port, &[], 200);
    let store = DispatchStore::new(pool.clone());
    let resent = store
        .resend_callbacks(&[DispatchId::parse(id).unwrap()])
        .await
        .unwrap();
    assert_eq!(resent, [id]);
    let record = callback_state(&sender, id, "delivered").await;
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    verify(&secret, &received[0]);
    assert_eq!(
        received[0].header("webhook-id"),
        record["callback"]["webhook_id"].as_str(),
        "the same event, the same id"
    );
    assert_eq!(received[0].json()["data"]["id"], id);
    // Delivered: asking again sends nothing.
    assert!(
        store
            .resend_callbacks(&[DispatchId::parse(id).unwrap()])
            .await
            .unwrap()
            .is_empty()
    );
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_receiver_that_answers_410_is_recorded_and_not_retried(pool: PgPool) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let secret = secret(&mut env);
    let receiver = Receiver::start(&[], 410);
    let settings = env.settings_with_file(&config(&receiver.url, 10));
    let sender = env.start_ingress(settings.clone()).await.sender();
    env.start_worker(&settings);

    let (_, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    let id = accepted["id"].as_str().unwrap();
    let record = callback_state(&sender, id, "failed").await;
    assert_eq!(record["callback"]["attempts"], 1, "{record}");
    assert!(
        record["callback"]["last_answer"]
            .as_str()
            .unwrap()
            .starts_with("410"),
        "{record}"
    );
    // The destination still works for the next dispatch: 410 disabled nothing.
    receiver.answer_from_now(200);
    let (_, next) = sender.send_hello(json!({"name": "bob"})).await;
    callback_state(&sender, next["id"].as_str().unwrap(), "delivered").await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    verify(&secret, &received[1]);
    let event = received[1].json();
    assert_eq!(event["type"], "dispatch.succeeded");
    assert_eq!(event["data"]["outputs"]["o0"], "hello bob", "{event}");
    assert_eq!(event["data"]["outputs_truncated"], false);
    assert_eq!(env.dead_letters().await, 0, "a 410 is not kept for replay");
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_receiver_that_hangs_holds_up_its_own_callbacks_only(pool: PgPool) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    secret(&mut env);
    // Takes connections and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = Receiver::start(&[], 200);
    let config = format!(
        "{}[[callbacks]]\nname = \"hangs\"\nurl = \"http://{}/\"\nsecret = {{ env = \"BOT_WHSEC\" }}\n\
         senders = [\"default\"]\ntimeout_ms = 8000\nmax_in_flight = 1\n\
         [worker]\ncallback_concurrency = 2\n",
        config(&receiver.url, 10),
        hanging.local_addr().unwrap()
    );
    let settings = env.settings_with_file(&config);
    let sender = env.start_ingress(settings.clone()).await.sender();
    env.start_worker(&settings);

    let mut stuck = Vec::new();
    for name in ["a", "b", "c"] {
        let response = sender
            .run_task(HELLO_TASK)
            .header("flyhook-callback", "hangs")
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        let accepted: Value = response.json().await.unwrap();
        stuck.push(accepted["id"].as_str().unwrap().to_string());
    }
    for id in &stuck {
        sender.wait_for_status(id, "succeeded", WAIT).await;
    }
    // Its three events take one slot of two at most: the other destination's goes at once,
    // long before the hanging receiver's first delivery times out.
    let (_, other) = sender.send_hello(json!({"name": "d"})).await;
    let other = other["id"].as_str().unwrap();
    eventually(
        Duration::from_secs(5),
        "the other destination's callback",
        || async {
            let (_, body) = sender.dispatch(other).await;
            (body["callback"]["state"] == "delivered").then_some(())
        },
    )
    .await;
    for id in &stuck {
        let (_, body) = sender.dispatch(id).await;
        assert_ne!(body["callback"]["state"], "delivered", "{body}");
    }
    env.finish().await;
}
