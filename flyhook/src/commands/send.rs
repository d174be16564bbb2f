//! `flyhook send`: a payload file signed as a configured source's provider would sign it, and
//! sent to `POST /hooks/{source}`: the quickest way to try a route.

use anyhow::Context;
use webhook_signatures::{Scheme, UnixMillis};

use super::dev::dev_env;
use crate::Settings;

#[derive(Debug, clap::Args)]
pub struct Send {
    /// The source, as named in the config file.
    #[arg(long)]
    source: String,
    /// The payload to send, byte for byte; except a Linear payload, which gets its
    /// `webhookTimestamp` set to now (as Linear stamps each delivery) and is written out again.
    file: std::path::PathBuf,
    /// The flyhook ingress.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// GitHub's `X-GitHub-Event` (github sources).
    #[arg(long, default_value = "push")]
    event: String,
    /// The provider's delivery id; a fresh one when absent. Deliveries are deduplicated by
    /// what the signature covers: the same file sent twice is the same dispatches, whatever
    /// the id, except for schemes that sign the id (standard-webhooks, hmac with `{id}`).
    #[arg(long)]
    delivery_id: Option<String>,
    #[arg(long, default_value = "application/json")]
    content_type: String,
}

impl Send {
    pub async fn run(self) -> anyhow::Result<()> {
        let delivery_id = self
            .delivery_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let settings = Settings::load_for_development(dev_env)?;
        let source = settings
            .ingress
            .sources
            .get(&self.source)
            .with_context(|| format!("no source {:?} in the configuration", self.source))?;
        let secret = source.secrets.first().context("the source has no secret")?;
        let body = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        anyhow::ensure!(
            source.scheme != Scheme::Linear
                || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                    .is_ok(),
            "a Linear payload is a JSON object (Linear signs the time it was sent inside it)"
        );
        let signed = source
            .scheme
            .sign(secret, &body, UnixMillis::now(), &delivery_id);
        let mut request = reqwest::Client::new()
            .post(format!(
                "{}/hooks/{}",
                self.url.trim_end_matches('/'),
                source.name
            ))
            .header("Content-Type", &self.content_type);
        for (name, value) in signed.headers {
            request = request.header(name, value);
        }
        if source.scheme == Scheme::GitHub {
            request = request.header("X-GitHub-Event", &self.event);
        }
        let response = request
            .body(signed.body.into_owned())
            .send()
            .await
            .context("sending")?;
        let status = response.status();
        println!(
            "HTTP {status}\n{}",
            response.text().await.unwrap_or_default()
        );
        anyhow::ensure!(status.is_success(), "the delivery was refused");
        Ok(())
    }
}
