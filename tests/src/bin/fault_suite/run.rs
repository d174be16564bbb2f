//! One scenario from start to verdict: a fresh deployment of `flyhook` processes, the load
//! with the fault injected, the drain, and the checks: every dispatch answered `202` reaches a
//! terminal state, with exactly one run in the stand-in, and nothing dead-lettered unrecorded.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flyhook_testkit::{Flyte, Profile, Receiver, Stack, StackSpec, wait_until};
use flyte_sim::SimConfig;
use serde_json::{Value, json};

use crate::scenario::Scenario;
use crate::{faults, hostile, load};
use flyhook_testkit::cluster;

const WORKERS: usize = 3;

#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: usize,
    /// Worker processes killed with SIGKILL.
    pub kills: usize,
    pub refused_5xx: u64,
    /// Seconds of the load in which a sender got a 5xx or no answer.
    pub refused_seconds: usize,
    /// The most such seconds the scenario allows, if it bounds them.
    pub refused_seconds_allowed: Option<usize>,
    pub bad_input_5xx: u64,
    pub lost: usize,
    pub duplicated_runs: usize,
    /// Accepted dispatches still `queued` or `starting` after the drain.
    pub unfinished: usize,
    /// Messages left in the dead-letter queue beyond the dispatches recorded `failed` or
    /// `dead_lettered` (what the broker gave up on without a record).
    pub unrecorded_dead_letters: usize,
    /// Hostile requests answered otherwise than promised (5xx, or accepted bad input, or a
    /// provider retry that became another dispatch).
    pub misanswered: u64,
    pub terminal: usize,
    pub load: Duration,
    pub drain: Duration,
    pub statuses: HashMap<String, usize>,
}

impl Outcome {
    /// Whether the scenario lost or duplicated work, answered anything as it must not, or (on
    /// the cluster) refused senders for longer than a failover may take.
    pub fn failed(&self) -> bool {
        self.lost > 0
            || self.duplicated_runs > 0
            || self.bad_input_5xx > 0
            || self.unfinished > 0
            || self.unrecorded_dead_letters > 0
            || self.misanswered > 0
            || self
                .refused_seconds_allowed
                .is_some_and(|allowed| self.refused_seconds > allowed)
    }
}

/// Under flow control: hello.main's dispatches debounced by `count` (bursts of ten, see
/// `load`) and calling back to the suite's receiver.
const FLOW: &str = "[[callbacks]]\nname = \"receiver\"\nurl = \"{url}\"\n\
                    secret = { env = \"FAULT_SUITE_WHSEC\" }\n\
                    [[tasks]]\ntask = \"flytesnacks/development/hello.main/v1\"\ncallback = \"receiver\"\n\
                    debounce = { key = \"/count\", window = \"2s\", max_wait = \"30s\" }\n";

/// The deployment every scenario runs: one ingress, three workers (debug builds), runs that
/// last 200 ms, patient retries and trackers; on the cluster (`cluster_url`), three
/// partitions; with a `receiver` (its URL), flow control.
fn spec(which: Scenario, cluster_url: Option<&str>, receiver: Option<&str>) -> StackSpec {
    let mut vars = hostile::secrets();
    let mut broker = String::new();
    if let Some(url) = cluster_url {
        vars.push(("AMQP_URL".into(), url.into()));
        broker = "[broker]\npartitions = 3\n".into();
    }
    if let Some(url) = receiver {
        vars.push((
            "FAULT_SUITE_WHSEC".into(),
            "whsec_ZmF1bHQtc3VpdGUtc2VjcmV0".into(),
        ));
        broker.push_str(&FLOW.replace("{url}", url));
    }
    StackSpec {
        kind: format!("fault-{}", which.name()),
        profile: Profile::Debug,
        workers: WORKERS,
        flyte: Flyte::InProcess(SimConfig {
            queued_for: Duration::ZERO,
            running_for: Duration::from_millis(200),
            ..SimConfig::default()
        }),
        config: format!(
            "{broker}[worker]\nmax_attempts = 30\n[worker.tracking]\nmin_poll_ms = 200\nmax_poll_ms = 1000\nlease_ms = 5000\n{}",
            hostile::sources_config()
        ),
        vars,
        // The processes' logs, for looking into a scenario (`FAULT_SUITE_LOGS=1`).
        show_logs: std::env::var_os("FAULT_SUITE_LOGS").is_some(),
    }
}

