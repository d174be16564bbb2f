//! Structured logs to stdout, filtered by `RUST_LOG` (default `info`). `FLYHOOK_LOG_FORMAT=json`
//! writes one JSON object per line, with the fields of the enclosing spans (the request id on
//! the ingress, the dispatch and request ids on the worker) on every line.

use std::io::IsTerminal;

/// Installs the global subscriber; call once, from `main`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,lapin=warn".into());
    // Colours only for a terminal: escape codes in a file or a log collector are noise, and
    // styling each line cost 8.5 % of an accepted request's instructions (BENCHMARKS.md).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
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
