//! The load every scenario runs under: 32 senders, each dispatch sent until it gets a `202`
//! (as a sender with an idempotency key would), every 50th request bad input that must get a
//! 4xx whatever is failing, and the `hostile` scenario's requests mixed in.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flyhook_ingress::sources::Sources;
use flyhook_testkit::{API_KEY, HELLO_TASK};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::hostile::{Expect, hostile};
use crate::scenario::Scenario;

const SENDERS: usize = 32;

/// What the senders saw.
#[derive(Debug, Default)]
pub struct Counts {
    /// The ids of the dispatches answered `202`.
    pub accepted: Mutex<HashSet<String>>,
    /// 5xx answers to good requests (each resent).
    pub refused_5xx: AtomicU64,
    /// The seconds (counted from the start of the load) in which a good request got a 5xx or
    /// no answer.
    pub refused_seconds: Mutex<BTreeSet<u64>>,
    /// 5xx answers to bad input.
    pub bad_input_5xx: AtomicU64,
    /// Hostile requests answered otherwise than promised.
    pub misanswered: AtomicU64,
    next: AtomicU64,
}

/// One sender's view of the deployment.
struct Load {
    which: Scenario,
    dispatches: u64,
    http: reqwest::Client,
    base: String,
    sources: Sources,
    counts: Arc<Counts>,
    started: Instant,
    /// When set, dispatch `n` is not sent before `started + n × pace`.
    pace: Option<Duration>,
}

/// Starts the senders of `dispatches` dispatches to the ingress at `base`.
pub fn start(
    which: Scenario,
    dispatches: usize,
    http: &reqwest::Client,
    base: &str,
    sources: &Sources,
) -> (Arc<Counts>, Vec<JoinHandle<()>>) {
    let counts = Arc::new(Counts::default());
    let load = Arc::new(Load {
        which,
        dispatches: dispatches as u64,
        http: http.clone(),
        base: base.to_string(),
        sources: sources.clone(),
        counts: counts.clone(),
        started: Instant::now(),
        pace: which
            .load_lasts()
            .map(|total| total.div_f64(dispatches.max(1) as f64)),
    });
    let senders = (0..SENDERS)
        .map(|_| {
            let load = load.clone();
            tokio::spawn(async move { load.send_all().await })
        })
        .collect();
    (counts, senders)
}

impl Load {
    async fn send_all(&self) {
        let counts = &self.counts;
        loop {
            let n = counts.next.fetch_add(1, Ordering::SeqCst);
            if n >= self.dispatches {
                return;
            }
            if let Some(pace) = self.pace {
                tokio::time::sleep_until((self.started + pace * n as u32).into()).await;
            }
            if self.which == Scenario::Hostile && n.is_multiple_of(10) {
                match hostile(&self.http, &self.base, &self.sources, n / 10).await {
                    Some(Expect::Accepted(ids)) => counts.accepted.lock().await.extend(ids),
                    Some(Expect::Refused) => {}
                    None => {
                        counts.misanswered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            if n.is_multiple_of(50) {
                let response = self
                    .run_task()
                    .header("Content-Type", "application/json")
                    .body("{\"name\": ")
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status().is_server_error()) {
                    counts.bad_input_5xx.fetch_add(1, Ordering::SeqCst);
                }
            }
            let copies = if self.which == Scenario::Duplicates {
                2
            } else {
                1
            };
            for _ in 0..copies {
                self.send_until_accepted(n).await;
            }
        }
    }

    fn run_task(&self) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/run-task/{HELLO_TASK}", self.base))
            .bearer_auth(API_KEY)
    }

    /// Dispatch `n`'s inputs; under flow control, every ten consecutive ones share a
    /// debounce key (`count`).
    fn inputs(&self, n: u64) -> Value {
        if self.which.with_flow_control() {
            json!({"name": format!("n{n}"), "count": n / 10})
        } else {
            json!({"name": format!("n{n}")})
        }
    }

    /// Sends dispatch `n` until it is accepted (for at most two minutes).
    async fn send_until_accepted(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let response = self
                .run_task()
                .header("Idempotency-Key", format!("load-{n}"))
                .json(&self.inputs(n))
                .send()
                .await;
            match response {
                Ok(r) if r.status() == 202 => {
                    if let Ok(body) = r.json::<Value>().await
                        && let Some(id) = body["id"].as_str()
                    {
                        self.counts.accepted.lock().await.insert(id.to_string());
                    }
                    return;
                }
                Ok(r) if r.status().is_server_error() => {
                    self.counts.refused_5xx.fetch_add(1, Ordering::SeqCst);
                    self.refused_now().await;
                }
                // No answer (within the client's 15 s): as bad as a 503 for the sender.
                Err(_) => self.refused_now().await,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn refused_now(&self) {
        let second = self.started.elapsed().as_secs();
        self.counts.refused_seconds.lock().await.insert(second);
    }
}
