//! What operators see and control: managed keys and their scopes, the audit log, metrics,
//! the OpenAPI document, and request ids followed from intake to the Flyte run. What the tests
//! here share is below; the tests are in `operations/`.

mod audit;
mod exposition;
mod keys;

use std::time::Duration;

use flyhook_e2e::{MetricSample, parse_openmetrics};
use flyhook_testkit::{API_KEY, TestEnv};
use serde_json::Value;

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
