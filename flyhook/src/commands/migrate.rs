//! `flyhook migrate`: the database created if needed, and the schema's migrations applied.

use anyhow::Context;
use flyhook_contract::Deployment;
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;

/// Creates the database if needed and applies the migrations.
pub async fn run(deployment: &Deployment) -> anyhow::Result<()> {
    let url = deployment.database_url.expose_secret();
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("reaching PostgreSQL")?
    {
        sqlx::Postgres::create_database(url)
            .await
            .context("creating the database")?;
        tracing::info!("database created");
    }
    let pool = sqlx::PgPool::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    flyhook_store::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}
