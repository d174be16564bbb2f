//! Completion callbacks: the destinations an operator names (`[[callbacks]]`), and the message
//! that carries one signed event to one of them. Shared because the ingress picks a destination
//! by name (a route's, a `[[tasks]]` policy's, or a request's) and the worker delivers to it:
//! both must read the same names.
//!
//! ```toml
//! [[callbacks]]
//! name = "ci-bot"
//! url = "https://bot.example/flyte-done"
//! secret = { env = "CI_BOT_WHSEC" }   # a Standard Webhooks secret, whsec_<base64>
//! senders = ["ci"]                    # API keys that may name it in Flyhook-Callback ("*": any)
//! max_attempts = 10
//! timeout_ms = 10000                  # at most 15000, so a worker's shutdown can wait for it
//! max_in_flight = 8                   # deliveries at once per worker: one slow receiver
//!                                     # cannot take every callback slot
//! ```
//! Senders never give a URL, only a name an operator configured: no request can make flyhook
//! call an address of its choosing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Env, SecretSource};
use crate::dispatch::DispatchId;

/// The request header that names a destination (`Flyhook-Callback: ci-bot`).
pub const CALLBACK_HEADER: &str = "flyhook-callback";

/// One `[[callbacks]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackEntry {
    name: String,
    url: String,
    secret: SecretSource,
    #[serde(default)]
    senders: Vec<String>,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_in_flight")]
    max_in_flight: usize,
}

fn default_in_flight() -> usize {
    8
}

/// The longest one delivery may take: within the 20 s a stopping worker waits for what it holds.
const MAX_TIMEOUT_MS: u64 = 15_000;

