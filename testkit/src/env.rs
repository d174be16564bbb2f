//! One e2e test's world: its database (from `#[sqlx::test]`), queue prefix and flyte-sim, the
//! settings its ingress and workers read, and whatever it started, all ended by one explicit
//! [`TestEnv::finish`] at the end of the test.

use std::time::Duration;

use flyhook::Settings;
use flyhook_contract::broker::{BrokerNodes, Topology};
use flyte_sim::SimConfig;
use serde_json::Value;
use sqlx::PgPool;

use crate::broker;
use crate::in_process::{Ingress, Running, RunningWorker};
use crate::proxy::Proxy;
use crate::services::{postgres_url, unique};
use crate::sim::{self, Sim};
use crate::vars::{self, ConfigFile, Vars};
use crate::wait::eventually;

#[derive(Debug)]
pub struct TestEnv {
    pub vars: Vars,
    pub sim: Sim,
    pub http: reqwest::Client,
    /// The test's own database.
    pub database: String,
    running: Running,
    finished: bool,
}

impl TestEnv {
    /// `pool` is the test's own database (from `#[sqlx::test]`); the stand-in's runs behave as
    /// `sim` says ([`TestEnv::instant_runs`], [`TestEnv::long_runs`]).
    pub async fn new(pool: &PgPool, sim: SimConfig) -> TestEnv {
        let sim = Sim::start(SimConfig { workers: 1, ..sim }).expect("flyte-sim starts");
        let database = pool
            .connect_options()
            .get_database()
            .expect("sqlx::test names the database")
            .to_string();
        let vars = vars::deployment(
            &postgres_url(&database),
            &unique("test"),
            &sim.url,
            "127.0.0.1:0",
        );
        TestEnv {
            vars,
            sim,
            http: reqwest::Client::new(),
            database,
            running: Running::default(),
            finished: false,
        }
    }

    /// Runs in the stand-in that end at once.
    pub fn instant_runs() -> SimConfig {
        sim::instant_runs()
    }

    /// Runs in the stand-in that stay running for an hour.
    pub fn long_runs() -> SimConfig {
        sim::long_runs()
    }

    /// Sets a variable the settings read from now on (a source's secret).
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.vars.insert(name.into(), value.into());
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
        vars::settings(&vars).expect("test settings")
    }

    /// Settings with a `FLYHOOK_CONFIG` file holding `toml`.
    pub fn settings_with_file(&self, toml: &str) -> Settings {
        let file = ConfigFile::write(toml).expect("temp config file");
        self.settings_with(&[("FLYHOOK_CONFIG", &file.var())])
    }

    /// Settings whose trackers look at runs every 50 ms (instead of every second or more).
    pub fn fast_tracking(&self) -> Settings {
        self.settings_with_file(FAST_TRACKING)
    }

    /// Points `settings` at this test's database through a fresh TCP proxy, which the test
    /// then cuts and restores to make PostgreSQL go away and come back.
    pub async fn database_behind_proxy(&self, settings: &mut Settings) -> Proxy {
        let proxy = Proxy::to_postgres().await;
        settings.deployment.database_url = proxy.postgres_url(&self.database).into();
        proxy
    }

    /// Points `settings` at RabbitMQ through a fresh TCP proxy, which the test then cuts,
    /// pauses and restores.
    pub async fn broker_behind_proxy(&self, settings: &mut Settings) -> Proxy {
        let mut proxies = self.brokers_behind_proxies(settings, 1).await;
        proxies.remove(0)
    }

    /// Points `settings` at `count` "nodes" (`AMQP_URL` a list), each a TCP proxy to the local
    /// RabbitMQ, for the test to take away one by one.
    pub async fn brokers_behind_proxies(
        &self,
        settings: &mut Settings,
        count: usize,
    ) -> Vec<Proxy> {
        let mut proxies = Vec::new();
        for _ in 0..count {
            proxies.push(Proxy::to_rabbitmq().await);
        }
        let urls: Vec<String> = proxies.iter().map(Proxy::amqp_url).collect();
        settings.deployment.broker =
            BrokerNodes::parse(&urls.join(",").into()).expect("the proxies' URLs");
        proxies
    }

    pub fn topology(&self) -> Topology {
        self.settings().deployment.topology()
    }

    /// Starts an ingress, stopped by [`TestEnv::finish`] unless stopped before.
    pub async fn start_ingress(&self, settings: Settings) -> Ingress {
        self.running.start_ingress(settings).await
    }

    /// Starts a worker, stopped by [`TestEnv::finish`] unless stopped or killed before.
    pub fn start_worker(&self, settings: &Settings) -> RunningWorker {
        self.running.start_worker(settings)
    }

    pub async fn sim_runs(&self) -> Vec<Value> {
        self.sim.runs().await.expect("flyte-sim's runs")
    }

    pub async fn set_sim_faults(&self, faults: Value) {
        self.sim
            .set_faults(faults)
            .await
            .expect("flyte-sim's faults");
    }

    fn broker(&self) -> BrokerNodes {
        self.settings().deployment.broker
    }

    /// Messages ready (not held by a consumer) in the work queues.
    pub async fn ready_messages(&self) -> u32 {
        broker::backlog(&self.broker(), &self.topology())
            .await
            .expect("the work queues")
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letters(&self) -> u32 {
        broker::queue_length(&self.broker(), &self.topology().dead_queue())
            .await
            .expect("the dead-letter queue")
    }

    /// Waits until the work queues hold exactly `count` ready messages.
    pub async fn wait_for_ready_messages(&self, count: u32, within: Duration) {
        let queues = self.topology().work_queues().collect();
        self.wait_for_length(queues, count, within).await;
    }

    /// Waits until the dead-letter queue holds exactly `count` messages.
    pub async fn wait_for_dead_letters(&self, count: u32, within: Duration) {
        self.wait_for_length(vec![self.topology().dead_queue()], count, within)
            .await;
    }

    async fn wait_for_length(&self, queues: Vec<String>, count: u32, within: Duration) {
        let queues = &queues;
        eventually(
            within,
            &format!("{queues:?} to hold {count} ready messages"),
            || async move {
                match broker::queues_length(&self.broker(), queues.iter().cloned())
                    .await
                    .expect("the queues")
                {
                    ready if ready == count => Ok(()),
                    ready => Err(format!("{ready} ready")),
                }
            },
        )
        .await;
    }

    /// The end of the test: stops what is still running (workers first, gracefully), then
    /// deletes the test's queues and exchanges. The database is `#[sqlx::test]`'s to drop.
    pub async fn finish(mut self) {
        self.running.stop_all().await;
        let _ = broker::delete_topology(&self.broker(), &self.topology()).await;
        self.finished = true;
    }
}

/// Trackers that look at runs every 50 ms to 200 ms.
pub const FAST_TRACKING: &str = "[worker.tracking]\nmin_poll_ms = 50\nmax_poll_ms = 200\n";

impl Drop for TestEnv {
    fn drop(&mut self) {
        // A passing test must have cleaned up explicitly (there is no async drop to do it here).
        if !self.finished && !std::thread::panicking() {
            panic!("a TestEnv must end with `env.finish().await`: its queues would stay behind");
        }
    }
}
