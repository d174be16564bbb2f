//! A database of its own for a fault-suite scenario or a benchmark run (an e2e test gets its
//! own from `#[sqlx::test]`): created, migrated with flyhook's migrations, dropped afterwards.

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::MigrateDatabase;

use crate::services::postgres_url;

#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    /// `postgres://…` of the database.
    pub url: String,
}

impl Database {
    /// A fresh database called `name` (a [`crate::services::unique`] one, `-` made `_`), with every migration
    /// applied.
    pub async fn create(name: &str) -> anyhow::Result<Database> {
        let name = name.replace('-', "_");
        let url = postgres_url(&name);
        sqlx::Postgres::create_database(&url)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let pool = PgPool::connect(&url).await?;
        flyhook_store::MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("migrating database {name}"))?;
        pool.close().await;
        Ok(Database { name, url })
    }

    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        PgPool::connect(&self.url)
            .await
            .with_context(|| format!("connecting to database {}", self.name))
    }

    /// Drops the database, forced: a process that has not quite exited must not keep it behind.
    pub async fn remove(self) -> anyhow::Result<()> {
        sqlx::Postgres::force_drop_database(&self.url)
            .await
            .with_context(|| format!("dropping database {}", self.name))
    }
}
