//! Concurrency keys: at most `limit` runs in flight per key value, fleet-wide. The ingress
//! reads the key's value from a delivery (its route's policy) or a request (its task's
//! `[[tasks]]` policy) and puts it in the dispatch's message; the worker enforces it before it
//! starts the run. Shared because both must read one policy the same way.
//!
//! ```toml
//! concurrency = { key = "/repository/full_name", limit = 1, when_full = "queue" }
//! ```
//! `key` is a JSON Pointer into the payload (the task inputs, for `POST /run-task`) or, when it
//! does not start with `/`, a header's name. A delivery without that value shares the key `""`.
//! `when_full`: `queue` (wait in arrival order), `skip` (recorded `skipped`) or
//! `cancel_previous` (the oldest run in flight is aborted, and this one takes its place).

use anyhow::ensure;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a full key does with one more dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    Queue,
    Skip,
    CancelPrevious,
}

/// One `concurrency = {…}` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyEntry {
    key: String,
    #[serde(default = "one")]
    limit: u32,
    #[serde(default = "queue")]
    when_full: WhenFull,
}

fn one() -> u32 {
    1
}

fn queue() -> WhenFull {
    WhenFull::Queue
}

/// A checked policy, named by where it is configured (`route:github/deploy`,
/// `task:project/domain/name/version`), so two policies never share slots.
#[derive(Debug, Clone)]
pub struct ConcurrencyPolicy {
    scope: String,
    key: KeySource,
    limit: u32,
    when_full: WhenFull,
}

#[derive(Debug, Clone)]
enum KeySource {
    Pointer(String),
    Header(String),
}

/// The key a dispatch holds a slot under, carried in its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencyKey {
    /// Where the policy is configured.
    pub scope: String,
    /// The key's value (a long or unstorable one as `sha256:<hex>`).
    pub value: String,
    pub limit: u32,
    pub when_full: WhenFull,
}

/// Values longer than this are kept as their digest.
const MAX_VALUE_BYTES: usize = 200;

impl ConcurrencyPolicy {
    pub fn compile(entry: ConcurrencyEntry, scope: String) -> anyhow::Result<ConcurrencyPolicy> {
        ensure!(
            entry.limit >= 1,
            "concurrency limit must be at least 1 (to stop a task, remove its route)"
        );
        ensure!(
            !entry.key.is_empty(),
            "concurrency key must name a JSON Pointer or a header"
        );
        let key = if entry.key.starts_with('/') {
            KeySource::Pointer(entry.key)
        } else {
            KeySource::Header(entry.key.to_ascii_lowercase())
        };
        Ok(ConcurrencyPolicy {
            scope,
            key,
            limit: entry.limit,
            when_full: entry.when_full,
        })
    }

    /// The key of one delivery: `header` looks up a header by its lowercase name.
    pub fn key_for<'h>(
        &self,
        payload: &Value,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> ConcurrencyKey {
        let value = match &self.key {
            KeySource::Pointer(pointer) => match payload.pointer(pointer) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
            KeySource::Header(name) => header(name).unwrap_or_default().to_string(),
        };
        ConcurrencyKey {
            scope: self.scope.clone(),
            value: storable_value(value),
            limit: self.limit,
            when_full: self.when_full,
        }
    }
}

/// `value` as it can be stored and indexed: itself, or its digest when long or holding a NUL.
fn storable_value(value: String) -> String {
    if value.len() <= MAX_VALUE_BYTES && !value.contains('\0') {
        return value;
    }
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(key: &str) -> ConcurrencyPolicy {
        let entry = ConcurrencyEntry {
            key: key.into(),
            limit: 2,
            when_full: WhenFull::Skip,
        };
        ConcurrencyPolicy::compile(entry, "route:s/r".into()).unwrap()
    }

    #[test]
    fn a_key_comes_from_a_pointer_or_a_header_and_is_always_storable() {
        let payload =
            json!({"repo": {"name": "a/b", "id": 7}, "long": "x".repeat(300), "nul": "a\u{0}b"});
        let no_headers = |_: &str| None;
        assert_eq!(
            policy("/repo/name").key_for(&payload, no_headers).value,
            "a/b"
        );
        assert_eq!(policy("/repo/id").key_for(&payload, no_headers).value, "7");
        assert_eq!(policy("/missing").key_for(&payload, no_headers).value, "");
        for pointer in ["/long", "/nul"] {
            let value = policy(pointer).key_for(&payload, no_headers).value;
            assert!(value.starts_with("sha256:") && value.len() == 71, "{value}");
        }
        let key = policy("X-Repo").key_for(&payload, |name| (name == "x-repo").then_some("c/d"));
        assert_eq!(
            key,
            ConcurrencyKey {
                scope: "route:s/r".into(),
                value: "c/d".into(),
                limit: 2,
                when_full: WhenFull::Skip
            }
        );
        let zero = ConcurrencyEntry {
            key: "/a".into(),
            limit: 0,
            when_full: WhenFull::Queue,
        };
        assert!(ConcurrencyPolicy::compile(zero, "s".into()).is_err());
    }
}
