//! Webhook sources: who may call `POST /hooks/{source}`, how their deliveries are verified,
//! and which tasks a delivery starts with which inputs. Configured, not coded:
//!
//! ```toml
//! [[sources]]
//! name = "github"
//! scheme = "github"        # github, stripe, slack, standard-webhooks, gitlab, shopify, linear,
//!                          # clickup, jira, hmac
//! secrets = [{ env = "GITHUB_WEBHOOK_SECRET" }, { file = "/run/secrets/github-old" }]
//! tolerance_secs = 300     # timestamped schemes (default 300; linear 60)
//!
//! [[sources.routes]]
//! name = "deploy-on-push"
//! task = "flytesnacks/development/deploy.main/v1"
//! when = [{ header = "X-GitHub-Event", equals = "push" }, { pointer = "/ref", regex = "^refs/heads/" }]
//! inputs = { commit = "/after", repository = { pointer = "/repository/full_name", default = "" } }
//! callback = "ci-bot"      # a [[callbacks]] destination told when its runs end (a source's
//!                          # `callback` serves its routes without one, and its ignored deliveries)
//! debounce = { key = "/pull_request/number", window = "30s", max_wait = "5m", keep = "last" }
//! concurrency = { key = "/repository/full_name", limit = 1, when_full = "queue" }
//! ```
//!
//! Conditions test a header or a JSON Pointer into the payload with `equals`, `in`, `exists` or
//! `regex`; all must hold. Inputs come from a pointer (`"/after"`), `{ pointer, default }`,
//! `{ header }` or `{ value }` (a literal). Route names are unique within a source (they are part
//! of the dispatch ids), and secrets are never blank. Every mistake is reported at start-up with
//! its line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use regex_lite::Regex;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use flyhook_contract::TaskRef;
use flyhook_contract::callbacks::Destinations;
use flyhook_contract::config::{Env, SecretSource};
use flyhook_contract::flow::{ConcurrencyEntry, ConcurrencyPolicy, DebounceEntry, DebouncePolicy};
use webhook_signatures::{GenericHmac, Headers, Scheme};

/// One `[[sources]]` table as written; [`compile`] checks it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    name: String,
    scheme: String,
    #[serde(default)]
    secrets: Vec<SecretSource>,
    tolerance_secs: Option<i64>,
    hmac: Option<GenericHmac>,
    /// The `[[callbacks]]` destination of its routes that name none, and of its ignored
    /// deliveries.
    callback: Option<String>,
    #[serde(default)]
    routes: Vec<Spanned<RouteEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: String,
    task: String,
    #[serde(default)]
    when: Vec<ConditionEntry>,
    #[serde(default)]
    inputs: BTreeMap<String, InputEntry>,
    callback: Option<String>,
    debounce: Option<DebounceEntry>,
    concurrency: Option<ConcurrencyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionEntry {
    header: Option<String>,
    pointer: Option<String>,
    equals: Option<Value>,
    #[serde(rename = "in")]
    one_of: Option<Vec<Value>>,
    exists: Option<bool>,
    regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InputEntry {
    Pointer(String),
    Spec(InputSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    pointer: Option<String>,
    header: Option<String>,
    value: Option<Value>,
    default: Option<Value>,
}

/// A configured source.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub scheme: Scheme,
    /// The scheme as configured (`github`, `hmac`, …), for listings.
    pub scheme_name: String,
    /// Every active secret: several during a rotation.
    pub secrets: Vec<SecretString>,
    pub tolerance_secs: i64,
    pub routes: Vec<Route>,
    /// Where an ignored delivery's callback goes.
    pub callback: Option<String>,
}

/// Sends matching deliveries to one task.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub task: TaskRef,
    conditions: Vec<Condition>,
    inputs: Vec<(String, InputSource)>,
    /// The completion callback's destination: the route's, else the source's.
    pub callback: Option<String>,
    /// One run per burst of a key value.
    pub debounce: Option<DebouncePolicy>,
    /// At most so many runs in flight per key value.
    pub concurrency: Option<ConcurrencyPolicy>,
}

