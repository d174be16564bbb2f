//! Settings: the essentials from environment variables (with defaults that point at local
//! services), everything else from the TOML file named by `FLYHOOK_CONFIG`. Mistakes are
//! reported at start-up with the file's line and column.
//!
//! ```toml
//! [ingress]
//! max_body_bytes = 1048576     # larger bodies get 413
//! publish_timeout_ms = 5000    # no broker confirm within this: 503
//! max_in_flight_publishes = 512  # more awaiting a confirm: 503 at once (load shedding)
//! max_queue_length = 1000000   # a fuller work queue refuses publishes: 503
//! rate_limit = { per_second = 1000, burst = 2000 }   # per API key
//! default_wait_secs = 30       # run-and-wait without ?wait=
//! max_wait_secs = 300          # the longest ?wait= honoured
//! body_read_timeout_ms = 10000 # a body still arriving after this: 408
//! key_refresh_secs = 10        # keys from `flyhook keys` are reloaded at least this often
//!
//! [audit]
//! retention_days = 30          # older audit entries are deleted
//! buffer = 10000               # entries waiting to be written; beyond it they are counted and dropped
//!
//! [[api_keys]]
//! name = "ci"
//! sha256 = "…64 hex digits…"   # printf %s "$KEY" | sha256sum; or env = "CI_WEBHOOK_KEY"
//!                              # (keys from variables: 32+ characters, no placeholder)
//! rate_limit = { per_second = 50, burst = 100 }
//! scopes = ["flytesnacks/development"]   # tasks it may start; every task when absent
//! # Keys can also be managed at run time: `flyhook keys create|list|revoke` (stored in
//! # PostgreSQL; every ingress picks a change up within `key_refresh_secs`, usually at once).
//!
//! [worker]
//! listen = "127.0.0.1:9090"    # /metrics, /livez, /readyz (FLYHOOK_WORKER_LISTEN wins)
//! prefetch = 512               # unacknowledged messages held per worker
//! concurrency = 256            # dispatches processed at once (cheap: tasks, not threads)
//! database_connections = 8     # PostgreSQL connections per worker, whatever the concurrency
//! max_attempts = 5             # transient failures before a dispatch is dead-lettered
//! max_runs_per_second_per_project = 50   # per worker; absent: no cap
//!
//! [worker.tracking]
//! min_poll_ms = 1000           # first pause between looks at a run
//! max_poll_ms = 30000          # pause for long runs
//! lease_ms = 30000             # a dead worker's runs are taken over after this
//! batch = 100                  # runs leased at once
//!
//! [flyte]
//! timeout_ms = 10000
//! task_cache_ttl_secs = 300
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use flyte_client::{FlyteAuth, FlyteConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api_keys::{KeyOwner, KeyRing, RateLimit, Scopes};
use crate::sources::Sources;

/// Everything a flyhook process needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: SecretString,
    pub amqp_url: SecretString,
    /// Where the ingress listens (`FLYHOOK_LISTEN`); port 0 picks a free port.
    pub listen: String,
    /// Prefix of every exchange and queue name (`FLYHOOK_QUEUE_PREFIX`).
    pub queue_prefix: String,
    pub flyte: FlyteConfig,
    pub keys: KeyRing,
    /// Signs dispatch ids (see [`crate::dispatch`]); shared by every ingress replica.
    pub id_secret: SecretString,
    /// `FLYHOOK_ID_SECRET` was set (not derived from the configured keys).
    pub id_secret_is_explicit: bool,
    pub ingress: IngressSettings,
    pub worker: WorkerSettings,
    pub audit: AuditSettings,
    /// Provider webhook sources (`POST /hooks/{source}`).
    pub sources: Sources,
}

impl Settings {
    /// The exchanges and queues every process of this deployment declares alike.
    pub fn topology(&self) -> crate::broker::Topology {
        crate::broker::Topology::new(&self.queue_prefix, self.ingress.max_queue_length)
    }
}

#[derive(Debug, Clone)]
pub struct IngressSettings {
    pub max_body_bytes: usize,
    pub publish_timeout: Duration,
    /// Default per-key rate, for keys without their own.
    pub rate_limit: RateLimit,
    /// Confirm-mode channels publishes are spread over.
    pub publish_channels: usize,
    /// Bound on the work queue's length; publishes beyond it are refused (503).
    pub max_queue_length: u32,
    /// Publishes awaiting a confirm at once; more are refused at once (503).
    pub max_in_flight_publishes: usize,
    /// How long run-and-wait holds a request when the caller does not say.
    pub default_wait: Duration,
    /// The longest a caller may ask run-and-wait to hold a request.
    pub max_wait: Duration,
    /// A body that takes longer than this to arrive is refused with 408 (a slow-loris guard).
    pub body_read_timeout: Duration,
    /// Keys managed with `flyhook keys` are reloaded at least this often (and at once when
    /// PostgreSQL tells of a change).
    pub key_refresh: Duration,
}

