//! Structured logs to stdout, filtered by `RUST_LOG` (default `info`).

/// Installs the global subscriber; call once, from `main`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,lapin=warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
