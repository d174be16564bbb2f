//! Provider webhooks end to end: signed deliveries from each scheme through ingress, queue,
//! worker and stand-in, with the inputs that reached the run checked; duplicates (retries,
//! retries signed anew, captured bodies replayed under fresh ids), ignored deliveries, fan-out,
//! handshakes, and every way a delivery is refused. The sources every test here configures, and
//! a delivery as a provider sends it, are below; the tests are in `hooks/`.

mod duplicates;
mod fan_out;
mod providers;
mod refusals;

use std::time::Duration;

use flyhook::Settings;
use flyhook_testkit::env::FAST_TRACKING;
use flyhook_testkit::{Sender, TestEnv, client};
use serde_json::Value;
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

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

[[sources]]
name = "linear"
scheme = "linear"
secrets = [{ env = "LINEAR_SECRET" }]

[[sources.routes]]
name = "triage"
task = "flytesnacks/development/hello.main/v1"
when = [{ pointer = "/type", equals = "Issue" }, { pointer = "/action", equals = "create" }]
inputs = { name = "/data/identifier" }

[[sources]]
name = "clickup"
scheme = "clickup"
secrets = [{ env = "CLICKUP_SECRET" }]

[[sources.routes]]
name = "status"
task = "flytesnacks/development/hello.main/v1"
when = [{ pointer = "/event", equals = "taskStatusUpdated" }]
inputs = { name = "/task_id" }

[[sources]]
name = "jira"
scheme = "jira"
secrets = [{ env = "JIRA_SECRET" }]

[[sources.routes]]
name = "transitioned"
task = "flytesnacks/development/deploy.main/v1"
when = [{ pointer = "/webhookEvent", equals = "jira:issue_updated" }, { pointer = "/changelog/items/0/field", equals = "status" }]
inputs = { commit = "/issue/key", ref = "/changelog/items/0/toString" }
"#;

const SECRETS: [(&str, &str); 11] = [
    ("GH_OLD_SECRET", "gh-old"),
    ("GH_SECRET", "gh-current"),
    ("STRIPE_SECRET", "whsec_stripe-test"),
    ("SLACK_SECRET", "slack-signing-secret"),
    ("STANDARD_SECRET", "whsec_c3RhbmRhcmQtd2ViaG9va3Mta2V5"),
    ("GITLAB_SECRET", "gitlab-token"),
    ("SHOPIFY_SECRET", "shopify-secret"),
    ("PARTNER_SECRET", "partner-secret"),
    ("LINEAR_SECRET", "lin_wh_e2e"),
    ("CLICKUP_SECRET", "clickup-secret"),
    ("JIRA_SECRET", "jira-secret"),
];

/// The test's world, every source configured, with its ingress running: the env, the settings
/// (start a worker with them) and a sender.
async fn serve(pool: &PgPool) -> (TestEnv, Settings, Sender) {
    serve_with(pool, "").await
}

/// [`serve`], with `config`'s tables (`[ingress]`) in the configuration too.
async fn serve_with(pool: &PgPool, config: &str) -> (TestEnv, Settings, Sender) {
    let mut env = TestEnv::new(pool, TestEnv::instant_runs()).await;
    for (name, value) in SECRETS {
        env.set_var(name, value);
    }
    let settings = env.settings_with_file(&format!("{config}{SOURCES}\n{FAST_TRACKING}"));
    let sender = env.start_ingress(settings.clone()).await.sender();
    (env, settings, sender)
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

impl<'a> Delivery<'a> {
    /// A JSON delivery of `body` to `/hooks/{source}`.
    fn json(
        source: &'a str,
        path: &'a str,
        body: &'a str,
        id: &'a str,
        headers: &'a [(&'a str, &'a str)],
    ) -> Delivery<'a> {
        Delivery {
            source,
            path,
            body: body.as_bytes(),
            content_type: "application/json",
            id,
            headers,
        }
    }

    /// Signs with the source's newest secret (as `flyhook send` does) and posts.
    async fn send(&self, sender: &Sender, settings: &Settings) -> (u16, Value) {
        self.send_signed_at(sender, settings, chrono::Utc::now().timestamp())
            .await
    }

    /// [`Delivery::send`], signed at unix time `at`.
    async fn send_signed_at(&self, sender: &Sender, settings: &Settings, at: i64) -> (u16, Value) {
        let source = settings.ingress.sources.get(self.source).unwrap();
        let delivery = client::Delivery {
            path: self.path,
            content_type: self.content_type,
            body: self.body,
            id: self.id,
            headers: self.headers,
            at,
        };
        sender.deliver(&source, &delivery).await
    }
}

async fn inputs_of_run(env: &TestEnv, run_name: &str) -> Value {
    env.sim_runs()
        .await
        .into_iter()
        .find(|r| r["name"] == run_name)
        .map(|r| r["inputs"].clone())
        .unwrap_or_else(|| panic!("no run {run_name}"))
}
