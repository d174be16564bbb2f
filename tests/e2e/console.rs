//! The operator console: its sessions (a cookie that stands for an API key, CSRF-checked,
//! ended by sign-out or by revoking the key), the JSON its pages read, and the pages
//! themselves driven in headless Chromium. What the tests share is below; the tests are in
//! `console/`.

mod in_browser;
mod sessions;

use std::time::Duration;

use flyhook_testkit::API_KEY;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// A GitHub source whose pushes to `main` deploy, for the sources page and delivery search.
const GITHUB_SOURCE: &str = r#"
[[sources]]
name = "github"
scheme = "github"
secrets = [{ env = "GH_SECRET" }]

[[sources.routes]]
name = "deploy"
task = "flytesnacks/development/deploy.main/v1"
when = [{ header = "X-GitHub-Event", equals = "push" }, { pointer = "/ref", regex = "^refs/heads/main$" }]
inputs = { commit = "/after" }
"#;

/// A signed-in console session, as a browser holds it: the cookie and the CSRF token.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
    /// The `Set-Cookie` the sign-in answered with.
    set_cookie: String,
    view: Value,
}

/// Signs in with `key`; the answer's status and, on success, the session.
async fn sign_in(http: &reqwest::Client, base: &str, key: &str) -> (u16, Option<Session>) {
    let response = http
        .post(format!("{base}/ui/session"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    let view: Value = response.json().await.unwrap_or(Value::Null);
    let session = set_cookie.map(|set_cookie| Session {
        cookie: set_cookie.split(';').next().unwrap().to_string(),
        csrf: view["csrf_token"].as_str().unwrap_or_default().to_string(),
        set_cookie,
        view,
    });
    (status, session)
}

/// A request made with the session's cookie, and its CSRF token when `csrf` is given.
async fn with_session(
    request: reqwest::RequestBuilder,
    session: &Session,
    csrf: Option<&str>,
) -> (u16, Value) {
    let mut request = request.header(COOKIE, &session.cookie);
    if let Some(token) = csrf {
        request = request.header("X-CSRF-Token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a managed key through `POST /keys` and waits until the ingress honours it.
async fn create_key(http: &reqwest::Client, base: &str, name: &str, scopes: &[&str]) -> String {
    let response = http
        .post(format!("{base}/keys"))
        .bearer_auth(API_KEY)
        .json(&json!({ "name": name, "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    wait_until_honoured(http, base, &key).await;
    key
}

/// Waits until the ingress honours a key just created (it reloads keys when PostgreSQL tells
/// it of a change).
async fn wait_until_honoured(http: &reqwest::Client, base: &str, key: &str) {
    flyhook_testkit::eventually(WAIT, "the new key honoured", || async {
        let answer = http
            .get(format!("{base}/dispatches?limit=1"))
            .bearer_auth(key)
            .send()
            .await
            .ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;
}