#[derive(Debug)]
enum Subject {
    Header(String),
    Pointer(String),
}

#[derive(Debug)]
enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
    Matches(Regex),
}

#[derive(Debug)]
struct Condition {
    subject: Subject,
    test: Test,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subject {
            Subject::Header(name) => write!(f, "header {name} ")?,
            Subject::Pointer(pointer) => write!(f, "{pointer} ")?,
        }
        match &self.test {
            Test::Equals(value) => write!(f, "equals {value}"),
            Test::OneOf(values) => write!(f, "in {}", Value::Array(values.clone())),
            Test::Exists(true) => f.write_str("exists"),
            Test::Exists(false) => f.write_str("is absent"),
            Test::Matches(regex) => write!(f, "matches /{}/", regex.as_str()),
        }
    }
}

#[derive(Debug)]
enum InputSource {
    Pointer {
        pointer: String,
        default: Option<Value>,
    },
    Header {
        name: String,
        default: Option<Value>,
    },
    Literal(Value),
}

/// All sources, by name.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    by_name: HashMap<String, Arc<Source>>,
    /// The source `POST /github-webhook` (the seed's endpoint) stands for.
    github_alias: Option<String>,
}

impl Sources {
    pub fn get(&self, name: &str) -> Option<Arc<Source>> {
        self.by_name.get(name).cloned()
    }

