//! The ingress's part of the configuration: its `[ingress]` and `[audit]` sections, the API keys
//! (`WEBHOOK_API_KEY`, `[[api_keys]]`), the webhook `[[sources]]` and `FLYHOOK_LISTEN`, resolved
//! into the key ring and sources it serves. Every field of a section is optional: the defaults
//! are the `Default` impls below, and the README's configuration section documents them (a
//! test in `flyhook/src/settings.rs` holds the two together). Keys can also be managed at run
//! time: `flyhook keys create|list|revoke` (stored in PostgreSQL; every ingress picks a change
//! up within `key_refresh_secs`, usually at once).

use std::time::Duration;

use anyhow::{Context, bail};
use flyhook_contract::callbacks::Destinations;
use flyhook_contract::config::{
    Env, at_least_one, days_at_least_one, millis, secret_var, secs, secs_at_least_one,
};
use flyhook_contract::keys::{KeyOwner, RateLimit, key_digest_hex};
use flyhook_contract::scopes::Scopes;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::key_ring::KeyRing;
use crate::policies::TaskPolicies;
pub use crate::policies::TaskPolicyEntry;
use crate::sources::{SourceEntry, Sources};

/// Everything the ingress is built from, besides the deployment's shared facts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the ingress listens (`FLYHOOK_LISTEN`); port 0 picks a free port.
    pub listen: String,
    pub ingress: IngressSettings,
    pub audit: AuditSettings,
    pub keys: KeyRing,
    /// Signs dispatch ids (see `flyhook_contract::dispatch`); shared by every ingress replica.
    pub id_secret: SecretString,
    /// `FLYHOOK_ID_SECRET` was set (not derived from the configured keys).
    pub id_secret_is_explicit: bool,
    /// Provider webhook sources (`POST /hooks/{source}`).
    pub sources: Sources,
    /// `[[tasks]]` policies, and the `[[callbacks]]` destinations requests may name.
    pub policies: TaskPolicies,
}

/// The `[ingress]` section: bounds and timings of the HTTP intake.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressSettings {
    pub max_body_bytes: usize,
    #[serde(rename = "publish_timeout_ms", deserialize_with = "millis")]
    pub publish_timeout: Duration,
    /// Default per-key rate, for keys without their own.
    pub rate_limit: RateLimit,
    /// Confirm-mode channels publishes are spread over.
    #[serde(deserialize_with = "at_least_one")]
    pub publish_channels: usize,
    /// Bound on the work queue's length. Written here, under `[ingress]`, but a fact of the
    /// whole deployment (every process declares the queue with it): read from
    /// `Deployment::max_queue_length`, which is loaded from this field.
    pub max_queue_length: u32,
    /// Publishes awaiting a confirm at once; more are refused at once (503).
    #[serde(deserialize_with = "at_least_one")]
    pub max_in_flight_publishes: usize,
    /// How long run-and-wait holds a request when the caller does not say.
    #[serde(rename = "default_wait_secs", deserialize_with = "secs")]
    pub default_wait: Duration,
    /// The longest a caller may ask run-and-wait to hold a request.
    #[serde(rename = "max_wait_secs", deserialize_with = "secs")]
    pub max_wait: Duration,
    /// A body that takes longer than this to arrive is refused with 408 (a slow-loris guard).
    #[serde(rename = "body_read_timeout_ms", deserialize_with = "millis")]
    pub body_read_timeout: Duration,
    /// Keys managed with `flyhook keys` are reloaded at least this often (and at once when
    /// PostgreSQL tells of a change).
    #[serde(rename = "key_refresh_secs", deserialize_with = "secs_at_least_one")]
    pub key_refresh: Duration,
    /// How long a console sign-in lasts (`/ui/`); the key's revocation ends it sooner.
    #[serde(
        rename = "console_session_secs",
        deserialize_with = "secs_at_least_one"
    )]
    pub console_session: Duration,
}

