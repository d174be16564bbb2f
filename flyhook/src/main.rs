//! `flyhook`: one binary for every role; see [`flyhook::run`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flyhook::run().await
}
