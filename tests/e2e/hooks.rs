//! Provider webhooks end to end: signed deliveries from each scheme through ingress, queue,
//! worker and stand-in, with the inputs that reached the run checked; duplicates (retries,
//! retries signed anew, captured bodies replayed under fresh ids), ignored deliveries, fan-out,
//! handshakes, and every way a delivery is refused.

use std::time::Duration;

use flyhook_e2e::{Sender, TestEnv};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use webhook_signatures::{Scheme, Verified};

const WAIT: Duration = Duration::from_secs(20);

/// Source, body, content type, extra headers, and per dispatch: its route and the inputs the run
/// must get.
type ProviderCase<'a> = (
    &'a str,
    Vec<u8>,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(&'a str, Value)>,
);

/// The expected refusal code, the signature headers, the body, the path.
type Refusal<'a> = (&'a str, Vec<(String, String)>, Vec<u8>, &'a str);

const SOURCES: &str = r#"
[[sources]]
name = "github"
scheme = "github"
secrets = [{ env = "GH_OLD_SECRET" }, { env = "GH_SECRET" }]

[[sources.routes]]
name = "deploy"
task = "flytesnacks/development/deploy.main/v1"
when = [{ header = "X-GitHub-Event", equals = "push" }, { pointer = "/ref", regex = "^refs/heads/main$" }]
inputs = { commit = "/after", repository = { pointer = "/repository/full_name", default = "" } }

[[sources.routes]]
name = "greet-pusher"
task = "flytesnacks/development/hello.main/v1"
when = [{ header = "X-GitHub-Event", equals = "push" }, { pointer = "/pusher/name", exists = true }]
inputs = { name = "/pusher/name" }

[[sources]]
name = "stripe"
scheme = "stripe"
secrets = [{ env = "STRIPE_SECRET" }]

[[sources.routes]]
name = "paid"
task = "flytesnacks/development/hello.main/v1"
when = [{ pointer = "/type", in = ["payment_intent.succeeded", "charge.succeeded"] }]
inputs = { name = "/data/object/customer", count = "/data/object/amount" }

[[sources]]
name = "slack"
scheme = "slack"
secrets = [{ env = "SLACK_SECRET" }]

[[sources.routes]]
name = "slash-deploy"
task = "flytesnacks/development/deploy.main/v1"
when = [{ pointer = "/command", equals = "/deploy" }]
inputs = { commit = "/text", ref = { pointer = "/channel_name", default = "" } }

[[sources.routes]]
name = "mention"
task = "flytesnacks/development/hello.main/v1"
when = [{ pointer = "/event/type", equals = "app_mention" }]
inputs = { name = "/event/user" }

[[sources]]
name = "svix"
scheme = "standard-webhooks"
secrets = [{ env = "STANDARD_SECRET" }]

[[sources.routes]]
name = "any"
task = "flytesnacks/development/hello.main/v1"
inputs = { name = "/data/name" }

[[sources]]
name = "gitlab"
scheme = "gitlab"
secrets = [{ env = "GITLAB_SECRET" }]

[[sources.routes]]
name = "push"
task = "flytesnacks/development/deploy.main/v1"
when = [{ header = "X-Gitlab-Event", equals = "Push Hook" }]
inputs = { commit = "/checkout_sha", repository = "/project/path_with_namespace" }

[[sources]]
name = "shopify"
scheme = "shopify"
secrets = [{ env = "SHOPIFY_SECRET" }]

[[sources.routes]]
name = "order"
task = "flytesnacks/development/hello.main/v1"
inputs = { name = "/customer/first_name" }

[[sources]]
name = "partner"
scheme = "hmac"
secrets = [{ env = "PARTNER_SECRET" }]
tolerance_secs = 60
hmac = { header = "X-Partner-Signature", prefix = "sha512=", algorithm = "sha512", encoding = "base64", signed_content = "{timestamp}.{body}", timestamp_header = "X-Partner-Timestamp", id_header = "X-Partner-Delivery" }

[[sources.routes]]
name = "job"
task = "flytesnacks/development/hello.main/v1"
inputs = { name = "/who", count = { pointer = "/times", default = 3 } }
"#;

const SECRETS: [(&str, &str); 8] = [
    ("GH_OLD_SECRET", "gh-old"),
    ("GH_SECRET", "gh-current"),
    ("STRIPE_SECRET", "whsec_stripe-test"),
    ("SLACK_SECRET", "slack-signing-secret"),
    ("STANDARD_SECRET", "whsec_c3RhbmRhcmQtd2ViaG9va3Mta2V5"),
    ("GITLAB_SECRET", "gitlab-token"),
    ("SHOPIFY_SECRET", "shopify-secret"),
    ("PARTNER_SECRET", "partner-secret"),
];