fn default_attempts() -> u32 {
    10
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A configured destination.
#[derive(Debug)]
pub struct Destination {
    pub name: String,
    pub url: String,
    /// The Standard Webhooks secret (`whsec_<base64>`), checked to decode.
    pub secret: SecretString,
    /// API key names that may name it in a request; `*` for any.
    senders: Vec<String>,
    /// Deliveries tried before the event is dead-lettered (at least one).
    pub max_attempts: u32,
    /// How long one delivery may take, connection included.
    pub timeout: Duration,
    /// Deliveries to it at once, per worker (at least one).
    pub max_in_flight: usize,
}

impl Destination {
    /// Whether the API key named `key_name` may ask for this destination in a request.
    pub fn allows_sender(&self, key_name: &str) -> bool {
        self.senders.iter().any(|s| s == "*" || s == key_name)
    }
}

/// Every destination, by name.
#[derive(Debug, Clone, Default)]
pub struct Destinations(BTreeMap<String, Arc<Destination>>);

/// What to do about a missing, blank or undecodable callback secret.
const SECRET_FIX: &str = "put the destination's Standard Webhooks secret (whsec_ and base64) there";

impl Destinations {
    /// Checks every entry: names unique and plain, URLs http(s), secrets present and decodable.
    pub fn resolve(entries: Vec<CallbackEntry>, env: &impl Env) -> anyhow::Result<Destinations> {
        let mut all = BTreeMap::new();
        for entry in entries {
            let name = entry.name.clone();
            let destination =
                compile(entry, env).with_context(|| format!("[[callbacks]] {name:?}"))?;
            if all.insert(name.clone(), Arc::new(destination)).is_some() {
                bail!("[[callbacks]] {name:?} is defined twice");
            }
        }
        Ok(Destinations(all))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Destination>> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.0.values()
    }

    /// Refuses a `callback = "…"` (of a route, a task policy) that names no destination.
    pub fn check_named(&self, name: &str) -> anyhow::Result<()> {
        ensure!(
            self.0.contains_key(name),
            "callback {name:?} names no [[callbacks]] destination (configured: {:?})",
            self.0.keys().collect::<Vec<_>>()
        );
        Ok(())
    }
}

fn compile(entry: CallbackEntry, env: &impl Env) -> anyhow::Result<Destination> {
    ensure!(
        !entry.name.is_empty()
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a callback name may contain only letters, digits, '-' and '_'"
    );
    let url = reqwest::Url::parse(entry.url.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .with_context(|| {
            format!(
                "url must be an http:// or https:// URL, not {:?}",
                entry.url
            )
        })?;
    ensure!(
        entry.timeout_ms <= MAX_TIMEOUT_MS,
        "timeout_ms is at most {MAX_TIMEOUT_MS}"
    );
    let secret = entry.secret.resolve(env, SECRET_FIX).context("secret")?;
    ensure!(
        signing_key(&secret).is_some_and(|key| !key.is_empty()),
        "secret: not a Standard Webhooks secret ({SECRET_FIX})"
    );
    Ok(Destination {
        name: entry.name,
        url: url.to_string(),
        secret,
        senders: entry.senders,
        max_attempts: entry.max_attempts.max(1),
        timeout: Duration::from_millis(entry.timeout_ms.max(1)),
        max_in_flight: entry.max_in_flight.max(1),
    })
}

/// The key of a Standard Webhooks secret: the base64 after `whsec_`.
fn signing_key(secret: &SecretString) -> Option<Vec<u8>> {
    let text = secret.expose_secret();
    base64::engine::general_purpose::STANDARD
        .decode(text.strip_prefix("whsec_").unwrap_or(text))
        .ok()
}

/// One event on its way to one destination: what the worker signs and POSTs, as built when
/// the dispatch ended, so every retry sends the same body under the same `webhook-id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    pub dispatch: DispatchId,
    /// Which of the dispatch's endings this is (a replayed dispatch ends again): with the
    /// dispatch id, what the record's callback state is kept against.
    pub ending: i32,
    pub destination: String,
    /// `webhook-id`: the same for every delivery of this ending, so receivers dedupe.
    pub webhook_id: String,
    /// The JSON body: `{"type", "timestamp", "data"}`.
    pub event: Value,
    /// When the dispatch ended, for the end-to-callback latency.
    pub ended_at: DateTime<Utc>,
    /// Deliveries tried before this one.
    #[serde(default)]
    pub attempts: u32,
}

impl Callback {
    /// The `webhook-id` of a dispatch's `ending`-th ending.
    pub fn webhook_id(dispatch: &DispatchId, ending: i32) -> String {
        format!("msg_{dispatch}_{ending}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(toml_text: &str, vars: &[(&str, &str)]) -> anyhow::Result<Destinations> {
        #[derive(Deserialize)]
        struct File {
            callbacks: Vec<CallbackEntry>,
        }
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file: File = toml::from_str(toml_text)?;
        Destinations::resolve(file.callbacks, &|k: &str| vars.get(k).cloned())
    }

    const ONE: &str = "[[callbacks]]\nname = \"bot\"\nurl = \"https://bot.example/done\"\nsecret = { env = \"BOT\" }\nsenders = [\"ci\"]\n";

    #[test]
    fn a_destination_needs_a_decodable_secret_an_http_url_and_a_unique_plain_name() {
        let ok = resolve(ONE, &[("BOT", "whsec_c2VjcmV0")]).unwrap();
        let bot = ok.get("bot").unwrap();
        assert!(bot.allows_sender("ci") && !bot.allows_sender("other"));
        assert_eq!((bot.max_attempts, bot.timeout.as_millis()), (10, 10_000));
        assert!(ok.check_named("bot").is_ok() && ok.check_named("nobody").is_err());
        for (text, vars, says) in [
            (ONE, vec![], "not set"),
            (ONE, vec![("BOT", " ")], "empty"),
            (ONE, vec![("BOT", "whsec_not base64!")], "Standard Webhooks"),
            (ONE, vec![("BOT", "whsec_")], "Standard Webhooks"),
            (
                &ONE.replace("https://bot.example/done", "file:///etc/passwd"),
                vec![("BOT", "whsec_c2VjcmV0")],
                "http",
            ),
            (
                &ONE.replace("https://bot.example/done", "http://"),
                vec![("BOT", "whsec_c2VjcmV0")],
                "http",
            ),
            (
                &format!("{ONE}timeout_ms = 60000\n"),
                vec![("BOT", "whsec_c2VjcmV0")],
                "at most",
            ),
            (
                &ONE.replace("\"bot\"", "\"b/ot\""),
                vec![("BOT", "whsec_c2VjcmV0")],
                "letters",
            ),
            (
                &format!("{ONE}{ONE}"),
                vec![("BOT", "whsec_c2VjcmV0")],
                "twice",
            ),
        ] {
            let error = format!("{:#}", resolve(text, &vars).unwrap_err());
            assert!(error.contains(says), "{says}: {error}");
        }
    }
}
