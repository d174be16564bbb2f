//! Calling an ingress as senders do: [`Sender`] with the kit's API key, deliveries signed as
//! each provider signs them, and the status and JSON body every answer is read as.

use std::time::Duration;

use flyhook_ingress::sources::Source;
use reqwest::RequestBuilder;
use secrecy::SecretString;
use serde_json::{Value, json};
use webhook_signatures::{Scheme, UnixMillis};

use crate::wait::eventually;
use crate::{API_KEY, HELLO_TASK};

/// Sends `request`; its status and JSON body.
pub async fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the ingress answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// `request` with `body` as `scheme`'s provider sends it (Linear stamps it) and its signature
/// headers, signed with `secret` at unix time `at` under `delivery_id`.
pub fn signed(
    mut request: RequestBuilder,
    scheme: &Scheme,
    secret: &SecretString,
    body: &[u8],
    at: i64,
    delivery_id: &str,
) -> RequestBuilder {
    let signed = scheme.sign(secret, body, UnixMillis::from_secs(at), delivery_id);
    for (name, value) in signed.headers {
        request = request.header(name, value);
    }
    request.body(signed.body.into_owned())
}

/// A `POST` of `body` to `url`, signed with `source`'s newest secret (as `flyhook send` and a
/// provider after a rotation do).
pub fn signed_by(
    http: &reqwest::Client,
    url: &str,
    source: &Source,
    content_type: &str,
    body: &[u8],
    at: i64,
    delivery_id: &str,
) -> RequestBuilder {
    let secret = source.secrets.last().expect("the source has a secret");
    let request = http.post(url).header("Content-Type", content_type);
    signed(request, &source.scheme, secret, body, at, delivery_id)
}

/// The ids of the dispatches of a delivery's answer (`{"dispatches": [{"id": …}, …]}`).
pub fn dispatch_ids(answer: &Value) -> Vec<String> {
    answer["dispatches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str().map(str::to_string))
        .collect()
}

/// A delivery as a provider sends it, to be signed by its source.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Where it is posted: `/hooks/{source}`.
    pub path: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// The delivery id, for the schemes that sign one.
    pub id: &'a str,
    /// Headers beside the signature's (`X-GitHub-Event`).
    pub headers: &'a [(&'a str, &'a str)],
    /// When it is signed, in unix seconds.
    pub at: i64,
}

/// Calls the ingress as a sender would.
#[derive(Debug, Clone)]
pub struct Sender {
    pub base: String,
    pub http: reqwest::Client,
}

impl Sender {
    pub fn at(base: &str) -> Sender {
        Sender {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// `POST /run-task/{task_path}` with the API key.
    pub fn run_task(&self, task_path: &str) -> RequestBuilder {
        self.http
            .post(format!("{}/run-task/{task_path}", self.base))
            .bearer_auth(API_KEY)
    }

    /// `GET {path}` with the API key; the status and body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(API_KEY),
        )
        .await
    }

    /// `GET {path}` without a key (`/readyz`, `/health`); the status and body.
    pub async fn probe(&self, path: &str) -> (u16, Value) {
        answer(self.http.get(format!("{}{path}", self.base))).await
    }

    /// `POST {path}` of `body` with the API key; the status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(API_KEY)
                .json(body),
        )
        .await
    }

    /// `delivery`, signed by `source`; the status and body.
    pub async fn deliver(&self, source: &Source, delivery: &Delivery<'_>) -> (u16, Value) {
        let url = format!("{}{}", self.base, delivery.path);
        let mut request = signed_by(
            &self.http,
            &url,
            source,
            delivery.content_type,
            delivery.body,
            delivery.at,
            delivery.id,
        );
        for (name, value) in delivery.headers {
            request = request.header(*name, *value);
        }
        answer(request).await
    }

    /// Posts `inputs` to hello.main; the status and body.
    pub async fn send_hello(&self, inputs: Value) -> (u16, Value) {
        answer(self.run_task(HELLO_TASK).json(&inputs)).await
    }

    /// Posts `inputs` to hello.main under an `Idempotency-Key`; the status and body.
    pub async fn send_hello_keyed(&self, key: &str, inputs: Value) -> (u16, Value) {
        answer(
            self.run_task(HELLO_TASK)
                .header("Idempotency-Key", key)
                .json(&inputs),
        )
        .await
    }

    /// Sends `{"name": "n0"}` … `{"name": "n{count-1}"}` to hello.main, each accepted; their ids.
    pub async fn send_hellos(&self, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..count {
            let (status, accepted) = self.send_hello(json!({ "name": format!("n{i}") })).await;
            assert_eq!(status, 202, "{accepted}");
            ids.push(accepted["id"].as_str().expect("an id").to_string());
        }
        ids
    }

    /// Cancels a dispatch; the status and body.
    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        self.post(
            &format!("/dispatches/{id}/cancel"),
            &json!({"reason": "test is over"}),
        )
        .await
    }

    /// Cancels a running dispatch at the end of a test, so every run ends somewhere visible.
    /// A 503 (a dependency briefly slow on a loaded machine) is retried, as the API asks.
    pub async fn finish_by_cancelling(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut retried = false;
        loop {
            let (status, body) = self.cancel(id).await;
            if status == 503 && tokio::time::Instant::now() < deadline {
                retried = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            // A 503 means "not known to have happened": the cancel may have taken effect before
            // the answer failed, and then the retry finds the dispatch already aborted.
            if retried && status == 409 && body["code"] == "already_finished" {
                let (_, record) = self.dispatch(id).await;
                assert_eq!(record["status"], "aborted", "{record}");
                return;
            }
            assert_eq!(
                (status, &body["status"]),
                (200, &json!("aborted")),
                "{body}"
            );
            return;
        }
    }

    /// The dispatch's record; the status and body.
    pub async fn dispatch(&self, id: &str) -> (u16, Value) {
        self.get(&format!("/dispatches/{id}")).await
    }

    /// Polls the dispatch until its status is `status`, failing after `within`.
    pub async fn wait_for_status(&self, id: &str, status: &str, within: Duration) -> Value {
        eventually(
            within,
            &format!("dispatch {id} to become {status}"),
            || async move {
                let (code, body) = self.dispatch(id).await;
                if code == 200 && body["status"] == status {
                    Ok(body)
                } else {
                    Err(format!("{code} {body}"))
                }
            },
        )
        .await
    }

    /// [`Sender::wait_for_status`] for each of `ids`, in turn.
    pub async fn wait_all(&self, ids: &[String], status: &str, within: Duration) {
        for id in ids {
            self.wait_for_status(id, status, within).await;
        }
    }
}