pub async fn scenario(which: Scenario, dispatches: usize) -> anyhow::Result<Outcome> {
    faults::services_up().await?;
    let cluster_url = match which.on_cluster() {
        true => Some(cluster::up().await?),
        false => None,
    };
    // A receiver that fails a while, then recovers.
    let receiver = which
        .with_flow_control()
        .then(|| Receiver::start(&[503; 200], 200));
    let receiver_url = receiver.as_ref().map(|r| r.url.as_str());
    let mut stack = Stack::start(spec(which, cluster_url.as_deref(), receiver_url)).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    if which == Scenario::FlakyFlyte {
        stack
            .sim
            .set_faults(json!([{"rpc": "*", "code": "unavailable", "rate": 0.3, "latency_ms": 50}]))
            .await?;
    }

    let load_started = Instant::now();
    let sources = stack.settings.ingress.sources.clone();
    let (counts, senders) = load::start(which, dispatches, &http, &stack.ingress_url, &sources);
    faults::inject(which, &mut stack, &senders).await?;
    for sender in senders {
        sender.await?;
    }
    faults::services_up().await?;
    let load_time = load_started.elapsed();
    if which == Scenario::FlakyFlyte {
        stack.sim.set_faults(json!([])).await?;
    }

    // Drain: every accepted dispatch must reach a terminal state.
    let accepted: Vec<String> = counts.accepted.lock().await.iter().cloned().collect();
    let drain_started = Instant::now();
    let pool = stack.database.connect().await?;
    // Ended, and under flow control with its callback delivered.
    let ended = if which.with_flow_control() {
        ENDED_WITH_CALLBACK
    } else {
        ENDED
    };
    let terminal_query = format!("SELECT count(*) FROM dispatches WHERE {ended}");
    let drained = wait_until(
        Duration::from_secs(300),
        Duration::from_millis(200),
        "the backlog drained",
        || {
            let (pool, ids, query) = (pool.clone(), accepted.clone(), terminal_query.clone());
            async move {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query))
                    .bind(&ids)
                    .fetch_one(&pool)
                    .await
                    .is_ok_and(|n| n as usize == ids.len())
                    .then_some(())
            }
        },
    )
    .await;
    let drain = drain_started.elapsed();
    let terminal: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(terminal_query.clone()))
        .bind(&accepted)
        .fetch_one(&pool)
        .await?;
    let statuses: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM dispatches WHERE id = ANY($1) GROUP BY status",
    )
    .bind(&accepted)
    .fetch_all(&pool)
    .await?;

    let runs = stack.sim.runs().await?;
    let (lost, duplicated_runs) = match &receiver {
        Some(receiver) => flow_verdict(&runs, &accepted, dispatches, terminal as usize, receiver),
        None => one_run_each(&runs, &accepted, terminal as usize),
    };
    let count_of = |wanted: &[&str]| -> usize {
        statuses
            .iter()
            .filter(|(status, _)| wanted.contains(&status.as_str()))
            .map(|(_, n)| *n as usize)
            .sum()
    };
    let unfinished = count_of(&["queued", "starting"]);
    if terminal as usize != accepted.len() {
        describe_unended(which, &pool, &accepted, ended).await;
        if which.on_cluster() {
            match cluster::queues().await {
                Ok(queues) => eprintln!("  the cluster's queues:\n{queues}"),
                Err(e) => eprintln!("  the cluster's queues could not be listed: {e:#}"),
            }
        }
    }

    stack.halt();
    pool.close().await;
    let recorded_dead = count_of(&["failed", "dead_lettered"]);
    let dead_letters = stack.dead_letters().await;
    let kills = stack.kills;
    if let Err(e) = stack.stop().await {
        eprintln!("{}: could not remove the deployment: {e:#}", which.name());
    }
    let unrecorded_dead_letters = (dead_letters? as usize).saturating_sub(recorded_dead);
    if let Err(e) = drained {
        eprintln!("{}: {e:#}", which.name());
    }
    println!(
        "{:>17}: accepted {} in {:.1} s, lost {lost}, duplicated runs {duplicated_runs}, drained in {:.1} s",
        which.name(),
        accepted.len(),
        load_time.as_secs_f64(),
        drain.as_secs_f64()
    );
    Ok(Outcome {
        accepted: accepted.len(),
        kills,
        refused_5xx: counts.refused_5xx.load(Ordering::SeqCst),
        refused_seconds: counts.refused_seconds.lock().await.len(),
        refused_seconds_allowed: which.refused_seconds_allowed(),
        bad_input_5xx: counts.bad_input_5xx.load(Ordering::SeqCst),
        lost,
        duplicated_runs,
        unfinished,
        unrecorded_dead_letters,
        misanswered: counts.misanswered.load(Ordering::SeqCst),
        terminal: terminal as usize,
        load: load_time,
        drain,
        statuses: statuses.into_iter().map(|(s, n)| (s, n as usize)).collect(),
    })
}

