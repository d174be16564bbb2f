//! The guarantees under hostile input and bad days: data the store cannot hold, messages that
//! kill their workers or cannot be read, PostgreSQL away for long, dead letters handled from
//! the broker, cancels and runs Flyte will not confirm, reused idempotency keys, fan-out that
//! must be queued whole, and a queue bound changed under a running deployment.

use std::time::Duration;

use chrono::Utc;
use flyhook::Settings;
use flyhook_contract::TaskRef;
use flyhook_contract::broker;
use flyhook_contract::broker::Topology;
use flyhook_contract::dispatch::Dispatch;
use flyhook_contract::{DispatchMessage, IdIssuer};
use flyhook_e2e::{Sender, TestEnv, amqp_url, eventually};
use flyhook_store::StoreFault;
use flyhook_worker::{Outcome, Worker};
use serde_json::{Value, json};
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
    }
}

/// Publishes raw bytes to the work exchange, as an older or broken ingress might.
async fn publish_raw(topology: &Topology, body: &[u8], message_id: &str) {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    topology.declare(&channel).await.unwrap();
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

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_nul_in_the_inputs_is_refused_at_the_door_naming_the_field(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
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
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_dispatch_the_store_cannot_hold_fails_alone_and_its_batch_goes_on(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.fast_tracking();
    // Queued before any worker runs, so the claims share batches.
    let bad = hello(&settings, json!({"name": "nul\u{0}here"}));
    let good: Vec<Dispatch> = (0..20)
        .map(|i| hello(&settings, json!({ "name": format!("n{i}") })))
        .collect();
    for dispatch in good.iter().take(10) {
        publish(
            &env.topology(),
            &DispatchMessage::DispatchV1(dispatch.clone()),
        )
        .await;
    }
    publish(&env.topology(), &DispatchMessage::DispatchV1(bad.clone())).await;
    for dispatch in good.iter().skip(10) {
        publish(
            &env.topology(),
            &DispatchMessage::DispatchV1(dispatch.clone()),
        )
        .await;
    }
    let worker = env.start_worker(&settings);

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
    eventually(
        WAIT,
        "the unstorable dispatch waits in the dead-letter queue",
        || async { (env.dead_letters().await == 1).then_some(()) },
    )
    .await;
    worker.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn store_errors_are_told_apart_by_sqlstate(pool: PgPool) {
    let refused = [
        "SELECT '\"\\u0000\"'::jsonb", // 22P05, what a NUL does
        "SELECT 1 / 0",                // 22012
        "SELECT 'x'::int",             // 22P02
        "INSERT INTO dispatches (id, status, run_name, received_at) VALUES ('a', 'nope', 'r', now())", // 23514
    ];
    for statement in refused {
        let e = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert_eq!(StoreFault::of(&e), StoreFault::Refused, "{statement}: {e}");
    }
    let closed = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{}/x",
            flyhook_e2e::closed_port()
        ))
        .unwrap();
    let e = sqlx::query("SELECT 1").execute(&closed).await.unwrap_err();
    assert_eq!(StoreFault::of(&e), StoreFault::Unavailable, "{e}");
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn while_postgres_is_away_deliveries_are_held_not_requeued(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let mut settings = env.fast_tracking();
    let database = env.database_behind_proxy(&mut settings).await;
    database.go_down();
    let worker = env.start_worker(&settings);

    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, accepted) = sender.send_hello(json!({ "name": format!("n{i}") })).await;
        assert_eq!(status, 202);
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
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
    for id in &ids {
        sender.wait_for_status(id, "succeeded", WAIT).await;
    }
    let (redeliveries, attempts): (i32, i32) = sqlx::query_as(
        "SELECT max(redeliveries), max(attempts) FROM dispatches WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((redeliveries, attempts), (0, 1));
    assert_eq!(env.dead_letters().await, 0);
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

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
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn an_unreadable_message_is_recorded_failed_under_its_id(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let settings = env.settings();
    let id = IdIssuer::new(&settings.ingress.id_secret)
        .issue()
        .to_string();
    publish_raw(&env.topology(), b"{\"type\": \"dispatch_v9\"}", &id).await;
    let worker = env.start_worker(&settings);
    let (_, error) = eventually(WAIT, "the unreadable message is recorded", || async {
        status_and_error(&pool, &id)
            .await
            .filter(|(status, _)| status == "failed")
    })
    .await;
    assert!(error.unwrap_or_default().contains("could not be read"));
    eventually(WAIT, "it waits in the dead-letter queue", || async {
        (env.dead_letters().await == 1).then_some(())
    })
    .await;
    worker.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn dead_letters_are_listed_and_replayed_from_the_broker_and_recorded_when_the_store_returns(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let mut settings = env.settings_with_file(
        "[worker]\nmax_attempts = 1\n[worker.tracking]\nmin_poll_ms = 50\nmax_poll_ms = 200\n",
    );
    let database = env.database_behind_proxy(&mut settings).await;
    env.set_sim_faults(
        json!([{"rpc": "RunService/CreateRun", "code": "unavailable", "rate": 1.0}]),
    )
    .await;
    let worker = env.start_worker(&settings);
    let (_, accepted) = sender.send_hello(json!({"name": "dead"})).await;
    let id = accepted["id"].as_str().unwrap().to_string();
    sender.wait_for_status(&id, "dead_lettered", WAIT).await;

    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
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
    eventually(
        WAIT,
        "the listed dead letter is back in its queue",
        || async { (env.dead_letters().await == 1).then_some(()) },
    )
    .await;

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
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_run_cancelled_while_starting_is_aborted_once_flyte_confirms(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    // The start is slow (time to cancel meanwhile), and the first two aborts fail.
    env.set_sim_faults(json!([
        {"rpc": "RunService/CreateRun", "rate": 1.0, "latency_after_ms": 3000},
        {"rpc": "RunService/AbortRun", "code": "unavailable", "rate": 1.0, "count": 2}
    ]))
    .await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let worker = env.start_worker(&env.fast_tracking());
    let (_, accepted) = sender.send_hello(json!({"name": "slow"})).await;
    let id = accepted["id"].as_str().unwrap();
    sender.wait_for_status(id, "starting", WAIT).await;
    let (status, body) = sender.cancel(id).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("aborted")),
        "{body}"
    );
    eventually(WAIT, "the run that started anyway is aborted", || async {
        let runs = env.sim_runs().await;
        (runs.len() == 1 && runs[0]["phase"] == "ACTION_PHASE_ABORTED").then_some(())
    })
    .await;
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_run_flyte_cannot_report_ends_failed_after_a_bound(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    env.set_sim_faults(
        json!([{"rpc": "RunService/GetRunDetails", "code": "not_found", "rate": 1.0}]),
    )
    .await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let worker = env.start_worker(&env.fast_tracking());
    let (_, accepted) = sender.send_hello(json!({"name": "lost"})).await;
    let id = accepted["id"].as_str().unwrap();
    let record = sender.wait_for_status(id, "failed", WAIT).await;
    assert!(
        record["error"]
            .as_str()
            .unwrap_or("")
            .contains("could not report the run"),
        "{record}"
    );
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_reused_idempotency_key_with_other_inputs_is_refused(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let sender = Sender::new(&ingress);
    let worker = env.start_worker(&env.fast_tracking());
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
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

const FAN_OUT: &str = r#"
[ingress]
max_queue_length = 1

[[sources]]
name = "github"
scheme = "github"
secrets = [{ env = "GH_SECRET" }]

[[sources.routes]]
name = "deploy"
task = "flytesnacks/development/deploy.main/v1"
inputs = { commit = "/after", repository = { value = "r" } }

[[sources.routes]]
name = "greet"
task = "flytesnacks/development/hello.main/v1"
inputs = { name = "/pusher" }

[worker.tracking]
min_poll_ms = 50
max_poll_ms = 200
"#;

async fn push(sender: &Sender, settings: &Settings, body: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let source = settings.ingress.sources.get("github").unwrap();
    let delivery = uuid::Uuid::new_v4().to_string();
    let mut request = sender
        .http
        .post(format!("{}/hooks/github", sender.base))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .body(body.clone());
    for (name, value) in source.scheme.sign(
        source.secrets.last().unwrap(),
        &body,
        Utc::now().timestamp(),
        &delivery,
    ) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_fanned_out_delivery_is_queued_whole_or_not_at_all(pool: PgPool) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    env.vars
        .insert("GH_SECRET".into(), "a-github-secret".into());
    let settings = env.settings_with_file(FAN_OUT);
    let ingress = env.start_ingress(settings.clone()).await;
    let sender = Sender::new(&ingress);

    // The work queue is bounded at one message (a quorum queue lets one more in before it
    // refuses): each delivery's two routes go in as one message, or neither does.
    let mut queued = Vec::new();
    for n in 0..5 {
        let (status, answer) = push(
            &sender,
            &settings,
            &json!({"after": format!("c{n}"), "pusher": "ann"}),
        )
        .await;
        match status {
            202 => {
                assert_eq!(
                    answer["dispatches"].as_array().map(Vec::len),
                    Some(2),
                    "{answer}"
                );
                queued.push(answer);
            }
            503 => assert_eq!(answer["code"], "at_capacity", "{answer}"),
            _ => panic!("{status}: {answer}"),
        }
    }
    assert!(
        (1..5).contains(&queued.len()),
        "{} of 5 accepted",
        queued.len()
    );
    assert_eq!(env.ready_messages().await as usize, queued.len());
    // A NUL in what a route maps is refused too, naming the input.
    let (status, nul) = push(
        &sender,
        &settings,
        &json!({"after": "c3", "pusher": "\u{0}"}),
    )
    .await;
    assert_eq!(
        (status, &nul["code"], &nul["field"]),
        (422, &json!("unstorable_input"), &json!("name")),
        "{nul}"
    );

    let worker = env.start_worker(&settings);
    for dispatch in queued
        .iter()
        .flat_map(|a| a["dispatches"].as_array().unwrap())
    {
        sender
            .wait_for_status(dispatch["id"].as_str().unwrap(), "succeeded", WAIT)
            .await;
    }
    // Every route of every accepted delivery ran; nothing of a refused one did.
    assert_eq!(env.sim_runs().await.len(), 2 * queued.len());
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_changed_queue_bound_stops_start_up_with_the_fix(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    env.topology()
        .declare(&connection.create_channel().await.unwrap())
        .await
        .unwrap();
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
    env.cleanup().await;
}
