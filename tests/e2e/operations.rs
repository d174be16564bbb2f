//! What operators see and control: managed keys and their scopes, the audit log, metrics,
//! the OpenAPI document, and request ids followed from intake to the Flyte run.

use std::collections::BTreeSet;
use std::time::Duration;

use flyhook_contract::keys::RateLimit;
use flyhook_contract::scopes::Scopes;
use flyhook_e2e::{
    API_KEY, MetricSample, Sender, TestEnv, eventually, parse_openmetrics, validate_openapi,
};
use flyhook_store::audit::{AuditEntry, AuditStore};
use flyhook_store::keys::KeyStore;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

/// A managed key's reload must come from PostgreSQL's notification, not the periodic refresh.
const SLOW_REFRESH: &str = "[ingress]\nkey_refresh_secs = 3600\n";

async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let response = http.get(url).bearer_auth(key).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn audit_entries(env: &TestEnv, base: &str, query: &str) -> Vec<Value> {
    let (status, page) = get_json(&env.http, &format!("{base}/audit?{query}"), API_KEY).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn managed_keys_work_at_once_are_held_to_their_scopes_and_rates_and_revocation_sticks(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env
        .start_ingress(env.settings_with_file(SLOW_REFRESH))
        .await;
    let keys = KeyStore::new(pool.clone());
    let scopes = Scopes::parse_all(&["flytesnacks/development"]).unwrap();
    let (key, _) = keys
        .create(
            "ci",
            &scopes,
            Some(RateLimit {
                per_second: 1,
                burst: 5,
            }),
        )
        .await
        .unwrap();
    let key = key.expose_secret().to_string();
    assert!(key.starts_with("fhk_"));
    let post = |task: &str, key: &str| {
        env.http
            .post(format!("{}/run-task/{task}", ingress.base))
            .bearer_auth(key)
            .json(&json!({"name": "ann"}))
            .send()
    };

    let first = eventually(WAIT, "the new key accepted", || async {
        let response = post("flytesnacks/development/hello.main/v1", &key)
            .await
            .unwrap();
        (response.status() == 202).then_some(response)
    })
    .await;
    let accepted: Value = first.json().await.unwrap();

    let outside = post("flytesnacks/production/hello.main/v1", &key)
        .await
        .unwrap();
    assert_eq!(outside.status(), 403);
    let problem: Value = outside.json().await.unwrap();
    assert_eq!(problem["code"], "out_of_scope");
    // The configured key has every scope: the same task is fine for it.
    assert_eq!(
        post("flytesnacks/production/hello.main/v1", API_KEY)
            .await
            .unwrap()
            .status(),
        202
    );
    // A restricted key may not read the audit log.
    let (status, _) = get_json(&env.http, &format!("{}/audit", ingress.base), &key).await;
    assert_eq!(status, 403);

    // Its own rate, 1/s with a burst of 5, not the default 1000/s: a quick run of requests
    // is refused before long.
    let mut refused = false;
    for _ in 0..20 {
        let response = post("flytesnacks/development/hello.main/v1", &key)
            .await
            .unwrap();
        if response.status() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the key's own rate limit was not applied");

    keys.revoke("ci").await.unwrap();
    eventually(WAIT, "the revoked key refused", || async {
        let response = post("flytesnacks/development/hello.main/v1", &key)
            .await
            .unwrap();
        (response.status() == 401).then_some(())
    })
    .await;

    // Every one of those calls is in the audit log, under the key's name.
    let entries = eventually(WAIT, "the key's calls audited", || async {
        let entries = audit_entries(&env, &ingress.base, "principal=ci").await;
        let outcomes: BTreeSet<String> = entries
            .iter()
            .map(|e| e["outcome"].as_str().unwrap().to_string())
            .collect();
        let wanted = ["accepted", "out_of_scope", "rate_limited", "forbidden"];
        wanted
            .iter()
            .all(|o| outcomes.contains(*o))
            .then_some(entries)
    })
    .await;
    let accepted_entry = entries
        .iter()
        .find(|e| e["dispatch_ids"] == json!([accepted["id"]]))
        .expect("the first accepted request audited with its dispatch");
    assert_eq!(accepted_entry["outcome"], "accepted");
    assert_eq!(
        accepted_entry["route"],
        "/run-task/{project}/{domain}/{name}/{version}"
    );
    assert_eq!(accepted_entry["client_addr"], "127.0.0.1");
    // After revocation the key names nobody: the refusal is recorded without a principal.
    let refused = eventually(WAIT, "the refusal audited", || async {
        let entries = audit_entries(&env, &ingress.base, "outcome=invalid_api_key").await;
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(refused[0]["principal"], Value::Null);
    assert_eq!(refused[0]["status"], 401);

    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_restricted_key_lists_and_reads_only_dispatches_within_its_scopes(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env
        .start_ingress(env.settings_with_file(SLOW_REFRESH))
        .await;
    let worker = env.start_worker(&env.settings());
    let sender = Sender::new(&ingress);
    let keys = KeyStore::new(pool.clone());
    let (key, _) = keys
        .create(
            "reader",
            &Scopes::parse_all(&["flytesnacks/development/hello.main"]).unwrap(),
            None,
        )
        .await
        .unwrap();
    let key = key.expose_secret().to_string();

    let (_, inside) = sender.send_hello(json!({"name": "in"})).await;
    let outside: Value = sender
        .run_task("flytesnacks/development/deploy.main/v1")
        .json(&json!({"commit": "abc"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for id in [&inside["id"], &outside["id"]] {
        sender
            .wait_for_status(id.as_str().unwrap(), "running", WAIT)
            .await;
    }
    let dispatch = |id: &Value| format!("{}/dispatches/{}", ingress.base, id.as_str().unwrap());
    let (status, _) = eventually(WAIT, "the key in force", || async {
        let answer = get_json(&env.http, &dispatch(&inside["id"]), &key).await;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        get_json(&env.http, &dispatch(&outside["id"]), &key).await.0,
        403
    );
    let (status, page) = get_json(&env.http, &format!("{}/dispatches", ingress.base), &key).await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, vec![&inside["id"]]);
    let (_, everything) =
        get_json(&env.http, &format!("{}/dispatches", ingress.base), API_KEY).await;
    assert_eq!(everything["items"].as_array().unwrap().len(), 2);

    for id in [&inside["id"], &outside["id"]] {
        sender.finish_by_cancelling(id.as_str().unwrap()).await;
    }
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_audit_log_is_append_only_filterable_and_kept_only_for_its_retention(pool: PgPool) {
    let store = AuditStore::new(pool.clone());
    let entry = |request_id: &str, days_ago: i64, principal: &str| AuditEntry {
        id: 0,
        at: chrono::Utc::now() - chrono::Duration::days(days_ago),
        request_id: request_id.into(),
        principal: Some(principal.into()),
        method: "POST".into(),
        route: "/run-task/{project}/{domain}/{name}/{version}".into(),
        path: "/run-task/p/d/n/v".into(),
        status: 202,
        outcome: "accepted".into(),
        dispatch_ids: vec![format!("dispatch-{request_id}")],
        client_addr: None,
    };
    store
        .append(&[
            entry("old", 40, "a"),
            entry("new", 0, "a"),
            entry("other", 0, "b"),
        ])
        .await
        .unwrap();
    let by_dispatch = store
        .list(
            &flyhook_store::audit::AuditFilter {
                dispatch_id: Some("dispatch-new".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(by_dispatch.len(), 1);
    assert_eq!(by_dispatch[0].request_id, "new");

    let update = sqlx::query("UPDATE audit_log SET outcome = 'forged'")
        .execute(&pool)
        .await;
    assert!(update.is_err(), "the audit log must refuse updates");

    let deleted = store
        .purge_before(chrono::Utc::now() - chrono::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left = store.list(&Default::default(), 10).await.unwrap();
    let mut ids: Vec<&str> = left.iter().map(|e| e.request_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["new", "other"]);
}

/// The samples of an exposition, parsed by the Prometheus project's own parser.
async fn scrape(http: &reqwest::Client, url: &str) -> Vec<MetricSample> {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    parse_openmetrics(&text)
        .await
        .unwrap_or_else(|e| panic!("the exposition does not parse: {e}\n{text}"))
}

/// The value of the sample named `name` whose labels include `labels`.
fn sample(samples: &[MetricSample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn ingress_and_worker_metrics_parse_and_count_what_happened(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let worker = env.start_worker(&env.settings());
    let sender = Sender::new(&ingress);

    let (status, accepted) = sender.send_hello(json!({"name": "ann"})).await;
    assert_eq!(status, 202);
    let id = accepted["id"].as_str().unwrap();
    let wrong_key = env
        .http
        .post(format!(
            "{}/run-task/flytesnacks/development/hello.main/v1",
            ingress.base
        ))
        .bearer_auth("not-a-key")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    sender.wait_for_status(id, "running", WAIT).await;

    let ingress_figures = scrape(&env.http, &format!("{}/metrics", ingress.base)).await;
    let route = "/run-task/{project}/{domain}/{name}/{version}";
    assert_eq!(
        sample(
            &ingress_figures,
            "flyhook_http_requests_total",
            &[("route", route), ("status", "202"), ("method", "POST")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &ingress_figures,
            "flyhook_rejections_total",
            &[("reason", "auth")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &ingress_figures,
            "flyhook_publish_confirm_seconds_count",
            &[]
        ),
        Some(1.0),
        "one confirmed publish"
    );
    assert_eq!(
        sample(
            &ingress_figures,
            "flyhook_http_request_duration_seconds_count",
            &[("route", route)]
        ),
        Some(2.0)
    );
    assert_eq!(sample(&ingress_figures, "flyhook_api_keys", &[]), Some(1.0));

    let worker_figures = eventually(WAIT, "the worker's figures", || async {
        let figures = scrape(&env.http, &format!("{}/metrics", worker.ops_base)).await;
        sample(&figures, "flyhook_queue_depth", &[]).map(|_| figures)
    })
    .await;
    assert_eq!(
        sample(
            &worker_figures,
            "flyhook_dispatches_total",
            &[("outcome", "started")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &worker_figures,
            "flyhook_flyte_request_duration_seconds_count",
            &[("rpc", "RunService/CreateRun")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &worker_figures,
            "flyhook_accept_to_run_started_seconds_count",
            &[]
        ),
        Some(1.0)
    );
    let ready = env
        .http
        .get(format!("{}/readyz", worker.ops_base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    sender.finish_by_cancelling(id).await;
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_request_id_follows_the_dispatch_into_the_flyte_run_and_the_audit_log(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let worker = env.start_worker(&env.settings());
    let sender = Sender::new(&ingress);

    let response = sender
        .run_task("flytesnacks/development/hello.main/v1")
        .header("X-Request-Id", "deploy-4711.retry_2")
        .json(&json!({"name": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "deploy-4711.retry_2");
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    sender.wait_for_status(id, "running", WAIT).await;
    let runs = env.sim_runs().await;
    assert_eq!(
        runs[0]["labels"]["flyhook-request-id"],
        "deploy-4711.retry_2"
    );
    assert_eq!(runs[0]["labels"]["flyhook-dispatch"], id);

    // An id that could not be a label value is replaced, and the answer says by what.
    let response = sender
        .run_task("flytesnacks/development/hello.main/v1")
        .header("X-Request-Id", "has spaces/and slashes")
        .json(&json!({"name": "bob"}))
        .send()
        .await
        .unwrap();
    let replaced = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(replaced, "has spaces/and slashes");
    let second: Value = response.json().await.unwrap();

    let entries = eventually(WAIT, "both requests audited", || async {
        let entries = audit_entries(&env, &ingress.base, "").await;
        (entries.len() >= 2).then_some(entries)
    })
    .await;
    let by_request: Vec<(&Value, &Value)> = entries
        .iter()
        .map(|e| (&e["request_id"], &e["dispatch_ids"][0]))
        .collect();
    assert!(by_request.contains(&(&json!("deploy-4711.retry_2"), &json!(id))));
    assert!(by_request.contains(&(&json!(replaced), &second["id"])));

    sender.finish_by_cancelling(id).await;
    sender
        .finish_by_cancelling(second["id"].as_str().unwrap())
        .await;
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

/// Every `$ref` in `value` that points into the document.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_openapi_document_validates_covers_every_route_and_every_error_code(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let text = env
        .http
        .get(format!("{}/openapi.json", ingress.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    validate_openapi(&text)
        .await
        .unwrap_or_else(|e| panic!("the document does not validate: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for served in [
        "/run-task/{project}/{domain}/{name}/{version}",
        "/run-task-and-wait/{project}/{domain}/{name}/{version}",
        "/hooks/{source}",
        "/github-webhook",
        "/dispatches",
        "/dispatches/{id}",
        "/dispatches/{id}/cancel",
        "/dispatches/{id}/replay",
        "/audit",
        "/health",
        "/livez",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains(served), "{served} is not documented");
    }
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    for target in &targets {
        let pointer = target.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ProblemCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        flyhook_ingress::ApiError::CODES.into_iter().collect()
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path}");
            if operation.get("security").is_some() {
                for status in ["401", "403", "429"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn audit_entries_wait_for_postgres_and_any_beyond_the_buffer_are_counted(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let mut settings = env.settings_with_file("[audit]\nbuffer = 2\n");
    let database = env.database_behind_proxy(&mut settings).await;
    database.go_down();
    let ingress = env.start_ingress(settings).await;
    let sender = Sender::new(&ingress);

    // Intake does not need PostgreSQL: every request is accepted while it is away.
    for n in 0..6 {
        let (status, body) = sender.send_hello(json!({"name": n.to_string()})).await;
        assert_eq!(status, 202, "{body}");
    }
    let figures = scrape(&env.http, &format!("{}/metrics", ingress.base)).await;
    let dropped = sample(&figures, "flyhook_audit_entries_dropped_total", &[]).unwrap();
    assert!(dropped >= 1.0, "6 entries cannot fit a buffer of 2");

    database.come_back();
    // Whatever was not dropped is written once PostgreSQL is back; nothing vanishes uncounted.
    let written = eventually(WAIT, "the buffered entries written", || async {
        let figures = scrape(&env.http, &format!("{}/metrics", ingress.base)).await;
        let written = sample(&figures, "flyhook_audit_entries_written_total", &[]).unwrap();
        (written + dropped == 6.0).then_some(written)
    })
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows as f64, written);

    ingress.stop().await;
    env.cleanup().await;
}
