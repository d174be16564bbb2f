//! The requests benchmarks send: the bearer-key `/run-task`, a signed GitHub delivery, a status
//! lookup, and the seed app's `/run-task`.

use std::sync::Mutex;
use std::time::SystemTime;

use flyhook_testkit::client::signed;
use secrecy::SecretString;
use serde_json::{Value, json};
use webhook_signatures::Scheme;

use crate::load::Workload;

/// The stand-in's `hello.main` task, which takes `name` (and `count`).
pub const HELLO_TASK: &str = "flytesnacks/development/hello.main/v1";

/// `{"name": "xxx…"}` padded to exactly `size` bytes (at least 16), so bodies of every size are
/// valid inputs of `hello.main`.
pub fn hello_inputs(size: usize) -> Vec<u8> {
    let padding = size.saturating_sub(r#"{"name":""}"#.len()).max(5);
    serde_json::to_vec(&json!({"name": "x".repeat(padding)})).expect("JSON")
}

/// `POST {base}/run-task/{task}` with a bearer key and a fixed body.
#[derive(Debug)]
pub struct RunTask {
    pub url: String,
    pub key: String,
    pub body: Vec<u8>,
}

impl RunTask {
    pub fn new(base: &str, key: &str, body_size: usize) -> RunTask {
        RunTask {
            url: format!("{base}/run-task/{HELLO_TASK}"),
            key: key.to_string(),
            body: hello_inputs(body_size),
        }
    }
}

impl Workload for RunTask {
    fn request(&self, client: &reqwest::Client, _index: u64) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("Content-Type", "application/json")
            .body(self.body.clone())
    }
}

/// A GitHub `push` delivery to `POST {base}/hooks/{source}`, about `size` bytes, signed afresh
/// for each request with its own delivery id, which is also in the body: deliveries are
/// deduplicated by their signed bytes, so a body sent twice would be one dispatch.
#[derive(Debug)]
pub struct GithubPush {
    pub url: String,
    pub secret: SecretString,
    /// The payload, `head_commit.id` set per request.
    pub payload: Value,
}

impl GithubPush {
    pub fn new(base: &str, source: &str, secret: &str, size: usize) -> GithubPush {
        let mut payload = json!({
            "ref": "refs/heads/main",
            "after": "59b20b8d5b4a8c1e6f0e0a4f7c3d2b1a09f8e7d6",
            "repository": {"full_name": "octo/app"},
            "pusher": {"name": "octocat"},
            "head_commit": {"id": "", "message": ""},
        });
        let unpadded = payload.to_string().len();
        payload["head_commit"]["message"] =
            Value::String("x".repeat(size.saturating_sub(unpadded)));
        GithubPush {
            url: format!("{base}/hooks/{source}"),
            secret: secret.to_string().into(),
            payload,
        }
    }
}

impl Workload for GithubPush {
    fn request(&self, client: &reqwest::Client, index: u64) -> reqwest::RequestBuilder {
        let now = chrono::Utc::now().timestamp();
        let delivery = format!("{index}-{}", uuid::Uuid::new_v4());
        let mut payload = self.payload.clone();
        payload["head_commit"]["id"] = Value::String(delivery.clone());
        let body = payload.to_string().into_bytes();
        let request = client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push");
        signed(
            request,
            &Scheme::GitHub,
            &self.secret,
            &body,
            now,
            &delivery,
        )
    }
}

/// `GET {base}/dispatches/{id}` over a set of ids, round robin.
#[derive(Debug)]
pub struct Status {
    pub base: String,
    pub key: String,
    pub ids: Vec<String>,
}

impl Workload for Status {
    fn request(&self, client: &reqwest::Client, index: u64) -> reqwest::RequestBuilder {
        let id = &self.ids[index as usize % self.ids.len()];
        client
            .get(format!("{}/dispatches/{id}", self.base))
            .bearer_auth(&self.key)
    }
}

/// Another workload, keeping from each 202 the value of `field` and when its request was due.
#[derive(Debug)]
pub struct Keeping<W> {
    pub inner: W,
    pub field: &'static str,
    pub kept: Mutex<Vec<(String, SystemTime)>>,
}

impl<W> Keeping<W> {
    pub fn new(inner: W, field: &'static str) -> Keeping<W> {
        Keeping {
            inner,
            field,
            kept: Mutex::new(Vec::new()),
        }
    }

    pub fn take(&self) -> Vec<(String, SystemTime)> {
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<W: Workload> Workload for Keeping<W> {
    fn request(&self, client: &reqwest::Client, index: u64) -> reqwest::RequestBuilder {
        self.inner.request(client, index)
    }

    fn observe(&self, due: SystemTime, status: u16, body: &[u8]) {
        if status != 202 {
            return;
        }
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        if let Some(value) = answer[self.field].as_str() {
            self.kept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((value.to_string(), due));
        }
    }
}

/// `POST {base}/run-task/{task}` of hello.main with the names the stand-in ends differently:
/// one in 12 fails, one in 100 times out, one in 200 stays running; the rest succeed. A store
/// that looks like a working deployment's, for the console's reads.
#[derive(Debug)]
pub struct MixedHellos {
    pub url: String,
    pub key: String,
}

impl Workload for MixedHellos {
    fn request(&self, client: &reqwest::Client, index: u64) -> reqwest::RequestBuilder {
        let name = match index {
            i if i % 12 == 0 => "fail".to_string(),
            i if i % 100 == 1 => "timeout".to_string(),
            i if i % 200 == 2 => "slow".to_string(),
            i => format!("n{i}"),
        };
        client
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&json!({ "name": name }))
    }
}

/// `GET {url}` with a bearer key: one page of the console's data.
#[derive(Debug)]
pub struct Get {
    pub url: String,
    pub key: String,
}

impl Workload for Get {
    fn request(&self, client: &reqwest::Client, _index: u64) -> reqwest::RequestBuilder {
        client.get(&self.url).bearer_auth(&self.key)
    }
}
