//! The guarantees under hostile input and bad days: data the store cannot hold, messages that
//! kill their workers or cannot be read, PostgreSQL away for long, dead letters handled from
//! the broker, cancels and runs Flyte will not confirm, reused idempotency keys, and a queue
//! bound changed under a running deployment (a fanned-out delivery queued whole is in
//! `hooks/`). What the tests here share is below; the tests are in `hostile/`.

mod flyte;
mod input;
mod messages;
mod store;

use std::time::Duration;

use chrono::Utc;
use flyhook::Settings;
use flyhook_contract::TaskRef;
use flyhook_contract::broker;
use flyhook_contract::broker::Topology;
use flyhook_contract::dispatch::Dispatch;
use flyhook_contract::{DispatchMessage, IdIssuer};
use serde_json::Value;
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

fn hello(settings: &Settings, inputs: Value) -> Dispatch {
    let Value::Object(inputs) = inputs else {
        panic!("inputs are an object")
    };
    Dispatch {
        id: IdIssuer::new(&settings.ingress.id_secret).issue(),
        task: TaskRef::parse("flytesnacks", "development", "hello.main", "v1").unwrap(),
        inputs,
        received_at: Utc::now(),
        api_key: "default".into(),
        retries: 0,
        request_id: None,
        replay: false,
        delivery: None,
        callback: None,
        concurrency: None,
        debounce: None,
    }
}

/// Publishes raw bytes to the work exchange, as an older or broken ingress might.
async fn publish_raw(topology: &Topology, body: &[u8], message_id: &str) {
    let connection = flyhook_testkit::broker::connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    topology.declare(&connection).await.unwrap();
    channel
        .basic_publish(
            topology.exchange().as_str().into(),
            broker::ROUTING_KEY.into(),
            Default::default(),
            body,
            lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(message_id.into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = connection.close(200, "".into()).await;
}

async fn publish(topology: &Topology, message: &DispatchMessage) {
    let body = serde_json::to_vec(message).unwrap();
    publish_raw(topology, &body, &message.id().unwrap().to_string()).await;
}

async fn status_and_error(pool: &PgPool, id: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as("SELECT status, error FROM dispatches WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} "))?.parse().ok())
}
