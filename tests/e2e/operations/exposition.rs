//! What flyhook exposes for machines, held to the reference implementations: the metrics of
//! ingress and worker (the Prometheus project's parser) and the OpenAPI document
//! (openapi-spec-validator).

use std::collections::BTreeSet;

use flyhook_e2e::validate_openapi;
use flyhook_testkit::{TestEnv, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{WAIT, sample, scrape};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn ingress_and_worker_metrics_parse_and_count_what_happened(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let worker = env.start_worker(&env.settings());
    let sender = ingress.sender();

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
    env.finish().await;
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
    env.finish().await;
}
