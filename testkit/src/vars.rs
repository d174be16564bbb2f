//! The environment a flyhook deployment reads, made one way whether its ingress and worker run
//! in this process (settings from [`Settings::load`]) or as processes (the same variables in
//! theirs), and configuration files that exist as long as they are needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flyhook::Settings;

use crate::API_KEY;
use crate::services::amqp_url;

/// Environment variables, by name.
pub type Vars = HashMap<String, String>;

/// What a deployment on this machine reads: its database, queue prefix and Flyte, the local
/// RabbitMQ, the kit's API key; the ingress on `listen`, each worker's probes on a free port.
pub fn deployment(
    database_url: &str,
    queue_prefix: &str,
    flyte_endpoint: &str,
    listen: &str,
) -> Vars {
    [
        ("DATABASE_URL", database_url),
        ("AMQP_URL", &amqp_url()),
        ("FLYHOOK_LISTEN", listen),
        ("FLYHOOK_WORKER_LISTEN", "127.0.0.1:0"),
        ("FLYHOOK_QUEUE_PREFIX", queue_prefix),
        ("FLYTE_ENDPOINT", flyte_endpoint),
        ("WEBHOOK_API_KEY", API_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The settings a flyhook process started with `vars` would read.
pub fn settings(vars: &Vars) -> anyhow::Result<Settings> {
    Settings::load(|name| vars.get(name).cloned())
}

/// A TOML file for `FLYHOOK_CONFIG`, removed when dropped.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub fn write(toml: &str) -> std::io::Result<ConfigFile> {
        let path =
            std::env::temp_dir().join(format!("flyhook-testkit-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml)?;
        Ok(ConfigFile { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path, as a variable's value.
    pub fn var(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
