//! `flyhook probe <url>`: a container health check that needs no curl in the image.

use std::time::Duration;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Probe {
    url: String,
}

impl Probe {
    /// Succeeds if the URL answers 2xx within 2 s.
    pub async fn run(self) -> anyhow::Result<()> {
        let url = self.url;
        let status = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .status();
        anyhow::ensure!(status.is_success(), "GET {url}: {status}");
        Ok(())
    }
}
