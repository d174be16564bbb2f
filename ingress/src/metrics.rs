//! The ingress's Prometheus figures, in its own registry.

use flyhook_contract::metrics::{FlyteCallMetrics, latency_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct IngressMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub publish_confirm: Histogram,
    /// Refused requests by reason: auth, scope, signature, rate, validation, capacity.
    pub rejections: Family<ReasonLabels, Counter>,
    pub audit_written: Counter,
    pub audit_dropped: Counter,
    pub api_keys: Gauge,
    pub flyte: FlyteCallMetrics,
}

impl IngressMetrics {
    pub fn register(registry: &mut Registry) -> IngressMetrics {
        let metrics = IngressMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            publish_confirm: latency_histogram(),
            rejections: Family::default(),
            audit_written: Counter::default(),
            audit_dropped: Counter::default(),
            api_keys: Gauge::default(),
            flyte: FlyteCallMetrics::register(registry),
        };
        registry.register(
            "flyhook_http_requests",
            "HTTP requests answered, by route pattern, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "flyhook_http_request_duration_seconds",
            "Time from request to response, by route pattern",
            metrics.request_duration.clone(),
        );
        registry.register(
            "flyhook_publish_confirm_seconds",
            "Time from publishing a dispatch to RabbitMQ's confirm",
            metrics.publish_confirm.clone(),
        );
        registry.register(
            "flyhook_rejections",
            "Requests refused, by reason (auth, scope, signature, rate, validation, capacity, dependency)",
            metrics.rejections.clone(),
        );
        registry.register(
            "flyhook_audit_entries_written",
            "Audit log entries written to PostgreSQL",
            metrics.audit_written.clone(),
        );
        registry.register(
            "flyhook_audit_entries_dropped",
            "Audit log entries dropped because the buffer was full (PostgreSQL away too long)",
            metrics.audit_dropped.clone(),
        );
        registry.register(
            "flyhook_api_keys",
            "API keys this ingress accepts (configured and managed)",
            metrics.api_keys.clone(),
        );
        metrics
    }
}
