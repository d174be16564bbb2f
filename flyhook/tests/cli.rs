//! The `flyhook` command as an operator runs it, against a real ingress, RabbitMQ and
//! PostgreSQL.

use std::process::Output;
use std::time::Duration;

use flyhook_testkit::{API_KEY, TestEnv, eventually, free_port};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `flyhook args…` against the test's database.
async fn flyhook(env: &TestEnv, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flyhook"));
    command
        .args(args)
        .env("DATABASE_URL", &env.vars["DATABASE_URL"])
        .env_remove("FLYHOOK_CONFIG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("flyhook runs");
    assert!(
        output.status.success(),
        "flyhook {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_key_made_with_the_cli_works_within_seconds_is_refused_outside_its_scope_and_is_audited(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    // Reloads come from PostgreSQL's notification; the periodic refresh is out of the picture.
    let ingress = env
        .start_ingress(env.settings_with_file("[ingress]\nkey_refresh_secs = 3600\n"))
        .await;
    let created = flyhook(
        &env,
        &[
            "keys",
            "create",
            "--name",
            "deployer",
            "--scope",
            "flytesnacks/development",
            "--rate",
            "50",
        ],
    )
    .await;
    let key = stdout(&created).trim().to_string();
    assert!(key.starts_with("fhk_") && key.len() > 40, "{key}");
    let post = |task: &str| {
        env.http
            .post(format!("{}/run-task/{task}", ingress.base))
            .bearer_auth(&key)
            .json(&json!({"name": "ann"}))
            .send()
    };

    let accepted: Value = eventually(Duration::from_secs(5), "the new key accepted", || async {
        let response = post("flytesnacks/development/hello.main/v1").await.unwrap();
        match response.status().as_u16() {
            202 => Some(response.json().await.unwrap()),
            401 => None,
            other => panic!("unexpected {other}"),
        }
    })
    .await;
    let outside = post("flytesnacks/production/hello.main/v1").await.unwrap();
    assert_eq!(outside.status(), 403);

    let listing = stdout(&flyhook(&env, &["keys", "list"]).await);
    let line = listing
        .lines()
        .find(|l| l.starts_with("deployer "))
        .expect("listed");
    assert!(line.contains(&key[..12]) && line.contains("flytesnacks/development"));
    assert!(
        !listing.contains(&key),
        "the key itself is never shown again"
    );

    let audited = eventually(WAIT, "both calls in the audit log", || async {
        let output = flyhook(&env, &["audit", "--principal", "deployer", "--json"]).await;
        let entries: Vec<Value> = stdout(&output)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (entries.len() == 2).then_some(entries)
    })
    .await;
    assert_eq!(audited[0]["outcome"], "out_of_scope");
    assert_eq!(audited[0]["status"], 403);
    assert_eq!(audited[1]["outcome"], "accepted");
    assert_eq!(audited[1]["dispatch_ids"], json!([accepted["id"]]));

    flyhook(&env, &["keys", "revoke", "deployer"]).await;
    eventually(
        Duration::from_secs(5),
        "the revoked key refused",
        || async {
            let status = post("flytesnacks/development/hello.main/v1")
                .await
                .unwrap()
                .status();
            (status == 401).then_some(())
        },
    )
    .await;

    env.finish().await;
}

#[test]
fn the_printed_openapi_document_is_openapi_3_1() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flyhook"))
        .arg("openapi")
        .output()
        .expect("flyhook runs");
    assert!(output.status.success());
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn json_logs_carry_the_request_id_on_every_line_of_a_request(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let port = free_port();
    let mut ingress = std::process::Command::new(env!("CARGO_BIN_EXE_flyhook"))
        .arg("ingress")
        .envs(&env.vars)
        .env("FLYHOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLYHOOK_LOG_FORMAT", "json")
        // The intake's own line is `debug`: asked for here, to see the span reach the handler.
        .env("RUST_LOG", "info,flyhook_ingress::intake=debug")
        .env_remove("FLYHOOK_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flyhook ingress starts");
    let base = format!("http://127.0.0.1:{port}");
    // Ready first, so the one request sent is the one accepted (a request refused while the
    // broker connects would write lines of its own under the same request id).
    eventually(WAIT, "the ingress ready", || async {
        let response = env.http.get(format!("{base}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let response = env
        .http
        .post(format!(
            "{base}/run-task/flytesnacks/development/hello.main/v1"
        ))
        .bearer_auth(API_KEY)
        .header("X-Request-Id", "json-log-check")
        .json(&json!({"name": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // SIGTERM: the ingress drains and exits, closing its output.
    std::process::Command::new("kill")
        .arg(ingress.id().to_string())
        .status()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut ingress.stdout.take().unwrap(), &mut text).unwrap();
        ingress.wait().unwrap();
        text
    })
    .await
    .unwrap();
    let lines: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == "json-log-check"))
        })
        .collect();
    assert!(
        of_request
            .iter()
            .any(|l| l["message"] == "dispatch queued" && l["dispatch"] == id.as_str()),
        "{output}"
    );
    // One line per accepted request at `info`: the access line, naming the dispatch.
    let at_info: Vec<&&Value> = of_request.iter().filter(|l| l["level"] == "INFO").collect();
    assert_eq!(at_info.len(), 1, "{output}");
    assert_eq!(at_info[0]["target"], "flyhook::access", "{output}");
    assert_eq!(at_info[0]["status"], 202, "{output}");
    assert_eq!(at_info[0]["dispatches"], id.as_str(), "{output}");
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_tracker_examples_sent_with_the_cli_start_triage_runs_under_the_dev_configuration(
    pool: PgPool,
) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    // The ingress holds the secrets `flyhook send` signs with when none is set: dev's defaults.
    for name in [
        "GITHUB_WEBHOOK_SECRET",
        "LINEAR_WEBHOOK_SECRET",
        "JIRA_WEBHOOK_SECRET",
        "CLICKUP_WEBHOOK_SECRET",
    ] {
        env.set_var(name, "flyhook-dev-secret");
    }
    env.set_var(
        "FLYHOOK_DEV_CALLBACK_SECRET",
        "whsec_Zmx5aG9vay1kZXYtY2FsbGJhY2stc2VjcmV0",
    );
    let settings = env.settings_with_file(include_str!("../dev.toml"));
    let ingress = env.start_ingress(settings.clone()).await;
    env.start_worker(&settings);
    let sender = ingress.sender();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for (source, example, inputs) in [
        (
            "linear",
            "linear-issue.json",
            json!({"issue": "ENG-142", "title": "Checkout fails for EU cards", "status": "", "tracker": "linear"}),
        ),
        (
            "jira",
            "jira-issue-transitioned.json",
            json!({"issue": "OPS-7", "title": "Rotate the payment gateway keys", "status": "In Review", "tracker": "jira"}),
        ),
        (
            "clickup",
            "clickup-task-status.json",
            json!({"issue": "86b1x2y3z", "title": "", "status": "in progress", "tracker": "clickup"}),
        ),
    ] {
        let path = format!("{examples}/{example}");
        let sent = flyhook(
            &env,
            &["send", "--source", source, "--url", &ingress.base, &path],
        )
        .await;
        let printed = stdout(&sent);
        let (status, body) = printed.split_once('\n').unwrap();
        assert!(status.starts_with("HTTP 202"), "{source}: {printed}");
        let answer: Value = serde_json::from_str(body).unwrap();
        let dispatch = &answer["dispatches"][0];
        assert_eq!(
            answer["dispatches"].as_array().unwrap().len(),
            1,
            "{answer}"
        );
        let id = dispatch["id"].as_str().unwrap();
        sender.wait_for_status(id, "succeeded", WAIT).await;
        let runs = env.sim_runs().await;
        let run = runs
            .iter()
            .find(|r| r["name"] == dispatch["run_name"])
            .unwrap_or_else(|| panic!("{source}: no run in {runs:?}"));
        assert_eq!(run["inputs"], inputs, "{source}");
        assert_eq!(
            run["task"], "flytesnacks/development/triage.main:v1",
            "{run}"
        );
    }
    env.finish().await;
}