async fn world(pool: &PgPool) -> (TestEnv, flyhook::Settings) {
    let mut env = TestEnv::new(pool, TestEnv::instant_runs()).await;
    for (name, value) in SECRETS {
        env.vars.insert(name.into(), value.into());
    }
    let settings = env.settings_with_file(&format!(
        "{SOURCES}\n[worker.tracking]\nmin_poll_ms = 50\nmax_poll_ms = 200\n"
    ));
    (env, settings)
}

/// A delivery as a provider would send it.
struct Delivery<'a> {
    source: &'a str,
    path: &'a str,
    body: &'a [u8],
    content_type: &'a str,
    id: &'a str,
    headers: &'a [(&'a str, &'a str)],
}

impl Delivery<'_> {
    /// Signs with the source's newest secret (as `flyhook send` does) and posts.
    async fn send(&self, sender: &Sender, settings: &flyhook::Settings) -> (u16, Value) {
        self.send_signed_at(sender, settings, chrono_now()).await
    }

    /// [`Delivery::send`], signed at unix time `at`.
    async fn send_signed_at(
        &self,
        sender: &Sender,
        settings: &flyhook::Settings,
        at: i64,
    ) -> (u16, Value) {
        let source = settings.ingress.sources.get(self.source).unwrap();
        let secret = source.secrets.last().unwrap();
        let mut request = sender
            .http
            .post(format!("{}{}", sender.base, self.path))
            .header("Content-Type", self.content_type)
            .body(self.body.to_vec());
        for (name, value) in source.scheme.sign(secret, self.body, at, self.id) {
            request = request.header(name, value);
        }
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn dispatch_ids(answer: &Value) -> Vec<String> {
    answer["dispatches"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn inputs_of_run(env: &TestEnv, run_name: &str) -> Value {
    env.sim_runs()
        .await
        .into_iter()
        .find(|r| r["name"] == run_name)
        .map(|r| r["inputs"].clone())
        .unwrap_or_else(|| panic!("no run {run_name}"))
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn every_provider_scheme_starts_its_routed_task_with_the_mapped_inputs(pool: PgPool) {
    let (env, settings) = world(&pool).await;
    let ingress = env.start_ingress(settings.clone()).await;
    let worker = env.start_worker(&settings);
    let sender = Sender::new(&ingress);

    let push = json!({"ref": "refs/heads/main", "after": "59b20b8d", "repository": {"full_name": "octo/app"}, "pusher": {"name": "octocat"}});
    let stripe = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"customer": "cus_9", "amount": 1200}}});
    let slack_form = b"command=%2Fdeploy&text=abc123&channel_name=ops&user_name=ann";
    let standard = json!({"type": "user.created", "data": {"name": "sven"}});
    let gitlab =
        json!({"checkout_sha": "da1560886d", "project": {"path_with_namespace": "group/app"}});
    let shopify = json!({"id": 820982911946154508_i64, "customer": {"first_name": "Bob"}});
    let partner = json!({"who": "partner-job"});

    let cases: Vec<ProviderCase> = vec![
        (
            "github",
            push.to_string().into_bytes(),
            "application/json",
            vec![("X-GitHub-Event", "push")],
            vec![
                (
                    "deploy",
                    json!({"commit": "59b20b8d", "repository": "octo/app", "ref": ""}),
                ),
                ("greet-pusher", json!({"name": "octocat", "count": 1})),
            ],
        ),
        (
            "stripe",
            stripe.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("paid", json!({"name": "cus_9", "count": 1200}))],
        ),
        (
            "slack",
            slack_form.to_vec(),
            "application/x-www-form-urlencoded",
            vec![],
            vec![(
                "slash-deploy",
                json!({"commit": "abc123", "ref": "ops", "repository": ""}),
            )],
        ),
        (
            "svix",
            standard.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("any", json!({"name": "sven", "count": 1}))],
        ),
        (
            "gitlab",
            gitlab.to_string().into_bytes(),
            "application/json",
            vec![("X-Gitlab-Event", "Push Hook")],
            vec![(
                "push",
                json!({"commit": "da1560886d", "repository": "group/app", "ref": ""}),
            )],
        ),
        (
            "shopify",
            shopify.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("order", json!({"name": "Bob", "count": 1}))],
        ),
        (
            "partner",
            partner.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("job", json!({"name": "partner-job", "count": 3}))],
        ),
    ];
    for (source, body, content_type, extra, expected) in cases {
        let path = format!("/hooks/{source}");
        let id = format!("{source}-delivery-1");
        let (status, answer) = Delivery {
            source,
            path: &path,
            body: &body,
            content_type,
            id: &id,
            headers: &extra,
        }
        .send(&sender, &settings)
        .await;
        assert_eq!(status, 202, "{source}: {answer}");
        let dispatches = answer["dispatches"].as_array().unwrap();
        assert_eq!(dispatches.len(), expected.len(), "{source}: {answer}");
        for (dispatch, (route, inputs)) in dispatches.iter().zip(expected) {
            assert_eq!(dispatch["route"], route, "{source}");
            let id = dispatch["id"].as_str().unwrap();
            sender.wait_for_status(id, "succeeded", WAIT).await;
            let reached = inputs_of_run(&env, dispatch["run_name"].as_str().unwrap()).await;
            assert_eq!(
                reached, inputs,
                "{source}/{route}: the inputs that reached the run"
            );
        }
    }
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_redelivered_or_replayed_webhook_is_the_same_dispatches_and_starts_nothing_new(
    pool: PgPool,
) {
    let (env, settings) = world(&pool).await;
    let ingress = env.start_ingress(settings.clone()).await;
    let worker = env.start_worker(&settings);
    let sender = Sender::new(&ingress);
    let push =
        json!({"ref": "refs/heads/main", "after": "abc", "pusher": {"name": "o"}}).to_string();
    let delivery = Delivery {
        source: "github",
        path: "/hooks/github",
        body: push.as_bytes(),
        content_type: "application/json",
        id: "gh-42",
        headers: &[("X-GitHub-Event", "push")],
    };
    let send = || delivery.send(&sender, &settings);
    let (_, first) = send().await;
    for id in dispatch_ids(&first) {
        sender.wait_for_status(&id, "succeeded", WAIT).await;
    }
    let (status, again) = send().await;
    assert_eq!(status, 202);
    assert_eq!(
        dispatch_ids(&again),
        dispatch_ids(&first),
        "the provider's retry is the same dispatches"
    );
    // A captured delivery sent again under a fresh X-GitHub-Delivery (which GitHub does not sign).
    let (status, replayed) = Delivery {
        id: "gh-forged-43",
        ..delivery
    }
    .send(&sender, &settings)
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        replayed["delivery_id"], "gh-forged-43",
        "the header is echoed"
    );
    assert_eq!(
        dispatch_ids(&replayed),
        dispatch_ids(&first),
        "a replay is the same dispatches"
    );
    // The seed's endpoint is the same source: still the same dispatches.
    let (_, via_alias) = Delivery {
        path: "/github-webhook",
        ..delivery
    }
    .send(&sender, &settings)
    .await;
    assert_eq!(dispatch_ids(&via_alias), dispatch_ids(&first));
    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 2, "one run per route, not per delivery");
    assert!(runs.iter().all(|r| r["create_calls"] == 1), "{runs:?}");
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn retries_signed_anew_and_bodies_replayed_under_fresh_ids_start_one_run(pool: PgPool) {
    let (env, settings) = world(&pool).await;
    let ingress = env.start_ingress(settings.clone()).await;
    let worker = env.start_worker(&settings);
    let sender = Sender::new(&ingress);
    let now = chrono_now();
    let mention = json!({"type": "event_callback", "event_id": "Ev0PV52K25", "event": {"type": "app_mention", "user": "U061F7AUR"}}).to_string();
    let order =
        json!({"id": 820982911946154508_i64, "customer": {"first_name": "Bob"}}).to_string();
    let push = json!({"checkout_sha": "da1560886d", "project": {"path_with_namespace": "g/app"}})
        .to_string();
    let job = json!({"who": "partner-job"}).to_string();
    // Per source: the body, the first delivery (id, signed at, headers) and its retry or replay.
    type Attempt<'a> = (&'a str, i64, Vec<(&'a str, &'a str)>);
    let cases: Vec<(&str, &str, Attempt, Attempt)> = vec![
        // Slack signs its retry anew: a new timestamp, a new signature, the same event.
        (
            "slack",
            &mention,
            ("", now - 60, vec![]),
            (
                "",
                now,
                vec![
                    ("X-Slack-Retry-Num", "1"),
                    ("X-Slack-Retry-Reason", "http_timeout"),
                ],
            ),
        ),
        // The rest: a captured body sent again under a fresh id their signature does not cover.
        (
            "shopify",
            &order,
            ("b25c3c5c-1", now, vec![]),
            ("forged-2", now, vec![]),
        ),
        (
            "gitlab",
            &push,
            ("uuid-1", now, vec![("X-Gitlab-Event", "Push Hook")]),
            ("uuid-forged", now, vec![("X-Gitlab-Event", "Push Hook")]),
        ),
        (
            "partner",
            &job,
            ("p-1", now - 10, vec![]),
            ("p-forged", now, vec![]),
        ),
    ];
    for (source, body, first, again) in &cases {
        let path = format!("/hooks/{source}");
        let mut answers = Vec::new();
        for (id, at, headers) in [first, again] {
            let (status, answer) = Delivery {
                source,
                path: &path,
                body: body.as_bytes(),
                content_type: "application/json",
                id,
                headers,
            }
            .send_signed_at(&sender, &settings, *at)
            .await;
            assert_eq!(status, 202, "{source}: {answer}");
            let ids = dispatch_ids(&answer);
            assert_eq!(ids.len(), 1, "{source}: {answer}");
            // As a provider's retry would, the second comes after the first was handled.
            sender.wait_for_status(&ids[0], "succeeded", WAIT).await;
            answers.push(ids);
        }
        assert_eq!(
            answers[0], answers[1],
            "{source}: one delivery, one dispatch"
        );
    }
    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), cases.len(), "one run per delivery: {runs:?}");
    assert!(runs.iter().all(|r| r["create_calls"] == 1), "{runs:?}");
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn deliveries_no_route_wants_are_recorded_ignored(pool: PgPool) {
    let (env, settings) = world(&pool).await;
    let ingress = env.start_ingress(settings.clone()).await;
    let worker = env.start_worker(&settings);
    let sender = Sender::new(&ingress);
    let issue = json!({"action": "opened"}).to_string();
    let (status, answer) = Delivery {
        source: "github",
        path: "/hooks/github",
        body: issue.as_bytes(),
        content_type: "application/json",
        id: "gh-7",
        headers: &[("X-GitHub-Event", "issues")],
    }
    .send(&sender, &settings)
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    let recorded = sender
        .wait_for_status(answer["id"].as_str().unwrap(), "ignored", WAIT)
        .await;
    // Recorded under the key its dispatch id derives from: for GitHub, a digest of the body.
    let key = Scheme::GitHub.dedup_key(&Verified::default(), &Value::Null, issue.as_bytes());
    assert!(
        recorded["error"].as_str().unwrap().contains(&key),
        "{recorded}"
    );
    // A push to another branch matches only the route without a branch rule.
    let push =
        json!({"ref": "refs/heads/dev", "after": "abc", "pusher": {"name": "o"}}).to_string();
    let (_, answer) = Delivery {
        source: "github",
        path: "/hooks/github",
        body: push.as_bytes(),
        content_type: "application/json",
        id: "gh-8",
        headers: &[("X-GitHub-Event", "push")],
    }
    .send(&sender, &settings)
    .await;
    let routes: Vec<&str> = answer["dispatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["greet-pusher"]);
    assert!(
        env.sim_runs()
            .await
            .iter()
            .all(|r| r["task"] != "flytesnacks/development/deploy.main:v1")
    );
    // The ignored delivery and the routed one, found by their source once both are recorded.
    for id in dispatch_ids(&answer) {
        sender.wait_for_status(&id, "succeeded", WAIT).await;
    }
    let listed: Value = sender
        .http
        .get(format!("{}/dispatches?source=github", sender.base))
        .bearer_auth(flyhook_e2e::API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    worker.stop().await;
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn provider_handshakes_are_answered_without_starting_anything(pool: PgPool) {
    let (env, settings) = world(&pool).await;
    let ingress = env.start_ingress(settings.clone()).await;
    let sender = Sender::new(&ingress);
    let challenge = json!({"type": "url_verification", "token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}).to_string();
    let (status, answer) = Delivery {
        source: "slack",
        path: "/hooks/slack",
        body: challenge.as_bytes(),
        content_type: "application/json",
        id: "",
        headers: &[],
    }
    .send(&sender, &settings)
    .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        )
    );
    let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1}).to_string();
    let (status, answer) = Delivery {
        source: "github",
        path: "/hooks/github",
        body: ping.as_bytes(),
        content_type: "application/json",
        id: "p-1",
        headers: &[("X-GitHub-Event", "ping")],
    }
    .send(&sender, &settings)
    .await;
    assert_eq!((status, answer), (200, json!({"status": "pong"})));
    assert_eq!(env.ready_messages().await, 0);
    ingress.stop().await;
    env.cleanup().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn forged_stale_and_malformed_deliveries_are_refused_and_enqueue_nothing(pool: PgPool) {
    let (env, settings) = world(&pool).await;
    let ingress = env.start_ingress(settings.clone()).await;
    let sender = Sender::new(&ingress);
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
        scheme.sign(&SecretString::from(secret.to_string()), body, at, "d-1")
    };
    let now = chrono_now();
    let gh = |secret| signed(&Scheme::GitHub, secret, body.as_bytes(), now);

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
    ingress.stop().await;
    env.cleanup().await;
}
