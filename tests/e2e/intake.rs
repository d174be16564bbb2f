//! The accept path's refusals: each a clear 4xx, and nothing enqueued.

use std::time::Duration;

use flyhook_testkit::{API_KEY, HELLO_TASK as HELLO, TestEnv, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Sends `request`; the status and problem document of its answer.
async fn problem(request: reqwest::RequestBuilder) -> (u16, Value) {
    problem_of(request.send().await.unwrap()).await
}

async fn problem_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem documents"
    );
    (status, response.json().await.unwrap())
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn bad_requests_get_a_clear_4xx_and_enqueue_nothing(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env
        .start_ingress(env.settings_with_file("[ingress]\nmax_body_bytes = 1024\n"))
        .await;
    let sender = ingress.sender();
    let url = format!("{}/run-task/{HELLO}", ingress.base);
    let http = &env.http;

    // 401 with WWW-Authenticate: no key, a wrong key.
    let response = http.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"flyhook\""
    );
    assert_eq!(
        problem_of(response).await,
        (
            401,
            json!({"status": 401, "code": "missing_api_key", "message": "no bearer API key was sent"})
        )
    );
    assert_eq!(
        problem(http.post(&url).bearer_auth("wrong").json(&json!({})))
            .await
            .1["code"],
        "invalid_api_key"
    );

    // 415: not JSON.
    assert_eq!(
        problem(
            sender
                .run_task(HELLO)
                .header("content-type", "text/plain")
                .body("{}")
        )
        .await
        .0,
        415
    );

    // 413: too large, declared or streamed.
    let big = json!({"name": "x".repeat(2000)});
    assert_eq!(problem(sender.run_task(HELLO).json(&big)).await.0, 413);
    let status = chunked_post(
        &ingress.base,
        &format!("/run-task/{HELLO}"),
        &[&[b' '; 600], &[b' '; 600]],
    )
    .await;
    assert_eq!(status, 413, "a streamed body is cut off at the limit");

    // 400 malformed JSON, 422 not an object, 422 a bad path segment naming it.
    assert_eq!(
        problem(
            sender
                .run_task(HELLO)
                .header("content-type", "application/json")
                .body("{\"name\":")
        )
        .await
        .1["code"],
        "malformed_json"
    );
    assert_eq!(
        problem(sender.run_task(HELLO).json(&json!([1, 2]))).await,
        (
            422,
            json!({"status": 422, "code": "inputs_not_an_object", "message": "the body must be a JSON object of task inputs"})
        )
    );
    let (status, body) = problem(
        sender
            .run_task("Flytesnacks/development/hello.main/v1")
            .json(&json!({})),
    )
    .await;
    assert_eq!((status, &body["field"]), (422, &json!("project")));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        problem(
            sender
                .run_task(HELLO)
                .header("content-type", "application/json")
                .body(format!("{{\"name\": {deep}}}"))
        )
        .await
        .0,
        400
    );

    // 400: an unusable Idempotency-Key.
    assert_eq!(
        problem(
            sender
                .run_task(HELLO)
                .header("Idempotency-Key", "k".repeat(300))
                .json(&json!({"name": "a"}))
        )
        .await
        .1["field"],
        "Idempotency-Key"
    );

    assert_eq!(env.ready_messages().await, 0, "no bad request was enqueued");
    env.finish().await;
}

/// Sends a chunked (undeclared-length) JSON POST over a raw socket; returns the status code.
async fn chunked_post(base: &str, path: &str, chunks: &[&[u8]]) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw_exchange(base, &request).await
}

