//! How every role's settings are read, so the sections of one TOML file behave alike: each
//! section is a struct deserialized directly (`#[serde(default)]`, its `Default` the one place
//! its defaults live), durations are written in the unit their name says, counts that cannot be
//! zero are raised to their floor, and secrets from the environment are never blank.

use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// A lookup of environment variables: the process's own, or a test's map.
pub trait Env: Fn(&str) -> Option<String> {}
impl<F: Fn(&str) -> Option<String>> Env for F {}

/// `#[serde(deserialize_with = "millis")]`: a duration written in milliseconds (`…_ms`).
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A duration written in seconds (`…_secs`).
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// A duration written in seconds, at least one.
pub fn secs_at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(|secs| Duration::from_secs(secs.max(1)))
}

/// A duration written in days (`…_days`), at least one.
pub fn days_at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(|days| Duration::from_secs(days.max(1) * 86_400))
}

/// A count for which zero would mean "never" (no channel, no worker task): raised to one.
pub fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord + From<u8>,
{
    T::deserialize(d).map(|n| n.max(T::from(1)))
}

/// The secret in environment variable `var`, refused when unset or blank (a blank secret is one
/// anyone can sign with). `fix` says what to put there.
pub fn secret_var(env: &impl Env, var: &str, fix: &str) -> anyhow::Result<SecretString> {
    let value =
        env(var).with_context(|| format!("environment variable {var} is not set: {fix}"))?;
    non_blank(value, &format!("environment variable {var}"), fix)
}

/// `value` as a secret, unless it is empty or only whitespace (`origin` says where it came from).
pub fn non_blank(value: String, origin: &str, fix: &str) -> anyhow::Result<SecretString> {
    anyhow::ensure!(
        !value.trim().is_empty(),
        "{origin} is empty (or only whitespace): {fix}"
    );
    Ok(SecretString::from(value))
}

/// Where a secret is kept, as a TOML table: `{ env = "VAR" }` or `{ file = "/path" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    env: Option<String>,
    file: Option<String>,
}

impl SecretSource {
    /// The secret from its variable or file (a file's trailing newline dropped). Blank ones are
    /// refused: a signature made with an empty key is one anyone can make. `fix` says what to
    /// put there.
    pub fn resolve(self, env: &impl Env, fix: &str) -> anyhow::Result<SecretString> {
        match (self.env, self.file) {
            (Some(var), None) => secret_var(env, &var, fix),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
                let secret = text.trim_end_matches(['\n', '\r']).to_string();
                non_blank(secret, &format!("file {path}"), fix)
            }
            _ => anyhow::bail!("a secret is {{ env = \"VAR\" }} or {{ file = \"/path\" }}"),
        }
    }
}
