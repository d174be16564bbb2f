//! Which destination a dispatch's completion callback goes to, decided at intake and carried
//! in its message: for `POST /run-task`, the request's `Flyhook-Callback` (when its key is one
//! of the destination's `senders`), else the task's `[[tasks]]` policy; for a provider
//! webhook, its route's (or its source's) `callback`.
//!
//! ```toml
//! [[tasks]]
//! task = "flytesnacks/development/ci.main/v1"
//! callback = "ci-bot"
//! ```

use std::collections::HashMap;

use anyhow::{Context, bail};
use flyhook_contract::TaskRef;
use flyhook_contract::callbacks::Destinations;
use serde::Deserialize;

use crate::error::ApiError;

/// One `[[tasks]]` table: the policy for starting one task through `POST /run-task`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPolicyEntry {
    /// `project/domain/name/version`.
    task: String,
    /// The `[[callbacks]]` destination told when its dispatches end.
    callback: Option<String>,
}

/// The destinations, and each task's policy.
#[derive(Debug, Clone, Default)]
pub struct CallbackChoice {
    destinations: Destinations,
    by_task: HashMap<String, String>,
}

impl CallbackChoice {
    /// Checks that every policy names a real task reference and a configured destination,
    /// and no task has two policies.
    pub fn resolve(
        entries: Vec<TaskPolicyEntry>,
        destinations: &Destinations,
    ) -> anyhow::Result<CallbackChoice> {
        let mut by_task = HashMap::new();
        for entry in entries {
            let task = TaskRef::parse_path(&entry.task)
                .with_context(|| format!("[[tasks]] {:?}", entry.task))?;
            let Some(callback) = entry.callback else {
                continue;
            };
            destinations
                .check_named(&callback)
                .with_context(|| format!("[[tasks]] {:?}", entry.task))?;
            if by_task.insert(task.to_string(), callback).is_some() {
                bail!("[[tasks]] {:?} is defined twice", entry.task);
            }
        }
        Ok(CallbackChoice {
            destinations: destinations.clone(),
            by_task,
        })
    }

    pub fn destinations(&self) -> &Destinations {
        &self.destinations
    }

    /// The destination of a `POST /run-task` dispatch: the one `asked` for, if the key
    /// `key_name` may name it (any other is refused, unknown names alike), else the task's.
    pub fn for_request(
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
            None => Ok(self.by_task.get(&task.to_string()).cloned()),
        }
    }
}