impl Default for IngressSettings {
    fn default() -> IngressSettings {
        IngressSettings {
            max_body_bytes: 1024 * 1024,
            publish_timeout: Duration::from_millis(5000),
            rate_limit: RateLimit {
                per_second: 1000,
                burst: 2000,
            },
            publish_channels: 4,
            max_queue_length: 1_000_000,
            max_in_flight_publishes: 512,
            default_wait: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
            body_read_timeout: Duration::from_millis(10_000),
            key_refresh: Duration::from_secs(10),
            console_session: Duration::from_secs(8 * 3600),
        }
    }
}

/// The `[audit]` section: the audit log of invocations, written by the ingress.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Entries older than this are deleted.
    #[serde(rename = "retention_days", deserialize_with = "days_at_least_one")]
    pub retention: Duration,
    /// Entries waiting to be written. The log is written off the request path, so while
    /// PostgreSQL is away entries wait here; beyond this many they are dropped and counted.
    #[serde(deserialize_with = "at_least_one")]
    pub buffer: usize,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            retention: Duration::from_secs(30 * 86_400),
            buffer: 10_000,
        }
    }
}

/// The `[hooks]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksSection {
    /// The GitHub source the seed's `POST /github-webhook` stands for.
    github_alias: Option<String>,
}

/// One `[[api_keys]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    name: String,
    sha256: Option<String>,
    env: Option<String>,
    rate_limit: Option<RateLimit>,
    /// `["project/domain", …]`; every task when absent.
    scopes: Option<Vec<String>>,
}

/// The ingress's tables of the configuration file, as written.
#[derive(Debug, Default)]
pub struct Tables {
    pub ingress: IngressSettings,
    pub audit: AuditSettings,
    pub api_keys: Vec<KeyEntry>,
    pub sources: Vec<Spanned<SourceEntry>>,
    pub hooks: HooksSection,
    pub tasks: Vec<TaskPolicyEntry>,
}

/// The name the bootstrap key (`WEBHOOK_API_KEY`) is known by.
pub const BOOTSTRAP_KEY_NAME: &str = "default";

/// The shortest API key (and `FLYHOOK_ID_SECRET`) accepted outside `flyhook dev`: a key is the
/// only thing between the internet and starting runs, so it must be too long to guess.
const MIN_KEY_CHARS: usize = 32;

/// Values copied from examples and defaults, refused as keys whatever their length:
/// `MARKERS` anywhere in the key (`CHANGE-ME-32-random-bytes`), `PLACEHOLDERS` as the whole key.
const MARKERS: &[&str] = &["change-me", "changeme", "change_me"];
const PLACEHOLDERS: &[&str] = &["flyhook-dev-key", "secret", "password", "test"];

/// How to make a key that passes [`strong_key`].
const MAKE_A_KEY: &str =
    "make one with `openssl rand -base64 32` (API keys can also come from `flyhook keys create`)";

/// Whether well-known weak keys are accepted: only by `flyhook dev` (and `flyhook send`, which
/// talks to it), so no setting can switch the check off in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    Strong,
    DevelopmentKeysAllowed,
}

impl KeyPolicy {
    /// Refuses `key` (named by `what` in the error) when it is short or a placeholder.
    fn check(self, what: &str, key: &SecretString) -> anyhow::Result<()> {
        if self == KeyPolicy::DevelopmentKeysAllowed {
            return Ok(());
        }
        strong_key(key.expose_secret()).with_context(|| format!("{what} is refused"))
    }
}

/// Checks a key against guessing: at least [`MIN_KEY_CHARS`] characters, not a placeholder.
/// The error never shows the key.
fn strong_key(key: &str) -> anyhow::Result<()> {
    let lowered = key.trim().to_ascii_lowercase();
    if MARKERS.iter().any(|m| lowered.contains(m)) || PLACEHOLDERS.contains(&lowered.as_str()) {
        bail!("it is a well-known placeholder: {MAKE_A_KEY}");
    }
    let length = key.chars().count();
    if length < MIN_KEY_CHARS {
        bail!("it has {length} characters, fewer than {MIN_KEY_CHARS}: {MAKE_A_KEY}");
    }
    Ok(())
}