/// Which accepted dispatches (`id = ANY($1)`) ended: in a terminal status.
const ENDED: &str = "id = ANY($1) \
    AND status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered')";
/// Under flow control: ran or was coalesced, and its callback was delivered.
const ENDED_WITH_CALLBACK: &str = "id = ANY($1) \
    AND status IN ('succeeded', 'coalesced') AND callback_state = 'delivered'";

/// Prints what became of the accepted dispatches that did not end (`ended` says which did; at
/// most 10): their record and its history, or that there is none, so a failed run in CI says
/// where to look.
async fn describe_unended(which: Scenario, pool: &sqlx::PgPool, accepted: &[String], ended: &str) {
    let query = format!("SELECT id FROM dispatches WHERE {ended}");
    let ended: HashSet<String> = match sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(query))
        .bind(accepted)
        .fetch_all(pool)
        .await
    {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            eprintln!(
                "{}: the ended dispatches could not be read: {e}",
                which.name()
            );
            return;
        }
    };
    let unended: Vec<&String> = accepted.iter().filter(|id| !ended.contains(*id)).collect();
    eprintln!(
        "{}: {} of {} accepted dispatches did not end (the first 10):",
        which.name(),
        unended.len(),
        accepted.len()
    );
    for id in unended.into_iter().take(10) {
        let record = sqlx::query_as::<_, (String, i32, Option<String>, Option<String>)>(
            "SELECT status, attempts, error, callback_state FROM dispatches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await;
        let history = sqlx::query_as::<_, (String, chrono::DateTime<chrono::Utc>)>(
            "SELECT status, at FROM dispatch_events WHERE dispatch_id = $1 ORDER BY at",
        )
        .bind(id)
        .fetch_all(pool)
        .await;
        let history = match history {
            Ok(events) => events
                .iter()
                .map(|(status, at)| format!("{status} at {}", at.format("%H:%M:%S%.3f")))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unreadable ({e})"),
        };
        match record {
            Ok(Some((status, attempts, error, callback))) => eprintln!(
                "  {id}: {status}, {attempts} attempts, error {error:?}, callback {callback:?}; \
                 history: {history}"
            ),
            Ok(None) => eprintln!("  {id}: no record (no worker ever recorded it)"),
            Err(e) => eprintln!("  {id}: its record could not be read: {e}"),
        }
    }
}

/// Exactly one run per dispatch: every accepted dispatch's run exists, nothing else does.
/// (Lost, duplicated runs.)
fn one_run_each(runs: &[Value], accepted: &[String], terminal: usize) -> (usize, usize) {
    let run_names: HashSet<String> = runs
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    let expected: HashSet<String> = accepted
        .iter()
        .filter_map(|id| flyhook_contract::DispatchId::parse(id).ok())
        .map(|id| id.run_name().to_string())
        .collect();
    let lost = expected.difference(&run_names).count() + (accepted.len() - terminal);
    let duplicated = runs.len() - run_names.intersection(&expected).count();
    (lost, duplicated)
}

/// Under flow control: exactly one run per burst (ten dispatches of one `count`), by an
/// accepted dispatch, and every accepted dispatch's callback received (ended and delivered:
/// `terminal`). Lost counts missing bursts, dispatches not ended and callbacks not received.
fn flow_verdict(
    runs: &[Value],
    accepted: &[String],
    dispatches: usize,
    terminal: usize,
    receiver: &Receiver,
) -> (usize, usize) {
    let accepted_ids: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let mut bursts: HashMap<i64, usize> = HashMap::new();
    let mut strangers = 0;
    for run in runs {
        let ours = run["labels"]["flyhook-dispatch"]
            .as_str()
            .is_some_and(|id| accepted_ids.contains(id));
        match run["inputs"]["count"].as_i64() {
            Some(count) if ours => *bursts.entry(count).or_default() += 1,
            _ => strangers += 1,
        }
    }
    let expected_bursts = dispatches.div_ceil(10);
    let duplicated = bursts.values().map(|n| n - 1).sum::<usize>() + strangers;
    let called_back: HashSet<String> = receiver
        .received()
        .iter()
        .filter(|r| r.status / 100 == 2)
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect();
    let uncalled = accepted
        .iter()
        .filter_map(|id| flyhook_contract::DispatchId::parse(id).ok())
        .filter(|id| {
            !called_back.contains(&flyhook_contract::callbacks::Callback::webhook_id(id, 1))
        })
        .count();
    let lost =
        expected_bursts.saturating_sub(bursts.len()) + (accepted.len() - terminal) + uncalled;
    if uncalled > 0 {
        eprintln!("{uncalled} accepted dispatches were never called back");
    }
    (lost, duplicated)
}
