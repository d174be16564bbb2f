//! The Flyte client against the stand-in, over real sockets: every RPC, every auth mode, error
//! classification, faults, and the strict schema check on every request the client sends.

use std::time::Duration;

use flyte_client::client::{
    ABORT_RUN, CREATE_RUN, GET_ACTION_DATA, GET_OAUTH2_METADATA, GET_PUBLIC_CLIENT_CONFIG,
    GET_RUN_DETAILS, GET_TASK_DETAILS,
};
use flyte_client::messages::{CreateRunRequest, Labels, RunSpec};
use flyte_client::{
    ActionPhase, Code, Disposition, FlyteAuth, FlyteClient, FlyteConfig, LiteralKind, RunName,
    TaskId, convert_inputs,
};
use flyte_sim::{OnDuplicate, Schema, SimAuth, SimConfig, Simulator, Stats};
use secrecy::SecretString;
use serde_json::{Value, json};

struct Sim {
    base: String,
    http: reqwest::Client,
}

impl Sim {
    /// Starts a stand-in on a free port whose runs end at once unless told otherwise.
    async fn start(config: SimConfig) -> Sim {
        let sim = Simulator::build(SimConfig {
            listen: "127.0.0.1:0".into(),
            workers: 1,
            ..config
        })
        .expect("flyte-sim starts");
        let base = format!("http://127.0.0.1:{}", sim.port());
        tokio::spawn(sim.run_until_stopped());
        Sim {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn instant() -> Sim {
        Sim::start(SimConfig {
            queued_for: Duration::ZERO,
            running_for: Duration::ZERO,
            ..SimConfig::default()
        })
        .await
    }

    fn client(&self) -> FlyteClient {
        self.client_with(|_| {})
    }

    /// A client of this stand-in, with the defaults `configure` leaves alone.
    fn client_with(&self, configure: impl FnOnce(&mut FlyteConfig)) -> FlyteClient {
        let mut config = FlyteConfig::new(&self.base);
        configure(&mut config);
        FlyteClient::new(config).unwrap()
    }

    async fn stats(&self) -> Stats {
        self.get("/_sim/stats").await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn runs(&self) -> Vec<Value> {
        self.get("/_sim/runs").await
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    async fn set_faults(&self, faults: Value) {
        let status = self
            .http
            .put(format!("{}/_sim/faults", self.base))
            .json(&faults)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    async fn post_raw(&self, rpc_path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .post(&format!("/{rpc_path}"))
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Asserts that nothing the client sent was refused by the schema.
    async fn assert_schema_clean(&self) {
        let stats = self.stats().await;
        assert_eq!(
            stats.schema_rejections, 0,
            "{:?}",
            stats.last_schema_rejection
        );
    }
}

fn hello(client: &FlyteClient) -> TaskId {
    client.task_id("flytesnacks", "development", "hello.main", "v1")
}

fn echo(client: &FlyteClient) -> TaskId {
    client.task_id("flytesnacks", "development", "types.echo", "v1")
}

async fn create_request(client: &FlyteClient, task: TaskId, payload: Value) -> CreateRunRequest {
    let spec = client.task_spec(&task).await.unwrap();
    let inputs = convert_inputs(&spec, payload.as_object().unwrap()).unwrap();
    let name = RunName::for_dispatch(uuid::Uuid::now_v7());
    CreateRunRequest {
        run_id: client.run_id(&task.project, &task.domain, &name),
        task_id: task,
        inputs,
        run_spec: Some(RunSpec {
            labels: Some(Labels {
                values: [("source".to_string(), "webhook".to_string())].into(),
            }),
        }),
    }
}

#[tokio::test]
async fn every_rpc_round_trips_and_every_request_matches_the_schema() {
    let sim = Sim::instant().await;
    let client = sim.client();
    let request = create_request(
        &client,
        echo(&client),
        json!({
            "i": 9007199254740993_i64, "f": 1.5, "s": "x", "b": true,
            "when": "2024-05-01T12:00:00Z", "wait": "90s", "items": [1, 2],
            "tags": {"k": "v"}, "config": {"deep": [1, {"a": null}]}, "retries": null
        }),
    )
    .await;
    let started = client.create_run(&request).await.unwrap();
    assert!(!started.already_existed);
    let details = client.get_run_details(&request.run_id).await.unwrap();
    assert_eq!(details.action.status.phase, ActionPhase::Succeeded);
    let outputs = client.get_outputs(&request.run_id).await.unwrap();
    assert_eq!(
        outputs.literals[0].value.kind(),
        LiteralKind::Integer(9007199254740993)
    );
    client.abort_run(&request.run_id, "test").await.unwrap();
    sim.assert_schema_clean().await;

    // What reached the stand-in is what was sent, big integer included.
    let runs = sim.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["inputs"]["i"], json!(9007199254740993_i64));
    assert_eq!(
        runs[0]["inputs"]["config"],
        json!({"deep": [1, {"a": null}]})
    );
    assert_eq!(runs[0]["create_calls"], 1);
}

#[tokio::test]
async fn the_client_requests_pass_the_strict_parser_directly() {
    // Independent of the stand-in's routing: the serialized bodies themselves.
    let sim = Sim::instant().await;
    let client = sim.client();
    let request = create_request(&client, hello(&client), json!({"name": "a"})).await;
    let body = serde_json::to_vec(&request).unwrap();
    Schema::official()
        .check_request(CREATE_RUN.path, &body)
        .unwrap();
}

#[tokio::test]
async fn the_stand_in_answers_match_the_response_schema() {
    let sim = Sim::instant().await;
    let client = sim.client();
    let request = create_request(&client, hello(&client), json!({"name": "a"})).await;
    let run_id = serde_json::to_value(&request.run_id).unwrap();
    let calls = [
        (
            GET_TASK_DETAILS.path,
            json!({"taskId": serde_json::to_value(&request.task_id).unwrap()}),
        ),
        (CREATE_RUN.path, serde_json::to_value(&request).unwrap()),
        (GET_RUN_DETAILS.path, json!({"runId": run_id})),
        (
            GET_ACTION_DATA.path,
            json!({"actionId": {"run": run_id, "name": "a0"}}),
        ),
        (ABORT_RUN.path, json!({"runId": run_id, "reason": "x"})),
        (GET_OAUTH2_METADATA.path, json!({})),
        (GET_PUBLIC_CLIENT_CONFIG.path, json!({})),
    ];
    for (path, body) in calls {
        let (status, answer) = sim.post_raw(path, &body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        Schema::official()
            .check_response(path, &serde_json::to_vec(&answer).unwrap())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[tokio::test]
async fn a_reused_run_name_yields_the_existing_run_on_hosted_and_open_source_flyte() {
    for mode in [OnDuplicate::AlreadyExists, OnDuplicate::ReturnExisting] {
        let sim = Sim::start(SimConfig {
            on_duplicate: mode,
            running_for: Duration::from_secs(3600),
            ..SimConfig::default()
        })
        .await;
        let client = sim.client();
        let request = create_request(&client, hello(&client), json!({"name": "a"})).await;
        let first = client.create_run(&request).await.unwrap();
        let second = client.create_run(&request).await.unwrap();
        assert_eq!(first.id, second.id);
        assert_eq!(second.already_existed, mode == OnDuplicate::AlreadyExists);
        let runs = sim.runs().await;
        assert_eq!(runs.len(), 1, "{mode:?}: one run");
        assert_eq!(runs[0]["create_calls"], 2);
        sim.assert_schema_clean().await;
    }
}

#[tokio::test]
async fn run_lifecycles_end_as_the_task_rules_say() {
    let sim = Sim::instant().await;
    let client = sim.client();
    for (name, phase) in [
        ("ok", ActionPhase::Succeeded),
        ("fail", ActionPhase::Failed),
        ("timeout", ActionPhase::TimedOut),
        ("slow", ActionPhase::Running),
    ] {
        let request = create_request(&client, hello(&client), json!({ "name": name })).await;
        client.create_run(&request).await.unwrap();
        let details = client.get_run_details(&request.run_id).await.unwrap();
        assert_eq!(details.action.status.phase, phase, "{name}");
        if phase == ActionPhase::Failed {
            let error = details.action.error_info.unwrap();
            assert_eq!(error.message, "ValueError: asked to fail");
        }
        if phase == ActionPhase::Running {
            client
                .abort_run(&request.run_id, "no longer wanted")
                .await
                .unwrap();
            let details = client.get_run_details(&request.run_id).await.unwrap();
            assert_eq!(details.action.status.phase, ActionPhase::Aborted);
            assert_eq!(
                details.action.abort_info.unwrap().reason,
                "no longer wanted"
            );
            assert!(
                client
                    .get_outputs(&request.run_id)
                    .await
                    .unwrap()
                    .literals
                    .is_empty()
            );
        }
    }
}

#[tokio::test]
async fn missing_tasks_projects_and_runs_are_permanent_errors() {
    let sim = Sim::instant().await;
    let client = sim.client();
    let missing = client.task_id("flytesnacks", "development", "nope", "v1");
    let err = client.task_spec(&missing).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(err.disposition(), Disposition::Permanent);

    let mut request = create_request(&client, hello(&client), json!({"name": "a"})).await;
    request.run_id.project = "elsewhere".into();
    let err = client.create_run(&request).await.unwrap_err();
    assert_eq!(
        (err.code, err.disposition()),
        (Code::NotFound, Disposition::Permanent)
    );

    let err = client.get_run_details(&request.run_id).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    sim.assert_schema_clean().await;
}

#[tokio::test]
async fn injected_faults_are_classified_and_carry_retry_after() {
    let sim = Sim::instant().await;
    let client = sim.client();
    let request = create_request(&client, hello(&client), json!({"name": "a"})).await;
    for (fault, code, disposition) in [
        (
            json!({"rpc": "RunService/CreateRun", "code": "unavailable", "count": 1, "retry_after_secs": 7}),
            Code::Unavailable,
            Disposition::Retry,
        ),
        (
            json!({"rpc": "RunService/CreateRun", "code": "resource_exhausted", "count": 1}),
            Code::ResourceExhausted,
            Disposition::Retry,
        ),
        (
            json!({"rpc": "RunService/CreateRun", "code": "internal", "count": 1}),
            Code::Internal,
            Disposition::Retry,
        ),
        (
            json!({"rpc": "*", "code": "permission_denied", "count": 1}),
            Code::PermissionDenied,
            Disposition::Permanent,
        ),
        (
            json!({"rpc": "RunService/CreateRun", "http_status": 502, "count": 1}),
            Code::Unavailable,
            Disposition::Retry,
        ),
    ] {
        sim.set_faults(json!([fault])).await;
        let err = client.create_run(&request).await.unwrap_err();
        assert_eq!(
            (err.code, err.disposition()),
            (code, disposition),
            "{fault}"
        );
        if fault.get("retry_after_secs").is_some() {
            assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        }
    }
    // The faults were used up: the same request now succeeds, once.
    client.create_run(&request).await.unwrap();
    let runs = sim.runs().await;
    assert_eq!(runs.len(), 1);
}

#[tokio::test]
async fn every_call_has_a_deadline() {
    let sim = Sim::instant().await;
    sim.set_faults(json!([{"rpc": "*", "latency_ms": 3000}]))
        .await;
    let client = sim.client_with(|c| c.timeout = Duration::from_millis(200));
    let err = client.task_spec(&hello(&client)).await.unwrap_err();
    assert_eq!(err.code, Code::DeadlineExceeded);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_unreachable_flyte_is_a_retryable_unavailable() {
    // Bind and drop a listener to find a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = FlyteClient::new(FlyteConfig::new(format!("http://127.0.0.1:{port}"))).unwrap();
    let err = client.task_spec(&hello(&client)).await.unwrap_err();
    assert_eq!(err.code, Code::Unavailable);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn task_interfaces_are_fetched_once_per_task() {
    let sim = Sim::instant().await;
    let client = sim.client();
    for _ in 0..3 {
        client.task_spec(&hello(&client)).await.unwrap();
    }
    client.task_spec(&echo(&client)).await.unwrap();
    assert_eq!(sim.stats().await.calls["TaskService/GetTaskDetails"], 2);
}

#[tokio::test]
async fn a_static_bearer_token_is_sent_and_a_wrong_one_refused() {
    let sim = Sim::start(SimConfig {
        auth: SimAuth::Bearer("sesame".into()),
        ..SimConfig::default()
    })
    .await;
    let good = sim.client_with(|c| c.auth = FlyteAuth::Bearer(SecretString::from("sesame")));
    good.task_spec(&hello(&good)).await.unwrap();
    let bad = sim.client_with(|c| c.auth = FlyteAuth::Bearer(SecretString::from("open")));
    let err = bad.task_spec(&hello(&bad)).await.unwrap_err();
    assert_eq!(err.code, Code::Unauthenticated);
    let none = sim.client();
    assert_eq!(
        none.task_spec(&hello(&none)).await.unwrap_err().code,
        Code::Unauthenticated
    );
}

fn client_credentials_sim() -> SimConfig {
    SimConfig {
        auth: SimAuth::ClientCredentials {
            client_id: "flyhook".into(),
            client_secret: "hunter2".into(),
            token_ttl: Duration::from_secs(3600),
        },
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn api_key_credentials_are_exchanged_once_and_refreshed_when_refused() {
    use base64::Engine;
    let sim = Sim::start(client_credentials_sim()).await;
    let key =
        base64::engine::general_purpose::STANDARD.encode("flyte.example:flyhook:hunter2:acme");
    let mut config = FlyteConfig::from_api_key(&key).unwrap();
    assert_eq!(config.endpoint, "https://flyte.example");
    assert_eq!(config.org, "acme");
    config.endpoint = sim.base.clone();
    let client = FlyteClient::new(config).unwrap();

    let request = create_request(&client, hello(&client), json!({"name": "a"})).await;
    assert_eq!(request.task_id.org, "acme");
    client.create_run(&request).await.unwrap();
    client.get_run_details(&request.run_id).await.unwrap();
    assert_eq!(sim.stats().await.tokens_issued, 1, "the token is cached");

    // The server forgets every token: the next call is refused once, refreshed, and succeeds.
    let revoked = sim.post("/_sim/tokens/revoke").send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    client.get_run_details(&request.run_id).await.unwrap();
    let stats = sim.stats().await;
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.unauthenticated, 1);
    sim.assert_schema_clean().await;
}

#[tokio::test]
async fn wrong_client_credentials_fail_without_revealing_the_secret() {
    let sim = Sim::start(client_credentials_sim()).await;
    let client = sim.client_with(|c| {
        c.auth = FlyteAuth::ClientCredentials {
            client_id: "flyhook".into(),
            client_secret: SecretString::from("not-the-secret"),
        }
    });
    let err = client.task_spec(&hello(&client)).await.unwrap_err();
    assert_eq!(err.code, Code::Unauthenticated);
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains("not-the-secret"), "{shown}");
}

#[tokio::test]
async fn the_stand_in_refuses_non_json_and_unknown_paths_like_connect_go() {
    let sim = Sim::instant().await;
    let response = sim
        .post(&format!("/{}", CREATE_RUN.path))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = sim
        .post("/flyteidl2.workflow.RunService/Nope")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (status, body) = sim
        .post_raw(
            CREATE_RUN.path,
            &json!({"runId": {"name": "wh-1"}, "extra": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_argument");
    assert!(
        body["message"].as_str().unwrap().contains("extra"),
        "{body}"
    );
    assert_eq!(sim.stats().await.schema_rejections, 1);
}
