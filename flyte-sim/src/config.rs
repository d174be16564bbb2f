//! What a stand-in is started with. Kept apart from the server so the CLI (`main.rs`), tests
//! and `flyhook dev` can describe a stand-in without touching anything that serves HTTP.

use std::time::Duration;

use crate::catalogue::Catalogue;
use crate::faults::Fault;

/// What `CreateRun` does with a run name that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDuplicate {
    /// Answer `already_exists`, as hosted Flyte does.
    AlreadyExists,
    /// Answer with the existing run, as open-source Flyte does.
    ReturnExisting,
}

/// Which credentials the stand-in demands.
#[derive(Debug, Clone, Default)]
pub enum SimAuth {
    #[default]
    None,
    /// A fixed bearer token.
    Bearer(String),
    /// OAuth2 client credentials; issued tokens live for `token_ttl`.
    ClientCredentials {
        client_id: String,
        client_secret: String,
        token_ttl: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `127.0.0.1:8090`; port 0 picks a free one.
    pub listen: String,
    pub catalogue: Catalogue,
    pub queued_for: Duration,
    pub running_for: Duration,
    pub on_duplicate: OnDuplicate,
    pub faults: Vec<Fault>,
    pub auth: SimAuth,
    pub workers: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:8090".into(),
            catalogue: Catalogue::built_in(),
            queued_for: Duration::from_millis(500),
            running_for: Duration::from_secs(2),
            on_duplicate: OnDuplicate::AlreadyExists,
            faults: Vec::new(),
            auth: SimAuth::None,
            workers: 2,
        }
    }
}
