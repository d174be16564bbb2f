//! One deployment's settings, composed: the essentials from environment variables (with
//! defaults that point at local services), everything else from the TOML file named by
//! `FLYHOOK_CONFIG`, each section handed to the role that owns it. Mistakes are reported at
//! start-up with the file's line and column.
//!
//! | section | owner |
//! |---|---|
//! | `[ingress]`, `[audit]`, `[[api_keys]]`, `[[sources]]`, `[hooks]`, `[[tasks]]` | `flyhook_ingress::settings` |
//! | `[worker]`, `[worker.tracking]` | `flyhook_worker::settings` |
//! | `[flyte]`, `[broker]` and the variables every process reads | `flyhook_contract::deployment` |
//! | `[[callbacks]]` | `flyhook_contract::callbacks` |

use std::path::Path;

use anyhow::Context;
use flyhook_contract::Deployment;
use flyhook_contract::callbacks::{CallbackEntry, Destinations};
use flyhook_contract::deployment::{BrokerSection, FlyteSection};
use flyhook_ingress::settings::{
    AuditSettings, HooksSection, IngressSettings, KeyEntry, KeyPolicy, Tables, TaskPolicyEntry,
};
use flyhook_ingress::sources::SourceEntry;
use serde::Deserialize;

/// Everything a flyhook process needs to know, whatever its role.
#[derive(Debug, Clone)]
pub struct Settings {
    pub deployment: Deployment,
    pub ingress: flyhook_ingress::Settings,
    pub worker: flyhook_worker::Settings,
}

