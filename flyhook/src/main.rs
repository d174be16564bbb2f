//! `flyhook`: one binary for every role; see the library's [`flyhook::Cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flyhook::Cli::parse().run().await
}
