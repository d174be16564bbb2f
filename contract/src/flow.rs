//! Flow control per key: debounce (a burst with one key becomes one run) and concurrency keys
//! (at most `limit` runs in flight per key value, fleet-wide). The ingress reads the key's
//! value from a delivery (its route's policy) or a request (its task's `[[tasks]]` policy) and
//! puts it in the dispatch's message; the worker enforces it before it starts the run. Shared
//! because both must read one policy the same way.
//!
//! ```toml
//! debounce = { key = "/pull_request/number", window = "30s", max_wait = "5m", keep = "last" }
//! concurrency = { key = "/repository/full_name", limit = 1, when_full = "queue" }
//! ```
//! `key` is a JSON Pointer into the payload (the task inputs, for `POST /run-task`) or, when it
//! does not start with `/`, a header's name. A delivery without that value is in no burst, and
//! shares the concurrency key `""`. A `[[tasks]]` policy's keys are the sending API key's own:
//! one sender's deliveries never coalesce with, wait behind or supersede another's.
//! Debounce: deliveries of one key less than `window` apart make one run, started `window`
//! after the last (or `max_wait` after the first), with the `first` or `last` one's payload;
//! the others end `coalesced`. Concurrency, `when_full`: `queue` (the first waiting, in
//! arrival order, take the slots that free), `skip` (recorded `skipped`) or `cancel_previous`
//! (the oldest run in flight that arrived before it is aborted, and this one takes the slot).

use std::time::Duration;

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
    key: PolicyKey,
    limit: u32,
    when_full: WhenFull,
}

/// Where a policy is configured, and where its key's value is read.
#[derive(Debug, Clone)]
struct PolicyKey {
    scope: String,
    source: KeySource,
}

#[derive(Debug, Clone)]
enum KeySource {
    Pointer(String),
    Header(String),
}

impl PolicyKey {
    fn parse(key: String, scope: String) -> anyhow::Result<PolicyKey> {
        let source = if key.starts_with('/') {
            KeySource::Pointer(key)
        } else {
            ensure!(
                !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "key {key:?} is neither a JSON Pointer (starting with '/') nor a header name"
            );
            KeySource::Header(key.to_ascii_lowercase())
        };
        Ok(PolicyKey { scope, source })
    }

    /// The key's value in one delivery (`None` when it has none): `header` looks up a header
    /// by its lowercase name.
    fn value<'h>(
        &self,
        payload: &Value,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<String> {
        let value = match &self.source {
            KeySource::Pointer(pointer) => match payload.pointer(pointer)? {
                Value::Null => return None,
                Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            KeySource::Header(name) => header(name)?.to_string(),
        };
        Some(storable_value(value))
    }
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
        Ok(ConcurrencyPolicy {
            key: PolicyKey::parse(entry.key, scope)?,
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
        ConcurrencyKey {
            scope: self.key.scope.clone(),
            // Without one, a delivery shares the key "": the limit still holds.
            value: self.key.value(payload, header).unwrap_or_default(),
            limit: self.limit,
            when_full: self.when_full,
        }
    }
}

/// Which delivery of a burst runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    First,
    Last,
}

/// One `debounce = {…}` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceEntry {
    key: String,
    /// `30s`, `500ms`, `2m`.
    window: String,
    /// Absent: ten windows.
    max_wait: Option<String>,
    #[serde(default = "last")]
    keep: Keep,
}

fn last() -> Keep {
    Keep::Last
}

/// A checked debounce policy.
#[derive(Debug, Clone)]
pub struct DebouncePolicy {
    key: PolicyKey,
    window: Duration,
    max_wait: Duration,
    keep: Keep,
}

/// The burst a dispatch belongs to, carried in its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebounceKey {
    pub scope: String,
    pub value: String,
    pub window_ms: u64,
    pub max_wait_ms: u64,
    pub keep: Keep,
}

/// The longest window or wait: a burst's deliveries wait in the broker meanwhile.
const MAX_DEBOUNCE: Duration = Duration::from_secs(24 * 3600);

impl DebouncePolicy {
    pub fn compile(entry: DebounceEntry, scope: String) -> anyhow::Result<DebouncePolicy> {
        let duration = |text: &str| {
            flyte_client::parse_duration(text).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
        };
        let window = duration(&entry.window)?;
        let max_wait = match &entry.max_wait {
            Some(text) => duration(text)?,
            None => (window * 10).min(MAX_DEBOUNCE),
        };
        ensure!(
            !window.is_zero() && window <= max_wait && max_wait <= MAX_DEBOUNCE,
            "debounce needs 0 < window <= max_wait <= 24h"
        );
        Ok(DebouncePolicy {
            key: PolicyKey::parse(entry.key, scope)?,
            window,
            max_wait,
            keep: entry.keep,
        })
    }

    /// The burst of one delivery: `header` looks up a header by its lowercase name. A delivery
    /// without the key is in no burst (it runs on its own rather than drop others' payloads).
    pub fn key_for<'h>(
        &self,
        payload: &Value,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<DebounceKey> {
        Some(DebounceKey {
            scope: self.key.scope.clone(),
            value: self.key.value(payload, header)?,
            window_ms: self.window.as_millis() as u64,
            max_wait_ms: self.max_wait.as_millis() as u64,
            keep: self.keep,
        })
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
        let debounce = |window: &str, max_wait: Option<&str>| {
            let entry = DebounceEntry {
                key: "/pr".into(),
                window: window.into(),
                max_wait: max_wait.map(Into::into),
                keep: Keep::First,
            };
            DebouncePolicy::compile(entry, "task:t".into())
        };
        let policy_30s = debounce("30s", None).unwrap();
        let key = policy_30s.key_for(&json!({"pr": 7}), no_headers).unwrap();
        assert_eq!(
            (key.value.as_str(), key.window_ms, key.max_wait_ms),
            ("7", 30_000, 300_000)
        );
        // Without the key, in no burst: never coalesced with strangers.
        assert_eq!(policy_30s.key_for(&json!({"pr": null}), no_headers), None);
        assert_eq!(policy_30s.key_for(&json!({}), no_headers), None);
        assert_eq!(
            debounce("3h", None)
                .unwrap()
                .key_for(&json!({"pr": 1}), no_headers)
                .unwrap()
                .max_wait_ms,
            24 * 3600 * 1000,
            "ten windows, at most a day"
        );
        for (window, max_wait) in [
            ("0s", None),
            ("1m", Some("30s")),
            ("1s", Some("25h")),
            ("soon", None),
        ] {
            assert!(debounce(window, max_wait).is_err(), "{window} {max_wait:?}");
        }
        let slashed = ConcurrencyEntry {
            key: "repository/full_name".into(),
            limit: 1,
            when_full: WhenFull::Queue,
        };
        assert!(
            ConcurrencyPolicy::compile(slashed, "s".into()).is_err(),
            "a typo, not a header"
        );
        let zero = ConcurrencyEntry {
            key: "/a".into(),
            limit: 0,
            when_full: WhenFull::Queue,
        };
        assert!(ConcurrencyPolicy::compile(zero, "s".into()).is_err());
    }
}