/// The file as written: every table, each of the type its owner reads it as.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    ingress: IngressSettings,
    audit: AuditSettings,
    api_keys: Vec<KeyEntry>,
    sources: Vec<toml::Spanned<SourceEntry>>,
    hooks: HooksSection,
    worker: flyhook_worker::Settings,
    flyte: FlyteSection,
    broker: BrokerSection,
    callbacks: Vec<CallbackEntry>,
    tasks: Vec<TaskPolicyEntry>,
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
        let config_path = env("FLYHOOK_CONFIG");
        let (file, text) = match &config_path {
            Some(path) => read_file(Path::new(path))?,
            None => (FileConfig::default(), String::new()),
        };
        let max_queue_length = file.ingress.max_queue_length;
        // Secrets are looked up unfiltered, so an empty one is refused as empty, not as unset.
        let callbacks = Destinations::resolve(file.callbacks, &raw_env)?;
        let tables = Tables {
            ingress: file.ingress,
            audit: file.audit,
            api_keys: file.api_keys,
            sources: file.sources,
            hooks: file.hooks,
            tasks: file.tasks,
        };
        let file_name = config_path.unwrap_or_default();
        let ingress = flyhook_ingress::Settings::resolve(
            tables, &callbacks, &file_name, &text, &raw_env, key_policy,
        )?;
        let mut deployment = Deployment::load(&env, &file.flyte, file.broker, max_queue_length)?;
        deployment.callbacks = callbacks;
        Ok(Settings {
            deployment,
            ingress,
            worker: file.worker.with_env(&env),
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

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
        assert_eq!(s.ingress.listen, "127.0.0.1:8080");
        assert_eq!(s.deployment.flyte.endpoint, "http://127.0.0.1:8090");
        assert_eq!(s.deployment.queue_prefix, "flyhook");
        assert!(s.ingress.keys.is_empty());
        assert_eq!(s.ingress.ingress.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn the_flyte_api_key_sets_endpoint_org_and_auth_and_env_overrides_win() {
        let key = "Zmx5dGUuZXhhbXBsZTppZDpzZWNyZXQ6YWNtZQ=="; // flyte.example:id:secret:acme
        let s = load(&[("FLYTE_API_KEY", key)]).unwrap();
        assert_eq!(s.deployment.flyte.endpoint, "https://flyte.example");
        assert_eq!(s.deployment.flyte.org, "acme");
        let s = load(&[
            ("FLYTE_API_KEY", key),
            ("FLYTE_ENDPOINT", "http://h:1"),
            ("FLYTE_ORG", "o"),
        ])
        .unwrap();
        assert_eq!(
            (
                s.deployment.flyte.endpoint.as_str(),
                s.deployment.flyte.org.as_str()
            ),
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
        assert_eq!(
            a.ingress.id_secret.expose_secret(),
            b.ingress.id_secret.expose_secret()
        );
        assert_ne!(
            a.ingress.id_secret.expose_secret(),
            c.ingress.id_secret.expose_secret()
        );
        // The derivation never changes, or ids issued before an upgrade would stop verifying.
        assert_eq!(
            a.ingress.id_secret.expose_secret(),
            "d65ccac7423bdfa40d0aadcb6c9c650fd597f0edd393d4cc6c9b54ae640f56fb"
        );
        let explicit = load(&[("WEBHOOK_API_KEY", KEY_1), ("FLYHOOK_ID_SECRET", KEY_2)]).unwrap();
        assert_eq!(explicit.ingress.id_secret.expose_secret(), KEY_2);
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
    fn a_cluster_is_a_list_of_nodes_and_partitions_stay_within_bounds() {
        let s = load(&[(
            "AMQP_URL",
            "amqp://u:pw@rmq-1:5672/%2f,amqp://u:pw@rmq-2:5672/%2f,amqp://u:pw@rmq-3:5672/%2f",
        )])
        .unwrap();
        let mut nodes: Vec<&str> = s.deployment.broker.addresses().collect();
        nodes.sort();
        assert_eq!(nodes, ["rmq-1:5672", "rmq-2:5672", "rmq-3:5672"]);
        let err = format!("{:#}", load(&[("AMQP_URL", "amqp://a,")]).unwrap_err());
        assert!(err.contains("entry 2 is empty"), "{err}");

        let s = load_with_file("[broker]\npartitions = 4\nreplicas = 5\n", &[]).unwrap();
        assert_eq!(s.deployment.topology().partitions(), 4);
        for refused in ["partitions = 0", "partitions = 257"] {
            let err = format!(
                "{:#}",
                load_with_file(&format!("[broker]\n{refused}\n"), &[]).unwrap_err()
            );
            assert!(
                err.contains("partitions must be from 1 to 256") && err.contains("line 2"),
                "{refused}: {err}"
            );
        }
    }

    #[test]
    fn flyhook_dev_keeps_its_built_in_key() {
        let vars = HashMap::from([("WEBHOOK_API_KEY", "flyhook-dev-key")]);
        let dev = Settings::load_for_development(|k| vars.get(k).map(|v| v.to_string()));
        assert_eq!(dev.unwrap().ingress.keys.len(), 1);
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

    /// The README's configuration example, whose `[ingress]`, `[audit]`, `[worker]` and
    /// `[broker]` values are said to be the defaults (`max_runs_per_second_per_project` is an
    /// example).
    fn documented_sections() -> toml::Table {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("The TOML file (every key optional")
            .expect("the README documents the file");
        let block = &readme[start..];
        let block = &block[block.find("```toml\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        let mut table: toml::Table = toml::from_str(block).expect("the README's TOML parses");
        table.retain(|name, _| matches!(name, "ingress" | "audit" | "worker" | "broker"));
        table["worker"]
            .as_table_mut()
            .unwrap()
            .remove("max_runs_per_second_per_project");
        table
    }

    #[test]
    fn the_defaults_the_readme_documents_are_the_defaults() {
        let documented = documented_sections();
        let section = |name: &str| documented[name].clone();
        let ingress: IngressSettings = section("ingress").try_into().unwrap();
        let audit: AuditSettings = section("audit").try_into().unwrap();
        let worker: flyhook_worker::Settings = section("worker").try_into().unwrap();
        let broker: BrokerSection = section("broker").try_into().unwrap();
        assert_eq!(broker, BrokerSection::default());
        assert_eq!(
            format!("{ingress:?}"),
            format!("{:?}", IngressSettings::default())
        );
        assert_eq!(
            format!("{audit:?}"),
            format!("{:?}", AuditSettings::default())
        );
        assert_eq!(
            format!("{worker:?}"),
            format!("{:?}", flyhook_worker::Settings::default())
        );
    }
}
