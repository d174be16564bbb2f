//! The `hostile` scenario's requests: every 10th request of its load is one of seven hostile
//! kinds (bad input that must be refused, a huge field that must run, each provider's retry
//! shape that must be the same dispatches), and what each must get.

use flyhook_ingress::sources::Sources;
use flyhook_testkit::client::signed_by;
use flyhook_testkit::{API_KEY, HELLO_TASK};
use serde_json::{Value, json};

/// The provider sources the hostile load sends to: name (and scheme), secret, and the field of a
/// delivery its one route gives hello.main as `name`.
const SOURCES: [(&str, &str, &str); 3] = [
    ("github", "fault-github-secret", "/after"),
    ("slack", "fault-slack-secret", "/event_id"),
    ("stripe", "whsec_fault-stripe-secret", "/id"),
];

fn secret_var(source: &str) -> String {
    format!("FAULT_{}_SECRET", source.to_uppercase())
}

/// The `[[sources]]` of the deployment's configuration.
pub fn sources_config() -> String {
    SOURCES
        .iter()
        .map(|(name, _, input)| {
            format!(
                "\n[[sources]]\nname = \"{name}\"\nscheme = \"{name}\"\nsecrets = [{{ env = \"{}\" }}]\n\
                 [[sources.routes]]\nname = \"greet\"\ntask = \"{HELLO_TASK}\"\ninputs = {{ name = \"{input}\" }}\n",
                secret_var(name)
            )
        })
        .collect()
}

/// The variables holding the sources' secrets.
pub fn secrets() -> Vec<(String, String)> {
    SOURCES
        .iter()
        .map(|(name, secret, _)| (secret_var(name), secret.to_string()))
        .collect()
}

/// The hostile classes the `hostile` scenario sends, and what each must get (a scenario with
/// any other answer counts as misanswered and fails), for RELIABILITY.md.
pub const CLASSES: &str = "
## Hostile input tried

The `hostile` scenario mixes these into the load (every 10th request, in turn); each must get
what this table says, or the scenario fails. The e2e tests in `tests/e2e/hostile/` and
`tests/e2e/hooks/` cover the same classes one by one.

| class | sent | must get |
|---|---|---|
| NUL | `{\"name\": \"nul\\u0000…\"}` to `/run-task` | `422 unstorable_input`, naming the field; nothing queued |
| deep nesting | 100,000 nested arrays (200 KB) | `400 malformed_json` (the parser's recursion limit) |
| nesting the parser takes | 100 nested arrays (within the parser's 128, beyond what a queue message can carry back) | `422 unstorable_input`, naming the field |
| huge field | a 900 KiB string input | `202`; the run starts once, the record holds it, it ends `succeeded` |
| GitHub replay | a signed push, then the same body under a fresh `X-GitHub-Delivery` | `202` twice with the same dispatch ids; one run |
| Slack retry | an Events API delivery, then its retry signed anew a second later with `X-Slack-Retry-Num: 1` | `202` twice with the same dispatch ids (deduplicated on `event_id`); one run |
| Stripe resend | an event, then the same event signed anew | `202` twice with the same dispatch ids (its event `id`); one run |
";

/// What a hostile request must get.
pub enum Expect {
    /// Refused with a 4xx.
    Refused,
    /// Accepted (and then run, once) under these ids.
    Accepted(Vec<String>),
}

/// Sends `request`; its status and body (`null` when not JSON), or `None` when it got no answer.
async fn try_answer(request: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json::<Value>().await.unwrap_or_default()))
}

/// The dispatch ids of an answer: its own, and those of its `dispatches`.
fn ids(body: &Value) -> Vec<String> {
    body["dispatches"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(body))
        .filter_map(|d| d["id"].as_str().map(str::to_string))
        .collect()
}

/// One hostile request (or a provider's delivery and its retry), by kind `n % 7`; `None` when
/// its answer was not what the guarantees promise.
pub async fn hostile(
    http: &reqwest::Client,
    base: &str,
    sources: &Sources,
    n: u64,
) -> Option<Expect> {
    let run_task = format!("{base}/run-task/{HELLO_TASK}");
    match n % 7 {
        kind @ (0 | 1 | 6) => {
            let (body, refusal) = match kind {
                0 => (
                    json!({"name": format!("nul\u{0}{n}")}).to_string(),
                    (422, "unstorable_input"),
                ),
                1 => (
                    format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
                    (400, "malformed_json"),
                ),
                _ => (
                    format!("{{\"name\": {}1{}}}", "[".repeat(100), "]".repeat(100)),
                    (422, "unstorable_input"),
                ),
            };
            let (status, answer) = try_answer(
                http.post(&run_task)
                    .bearer_auth(API_KEY)
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await?;
            (status == refusal.0 && answer["code"] == refusal.1).then_some(Expect::Refused)
        }
        2 => {
            let huge = "x".repeat(900 * 1024);
            let (status, body) = try_answer(
                http.post(&run_task)
                    .bearer_auth(API_KEY)
                    .header("Idempotency-Key", format!("hostile-{n}"))
                    .json(&json!({"name": huge})),
            )
            .await?;
            (status == 202).then(|| Expect::Accepted(ids(&body)))
        }
        kind => {
            let (source, body, headers): (&str, Value, &[(&str, &str)]) = match kind {
                3 => (
                    "github",
                    json!({"after": format!("commit-{n}")}),
                    &[("X-GitHub-Event", "push")],
                ),
                4 => (
                    "slack",
                    json!({"type": "event_callback", "event_id": format!("Ev{n}"), "event": {"type": "app_mention"}}),
                    &[],
                ),
                _ => (
                    "stripe",
                    json!({"id": format!("evt_{n}"), "type": "charge.succeeded"}),
                    &[],
                ),
            };
            let source = sources.get(source)?;
            source.secrets.last()?;
            let body = serde_json::to_vec(&body).ok()?;
            let url = format!("{base}/hooks/{}", source.name);
            let now = chrono::Utc::now().timestamp();
            // The delivery, then the provider's retry: re-signed a second later, under a
            // fresh delivery id where the provider sends one.
            let mut seen = Vec::new();
            for (attempt, at) in [(0, now), (1, now + 1)] {
                let delivery = format!("delivery-{n}-{attempt}");
                let mut request = signed_by(
                    http,
                    &url,
                    &source,
                    "application/json",
                    &body,
                    at,
                    &delivery,
                );
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                if attempt == 1 {
                    request = request.header("X-Slack-Retry-Num", "1");
                }
                let (status, answer) = try_answer(request).await?;
                if status != 202 {
                    return None;
                }
                seen.push(ids(&answer));
            }
            (seen[0] == seen[1]).then(|| Expect::Accepted(seen.remove(0)))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sources_are_what_the_load_signs_for() {
        let mut vars =
            flyhook_testkit::vars::deployment("postgres://x/y", "p", "http://f", "127.0.0.1:0");
        vars.extend(super::secrets());
        let config = flyhook_testkit::vars::ConfigFile::write(&super::sources_config()).unwrap();
        vars.insert("FLYHOOK_CONFIG".into(), config.var());
        let settings = flyhook_testkit::vars::settings(&vars).unwrap();
        for (name, _, _) in super::SOURCES {
            let source = settings.ingress.sources.get(name).unwrap();
            assert_eq!(source.routes.len(), 1, "{name}");
            assert_eq!(
                source.routes[0].task.to_string(),
                "flytesnacks/development/hello.main:v1"
            );
        }
    }
}