impl Settings {
    /// Resolves the ingress's tables of a configuration file (`file_name` holding `text`, for
    /// the line numbers of its mistakes) with the environment `env` (unfiltered: empty values are seen as such): keys
    /// checked by `key_policy`, secrets read, sources compiled.
    pub fn resolve(
        tables: Tables,
        destinations: &Destinations,
        file_name: &str,
        text: &str,
        env: &impl Env,
        key_policy: KeyPolicy,
    ) -> anyhow::Result<Settings> {
        let sources = crate::sources::compile(
            tables.sources,
            tables.hooks.github_alias,
            text,
            env,
            destinations,
        )
        .with_context(|| format!("in {file_name}"))?;
        let policies = TaskPolicies::resolve(tables.tasks, destinations)
            .with_context(|| format!("in {file_name}"))?;
        // Where a secret is named by the file, an empty variable is refused as empty; these
        // well-known ones count as unset when empty, like every other variable.
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        let secret = |name: &str| set(name).map(SecretString::from);

        let mut keys = KeyRing::default();
        let mut key_digests = Vec::new();
        if let Some(key) = secret("WEBHOOK_API_KEY") {
            key_policy.check("WEBHOOK_API_KEY", &key)?;
            let owner = KeyOwner {
                name: BOOTSTRAP_KEY_NAME.into(),
                rate_limit: None,
                scopes: Scopes::unrestricted(),
            };
            keys.add_key(&key, owner).context("WEBHOOK_API_KEY")?;
            key_digests.push(key_digest_hex(key.expose_secret()));
        }
        for entry in tables.api_keys {
            let owner = KeyOwner {
                name: entry.name.clone(),
                rate_limit: entry.rate_limit,
                scopes: match &entry.scopes {
                    Some(scopes) => Scopes::parse_all(scopes)
                        .with_context(|| format!("api key {:?}", entry.name))?,
                    None => Scopes::unrestricted(),
                },
            };
            match (entry.sha256, entry.env) {
                (Some(digest), None) => {
                    key_digests.push(digest.clone());
                    keys.add_digest(&digest, owner)?
                }
                (None, Some(var)) => {
                    let what = format!("api key {:?}", entry.name);
                    let fix = format!("set it to a key of {MIN_KEY_CHARS}+ characters");
                    let key = secret_var(env, &var, &fix).context(what.clone())?;
                    key_policy.check(&format!("{what} (from {var})"), &key)?;
                    key_digests.push(key_digest_hex(key.expose_secret()));
                    keys.add_key(&key, owner)?
                }
                _ => bail!("api key {:?} needs exactly one of sha256, env", entry.name),
            }
        }
        let explicit_id_secret = secret("FLYHOOK_ID_SECRET");
        if let Some(id_secret) = &explicit_id_secret {
            key_policy.check("FLYHOOK_ID_SECRET", id_secret)?;
        }
        Ok(Settings {
            listen: set("FLYHOOK_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            ingress: tables.ingress,
            audit: tables.audit,
            keys,
            id_secret_is_explicit: explicit_id_secret.is_some(),
            id_secret: explicit_id_secret.unwrap_or_else(|| derived_id_secret(key_digests)),
            sources,
            policies,
        })
    }
}

/// Without `FLYHOOK_ID_SECRET`, replicas configured with the same keys still agree on one
/// secret: a digest of the key digests. Setting the variable is better (it survives key rotation).
fn derived_id_secret(mut key_digests: Vec<String>) -> SecretString {
    key_digests.sort();
    let mut hasher = Sha256::new();
    hasher.update(b"flyhook/id-secret/v1");
    for digest in key_digests {
        hasher.update(digest.as_bytes());
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    SecretString::from(hex)
}
