//! A flyhook deployment as separate processes on this machine, as in production: one
//! `flyhook ingress` and any number of `flyhook worker`s, with a flyte-sim, against the local
//! RabbitMQ and PostgreSQL, with a database, queue prefix and configuration file of its own,
//! all removed by [`Stack::stop`]. For the fault suite and the benchmarks.

use std::path::PathBuf;
use std::time::Duration;

use flyhook::Settings;
use flyhook_contract::broker::Topology;
use flyte_sim::SimConfig;

use crate::binaries::{self, Profile, Reaped};
use crate::database::Database;
use crate::services::{free_port, unique};
use crate::sim::Sim;
use crate::vars::{self, ConfigFile, Vars};
use crate::{broker, wait};

/// Where the deployment's Flyte stand-in runs.
#[derive(Debug, Clone)]
pub enum Flyte {
    /// In this process.
    InProcess(SimConfig),
    /// The `flyte-sim` binary of the stack's profile, with these arguments.
    Binary(Vec<String>),
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// Names the database and the queue prefix (`bench`, `fault-kill-workers`), each made unique.
    pub kind: String,
    /// Which build of `flyhook` (and `flyte-sim`) runs.
    pub profile: Profile,
    pub workers: usize,
    pub flyte: Flyte,
    /// The `FLYHOOK_CONFIG` file's text.
    pub config: String,
    /// Variables beside the deployment's own (the sources' secrets).
    pub vars: Vec<(String, String)>,
    /// The processes' stderr shown (else discarded).
    pub show_logs: bool,
}

#[derive(Debug)]
pub struct Stack {
    pub ingress_url: String,
    pub sim: Sim,
    pub database: Database,
    /// What the processes read: their queues, their sources.
    pub settings: Settings,
    /// Workers killed by [`Stack::kill_random_worker`].
    pub kills: usize,
    vars: Vars,
    flyhook: PathBuf,
    show_logs: bool,
    ingress: Option<Reaped>,
    workers: Vec<Reaped>,
    sim_process: Option<Reaped>,
    _config: ConfigFile,
}

impl Stack {
    /// Starts the stand-in and the ingress, waits until the ingress is ready, then starts the
    /// workers.
    pub async fn start(spec: StackSpec) -> anyhow::Result<Stack> {
        let flyhook = binaries::binary("flyhook", spec.profile)?;
        let (sim, sim_process) = match &spec.flyte {
            Flyte::InProcess(config) => (Sim::start(config.clone())?, None),
            Flyte::Binary(args) => {
                let (sim, child) = Sim::spawn(spec.profile, args)?;
                (sim, Some(child))
            }
        };
        let config = ConfigFile::write(&spec.config)?;
        let name = unique(&spec.kind);
        let database = Database::create(&name).await?;
        let listen = format!("127.0.0.1:{}", free_port());
        let mut vars = vars::deployment(&database.url, &name, &sim.url, &listen);
        vars.insert("FLYHOOK_CONFIG".into(), config.var());
        vars.extend(spec.vars.iter().cloned());
        let settings = match vars::settings(&vars) {
            Ok(settings) => settings,
            Err(e) => {
                let _ = database.remove().await;
                return Err(e);
            }
        };
        let mut stack = Stack {
            ingress_url: format!("http://{listen}"),
            sim,
            database,
            settings,
            kills: 0,
            vars,
            flyhook,
            show_logs: spec.show_logs,
            ingress: None,
            workers: Vec::new(),
            sim_process,
            _config: config,
        };
        match stack.start_processes(spec.workers).await {
            Ok(()) => Ok(stack),
            Err(e) => {
                let _ = stack.stop().await;
                Err(e)
            }
        }
    }

    async fn start_processes(&mut self, workers: usize) -> anyhow::Result<()> {
        self.ingress = Some(self.spawn("ingress")?);
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.ingress_url);
        wait::wait_until(
            Duration::from_secs(30),
            Duration::from_millis(50),
            "the ingress ready",
            || async {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(())
            },
        )
        .await?;
        self.add_workers(workers)
    }

    fn spawn(&self, role: &str) -> anyhow::Result<Reaped> {
        binaries::spawn(
            &self.flyhook,
            &[role.to_string()],
            &self.vars,
            self.show_logs,
        )
    }

    pub fn add_workers(&mut self, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            let worker = self.spawn("worker")?;
            self.workers.push(worker);
        }
        Ok(())
    }

    /// Kills a random worker with SIGKILL (no chance to ack, nack or close anything) and
    /// starts a new one in its place.
    pub fn kill_random_worker(&mut self) -> anyhow::Result<()> {
        let victim = fastrand::usize(..self.workers.len());
        self.workers.remove(victim).kill()?;
        let replacement = self.spawn("worker")?;
        self.workers.insert(victim, replacement);
        self.kills += 1;
        Ok(())
    }

    /// The ingress's process id (until [`Stack::halt`]).
    pub fn ingress_pid(&self) -> u32 {
        self.ingress
            .as_ref()
            .map(Reaped::id)
            .expect("the ingress runs")
    }

    /// The process ids of the workers and of the stand-in (when it runs as a process).
    pub fn other_pids(&self) -> (Vec<u32>, Option<u32>) {
        (
            self.workers.iter().map(Reaped::id).collect(),
            self.sim_process.as_ref().map(Reaped::id),
        )
    }

    pub fn topology(&self) -> Topology {
        self.settings.deployment.topology()
    }

    /// Messages ready in the work queues.
    pub async fn backlog(&self) -> anyhow::Result<u32> {
        broker::backlog(&self.settings.deployment.broker, &self.topology()).await
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letters(&self) -> anyhow::Result<u32> {
        broker::queue_length(
            &self.settings.deployment.broker,
            &self.topology().dead_queue(),
        )
        .await
    }

    /// Kills every `flyhook` process (the stand-in stays, for a last look).
    pub fn halt(&mut self) {
        self.workers.clear();
        self.ingress = None;
    }

    /// Stops every process and removes the deployment's queues, database and configuration.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.halt();
        self.sim_process = None;
        let queues =
            broker::delete_topology(&self.settings.deployment.broker, &self.topology()).await;
        let database = self.database.remove().await;
        queues.and(database)
    }
}