/// Writes `request` as is and returns the status of the answer, or 0 if the server closed the
/// connection without one. Waits at most 15 s.
async fn raw_exchange(base: &str, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything; that is fine.
    let _ = socket.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let read_status_line = async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read_status_line)
        .await
        .expect("the server answers or closes within 15 s");
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn hostile_input_gets_a_4xx_or_a_closed_connection_never_a_5xx(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env
        .start_ingress(env.settings_with_file("[ingress]\nbody_read_timeout_ms = 300\n"))
        .await;
    let base = ingress.base.clone();
    let host = base.trim_start_matches("http://").to_string();
    let post = |path: &str, extra_headers: &str, body: &[u8], declared: Option<usize>| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n{extra_headers}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            declared.unwrap_or(body.len())
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };
    let json = "Content-Type: application/json\r\n";
    let flood: String = (0..150).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a body trickled in too slowly",
            post(&format!("/run-task/{HELLO}"), json, b"{\"name\"", Some(100)),
            &[408],
        ),
        (
            "invalid UTF-8",
            post(
                &format!("/run-task/{HELLO}"),
                json,
                b"{\"name\": \"\xff\xfe\"}",
                None,
            ),
            &[400],
        ),
        (
            "a number beyond any float",
            post(
                &format!("/run-task/{HELLO}"),
                json,
                b"{\"name\": 1e400}",
                None,
            ),
            &[400],
        ),
        (
            "no content type",
            post(&format!("/run-task/{HELLO}"), "", b"{}", None),
            &[415],
        ),
        (
            "a NUL in a path segment",
            post(
                "/run-task/fly%00snacks/development/hello.main/v1",
                json,
                b"{}",
                None,
            ),
            &[422],
        ),
        (
            "an encoded slash in a path segment",
            post(
                "/run-task/flytesnacks/development/a%2Fb/v1",
                json,
                b"{}",
                None,
            ),
            &[404, 422],
        ),
        (
            "a missing path segment",
            post(
                "/run-task/flytesnacks/development/hello.main",
                json,
                b"{}",
                None,
            ),
            &[404],
        ),
        (
            "a header flood",
            post(
                &format!("/run-task/{HELLO}"),
                &format!("{json}{flood}"),
                b"{}",
                None,
            ),
            &[0, 400, 431],
        ),
        (
            "not HTTP at all",
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(),
            &[0, 400],
        ),
    ];
    for (what, request, expected) in cases {
        let status = raw_exchange(&base, &request).await;
        assert!(
            expected.contains(&status),
            "{what}: got {status}, expected one of {expected:?}"
        );
    }
    assert_eq!(env.ready_messages().await, 0, "nothing was enqueued");
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn inputs_that_do_not_fit_a_known_interface_get_422_naming_the_field(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    // The first send teaches the ingress the interface (fetched in the background).
    let (status, _) = sender.send_hello(json!({"name": "a"})).await;
    assert_eq!(status, 202);
    let body = eventually(Duration::from_secs(10), "the interface cached", || async {
        let (status, body) = sender.send_hello(json!({"name": 5})).await;
        (status == 422).then_some(body)
    })
    .await;
    assert_eq!(body["code"], "invalid_inputs");
    assert_eq!(body["field"], "name");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("expected str, got an integer")
    );
    let (status, body) = sender
        .send_hello(json!({"name": "a", "colour": "red"}))
        .await;
    assert_eq!((status, &body["field"]), (422, &json!("colour")));
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn each_key_is_rate_limited_with_retry_after(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env
        .start_ingress(
            env.settings_with_file("[ingress]\nrate_limit = { per_second = 1, burst = 2 }\n"),
        )
        .await
        .sender();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = sender
            .run_task(HELLO)
            .json(&json!({"name": "a"}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429]);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn ids_never_issued_are_404_and_status_needs_a_key(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    let (_, accepted) = sender.send_hello(json!({"name": "a"})).await;
    let id = accepted["id"].as_str().unwrap().to_string();

    let mut forged = id.clone().into_bytes();
    forged[39] = if forged[39] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    for unknown in [forged.as_str(), "not-an-id", &"0".repeat(40)] {
        let (status, body) = sender.dispatch(unknown).await;
        assert_eq!(
            (status, &body["code"]),
            (404, &json!("dispatch_not_found")),
            "{unknown}"
        );
    }
    assert_eq!(sender.probe(&format!("/dispatches/{id}")).await.0, 401);
    assert_eq!(sender.dispatch(&id).await.0, 200);
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn health_endpoints_answer(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let sender = env.start_ingress(env.settings()).await.sender();
    for (path, expected) in [("/health", "ok"), ("/livez", "ok"), ("/readyz", "ready")] {
        let (status, body) = sender.probe(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["status"], expected);
    }
    env.finish().await;
}
