//! Test kit for end-to-end tests: start the real ingress and worker (the same `Application` and
//! `Worker` that `flyhook` runs) against the real RabbitMQ and PostgreSQL and a flyte-sim, each
//! test with its own database, queue names and stand-in; cut connections with a TCP proxy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flyhook::Settings;
use flyhook_contract::broker::Topology;
use flyhook_ingress::Application;
use flyhook_worker::Worker;
use flyte_sim::{SimConfig, Simulator};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const API_KEY: &str = "flyhook-e2e-key-4f9c2a7d1b3e8f60a5c9d2e7";

/// The local RabbitMQ at `host`, in the virtual host the tests use: `FLYHOOK_TEST_VHOST` when set
/// (`scripts/test` makes a fresh one per run and deletes it after, so queues a killed run left
/// behind never slow the next), else the default one.
pub fn amqp_url_at(host: &str) -> String {
    let vhost = std::env::var("FLYHOOK_TEST_VHOST").unwrap_or_else(|_| "%2f".into());
    format!("amqp://guest:guest@{host}/{vhost}")
}

pub fn amqp_url() -> String {
    amqp_url_at("127.0.0.1:5672")
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One test's world: its database, queue prefix and flyte-sim.
#[derive(Debug)]
pub struct TestEnv {
    pub vars: HashMap<String, String>,
    pub sim_url: String,
    pub http: reqwest::Client,
    /// The test's own database.
    pub database: String,
}

impl TestEnv {
    /// `pool` is the test's own database (from `#[sqlx::test]`); runs in the stand-in end at
    /// once unless `sim` says otherwise.
    pub async fn new(pool: &PgPool, sim: SimConfig) -> TestEnv {
        let sim = Simulator::build(SimConfig {
            listen: "127.0.0.1:0".into(),
            workers: 1,
            ..sim
        })
        .expect("flyte-sim starts");
        let sim_url = format!("http://127.0.0.1:{}", sim.port());
        tokio::spawn(sim.run_until_stopped());
        let options = pool.connect_options();
        let database = options
            .get_database()
            .expect("sqlx::test names the database")
            .to_string();
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let vars = HashMap::from([
            (
                "DATABASE_URL".to_string(),
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("AMQP_URL".into(), amqp_url()),
            ("FLYHOOK_LISTEN".into(), "127.0.0.1:0".into()),
            ("FLYHOOK_WORKER_LISTEN".into(), "127.0.0.1:0".into()),
            ("FLYHOOK_QUEUE_PREFIX".into(), prefix),
            ("FLYTE_ENDPOINT".into(), sim_url.clone()),
            ("WEBHOOK_API_KEY".into(), API_KEY.into()),
        ]);
        TestEnv {
            vars,
            sim_url,
            http: reqwest::Client::new(),
            database,
        }
    }

    /// Runs in the stand-in that end at once.
    pub fn instant_runs() -> SimConfig {
        SimConfig {
            queued_for: Duration::ZERO,
            running_for: Duration::ZERO,
            ..SimConfig::default()
        }
    }

    /// Runs in the stand-in that stay running for an hour.
    pub fn long_runs() -> SimConfig {
        SimConfig {
            queued_for: Duration::ZERO,
            running_for: Duration::from_secs(3600),
            ..SimConfig::default()
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings_with(&[])
    }

    /// Settings with some variables replaced.
    pub fn settings_with(&self, overrides: &[(&str, &str)]) -> Settings {
        let mut vars = self.vars.clone();
        for (k, v) in overrides {
            vars.insert(k.to_string(), v.to_string());
        }
        Settings::load(|k| vars.get(k).cloned()).expect("test settings")
    }

    /// Settings with a `FLYHOOK_CONFIG` file holding `toml`.
    pub fn settings_with_file(&self, toml: &str) -> Settings {
        let path = std::env::temp_dir().join(format!("flyhook-e2e-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).expect("temp config file");
        let settings =
            self.settings_with(&[("FLYHOOK_CONFIG", path.to_str().expect("utf-8 path"))]);
        let _ = std::fs::remove_file(path);
        settings
    }

    /// Settings whose trackers look at runs every 50 ms (instead of every second or more).
    pub fn fast_tracking(&self) -> Settings {
        self.settings_with_file("[worker.tracking]\nmin_poll_ms = 50\nmax_poll_ms = 200\n")
    }

    /// Points `settings` at this test's database through a fresh TCP proxy, which the test
    /// then cuts and restores to make PostgreSQL go away and come back.
    pub async fn database_behind_proxy(&self, settings: &mut Settings) -> Proxy {
        let proxy = Proxy::start("127.0.0.1:5432".parse().expect("an address")).await;
        settings.deployment.database_url = proxy.postgres_url(&self.database).into();
        proxy
    }

    pub fn topology(&self) -> Topology {
        self.settings().deployment.topology()
    }

    pub async fn start_ingress(&self, settings: Settings) -> Ingress {
        let shutdown = CancellationToken::new();
        let app = Application::build(&settings.deployment, settings.ingress, shutdown.clone())
            .await
            .expect("ingress builds");
        let connected = app
            .publisher()
            .wait_connected(Duration::from_secs(10))
            .await;
        let port = app.port();
        let task = tokio::spawn(app.run_until_stopped());
        Ingress {
            base: format!("http://127.0.0.1:{port}"),
            connected,
            shutdown,
            task,
        }
    }

    pub fn start_worker(&self, settings: &Settings) -> RunningWorker {
        let shutdown = CancellationToken::new();
        let worker = Worker::build(&settings.deployment, &settings.worker).expect("worker builds");
        let ops_base = format!("http://127.0.0.1:{}", worker.ops_port());
        let task = tokio::spawn(worker.run_until_stopped(shutdown.clone()));
        RunningWorker {
            ops_base,
            shutdown,
            task,
        }
    }

    pub async fn sim_runs(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_sim/runs", self.sim_url))
            .send()
            .await
            .expect("flyte-sim answers")
            .json()
            .await
            .expect("runs as JSON")
    }

    pub async fn set_sim_faults(&self, faults: Value) {
        let response = self
            .http
            .put(format!("{}/_sim/faults", self.sim_url))
            .json(&faults)
            .send()
            .await
            .expect("flyte-sim answers");
        assert_eq!(response.status(), 204);
    }

    /// Messages ready (not held by a consumer) in the work queue.
    pub async fn ready_messages(&self) -> u32 {
        queue_length(&self.topology().work_queue()).await
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letters(&self) -> u32 {
        queue_length(&self.topology().dead_queue()).await
    }

    /// Waits until the work queue holds exactly `count` ready messages.
    pub async fn wait_for_ready_messages(&self, count: u32, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ready = self.ready_messages().await;
            if ready == count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the work queue still holds {ready} ready messages, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Deletes this test's queues and exchanges (quorum queues are not free to keep around).
    pub async fn cleanup(self) {
        delete_topology(&self.topology()).await;
    }
}

/// Messages ready (not held by a consumer) in `queue`, on the tests' RabbitMQ.
pub async fn queue_length(queue: &str) -> u32 {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let queue = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists");
    let _ = connection.close(200, "".into()).await;
    queue.message_count()
}

/// Deletes a deployment's queues and exchanges (quorum queues left behind slow the broker for
/// everyone after); best effort.
pub async fn delete_topology(topology: &Topology) {
    let Ok(connection) = lapin::Connection::connect(&amqp_url(), Default::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let _ = topology.delete(&channel).await;
    let _ = connection.close(200, "".into()).await;
}

#[derive(Debug)]
pub struct Ingress {
    pub base: String,
    /// Whether the publisher reached RabbitMQ at start.
    pub connected: bool,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Ingress {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

#[derive(Debug)]
pub struct RunningWorker {
    /// Where the worker serves `/metrics`, `/livez` and `/readyz`.
    pub ops_base: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    /// Graceful stop: in-flight dispatches finish and are acked.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Stops the worker dead, as `kill -9` would; pair with a cut of its broker connection.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Calls `probe` until it returns something, failing after `within` with `what` in the message.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Calls the ingress as a sender would.
#[derive(Debug, Clone)]
pub struct Sender {
    pub base: String,
    pub http: reqwest::Client,
}

impl Sender {
    pub fn new(ingress: &Ingress) -> Sender {
        Sender {
            base: ingress.base.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub fn run_task(&self, task_path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/run-task/{task_path}", self.base))
            .bearer_auth(API_KEY)
    }

    /// Posts `inputs` to hello.main and returns the status and body.
    pub async fn send_hello(&self, inputs: Value) -> (u16, Value) {
        let response = self
            .run_task("flytesnacks/development/hello.main/v1")
            .json(&inputs)
            .send()
            .await
            .expect("ingress answers");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON body"),
        )
    }

    /// Cancels a dispatch; returns the status and body.
    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/dispatches/{id}/cancel", self.base))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"reason": "test is over"}))
            .send()
            .await
            .expect("ingress answers");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON body"),
        )
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
                (200, &serde_json::json!("aborted")),
                "{body}"
            );
            return;
        }
    }

    pub async fn dispatch(&self, id: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/dispatches/{id}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("ingress answers");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON body"),
        )
    }

    /// Polls the dispatch until its status is `status`, failing after `within`.
    pub async fn wait_for_status(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (code, body) = self.dispatch(id).await;
            if code == 200 && body["status"] == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dispatch {id} did not become {status} within {within:?}; last: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A TCP proxy in front of a service, whose connections a test can cut to simulate a crash or
/// a network failure without touching the shared service.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
    paused: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, _) = watch::channel(0u64);
        let cuts = cut.clone();
        let refusing = Arc::new(AtomicBool::new(false));
        let refuse = refusing.clone();
        let (paused, _) = watch::channel(false);
        let pauses = paused.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut cut_rx = cuts.subscribe();
                let (up_paused, down_paused) = (pauses.subscribe(), pauses.subscribe());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_service, to_service) = outbound.into_split();
                    tokio::select! {
                        _ = pump(from_client, to_service, up_paused) => {}
                        _ = pump(from_service, to_client, down_paused) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            refusing,
            paused,
        }
    }

    /// Bytes stop flowing both ways (connections stay open): a service that hangs.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Bytes flow again, the held ones first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// The service goes away: open connections are cut and new ones refused.
    pub fn go_down(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// The service is back.
    pub fn come_back(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    /// `postgres://…` through this proxy.
    pub fn postgres_url(&self, database: &str) -> String {
        format!("postgres://postgres@{}/{database}", self.addr)
    }

    /// Closes every connection open through the proxy.
    pub fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// `amqp://…` through this proxy.
    pub fn amqp_url(&self) -> String {
        amqp_url_at(&self.addr.to_string())
    }
}

/// Copies one direction of a proxied connection, holding bytes while the proxy is paused.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut paused: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|paused| !paused).await.is_err()
            || to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
}

/// The reference checkers, in Python: the Prometheus project's own OpenMetrics parser
/// (`prometheus_client`) and `openapi-spec-validator`. `scripts/test` installs them (pinned in
/// `tests/reference-checkers.txt`) in `target/test-venv` and names its interpreter in
/// `FLYHOOK_TEST_PYTHON`.
fn reference_python() -> String {
    std::env::var("FLYHOOK_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-venv/bin/python"
        );
        assert!(
            std::path::Path::new(venv).exists(),
            "no reference checkers: run scripts/test, or set FLYHOOK_TEST_PYTHON to a Python with \
             the packages of tests/reference-checkers.txt"
        );
        venv.to_string()
    })
}

/// Runs `script` with `input` on stdin; its stdout, or its stderr as the error.
async fn run_python(script: &'static str, input: String) -> Result<String, String> {
    let python = reference_python();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {python}: {e}"))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    })
    .await
    .expect("the checker's thread")
}

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct MetricSample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// Parses an OpenMetrics exposition with the Prometheus project's parser (strict: it refuses
/// anything the format does not allow).
pub async fn parse_openmetrics(text: &str) -> Result<Vec<MetricSample>, String> {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        samples = [{'name': s.name, 'labels': s.labels, 'value': s.value}\n\
                   for family in text_string_to_metric_families(sys.stdin.read())\n\
                   for s in family.samples]\n\
        print(json.dumps(samples))\n";
    let json = run_python(SCRIPT, text.to_string()).await?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

/// Validates an OpenAPI document with openapi-spec-validator (3.1 documents against the 3.1
/// schema).
pub async fn validate_openapi(document: &str) -> Result<(), String> {
    const SCRIPT: &str = "import sys, json\n\
        from openapi_spec_validator import validate\n\
        validate(json.load(sys.stdin))\n";
    run_python(SCRIPT, document.to_string()).await.map(drop)
}
