//! Forged, stale, malformed and unusable deliveries are refused (each with its code), and
//! nothing of them is enqueued.

use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use webhook_signatures::{Scheme, UnixMillis};

use super::serve;

/// The expected refusal code, the signature headers, the body, the path.
type Refusal<'a> = (&'a str, Vec<(String, String)>, Vec<u8>, &'a str);

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn forged_stale_and_malformed_deliveries_are_refused_and_enqueue_nothing(pool: PgPool) {
    let (env, _, sender) = serve(&pool).await;
    let body = json!({"ref": "refs/heads/main", "after": "abc"}).to_string();
    let post = |path: &str, headers: Vec<(String, String)>, body: Vec<u8>, content_type: &str| {
        let mut request = sender
            .http
            .post(format!("{}{path}", sender.base))
            .header("Content-Type", content_type)
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let www = response.headers().get("www-authenticate").is_some();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["code"].as_str().unwrap_or_default().to_string(),
                www,
            )
        }
    };
    let signed = |scheme: &Scheme, secret: &str, body: &[u8], at: i64| {
        let secret = SecretString::from(secret.to_string());
        scheme
            .sign(&secret, body, UnixMillis::from_secs(at), "d-1")
            .headers
    };
    let now = chrono::Utc::now().timestamp();
    let gh = |secret| signed(&Scheme::GitHub, secret, body.as_bytes(), now);
    // Linear's time is in its body: the headers and the body it stamped.
    let linear = |secret: &str, at: i64| {
        let secret = SecretString::from(secret.to_string());
        let signed =
            Scheme::Linear.sign(&secret, body.as_bytes(), UnixMillis::from_secs(at), "d-1");
        (signed.headers, signed.body.into_owned(), "/hooks/linear")
    };
    let jira_mac = signed(&Scheme::Jira, "jira-secret", body.as_bytes(), now)[0]
        .1
        .trim_start_matches("sha256=")
        .to_string();

    assert_eq!(
        post(
            "/hooks/nobody",
            gh("gh-current"),
            body.clone().into_bytes(),
            "application/json"
        )
        .await
        .1,
        "unknown_source"
    );
    let cases: Vec<Refusal> = vec![
        (
            "missing_signature",
            vec![],
            body.clone().into_bytes(),
            "/hooks/github",
        ),
        (
            "malformed_signature",
            vec![("X-Hub-Signature-256".into(), "sha256=zz".into())],
            body.clone().into_bytes(),
            "/hooks/github",
        ),
        (
            "signature_mismatch",
            gh("not-the-secret"),
            body.clone().into_bytes(),
            "/hooks/github",
        ),
        (
            "signature_mismatch",
            gh("gh-current"),
            b"{\"ref\": \"refs/heads/main\", \"after\": \"evil\"}".to_vec(),
            "/hooks/github",
        ),
        (
            "stale_timestamp",
            signed(
                &Scheme::Stripe,
                "whsec_stripe-test",
                body.as_bytes(),
                now - 3600,
            ),
            body.clone().into_bytes(),
            "/hooks/stripe",
        ),
        (
            "stale_timestamp",
            signed(
                &Scheme::Slack,
                "slack-signing-secret",
                body.as_bytes(),
                now + 3600,
            ),
            body.clone().into_bytes(),
            "/hooks/slack",
        ),
        {
            let (headers, body, path) = linear("not-the-secret", now);
            ("signature_mismatch", headers, body, path)
        },
        {
            // Signed an hour ago: Linear allows 60 s.
            let (headers, body, path) = linear("lin_wh_e2e", now - 3600);
            ("stale_timestamp", headers, body, path)
        },
        (
            "signature_mismatch",
            signed(&Scheme::ClickUp, "not-the-secret", body.as_bytes(), now),
            body.clone().into_bytes(),
            "/hooks/clickup",
        ),
        (
            "signature_mismatch",
            signed(&Scheme::Jira, "not-the-secret", body.as_bytes(), now),
            body.clone().into_bytes(),
            "/hooks/jira",
        ),
        (
            "malformed_signature",
            vec![("X-Hub-Signature".into(), jira_mac)],
            body.clone().into_bytes(),
            "/hooks/jira",
        ),
        // Not even parsed: a broken body with a forged signature is a signature problem.
        (
            "signature_mismatch",
            gh("nope"),
            b"{not json".to_vec(),
            "/hooks/github",
        ),
    ];
    for (code, headers, body, path) in cases {
        let (status, got, www) = post(path, headers, body, "application/json").await;
        assert_eq!(
            (status, got.as_str(), www),
            (401, code, true),
            "{path} {code}"
        );
    }
    // Authentic but unusable bodies: 400 and 415, after verification.
    let broken = b"{not json".to_vec();
    let (status, code, _) = post(
        "/hooks/github",
        signed(&Scheme::GitHub, "gh-current", &broken, now),
        broken,
        "application/json",
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "malformed_json"));
    let text = b"hello".to_vec();
    let (status, _, _) = post(
        "/hooks/github",
        signed(&Scheme::GitHub, "gh-current", &text, now),
        text,
        "text/plain",
    )
    .await;
    assert_eq!(status, 415);
    // The rotated-out secret still verifies while it is listed.
    let (status, _, _) = post(
        "/hooks/github",
        [gh("gh-old"), vec![("X-GitHub-Event".into(), "ping".into())]].concat(),
        body.clone().into_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(status, 200);

    assert_eq!(
        env.ready_messages().await,
        0,
        "no refused delivery was enqueued"
    );
    env.finish().await;
}
