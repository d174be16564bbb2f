//! The runs the stand-in has created, and their simulated lifecycle.
//!
//! A run's phase is computed from the clock when asked (QUEUED for `queued_for`, RUNNING for
//! `running_for`, then the outcome its task's rules chose), so no background task drives it and
//! a paused test cannot miss a transition.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flyte_client::literal::NamedLiteral;
use flyte_client::messages::{
    AbortInfo, ActionDetails, ActionStatus, ErrorInfo, ErrorKind, Inputs, RunId,
};
use flyte_client::{ActionPhase, TaskId};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalogue::Outcome;

/// A run's (project, domain, name): what names it in Flyte's URLs. Org is not part of it, so a
/// run is found whichever org a call names.
pub(crate) type RunKey = (String, String, String);

/// Every run created, found by name and listed in the order it was created.
#[derive(Debug, Default)]
pub(crate) struct RunTable {
    runs: HashMap<RunKey, RunRecord>,
    order: Vec<RunKey>,
}

fn key(id: &RunId) -> RunKey {
    (id.project.clone(), id.domain.clone(), id.name.clone())
}

impl RunTable {
    /// Lookups by key come from `/_sim` and console URLs, which name a run by its parts.
    pub(crate) fn get(&self, key: &RunKey) -> Option<&RunRecord> {
        self.runs.get(key)
    }

    /// Changes come from RPCs, which name a run by its id.
    pub(crate) fn get_mut(&mut self, id: &RunId) -> Option<&mut RunRecord> {
        self.runs.get_mut(&key(id))
    }

    /// Adds a run whose name is not taken (`CreateRun` answers a taken name itself).
    pub(crate) fn insert(&mut self, record: RunRecord) {
        let key = key(&record.id);
        self.order.push(key.clone());
        self.runs.insert(key, record);
    }

    pub(crate) fn in_order(&self) -> impl Iterator<Item = &RunRecord> {
        self.order.iter().filter_map(|k| self.runs.get(k))
    }

    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }
}

/// How a run will end, fixed when it is created.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    Succeeded(Vec<NamedLiteral>),
    Failed { message: String, kind: ErrorKind },
    TimedOut,
}

#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    pub(crate) id: RunId,
    pub(crate) task: TaskId,
    pub(crate) inputs: Inputs,
    pub(crate) created_at: DateTime<Utc>,
    created: Instant,
    queued_for: Duration,
    running_for: Duration,
    ending: Ending,
    aborted: Option<(Duration, String)>,
    /// How many `CreateRun` calls named this run (1 unless someone retried).
    pub(crate) create_calls: u32,
    /// The run spec's labels.
    pub(crate) labels: BTreeMap<String, String>,
}

/// What `/_sim/runs` shows about a run.
#[derive(Debug, Serialize)]
pub(crate) struct RunView {
    pub(crate) project: String,
    pub(crate) domain: String,
    pub(crate) name: String,
    pub(crate) task: String,
    pub(crate) phase: ActionPhase,
    pub(crate) inputs: Map<String, Value>,
    pub(crate) raw_inputs: Inputs,
    pub(crate) create_calls: u32,
    pub(crate) created_at: DateTime<Utc>,
    /// When it ended (or will end, by its configured length), if it has.
    pub(crate) ended_at: Option<DateTime<Utc>>,
    pub(crate) labels: BTreeMap<String, String>,
}

impl RunRecord {
    pub(crate) fn new(
        id: RunId,
        task: TaskId,
        inputs: Inputs,
        lifecycle: (Duration, Duration),
        ending: Ending,
        labels: BTreeMap<String, String>,
    ) -> Self {
        RunRecord {
            id,
            task,
            inputs,
            created_at: Utc::now(),
            created: Instant::now(),
            queued_for: lifecycle.0,
            running_for: lifecycle.1,
            ending,
            aborted: None,
            create_calls: 1,
            labels,
        }
    }

    fn ends_after(&self) -> Duration {
        self.queued_for + self.running_for
    }

    /// The phase now, and since when it has been in it (relative to creation).
    fn phase(&self) -> (ActionPhase, Option<Duration>) {
        let elapsed = self.created.elapsed();
        if let Some((at, _)) = &self.aborted {
            return (ActionPhase::Aborted, Some(*at));
        }
        if elapsed < self.queued_for {
            return (ActionPhase::Queued, None);
        }
        if elapsed < self.ends_after() {
            return (ActionPhase::Running, None);
        }
        let phase = match self.ending {
            Ending::Succeeded(_) => ActionPhase::Succeeded,
            Ending::Failed { .. } => ActionPhase::Failed,
            Ending::TimedOut => ActionPhase::TimedOut,
        };
        (phase, Some(self.ends_after()))
    }

    fn is_terminal(&self) -> bool {
        self.phase().0.is_terminal()
    }

    /// Aborts the run unless it already ended; returns whether it did.
    pub(crate) fn abort(&mut self, reason: String) -> bool {
        if self.is_terminal() {
            return false;
        }
        self.aborted = Some((self.created.elapsed(), reason));
        true
    }

    pub(crate) fn status(&self) -> ActionStatus {
        let (phase, ended) = self.phase();
        let end_time = ended
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| self.created_at + d);
        ActionStatus {
            phase,
            start_time: Some(self.created_at),
            end_time,
            attempts: 1,
            duration_ms: ended.map(|d| d.as_millis() as u64),
        }
    }

    pub(crate) fn details(&self) -> ActionDetails {
        let status = self.status();
        let mut details = ActionDetails {
            id: self.id.root_action(),
            error_info: None,
            abort_info: None,
            status,
        };
        match (details.status.phase, &self.ending, &self.aborted) {
            (ActionPhase::Aborted, _, Some((_, reason))) => {
                details.abort_info = Some(AbortInfo {
                    reason: reason.clone(),
                })
            }
            (ActionPhase::Failed, Ending::Failed { message, kind }, _) => {
                details.error_info = Some(ErrorInfo {
                    message: message.clone(),
                    kind: *kind,
                    code: String::new(),
                })
            }
            (ActionPhase::TimedOut, _, _) => {
                details.error_info = Some(ErrorInfo {
                    message: format!(
                        "flyte-sim: the run exceeded its {}s deadline",
                        self.ends_after().as_secs()
                    ),
                    kind: ErrorKind::System,
                    code: "Timeout".into(),
                })
            }
            _ => {}
        }
        details
    }

    /// Outputs once succeeded; empty before, as Flyte answers.
    pub(crate) fn outputs(&self) -> Vec<NamedLiteral> {
        match (&self.ending, self.phase().0) {
            (Ending::Succeeded(outputs), ActionPhase::Succeeded) => outputs.clone(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn view(&self) -> RunView {
        RunView {
            project: self.id.project.clone(),
            domain: self.id.domain.clone(),
            name: self.id.name.clone(),
            task: self.task.to_string(),
            phase: self.phase().0,
            labels: self.labels.clone(),
            inputs: flyte_client::outputs::literals_to_json(&self.inputs.literals),
            raw_inputs: self.inputs.clone(),
            create_calls: self.create_calls,
            created_at: self.created_at,
            ended_at: self.status().end_time,
        }
    }
}

impl Ending {
    pub(crate) fn from_outcome(
        outcome: Outcome,
        message: &str,
        outputs: Vec<NamedLiteral>,
    ) -> Ending {
        match outcome {
            Outcome::Succeeded => Ending::Succeeded(outputs),
            Outcome::Failed => Ending::Failed {
                message: message.to_string(),
                kind: ErrorKind::User,
            },
            Outcome::TimedOut => Ending::TimedOut,
        }
    }
}