    pub fn github_alias(&self) -> Option<Arc<Source>> {
        self.github_alias.as_deref().and_then(|n| self.get(n))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every source, by name.
    pub fn all(&self) -> Vec<Arc<Source>> {
        let mut all: Vec<_> = self.by_name.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Compiles the `[[sources]]` of a config file; `text` is the file, for line numbers.
pub(crate) fn compile(
    entries: Vec<Spanned<SourceEntry>>,
    github_alias: Option<String>,
    text: &str,
    env: &impl Env,
    destinations: &Destinations,
) -> anyhow::Result<Sources> {
    let mut sources = Sources::default();
    for entry in entries {
        let line = line_of(text, entry.span().start);
        let entry = entry.into_inner();
        let name = entry.name.clone();
        let source = compile_source(entry, text, env, destinations)
            .with_context(|| format!("line {line}: source {name:?}"))?;
        if sources
            .by_name
            .insert(name.clone(), Arc::new(source))
            .is_some()
        {
            bail!("line {line}: source {name:?} is defined twice");
        }
    }
    sources.github_alias = match github_alias {
        Some(name) => {
            let source = sources
                .get(&name)
                .ok_or_else(|| anyhow!("[hooks] github_alias names no source: {name:?}"))?;
            anyhow::ensure!(
                source.scheme == Scheme::GitHub,
                "[hooks] github_alias {name:?} is not a github source"
            );
            Some(name)
        }
        // With exactly one GitHub source, the seed's endpoint is obviously that one.
        None => {
            let github: Vec<&String> = sources
                .by_name
                .iter()
                .filter(|(_, s)| s.scheme == Scheme::GitHub)
                .map(|(n, _)| n)
                .collect();
            (github.len() == 1).then(|| github[0].clone())
        }
    };
    Ok(sources)
}

fn compile_source(
    entry: SourceEntry,
    text: &str,
    env: &impl Env,
    destinations: &Destinations,
) -> anyhow::Result<Source> {
    anyhow::ensure!(
        !entry.name.is_empty()
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "a source name may contain only letters, digits, '-' and '_'"
    );
    let scheme = Scheme::named(&entry.scheme, entry.hmac).map_err(|e| anyhow!(e))?;
    let tolerance_secs = entry
        .tolerance_secs
        .unwrap_or_else(|| scheme.default_tolerance_secs());
    anyhow::ensure!(
        !entry.secrets.is_empty(),
        "a source needs at least one secret"
    );
    let secrets = entry
        .secrets
        .into_iter()
        .map(|s| s.resolve(env, SECRET_FIX).context("secret"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(callback) = &entry.callback {
        destinations.check_named(callback)?;
    }
    let mut names = HashSet::new();
    let routes = entry
        .routes
        .into_iter()
        .map(|route| {
            let line = line_of(text, route.span().start);
            let route = route.into_inner();
            // A route's name is part of its dispatch ids: two routes of one name would share one.
            anyhow::ensure!(
                names.insert(route.name.clone()),
                "line {line}: route {:?} is defined twice in this source: give each route its own name",
                route.name
            );
            let name = route.name.clone();
            compile_route(route, &entry.name, entry.callback.as_deref(), destinations)
                .with_context(|| format!("line {line}: route {name:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Source {
        name: entry.name,
        scheme,
        scheme_name: entry.scheme,
        secrets,
        tolerance_secs,
        routes,
        callback: entry.callback,
    })
}

/// What to do about a missing or blank source secret.
const SECRET_FIX: &str =
    "put the signing secret (or token) the provider shows for this webhook there";

fn check_pointer(pointer: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        pointer.is_empty() || pointer.starts_with('/'),
        "{pointer:?} is not a JSON Pointer (they start with '/')"
    );
    Ok(pointer.to_string())
}

fn compile_route(
    entry: RouteEntry,
    source: &str,
    source_callback: Option<&str>,
    destinations: &Destinations,
) -> anyhow::Result<Route> {
    let task = TaskRef::parse_path(&entry.task).context("task")?;
    if let Some(callback) = &entry.callback {
        destinations.check_named(callback)?;
    }
    let callback = entry
        .callback
        .or_else(|| source_callback.map(str::to_string));
    let scope = format!("route:{source}/{}", entry.name);
    let debounce = entry
        .debounce
        .map(|d| DebouncePolicy::compile(d, scope.clone()))
        .transpose()
        .context("debounce")?;
    let concurrency = entry
        .concurrency
        .map(|c| ConcurrencyPolicy::compile(c, scope))
        .transpose()
        .context("concurrency")?;
    let conditions = entry
        .when
        .into_iter()
        .map(|c| {
            let subject = match (c.header, c.pointer) {
                (Some(h), None) => Subject::Header(h),
                (None, Some(p)) => Subject::Pointer(check_pointer(&p)?),
                _ => bail!("a condition tests exactly one of header, pointer"),
            };
            let test = match (c.equals, c.one_of, c.exists, c.regex) {
                (Some(v), None, None, None) => Test::Equals(v),
                (None, Some(vs), None, None) => Test::OneOf(vs),
                (None, None, Some(e), None) => Test::Exists(e),
                (None, None, None, Some(r)) => {
                    Test::Matches(Regex::new(&r).with_context(|| format!("regex {r:?}"))?)
                }
                _ => bail!("a condition has exactly one of equals, in, exists, regex"),
            };
            Ok(Condition { subject, test })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let inputs = entry
        .inputs
        .into_iter()
        .map(|(input, source)| {
            let source = match source {
                InputEntry::Pointer(p) => InputSource::Pointer {
                    pointer: check_pointer(&p).with_context(|| format!("input {input}"))?,
                    default: None,
                },
                InputEntry::Spec(spec) => match (spec.pointer, spec.header, spec.value) {
                    (Some(p), None, None) => InputSource::Pointer {
                        pointer: check_pointer(&p).with_context(|| format!("input {input}"))?,
                        default: spec.default,
                    },
                    (None, Some(name), None) => InputSource::Header {
                        name,
                        default: spec.default,
                    },
                    (None, None, Some(v)) if spec.default.is_none() => InputSource::Literal(v),
                    _ => bail!("input {input}: exactly one of pointer, header, value (default only with pointer or header)"),
                },
            };
            Ok((input, source))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Route {
        name: entry.name,
        task,
        conditions,
        inputs,
        callback,
        debounce,
        concurrency,
    })
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Route {
    /// The route's conditions in words (`header X-GitHub-Event equals "push"`), for listings.
    pub fn conditions(&self) -> Vec<String> {
        self.conditions.iter().map(ToString::to_string).collect()
    }

    /// Whether every condition holds for this delivery.
    pub fn matches(&self, headers: &(impl Headers + ?Sized), payload: &Value) -> bool {
        self.conditions.iter().all(|c| {
            let found: Option<Value> = match &c.subject {
                Subject::Header(name) => headers.get(name).map(|v| Value::String(v.to_string())),
                Subject::Pointer(pointer) => payload.pointer(pointer).cloned(),
            };
            match (&c.test, found) {
                (Test::Exists(wanted), found) => found.is_some() == *wanted,
                (_, None) => false,
                (Test::Equals(expected), Some(v)) => loosely_equal(expected, &v),
                (Test::OneOf(options), Some(v)) => options.iter().any(|o| loosely_equal(o, &v)),
                (Test::Matches(regex), Some(v)) => regex.is_match(&as_text(&v)),
            }
        })
    }

    /// The run inputs this route maps from the delivery. Inputs whose source is absent and that
    /// have no default are left out: the task's own default applies, or the worker records why
    /// the inputs do not fit.
    pub fn inputs(&self, headers: &(impl Headers + ?Sized), payload: &Value) -> Map<String, Value> {
        self.inputs
            .iter()
            .filter_map(|(name, source)| {
                let value = match source {
                    InputSource::Pointer { pointer, default } => payload
                        .pointer(pointer)
                        .cloned()
                        .or_else(|| default.clone()),
                    InputSource::Header { name, default } => headers
                        .get(name)
                        .map(|v| Value::String(v.to_string()))
                        .or_else(|| default.clone()),
                    InputSource::Literal(v) => Some(v.clone()),
                };
                value.map(|v| (name.clone(), v))
            })
            .collect()
    }
}

/// Equality where a header's text matches a number or boolean written in the config.
fn loosely_equal(expected: &Value, found: &Value) -> bool {
    expected == found || (found.is_string() && as_text(expected) == as_text(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        sources: Vec<Spanned<SourceEntry>>,
    }

    fn parse(text: &str) -> anyhow::Result<Sources> {
        let file: File = toml::from_str(text)?;
        compile(
            file.sources,
            None,
            text,
            &|name| match name {
                "SECRET" => Some("s3cret".to_string()),
                "EMPTY" => Some(String::new()),
                "BLANK" => Some("  ".to_string()),
                _ => None,
            },
            &Destinations::default(),
        )
    }

    const GITHUB: &str = r#"
[[sources]]
name = "github"
scheme = "github"
secrets = [{ env = "SECRET" }]

[[sources.routes]]
name = "deploy"
task = "flytesnacks/development/deploy.main/v1"
when = [{ header = "X-GitHub-Event", equals = "push" }, { pointer = "/ref", regex = "^refs/heads/main$" }]
inputs = { commit = "/after", repository = { pointer = "/repository/full_name", default = "unknown" }, event = { header = "X-GitHub-Event" }, env = { value = "prod" }, missing = "/nope" }

[[sources.routes]]
name = "notify"
task = "flytesnacks/development/hello.main/v1"
when = [{ pointer = "/commits", exists = true }, { pointer = "/size", in = [1, 2] }]
inputs = { name = "/pusher/name" }
"#;

    #[test]
    fn routes_select_by_header_and_payload_and_map_inputs() {
        let sources = parse(GITHUB).unwrap();
        let github = sources.get("github").unwrap();
        assert_eq!(sources.github_alias().unwrap().name, "github");
        let headers = vec![("x-github-event".to_string(), "push".to_string())];
        let payload = json!({"ref": "refs/heads/main", "after": "abc123", "commits": [], "size": 2, "pusher": {"name": "ann"}});
        let matched: Vec<&str> = github
            .routes
            .iter()
            .filter(|r| r.matches(headers.as_slice(), &payload))
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(matched, ["deploy", "notify"]);
        assert_eq!(
            Value::Object(github.routes[0].inputs(headers.as_slice(), &payload)),
            json!({"commit": "abc123", "repository": "unknown", "event": "push", "env": "prod"})
        );
        let other_branch = json!({"ref": "refs/heads/dev", "after": "x", "size": 3});
        assert!(
            !github
                .routes
                .iter()
                .any(|r| r.matches(headers.as_slice(), &other_branch))
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        for (broken, expected) in [
            (
                GITHUB.replace("equals = \"push\"", "equals = \"push\", regex = \"x\""),
                "line 7: route \"deploy\"",
            ),
            (GITHUB.replace("^refs/heads/main$", "(unclosed"), "regex"),
            (
                GITHUB.replace("deploy.main/v1", "deploy.main"),
                "project/domain/name/version",
            ),
            (GITHUB.replace("\"/after\"", "\"after\""), "JSON Pointer"),
            (
                GITHUB.replace("scheme = \"github\"", "scheme = \"gitbub\""),
                "line 2: source \"github\"",
            ),
            (
                GITHUB.replace("env = \"SECRET\"", "env = \"UNSET\""),
                "UNSET is not set",
            ),
        ] {
            let err = format!("{:#}", parse(&broken).unwrap_err());
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn two_routes_of_one_name_in_a_source_are_refused_with_the_line() {
        let twice = GITHUB.replace("name = \"notify\"", "name = \"deploy\"");
        let err = format!("{:#}", parse(&twice).unwrap_err());
        assert!(
            err.contains("line 13: route \"deploy\" is defined twice"),
            "{err}"
        );
    }

    #[test]
    fn blank_secrets_are_refused_naming_the_source_and_what_to_do() {
        let file = std::env::temp_dir().join(format!("flyhook-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, "\n").unwrap();
        let from_file = format!("file = {:?}", file.to_str().unwrap());
        for (secret, origin) in [
            ("env = \"EMPTY\"", "environment variable EMPTY is empty"),
            ("env = \"BLANK\"", "environment variable BLANK is empty"),
            (from_file.as_str(), "is empty"),
        ] {
            let broken = GITHUB.replace("env = \"SECRET\"", secret);
            let err = format!("{:#}", parse(&broken).unwrap_err());
            assert!(
                err.contains("source \"github\"")
                    && err.contains(origin)
                    && err.contains("signing secret"),
                "{secret}: {err}"
            );
        }
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn linear_clickup_and_jira_sources_are_named_and_keep_their_providers_windows() {
        let source = |scheme: &str, extra: &str| {
            format!("[[sources]]\nname = \"{scheme}\"\nscheme = \"{scheme}\"\n{extra}\n")
        };
        let secret = "secrets = [{ env = \"SECRET\" }]";
        let text = ["linear", "clickup", "jira"]
            .map(|scheme| source(scheme, secret))
            .concat();
        let sources = parse(&text).unwrap();
        for (name, scheme, tolerance) in [
            ("linear", Scheme::Linear, 60),
            ("clickup", Scheme::ClickUp, 300),
            ("jira", Scheme::Jira, 300),
        ] {
            let compiled = sources.get(name).unwrap();
            assert_eq!(
                (&compiled.scheme, compiled.tolerance_secs),
                (&scheme, tolerance)
            );
        }
        let wider = parse(&source(
            "linear",
            &format!("{secret}\ntolerance_secs = 120"),
        ))
        .unwrap();
        assert_eq!(wider.get("linear").unwrap().tolerance_secs, 120);
        // Jira lets a webhook go unsigned; a source here cannot.
        let err = format!("{:#}", parse(&source("jira", "")).unwrap_err());
        assert!(err.contains("needs at least one secret"), "{err}");
        let err = format!("{:#}", parse(&source("jirra", secret)).unwrap_err());
        assert!(err.contains("linear, clickup, jira, hmac"), "{err}");
    }
}