/// The audit log of invocations (written by the ingress).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Entries older than this are deleted.
    pub retention: Duration,
    /// Entries waiting to be written. The log is written off the request path, so while
    /// PostgreSQL is away entries wait here; beyond this many they are dropped and counted.
    pub buffer: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Where the worker serves `/metrics`, `/livez` and `/readyz`; port 0 picks a free port.
    pub listen: String,
    pub prefetch: u16,
    pub concurrency: usize,
    /// PostgreSQL connections this worker holds. Bounded apart from the concurrency: each
    /// connection is a PostgreSQL process, and a fleet must stay below `max_connections`.
    pub database_connections: u32,
    pub max_attempts: u32,
    /// Runs this worker starts per second in one Flyte project; `None`: no cap. A burst then
    /// waits in the queue instead of flattening Flyte. Per worker: a fleet of N workers starts
    /// at most N times this.
    pub max_runs_per_second_per_project: Option<u32>,
    pub tracking: TrackingSettings,
}

/// How the fleet follows runs to their end.
#[derive(Debug, Clone)]
pub struct TrackingSettings {
    /// First and shortest pause between two looks at a run.
    pub min_poll: Duration,
    /// Longest pause: long runs are looked at this often.
    pub max_poll: Duration,
    /// How long a worker holds a run it is looking at; a dead worker's runs are taken over
    /// after this.
    pub lease: Duration,
    /// Runs leased at once by one worker.
    pub batch: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    ingress: IngressFile,
    #[serde(default)]
    worker: WorkerFile,
    #[serde(default)]
    flyte: FlyteFile,
    #[serde(default)]
    api_keys: Vec<KeyEntry>,
    #[serde(default)]
    sources: Vec<toml::Spanned<crate::sources::SourceEntry>>,
    #[serde(default)]
    hooks: HooksFile,
    #[serde(default)]
    audit: AuditFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    retention_days: Option<u64>,
    buffer: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HooksFile {
    /// The GitHub source the seed's `POST /github-webhook` stands for.
    github_alias: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngressFile {
    max_body_bytes: Option<usize>,
    publish_timeout_ms: Option<u64>,
    rate_limit: Option<RateLimitEntry>,
    publish_channels: Option<usize>,
    max_queue_length: Option<u32>,
    max_in_flight_publishes: Option<usize>,
    default_wait_secs: Option<u64>,
    max_wait_secs: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    key_refresh_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerFile {
    listen: Option<String>,
    prefetch: Option<u16>,
    concurrency: Option<usize>,
    database_connections: Option<u32>,
    max_attempts: Option<u32>,
    max_runs_per_second_per_project: Option<u32>,
    #[serde(default)]
    tracking: TrackingFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackingFile {
    min_poll_ms: Option<u64>,
    max_poll_ms: Option<u64>,
    lease_ms: Option<u64>,
    batch: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlyteFile {
    timeout_ms: Option<u64>,
    task_cache_ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitEntry {
    per_second: u32,
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    sha256: Option<String>,
    env: Option<String>,
    rate_limit: Option<RateLimitEntry>,
    /// `["project/domain", …]`; every task when absent.
    scopes: Option<Vec<String>>,
}

impl RateLimitEntry {
    fn resolve(self) -> anyhow::Result<RateLimit> {
        if self.per_second == 0 {
            bail!("rate_limit.per_second must be at least 1");
        }
        Ok(RateLimit {
            per_second: self.per_second,
            burst: self.burst.unwrap_or(self.per_second).max(1),
        })
    }
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
enum KeyPolicy {
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

/// The secret in environment variable `var`, refused when unset or blank (a blank secret is one
/// anyone can sign with). `fix` says what to put there.
pub(crate) fn secret_var(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    fix: &str,
) -> anyhow::Result<SecretString> {
    let value =
        env(var).with_context(|| format!("environment variable {var} is not set: {fix}"))?;
    non_blank(value, &format!("environment variable {var}"), fix)
}

/// `value` as a secret, unless it is empty or only whitespace (`origin` says where it came from).
pub(crate) fn non_blank(value: String, origin: &str, fix: &str) -> anyhow::Result<SecretString> {
    anyhow::ensure!(
        !value.trim().is_empty(),
        "{origin} is empty (or only whitespace): {fix}"
    );
    Ok(SecretString::from(value))
}

impl Settings {
    /// Reads the process environment and the config file it names.
    pub fn from_env() -> anyhow::Result<Settings> {
        Settings::load(|name| std::env::var(name).ok())
    }

    /// Builds settings from `env` (a lookup, so tests need not touch the process environment).
    /// A variable set to the empty string counts as unset, except where a secret is expected:
    /// there it is refused, as is a weak API key.
    pub fn load(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        Settings::load_with(env, KeyPolicy::Strong)
    }

    /// [`Settings::load`] for `flyhook dev` and `flyhook send`: weak API keys (`flyhook-dev-key`)
    /// are accepted.
    pub fn load_for_development(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        Settings::load_with(env, KeyPolicy::DevelopmentKeysAllowed)
    }

    fn load_with(
        raw_env: impl Fn(&str) -> Option<String>,
        key_policy: KeyPolicy,
    ) -> anyhow::Result<Settings> {
        let env = |name: &str| raw_env(name).filter(|v| !v.is_empty());
        let (file, text) = match env("FLYHOOK_CONFIG") {
            Some(path) => read_file(Path::new(&path))?,
            None => (FileConfig::default(), String::new()),
        };
        let sources =
            crate::sources::compile(file.sources, file.hooks.github_alias, &text, &raw_env)
                .with_context(|| format!("in {}", env("FLYHOOK_CONFIG").unwrap_or_default()))?;
        let secret = |name: &str| env(name).map(SecretString::from);

        let mut keys = KeyRing::default();
        if let Some(key) = secret("WEBHOOK_API_KEY") {
            key_policy.check("WEBHOOK_API_KEY", &key)?;
            keys.add_key(
                &key,
                KeyOwner {
                    name: BOOTSTRAP_KEY_NAME.into(),
                    rate_limit: None,
                    scopes: Scopes::unrestricted(),
                },
            )
            .context("WEBHOOK_API_KEY")?;
        }
        let mut key_digests = Vec::new();
        for entry in file.api_keys {
            let owner = KeyOwner {
                name: entry.name.clone(),
                rate_limit: entry.rate_limit.map(RateLimitEntry::resolve).transpose()?,
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
                    let key = secret_var(&raw_env, &var, &fix).context(what.clone())?;
                    key_policy.check(&format!("{what} (from {var})"), &key)?;
                    key_digests.push(crate::api_keys::key_digest_hex(key.expose_secret()));
                    keys.add_key(&key, owner)?
                }
                _ => bail!("api key {:?} needs exactly one of sha256, env", entry.name),
            }
        }
        if let Some(key) = env("WEBHOOK_API_KEY") {
            key_digests.push(crate::api_keys::key_digest_hex(&key));
        }
        if let Some(id_secret) = secret("FLYHOOK_ID_SECRET") {
            key_policy.check("FLYHOOK_ID_SECRET", &id_secret)?;
        }

        Ok(Settings {
            database_url: secret("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/flyhook".into()),
            amqp_url: secret("AMQP_URL")
                .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            listen: env("FLYHOOK_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            queue_prefix: env("FLYHOOK_QUEUE_PREFIX").unwrap_or_else(|| "flyhook".into()),
            flyte: flyte_config(&env, &file.flyte)?,
            keys,
            id_secret_is_explicit: env("FLYHOOK_ID_SECRET").is_some(),
            id_secret: secret("FLYHOOK_ID_SECRET")
                .unwrap_or_else(|| derived_id_secret(key_digests)),
            ingress: IngressSettings {
                max_body_bytes: file.ingress.max_body_bytes.unwrap_or(1024 * 1024),
                publish_timeout: Duration::from_millis(
                    file.ingress.publish_timeout_ms.unwrap_or(5000),
                ),
                rate_limit: file
                    .ingress
                    .rate_limit
                    .map(RateLimitEntry::resolve)
                    .transpose()?
                    .unwrap_or(RateLimit {
                        per_second: 1000,
                        burst: 2000,
                    }),
                publish_channels: file.ingress.publish_channels.unwrap_or(4).max(1),
                max_queue_length: file.ingress.max_queue_length.unwrap_or(1_000_000),
                max_in_flight_publishes: file.ingress.max_in_flight_publishes.unwrap_or(512).max(1),
                default_wait: Duration::from_secs(file.ingress.default_wait_secs.unwrap_or(30)),
                max_wait: Duration::from_secs(file.ingress.max_wait_secs.unwrap_or(300)),
                body_read_timeout: Duration::from_millis(
                    file.ingress.body_read_timeout_ms.unwrap_or(10_000),
                ),
                key_refresh: Duration::from_secs(
                    file.ingress.key_refresh_secs.unwrap_or(10).max(1),
                ),
            },
            audit: AuditSettings {
                retention: Duration::from_secs(
                    file.audit.retention_days.unwrap_or(30).max(1) * 86_400,
                ),
                buffer: file.audit.buffer.unwrap_or(10_000).max(1),
            },
            worker: WorkerSettings {
                listen: env("FLYHOOK_WORKER_LISTEN")
                    .or(file.worker.listen)
                    .unwrap_or_else(|| "127.0.0.1:9090".into()),
                prefetch: file.worker.prefetch.unwrap_or(512).max(1),
                concurrency: file.worker.concurrency.unwrap_or(256).max(1),
                database_connections: file.worker.database_connections.unwrap_or(8).max(2),
                max_attempts: file.worker.max_attempts.unwrap_or(5).max(1),
                max_runs_per_second_per_project: file
                    .worker
                    .max_runs_per_second_per_project
                    .filter(|&n| n > 0),
                tracking: TrackingSettings {
                    min_poll: Duration::from_millis(
                        file.worker.tracking.min_poll_ms.unwrap_or(1000),
                    ),
                    max_poll: Duration::from_millis(
                        file.worker.tracking.max_poll_ms.unwrap_or(30_000),
                    ),
                    lease: Duration::from_millis(file.worker.tracking.lease_ms.unwrap_or(30_000)),
                    batch: file.worker.tracking.batch.unwrap_or(100).max(1),
                },
            },
            sources,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<(FileConfig, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading FLYHOOK_CONFIG file {}", path.display()))?;
    // toml's errors carry the line and column, and quote the offending line.
    let file = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    Ok((file, text))
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

fn flyte_config(
    env: &impl Fn(&str) -> Option<String>,
    file: &FlyteFile,
) -> anyhow::Result<FlyteConfig> {
    let mut config = match env("FLYTE_API_KEY") {
        Some(key) => FlyteConfig::from_api_key(&key).context("FLYTE_API_KEY")?,
        None => FlyteConfig::new("http://127.0.0.1:8090"),
    };
    if let Some(endpoint) = env("FLYTE_ENDPOINT") {
        config.endpoint = endpoint;
    }
    if let Some(org) = env("FLYTE_ORG") {
        config.org = org;
    }
    if let Some(token) = env("FLYTE_TOKEN") {
        if !matches!(config.auth, FlyteAuth::None) {
            bail!("set FLYTE_API_KEY or FLYTE_TOKEN, not both");
        }
        config.auth = FlyteAuth::Bearer(SecretString::from(token));
    }
    config.console_url = env("FLYTE_CONSOLE_URL");
    if let Some(ms) = file.timeout_ms {
        config.timeout = Duration::from_millis(ms);
    }
    if let Some(secs) = file.task_cache_ttl_secs {
        config.task_cache_ttl = Duration::from_secs(secs);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_point_at_local_services() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.flyte.endpoint, "http://127.0.0.1:8090");
        assert_eq!(s.queue_prefix, "flyhook");
        assert!(s.keys.is_empty());
        assert_eq!(s.ingress.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn the_flyte_api_key_sets_endpoint_org_and_auth_and_env_overrides_win() {
        let key = "Zmx5dGUuZXhhbXBsZTppZDpzZWNyZXQ6YWNtZQ=="; // flyte.example:id:secret:acme
        let s = load(&[("FLYTE_API_KEY", key)]).unwrap();
        assert_eq!(s.flyte.endpoint, "https://flyte.example");
        assert_eq!(s.flyte.org, "acme");
        let s = load(&[
            ("FLYTE_API_KEY", key),
            ("FLYTE_ENDPOINT", "http://h:1"),
            ("FLYTE_ORG", "o"),
        ])
        .unwrap();
        assert_eq!(
            (s.flyte.endpoint.as_str(), s.flyte.org.as_str()),
            ("http://h:1", "o")
        );
        assert!(load(&[("FLYTE_API_KEY", key), ("FLYTE_TOKEN", "t")]).is_err());
        assert!(load(&[("FLYTE_API_KEY", "nope")]).is_err());
    }

    #[test]
    fn config_file_mistakes_name_the_line() {
        let dir = std::env::temp_dir().join(format!("flyhook-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flyhook.toml");
        std::fs::write(&path, "[ingress]\nmax_body_bytes = 10\nmax_bdoy = 3\n").unwrap();
        let err = load(&[("FLYHOOK_CONFIG", path.to_str().unwrap())]).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("line 3") && text.contains("max_bdoy"),
            "{text}"
        );
        std::fs::write(
            &path,
            "[[api_keys]]\nname = \"ci\"\nenv = \"NOT_SET_ANYWHERE\"\n",
        )
        .unwrap();
        let err = load(&[("FLYHOOK_CONFIG", path.to_str().unwrap())]).unwrap_err();
        assert!(format!("{err:#}").contains("NOT_SET_ANYWHERE"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    const KEY_1: &str = "k1-0123456789abcdefghijklmnopqrstuv";
    const KEY_2: &str = "k2-0123456789abcdefghijklmnopqrstuv";

    #[test]
    fn replicas_with_the_same_keys_derive_the_same_id_secret() {
        let a = load(&[("WEBHOOK_API_KEY", KEY_1)]).unwrap();
        let b = load(&[("WEBHOOK_API_KEY", KEY_1)]).unwrap();
        let c = load(&[("WEBHOOK_API_KEY", KEY_2)]).unwrap();
        assert_eq!(a.id_secret.expose_secret(), b.id_secret.expose_secret());
        assert_ne!(a.id_secret.expose_secret(), c.id_secret.expose_secret());
        let explicit = load(&[("WEBHOOK_API_KEY", KEY_1), ("FLYHOOK_ID_SECRET", KEY_2)]).unwrap();
        assert_eq!(explicit.id_secret.expose_secret(), KEY_2);
    }

    /// `load` with a config file holding `toml` (and `vars`).
    fn load_with_file(toml: &str, vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let path = std::env::temp_dir().join(format!("flyhook-keys-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).unwrap();
        let config = [("FLYHOOK_CONFIG", path.to_str().unwrap())];
        let loaded = load(&[vars, &config].concat());
        std::fs::remove_file(path).unwrap();
        loaded
    }

    #[test]
    fn short_and_placeholder_keys_are_refused_saying_how_to_make_one() {
        let partner = "[[api_keys]]\nname = \"partner\"\nenv = \"PARTNER_KEY\"\n";
        for weak in [
            "change-me",
            "flyhook-dev-key",
            "CHANGE-ME-32-random-bytes-padded-to-40",
            "0123456789abcdefghijklmnopqrstu",
        ] {
            for (loaded, named) in [
                (load(&[("WEBHOOK_API_KEY", weak)]), "WEBHOOK_API_KEY"),
                (load(&[("FLYHOOK_ID_SECRET", weak)]), "FLYHOOK_ID_SECRET"),
                (
                    load_with_file(partner, &[("PARTNER_KEY", weak)]),
                    "api key \"partner\" (from PARTNER_KEY)",
                ),
            ] {
                let err = format!("{:#}", loaded.unwrap_err());
                assert!(
                    err.contains(named) && err.contains("openssl rand -base64 32"),
                    "{weak}: {err}"
                );
                assert!(!err.contains(weak), "the key is never shown: {err}");
            }
        }
        let strong = "0123456789abcdefghijklmnopqrstuv";
        assert!(load(&[("WEBHOOK_API_KEY", strong)]).is_ok());
        assert!(load_with_file(partner, &[("PARTNER_KEY", strong)]).is_ok());
    }

    #[test]
    fn flyhook_dev_keeps_its_built_in_key() {
        let vars = HashMap::from([("WEBHOOK_API_KEY", "flyhook-dev-key")]);
        let dev = Settings::load_for_development(|k| vars.get(k).map(|v| v.to_string()));
        assert_eq!(dev.unwrap().keys.len(), 1);
    }

    #[test]
    fn empty_secret_variables_are_said_to_be_empty_not_unset() {
        let partner = "[[api_keys]]\nname = \"partner\"\nenv = \"PARTNER_KEY\"\n";
        for (value, said) in [("", "is empty"), ("   ", "is empty")] {
            let err = format!(
                "{:#}",
                load_with_file(partner, &[("PARTNER_KEY", value)]).unwrap_err()
            );
            assert!(
                err.contains(&format!("environment variable PARTNER_KEY {said}"))
                    && err.contains("api key \"partner\""),
                "{value:?}: {err}"
            );
        }
        let unset = format!("{:#}", load_with_file(partner, &[]).unwrap_err());
        assert!(unset.contains("PARTNER_KEY is not set"), "{unset}");
        let github = "[[sources]]\nname = \"github\"\nscheme = \"github\"\nsecrets = [{ env = \"GH_SECRET\" }]\n";
        let err = format!(
            "{:#}",
            load_with_file(github, &[("GH_SECRET", "")]).unwrap_err()
        );
        assert!(
            err.contains("source \"github\"") && err.contains("GH_SECRET is empty"),
            "{err}"
        );
    }
}
