//! Prometheus metrics (prometheus-client, OpenMetrics text on /metrics). Names follow
//! kube-proxy's where the meaning is the same, with the `svclb_` prefix.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

/// Handles to every metric; clones share the values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// One full reconcile: plan plus data path programming (kube-proxy's
    /// `sync_proxy_rules_duration_seconds`).
    pub sync_duration: Histogram,
    /// Unix time of the last successful reconcile.
    pub last_sync: Gauge<f64, AtomicU64>,
    /// From the arrival of a change (or the object's own change time, when it
    /// carries one) to the end of the reconcile that applied it.
    pub programming_latency: Histogram,
    pub services: Gauge,
    pub frontends: Gauge,
    pub endpoints: Gauge,
    /// Reconciles whose data path programming failed.
    pub sync_errors: Counter,
    /// Objects (or fields) that could not be used, by `PlanError` kind, `decode` for
    /// objects the agent could not decode, or the manifest source's error kind.
    pub object_errors: Family<KindLabel, Counter>,
    /// Map updates and deletions written.
    pub map_writes: Counter,
    /// Flow and affinity entries removed because their backend left.
    pub flows_purged: Counter,
    /// Failed list or watch requests, by resource.
    pub watch_errors: Family<ResourceLabel, Counter>,
}

impl Metrics {
    pub fn new() -> (Self, Registry) {
        let m = Metrics {
            // 0.5 ms .. ~16 s, as kube-proxy's exponential buckets but starting lower:
            // an eBPF map sync is far quicker than iptables-restore.
            sync_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            last_sync: Gauge::default(),
            programming_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            services: Gauge::default(),
            frontends: Gauge::default(),
            endpoints: Gauge::default(),
            sync_errors: Counter::default(),
            object_errors: Family::default(),
            map_writes: Counter::default(),
            flows_purged: Counter::default(),
            watch_errors: Family::default(),
        };
        let mut r = Registry::default();
        // prometheus-client adds `_total` to counter names.
        r.register(
            "svclb_sync_proxy_rules_duration_seconds",
            "Duration of one full reconcile: plan and data path programming",
            m.sync_duration.clone(),
        );
        r.register(
            "svclb_sync_proxy_rules_last_timestamp_seconds",
            "Unix time of the last successful reconcile",
            m.last_sync.clone(),
        );
        r.register(
            "svclb_network_programming_duration_seconds",
            "From a change reaching the agent (or the object's change time) to the end of the reconcile that applied it",
            m.programming_latency.clone(),
        );
        r.register(
            "svclb_services",
            "Services with a data path",
            m.services.clone(),
        );
        r.register(
            "svclb_frontends",
            "Frontends (address, port, protocol) programmed",
            m.frontends.clone(),
        );
        r.register(
            "svclb_endpoints",
            "Endpoints programmed, summed over backend sets",
            m.endpoints.clone(),
        );
        r.register(
            "svclb_sync_errors",
            "Reconciles whose data path programming failed",
            m.sync_errors.clone(),
        );
        r.register(
            "svclb_object_errors",
            "Objects or fields that could not be used, by kind of problem",
            m.object_errors.clone(),
        );
        r.register(
            "svclb_map_writes",
            "Map updates and deletions written",
            m.map_writes.clone(),
        );
        r.register(
            "svclb_flows_purged",
            "Flow and affinity entries removed because their backend left",
            m.flows_purged.clone(),
        );
        r.register(
            "svclb_watch_errors",
            "Failed list or watch requests, by resource",
            m.watch_errors.clone(),
        );
        (m, r)
    }

    pub fn object_error(&self, kind: &str) {
        self.object_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn watch_error(&self, resource: &str) {
        self.watch_errors
            .get_or_create(&ResourceLabel {
                resource: resource.to_string(),
            })
            .inc();
    }
}

/// The registry in OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric_under_its_name() {
        let (m, r) = Metrics::new();
        m.sync_duration.observe(0.002);
        m.services.set(3);
        m.object_error("invalid_port");
        m.watch_error("services");
        m.sync_errors.inc();
        let text = encode(&r);
        for line in [
            "svclb_sync_proxy_rules_duration_seconds_count 1",
            "svclb_services 3",
            "svclb_object_errors_total{kind=\"invalid_port\"} 1",
            "svclb_watch_errors_total{resource=\"services\"} 1",
            "svclb_sync_errors_total 1",
            "svclb_frontends 0",
            "svclb_endpoints 0",
            "svclb_map_writes_total 0",
            "svclb_network_programming_duration_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
