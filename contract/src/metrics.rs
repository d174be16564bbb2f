//! Prometheus exposition: the ingress and the worker each own a registry (so two of them in one
//! process, as in tests, do not mix their figures) and serve it the same way.

use std::time::Duration;

use flyte_client::{CallObserver, Code};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The OpenMetrics text format, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets from 0.5 ms to about 33 s: request, confirm and Flyte latencies all fit.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The registry in text form.
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = encode(&mut text, registry);
    text
}

/// Flyte calls by RPC: latency, and failures by Connect code.
#[derive(Debug, Clone)]
pub struct FlyteCallMetrics {
    duration: Family<RpcLabels, Histogram>,
    errors: Family<RpcErrorLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcErrorLabels {
    rpc: &'static str,
    code: &'static str,
}

impl FlyteCallMetrics {
    pub fn register(registry: &mut Registry) -> FlyteCallMetrics {
        let metrics = FlyteCallMetrics {
            duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        };
        registry.register(
            "flyhook_flyte_request_duration_seconds",
            "Flyte RPC latency, by RPC",
            metrics.duration.clone(),
        );
        registry.register(
            "flyhook_flyte_errors",
            "Failed Flyte RPCs, by RPC and Connect code",
            metrics.errors.clone(),
        );
        metrics
    }
}

impl CallObserver for FlyteCallMetrics {
    fn observe(&self, rpc: &'static str, elapsed: Duration, error: Option<Code>) {
        self.duration
            .get_or_create(&RpcLabels { rpc })
            .observe(elapsed.as_secs_f64());
        if let Some(code) = error {
            self.errors
                .get_or_create(&RpcErrorLabels {
                    rpc,
                    code: code.as_str(),
                })
                .inc();
        }
    }
}
