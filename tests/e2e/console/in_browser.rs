//! The console in headless Chromium, as an operator uses it: sign in, watch a dispatch appear
//! and succeed, open it, cancel a slow one, replay a failed one (alone and in bulk, after the
//! dry-run count), look at sources, dead letters, keys and the audit log, create a restricted
//! key and see its view hold only its scope, and be refused an action without the CSRF token.
//! Every page is saved as a screenshot under the target directory's `console-screenshots/`.

use flyhook_testkit::browser::{Browser, is_png};
use flyhook_testkit::env::FAST_TRACKING;
use flyhook_testkit::{API_KEY, Sender, TestEnv, client, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{GITHUB_SOURCE, WAIT};

/// Sends `{"name": name}` to hello.main; the dispatch id.
async fn hello(sender: &Sender, name: &str) -> String {
    let (status, accepted) = sender.send_hello(json!({ "name": name })).await;
    assert_eq!(status, 202, "{accepted}");
    accepted["id"].as_str().unwrap().to_string()
}

/// Opens a page of the console and waits until it has rendered its data.
async fn open(browser: &Browser, base: &str, route: &str, page: &str) {
    browser.goto(&format!("{base}/ui/#/{route}")).await.unwrap();
    browser
        .wait_for(&format!("main#page[data-page=\"{page}\"]"))
        .await
        .unwrap();
}

/// Opens a dispatch's page and waits until it shows that dispatch (the previous dispatch's
/// page is a `dispatch` page too).
async fn open_dispatch(browser: &Browser, base: &str, id: &str) {
    open(browser, base, &format!("dispatch/{id}"), "dispatch").await;
    browser
        .wait_for_text("#dispatch-id", "the dispatch's id", |t| t == id)
        .await
        .unwrap();
}

/// Waits until the dispatches table shows `id`, and checks it shows nothing else.
async fn only_row(browser: &Browser, id: &str) {
    browser
        .wait_for(&format!("tr[data-id=\"{id}\"]"))
        .await
        .unwrap();
    assert_eq!(
        browser.count("table#dispatches tr[data-id]").await.unwrap(),
        1
    );
}

async fn shot(browser: &Browser, name: &str) {
    let file = browser.screenshot(name).await.unwrap();
    assert!(is_png(&file), "{}", file.display());
}

async fn sign_in(browser: &Browser, base: &str, key: &str) {
    browser.goto(&format!("{base}/ui/")).await.unwrap();
    browser.fill("input#api-key", key).await.unwrap();
    browser.click_on("button#sign-in-submit").await.unwrap();
    browser
        .wait_for("main#page[data-page=\"overview\"]")
        .await
        .unwrap();
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn an_operator_works_the_console_in_a_real_browser(pool: PgPool) {
    let mut env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    env.set_var("GH_SECRET", "gh-console-secret");
    // One attempt before a dispatch is dead-lettered, so Flyte failing once makes a dead letter.
    let settings = env.settings_with_file(&format!(
        "[worker]\nmax_attempts = 1\n{GITHUB_SOURCE}\n{FAST_TRACKING}"
    ));
    let ingress = env.start_ingress(settings.clone()).await;
    let _worker = env.start_worker(&settings);
    let sender = ingress.sender();
    let base = ingress.base.clone();
    let browser = Browser::start().await.expect("headless Chromium");

    // Sign in.
    browser.goto(&format!("{base}/ui/")).await.unwrap();
    browser.wait_for("form#sign-in").await.unwrap();
    shot(&browser, "sign-in").await;
    sign_in(&browser, &base, API_KEY).await;

    // A dead letter: Flyte refuses the next run once.
    env.set_sim_faults(json!([{"rpc": "RunService/CreateRun", "code": "unavailable", "count": 1}]))
        .await;
    let dead = hello(&sender, "dead").await;
    sender.wait_for_status(&dead, "dead_lettered", WAIT).await;

    // A dispatch appears in the list and reaches `succeeded` there, without a reload.
    open(&browser, &base, "dispatches", "dispatches").await;
    let ann = hello(&sender, "ann").await;
    let row = format!("tr[data-id=\"{ann}\"] td.status");
    browser
        .wait_for_text(&row, "succeeded", |t| t == "succeeded")
        .await
        .unwrap();
    shot(&browser, "dispatches").await;

    // Its page: status, timeline, inputs and outputs, the run link.
    browser
        .click_on(&format!("tr[data-id=\"{ann}\"] a.dispatch-link"))
        .await
        .unwrap();
    browser
        .wait_for("main#page[data-page=\"dispatch\"]")
        .await
        .unwrap();
    browser
        .wait_for_text("#dispatch-status", "succeeded", |t| t == "succeeded")
        .await
        .unwrap();
    browser
        .wait_for_text("ol#timeline", "the run's steps", |t| {
            t.contains("starting") && t.contains("succeeded")
        })
        .await
        .unwrap();
    browser
        .wait_for_text("pre#inputs", "the inputs", |t| t.contains("\"ann\""))
        .await
        .unwrap();
    browser
        .wait_for_text("pre#outputs", "the outputs", |t| t.contains("hello ann"))
        .await
        .unwrap();
    let link = browser.wait_for("#run-link").await.unwrap();
    let href = browser.attribute(&link, "href").await.unwrap().unwrap();
    assert!(href.starts_with(&env.sim.url), "{href}");
    shot(&browser, "dispatch").await;

    // Cancel a slow one from its page.
    let slow = hello(&sender, "slow").await;
    sender.wait_for_status(&slow, "running", WAIT).await;
    open_dispatch(&browser, &base, &slow).await;
    browser.click_on("button#cancel").await.unwrap();
    browser
        .wait_for_text("#dispatch-status", "aborted", |t| t == "aborted")
        .await
        .unwrap();
    assert_eq!(sender.dispatch(&slow).await.1["status"], "aborted");

    // Replay a failed one from its page: it goes round again under its own id.
    let failed = hello(&sender, "fail").await;
    sender.wait_for_status(&failed, "failed", WAIT).await;
    open_dispatch(&browser, &base, &failed).await;
    browser.click_on("button#replay").await.unwrap();
    browser.wait_for("a#replayed-link").await.unwrap();
    let history = replayed_history(&sender, &failed).await;
    assert!(
        history.windows(2).any(|w| w == ["failed", "queued"]),
        "{history:?}"
    );

    // Bulk replay from a filtered list: the dry-run count first, then the replay.
    sender.wait_for_status(&failed, "failed", WAIT).await;
    open(&browser, &base, "dispatches?status=failed", "dispatches").await;
    browser.click_on("button#bulk-replay").await.unwrap();
    browser
        .wait_for_text("#bulk-count", "one match", |t| t == "1")
        .await
        .unwrap();
    shot(&browser, "bulk-replay").await;
    browser.click_on("button#bulk-confirm-yes").await.unwrap();
    browser
        .wait_for_text("#notice", "the replay", |t| t.contains("Replayed 1"))
        .await
        .unwrap();

    // A provider delivery, and a forged one: the source's card shows both; the delivery is
    // found by the provider's id.
    let github = settings.ingress.sources.get("github").unwrap();
    let push = json!({"ref": "refs/heads/main", "after": "c0ffee"}).to_string();
    let now = chrono::Utc::now().timestamp();
    let url = format!("{base}/hooks/github");
    let deliver = |delivery_id: &str| {
        client::signed_by(
            &env.http,
            &url,
            &github,
            "application/json",
            push.as_bytes(),
            now,
            delivery_id,
        )
        .header("X-GitHub-Event", "push")
    };
    let (status, queued) = client::answer(deliver("console-delivery-1")).await;
    assert_eq!(status, 202, "{queued}");
    let deploy = client::dispatch_ids(&queued).remove(0);
    let forged = env
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "console-delivery-2")
        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
        .body(push.clone());
    let (status, _) = client::answer(forged).await;
    assert_eq!(status, 401);
    sender.wait_for_status(&deploy, "succeeded", WAIT).await;
    // The audit log is written in batches, off the request path: both requests first.
    eventually(WAIT, "both deliveries in the audit log", || async {
        let (_, page) = sender.get("/audit?principal=source:github").await;
        (page["items"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    open(&browser, &base, "sources", "sources").await;
    browser
        .wait_for_text(
            "section.source[data-source=\"github\"]",
            "both deliveries",
            |t| t.contains("accepted") && t.contains("signature_mismatch"),
        )
        .await
        .unwrap();
    shot(&browser, "sources").await;
    open(
        &browser,
        &base,
        "dispatches?q=console-delivery-1",
        "dispatches",
    )
    .await;
    only_row(&browser, &deploy).await;

    // The overview counts them, and draws its charts.
    open(&browser, &base, "overview", "overview").await;
    browser
        .wait_for_text("#overview-accepted-hour", "five accepted", |t| t == "5")
        .await
        .unwrap();
    browser.wait_for("svg#chart-hour").await.unwrap();
    browser.wait_for("svg#chart-day").await.unwrap();
    shot(&browser, "overview").await;

    // The dead letter, replayed from its page after the confirm step: Flyte takes it now.
    open(&browser, &base, "dead-letters", "dead-letters").await;
    browser
        .wait_for(&format!("table#dead-letters tr[data-id=\"{dead}\"]"))
        .await
        .unwrap();
    shot(&browser, "dead-letters").await;
    browser.click_on("button#replay-all").await.unwrap();
    browser.click_on("button#replay-all-yes").await.unwrap();
    sender.wait_for_status(&dead, "succeeded", WAIT).await;
    open(&browser, &base, "audit", "audit").await;
    browser
        .wait_for("table#audit tr[data-audit-id]")
        .await
        .unwrap();
    shot(&browser, "audit").await;

    // Refused without the CSRF token, even with the session's cookie.
    let refused = browser
        .run_async(
            "const [id, done] = arguments;
             fetch(`/dispatches/${id}/cancel`, {method: 'POST', credentials: 'same-origin',
                   headers: {'Content-Type': 'application/json'}, body: '{}'})
               .then(async (r) => done({status: r.status, body: await r.json()}));",
            json!([slow]),
        )
        .await
        .unwrap();
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["body"]["code"], "csrf_token_invalid");

    // A key restricted to the deploy task, created here: its key is shown once.
    open(&browser, &base, "keys", "keys").await;
    browser
        .fill("form#create-key input[name=\"name\"]", "deploy-viewer")
        .await
        .unwrap();
    browser
        .fill(
            "form#create-key input[name=\"scopes\"]",
            "flytesnacks/development/deploy.main",
        )
        .await
        .unwrap();
    browser.click_on("button#create-key-submit").await.unwrap();
    let restricted_key = browser
        .wait_for_text("code#new-key", "the new key", |t| t.starts_with("fhk_"))
        .await
        .unwrap();
    shot(&browser, "keys").await;
    super::wait_until_honoured(&env.http, &base, &restricted_key).await;

    // Its view holds only its scope: the deploy dispatch, none of the hello ones, and no
    // operator pages.
    browser.click_on("button#sign-out").await.unwrap();
    browser.wait_for("form#sign-in").await.unwrap();
    sign_in(&browser, &base, &restricted_key).await;
    assert_eq!(browser.count("a[data-nav=\"keys\"]").await.unwrap(), 0);
    assert_eq!(browser.count("a[data-nav=\"audit\"]").await.unwrap(), 0);
    open(&browser, &base, "dispatches", "dispatches").await;
    only_row(&browser, &deploy).await;
    shot(&browser, "restricted-dispatches").await;
    browser.goto(&format!("{base}/ui/#/keys")).await.unwrap();
    browser
        .wait_for_text("#error", "the refusal", |t| t.contains("every scope"))
        .await
        .unwrap();

    // On a phone.
    browser.set_size(390, 844).await.unwrap();
    open(&browser, &base, "dispatches", "dispatches").await;
    shot(&browser, "dispatches-phone").await;

    browser.quit().await;
    env.finish().await;
}

/// The statuses a replayed dispatch went through, once it went round again.
async fn replayed_history(sender: &Sender, id: &str) -> Vec<String> {
    flyhook_testkit::eventually(WAIT, "the replay in the dispatch's history", || async {
        let (status, history) = sender.get(&format!("/dispatches/{id}/history")).await;
        assert_eq!(status, 200);
        let statuses: Vec<String> = history["events"]
            .as_array()?
            .iter()
            .filter_map(|e: &Value| e["status"].as_str().map(str::to_string))
            .collect();
        (statuses.iter().filter(|s| *s == "failed").count() >= 2).then_some(statuses)
    })
    .await
}
