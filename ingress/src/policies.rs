//! What a `POST /run-task` dispatch carries from its task's `[[tasks]]` policy, decided at
//! intake and put in its message: the completion callback's destination (the request's
//! `Flyhook-Callback`, when its key is one of the destination's `senders`, else the policy's)
//! and its debounce and concurrency keys. A provider webhook's dispatch takes them from its
//! route instead.
//!
//! ```toml
//! [[tasks]]
//! task = "flytesnacks/development/ci.main/v1"
//! callback = "ci-bot"
//! debounce = { key = "/pr", window = "30s", max_wait = "5m", keep = "last" }
//! concurrency = { key = "/repository", limit = 1, when_full = "queue" }
//! ```

use std::collections::HashMap;

use anyhow::{Context, bail};
use flyhook_contract::TaskRef;
use flyhook_contract::callbacks::Destinations;
use flyhook_contract::flow::{
    ConcurrencyEntry, ConcurrencyKey, ConcurrencyPolicy, DebounceEntry, DebounceKey, DebouncePolicy,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// One `[[tasks]]` table: the policy for starting one task through `POST /run-task`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPolicyEntry {
    /// `project/domain/name/version`.
    task: String,
    /// The `[[callbacks]]` destination told when its dispatches end.
    callback: Option<String>,
    /// One run per burst of a key value.
    debounce: Option<DebounceEntry>,
    /// At most `limit` runs in flight per key value.
    concurrency: Option<ConcurrencyEntry>,
}

#[derive(Debug, Default)]
struct TaskPolicy {
    callback: Option<String>,
    debounce: Option<DebouncePolicy>,
    concurrency: Option<ConcurrencyPolicy>,
}

/// The callback destinations, and each task's policy.
#[derive(Debug, Clone, Default)]
pub struct TaskPolicies {
    destinations: Destinations,
    by_task: std::sync::Arc<HashMap<String, TaskPolicy>>,
}

impl TaskPolicies {
    /// Checks that every policy names a real task reference and a configured destination,
    /// and no task has two policies.
    pub fn resolve(
        entries: Vec<TaskPolicyEntry>,
        destinations: &Destinations,
    ) -> anyhow::Result<TaskPolicies> {
        let mut by_task = HashMap::new();
        for entry in entries {
            let context = || format!("[[tasks]] {:?}", entry.task);
            let task = TaskRef::parse_path(&entry.task).with_context(context)?;
            if let Some(callback) = &entry.callback {
                destinations.check_named(callback).with_context(context)?;
            }
            let scope = format!("task:{}", entry.task);
            let debounce = entry
                .debounce
                .map(|d| DebouncePolicy::compile(d, scope.clone()))
                .transpose()
                .with_context(context)?;
            let concurrency = entry
                .concurrency
                .map(|c| ConcurrencyPolicy::compile(c, scope))
                .transpose()
                .with_context(context)?;
            let policy = TaskPolicy {
                callback: entry.callback,
                debounce,
                concurrency,
            };
            if by_task.insert(task.to_string(), policy).is_some() {
                bail!("[[tasks]] {:?} is defined twice", entry.task);
            }
        }
        Ok(TaskPolicies {
            destinations: destinations.clone(),
            by_task: std::sync::Arc::new(by_task),
        })
    }

    /// The callback destination of a dispatch of `task`: the one `asked` for, if the key
    /// `key_name` may name it (any other is refused, unknown names alike), else the policy's.
    pub fn callback(
        &self,
        key_name: &str,
        task: &TaskRef,
        asked: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        match asked {
            Some(name) => match self.destinations.get(name) {
                Some(destination) if destination.allows_sender(key_name) => {
                    Ok(Some(destination.name.clone()))
                }
                _ => Err(ApiError::CallbackNotAllowed),
            },
            None => Ok(self
                .by_task
                .get(&task.to_string())
                .and_then(|p| p.callback.clone())),
        }
    }

    /// The debounce and concurrency keys of a dispatch of `task` with `inputs`, from the
    /// request's headers, each the sending API key's own (`sender`): one sender never
    /// coalesces with, waits behind or supersedes another.
    pub fn flow_keys<'h>(
        &self,
        sender: &str,
        task: &TaskRef,
        inputs: &Map<String, Value>,
        header: impl Fn(&str) -> Option<&'h str> + Copy,
    ) -> (Option<DebounceKey>, Option<ConcurrencyKey>) {
        let Some(policy) = self.by_task.get(&task.to_string()) else {
            return (None, None);
        };
        if policy.debounce.is_none() && policy.concurrency.is_none() {
            return (None, None);
        }
        // The policies read the inputs as the payload they came as.
        let payload = Value::Object(inputs.clone());
        let own = |scope: &mut String| scope.push_str(&format!(" by {sender}"));
        let debounce = policy.debounce.as_ref().and_then(|p| {
            let mut key = p.key_for(&payload, header)?;
            own(&mut key.scope);
            Some(key)
        });
        let concurrency = policy.concurrency.as_ref().map(|p| {
            let mut key = p.key_for(&payload, header);
            own(&mut key.scope);
            key
        });
        (debounce, concurrency)
    }
}
