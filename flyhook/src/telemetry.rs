//! Structured logs to stdout, filtered by `RUST_LOG` (default `info`). `FLYHOOK_LOG_FORMAT=json`
//! writes one JSON object per line, with the fields of the enclosing spans (the request id on
//! the ingress, the dispatch and request ids on the worker) on every line.

/// Installs the global subscriber; call once, from `main`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,lapin=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("FLYHOOK_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }
}
