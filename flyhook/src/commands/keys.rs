//! `flyhook keys`: API keys managed at run time, stored in PostgreSQL as SHA-256 digests.

use clap::Subcommand;
use flyhook_contract::Deployment;
use flyhook_contract::keys::RateLimit;
use flyhook_contract::scopes::Scopes;
use flyhook_store::keys::KeyStore;
use secrecy::ExposeSecret;

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Make a key and print it: the only time it is shown.
    Create {
        /// A name for the key, shown in logs and the audit log; never reused.
        #[arg(long)]
        name: String,
        /// What it may start: `*`, `project`, `project/domain` or `project/domain/task`.
        /// Repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Requests per second (the ingress's default when absent).
        #[arg(long)]
        rate: Option<u32>,
        /// Requests allowed at once above the rate (the rate when absent).
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
    },
    /// List keys (never the keys themselves), revoked ones included.
    List,
    /// Revoke a key: every ingress refuses it within seconds.
    Revoke { name: String },
}

impl Keys {
    pub async fn run(self, deployment: &Deployment) -> anyhow::Result<()> {
        let store = KeyStore::new(super::connect(deployment).await?);
        match self {
            Keys::Create {
                name,
                scopes,
                rate,
                burst,
            } => {
                let scopes = Scopes::parse_all(&scopes)?;
                let rate = rate
                    .map(|per_second| RateLimit::new(per_second, burst))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--rate must be at least 1"))?;
                let (key, listing) = store.create(&name, &scopes, rate).await?;
                println!("{}", key.expose_secret());
                eprintln!(
                    "key {:?} created (scopes {}); it is shown only now, and only its SHA-256 is kept",
                    listing.name, scopes
                );
            }
            Keys::List => {
                println!(
                    "{:<24} {:<14} {:<32} {:>10} {:<25} REVOKED",
                    "NAME", "PREFIX", "SCOPES", "RATE/S", "CREATED"
                );
                for key in store.list().await? {
                    println!(
                        "{:<24} {:<14} {:<32} {:>10} {:<25} {}",
                        key.name,
                        key.prefix,
                        key.scopes.join(","),
                        key.rate_per_second
                            .map_or_else(|| "default".to_string(), |r| r.to_string()),
                        key.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        key.revoked_at.map_or_else(
                            || "-".to_string(),
                            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                    );
                }
            }
            Keys::Revoke { name } => {
                let key = store.revoke(&name).await?;
                eprintln!("key {:?} ({}) revoked", key.name, key.prefix);
            }
        }
        Ok(())
    }
}
