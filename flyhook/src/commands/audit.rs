//! `flyhook audit`: the audit log, newest first, with the filters of `GET /audit`.

use flyhook_contract::Deployment;
use flyhook_store::audit::{AuditFilter, AuditStore};

#[derive(Debug, clap::Args)]
pub struct Audit {
    /// An API key's name, or `source:<name>`.
    #[arg(long)]
    principal: Option<String>,
    /// A route pattern, e.g. `/run-task/{project}/{domain}/{name}/{version}`.
    #[arg(long)]
    route: Option<String>,
    /// `accepted`, `ok`, or an error code such as `out_of_scope`.
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long)]
    dispatch_id: Option<String>,
    #[arg(long)]
    request_id: Option<String>,
    /// Entries at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Entries before this RFC 3339 time.
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

impl Audit {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            principal: self.principal.clone(),
            route: self.route.clone(),
            outcome: self.outcome.clone(),
            dispatch_id: self.dispatch_id.clone(),
            request_id: self.request_id.clone(),
            since: self.since,
            until: self.until,
            before_id: None,
        }
    }

    pub async fn run(self, deployment: &Deployment) -> anyhow::Result<()> {
        let store = AuditStore::new(super::connect(deployment).await?);
        let entries = store
            .list(&self.filter(), self.limit.clamp(1, 10_000))
            .await?;
        for entry in entries {
            if self.json {
                println!("{}", serde_json::to_string(&entry)?);
            } else {
                println!(
                    "{} {:>3} {:<24} {} {} {} {} {}",
                    entry
                        .at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    entry.status,
                    entry.outcome,
                    entry.method,
                    entry.path,
                    entry.principal.as_deref().unwrap_or("-"),
                    entry.request_id,
                    entry.dispatch_ids.join(","),
                );
            }
        }
        Ok(())
    }
}
