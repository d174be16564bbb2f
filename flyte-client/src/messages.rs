//! The Flyte 2 request and response messages this client exchanges, in proto3 JSON.
//!
//! Only the fields flyhook uses are modelled. Responses are parsed leniently (unknown fields are
//! ignored, unknown enum names become `Unrecognized`) because a server may be newer than us;
//! requests are checked field by field against the official schema in the tests of `flyte-sim`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::literal::{Literal, NamedLiteral, TypedInterface, Variable};
use crate::proto_json::opt_int64;

/// `flyteidl2.task.TaskIdentifier`: a deployed task at one version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TaskId {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

/// `flyteidl2.common.RunIdentifier`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RunId {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub name: String,
}

/// `flyteidl2.common.ActionIdentifier`: one action of a run; the root action is `a0`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionId {
    #[serde(default)]
    pub run: RunId,
    #[serde(default)]
    pub name: String,
}

/// The name Flyte gives the root action of every run.
pub const ROOT_ACTION: &str = "a0";

impl RunId {
    pub fn root_action(&self) -> ActionId {
        ActionId {
            run: self.clone(),
            name: ROOT_ACTION.into(),
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.project, self.domain, self.name, self.version
        )
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.domain, self.name)
    }
}

// --- TaskService/GetTaskDetails ---

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskDetailsRequest {
    pub task_id: TaskId,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GetTaskDetailsResponse {
    #[serde(default)]
    pub details: TaskDetails,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetails {
    #[serde(default)]
    pub task_id: TaskId,
    #[serde(default)]
    pub spec: TaskSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    #[serde(default)]
    pub task_template: TaskTemplate,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_inputs: Vec<NamedParameter>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub short_name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskTemplate {
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub task_type: String,
    #[serde(default)]
    pub interface: TypedInterface,
}

/// `flyteidl2.task.NamedParameter`: an input with its default, if it has one.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NamedParameter {
    pub name: String,
    #[serde(default)]
    pub parameter: Parameter,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Parameter {
    #[serde(default)]
    pub var: Variable,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Literal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

impl TaskSpec {
    /// The default literal of input `name`, if the task declares one.
    pub fn default_for(&self, name: &str) -> Option<&Literal> {
        self.default_inputs
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.parameter.default.as_ref())
    }
}

// --- RunService/CreateRun ---

/// `flyteidl2.task.Inputs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Inputs {
    #[serde(default)]
    pub literals: Vec<NamedLiteral>,
}

/// `flyteidl2.task.Outputs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outputs {
    #[serde(default)]
    pub literals: Vec<NamedLiteral>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRunRequest {
    pub run_id: RunId,
    pub task_id: TaskId,
    pub inputs: Inputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_spec: Option<RunSpec>,
}

/// `flyteidl2.task.RunSpec`, the part we set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Labels {
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreateRunResponse {
    #[serde(default)]
    pub run: Run,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Run {
    #[serde(default)]
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Action {
    #[serde(default)]
    pub id: ActionId,
    #[serde(default)]
    pub status: ActionStatus,
}

/// `flyteidl2.workflow.ActionStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    #[serde(default)]
    pub phase: ActionPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_int64")]
    pub duration_ms: Option<u64>,
}

/// `flyteidl2.common.ActionPhase`; a run's phase is its root action's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionPhase {
    #[default]
    #[serde(rename = "ACTION_PHASE_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "ACTION_PHASE_QUEUED")]
    Queued,
    #[serde(rename = "ACTION_PHASE_WAITING_FOR_RESOURCES")]
    WaitingForResources,
    #[serde(rename = "ACTION_PHASE_INITIALIZING")]
    Initializing,
    #[serde(rename = "ACTION_PHASE_RUNNING")]
    Running,
    #[serde(rename = "ACTION_PHASE_SUCCEEDED")]
    Succeeded,
    #[serde(rename = "ACTION_PHASE_FAILED")]
    Failed,
    #[serde(rename = "ACTION_PHASE_ABORTED")]
    Aborted,
    #[serde(rename = "ACTION_PHASE_TIMED_OUT")]
    TimedOut,
    #[serde(rename = "ACTION_PHASE_PAUSED")]
    Paused,
    #[serde(rename = "ACTION_PHASE_RECOVERED")]
    Recovered,
    /// A phase added after this client was written: not terminal, keep polling.
    #[serde(other)]
    Unrecognized,
}

impl std::fmt::Display for ActionPhase {
    /// The proto enum name (`ACTION_PHASE_RUNNING`), as on the wire.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => f.write_str("ACTION_PHASE_UNRECOGNIZED"),
        }
    }
}

impl ActionPhase {
    /// The same terminal set as Flyte's server (`IsTerminalPhase`) and SDK.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::TimedOut | Self::Recovered
        )
    }

    /// Recovered runs reuse a previous attempt's outputs: a success.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::Recovered)
    }
}

// --- RunService/GetRunDetails, AbortRun ---

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRunDetailsRequest {
    pub run_id: RunId,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GetRunDetailsResponse {
    #[serde(default)]
    pub details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunDetails {
    #[serde(default)]
    pub action: ActionDetails,
}

/// `flyteidl2.workflow.ActionDetails`: status plus how the action ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionDetails {
    #[serde(default)]
    pub id: ActionId,
    #[serde(default)]
    pub status: ActionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_info: Option<AbortInfo>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorInfo {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub kind: ErrorKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ErrorKind {
    #[default]
    #[serde(rename = "KIND_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "KIND_USER")]
    User,
    #[serde(rename = "KIND_SYSTEM")]
    System,
    #[serde(other)]
    Unrecognized,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AbortInfo {
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortRunRequest {
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AbortRunResponse {}

// --- DataProxyService/GetActionData ---

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetActionDataRequest {
    pub action_id: ActionId,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetActionDataResponse {
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub outputs: Outputs,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inputs_uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outputs_uri: String,
}

// --- AuthMetadataService ---

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOAuth2MetadataResponse {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub token_endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPublicClientConfigResponse {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authorization_metadata_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub audience: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phases_parse_by_name_and_tolerate_new_ones() {
        let s: ActionStatus = serde_json::from_value(
            json!({"phase": "ACTION_PHASE_SUCCEEDED", "durationMs": "4210", "attempts": 1}),
        )
        .unwrap();
        assert_eq!(s.phase, ActionPhase::Succeeded);
        assert_eq!(s.duration_ms, Some(4210));
        let s: ActionStatus =
            serde_json::from_value(json!({"phase": "ACTION_PHASE_HIBERNATING", "extra": 1}))
                .unwrap();
        assert_eq!(s.phase, ActionPhase::Unrecognized);
        assert!(!s.phase.is_terminal());
    }

    #[test]
    fn a_missing_phase_means_unspecified() {
        let s: ActionStatus = serde_json::from_value(json!({})).unwrap();
        assert_eq!(s.phase, ActionPhase::Unspecified);
    }
}
