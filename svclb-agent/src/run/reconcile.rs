//! One reconcile: objects → plan → data path, with its logs, metrics and health.
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;
use tracing::{debug, error, info};

use crate::{
    dataplane::Dataplane,
    health::Health,
    health_check::HealthCheckServers,
    metrics::Metrics,
    model::SetKey,
    plan::{
        Lookup, Planner, Touched,
        desired::{NodeInfo, PlanOptions},
        errors::PlanError,
        health_check,
    },
    source::{Objects, kube::node::NodeView},
};

/// Where NodePort addresses come from.
#[derive(Clone, Debug)]
pub enum NodeAddresses {
    /// `--node-ip`: always these.
    Fixed(Vec<Ipv4Addr>),
    /// The Node object's, else these interface addresses.
    NodeOr(Vec<Ipv4Addr>),
}

pub struct Reconciler<D> {
    pub dp: D,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub node_name: Option<String>,
    pub addresses: NodeAddresses,
    /// Keeps each Service's plan between reconciles (see [`Planner`]).
    planner: Planner,
    /// The last plan's errors and ignored Services: only new ones are logged, so a
    /// level-based reconcile does not repeat every complaint on every change.
    errors: BTreeSet<PlanError>,
    ignored: BTreeSet<(String, &'static str)>,
    /// Changes not yet in the data path (a failed sync keeps them for the retry).
    noticed: Option<Instant>,
    triggered: Vec<Timestamp>,
    failed: bool,
    /// Sets changed since the last successful sync (None: unknown, compare all).
    unsynced: Option<BTreeSet<SetKey>>,
    /// The `healthCheckNodePort` listeners, when the agent serves them.
    health_checks: Option<HealthCheckServers>,
}

impl<D: Dataplane> Reconciler<D> {
    pub fn new(
        dp: D,
        metrics: Metrics,
        health: Arc<Health>,
        node_name: Option<String>,
        addresses: NodeAddresses,
        opts: PlanOptions,
    ) -> Self {
        Reconciler {
            dp,
            metrics,
            health,
            node_name,
            addresses,
            planner: Planner::new(opts),
            errors: BTreeSet::new(),
            ignored: BTreeSet::new(),
            noticed: None,
            triggered: Vec::new(),
            failed: false,
            unsynced: None,
            health_checks: None,
        }
    }

    /// Serve the Services' `healthCheckNodePort`s with `servers` from the next sync on.
    pub fn serve_health_checks(&mut self, servers: HealthCheckServers) {
        self.health_checks = Some(servers);
    }

    /// After a successful sync (the data path already has what a 200 announces).
    fn update_health_checks(&mut self) {
        let Some(servers) = &mut self.health_checks else {
            return;
        };
        if !self.planner.take_health_changed() {
            return;
        }
        let (by_port, losers) = health_check::by_port(self.planner.health_checks());
        for l in losers {
            error!(
                service = %format!("Service {}/{}", l.namespace, l.name),
                field = "spec.healthCheckNodePort",
                port = l.port,
                "port already served for another Service; not served"
            );
        }
        servers.update(by_port);
    }

    /// Whether the last reconcile failed (the data path may lag the objects).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Notes changes that the next reconcile covers.
    pub fn queue(&mut self, noticed: Option<Instant>, triggered: Vec<Timestamp>) {
        if let Some(at) = noticed {
            self.health.queued(at);
            self.noticed = Some(self.noticed.map_or(at, |n| n.min(at)));
        }
        self.triggered.extend(triggered);
    }

    /// Plans `objects` and syncs the data path; false when programming failed.
    pub fn reconcile(&mut self, objects: &Objects, node: Option<&NodeView>) -> bool {
        self.reconcile_touched(objects, node, None)
    }

    /// Like [`Reconciler::reconcile`]; when `touched` says which objects changed, only
    /// those are planned again.
    pub fn reconcile_touched(
        &mut self,
        objects: &Objects,
        node: Option<&NodeView>,
        touched: Option<(&dyn Lookup, &Touched)>,
    ) -> bool {
        let started = Instant::now();
        self.health.set_node_eligible(node.map(|n| n.eligible));
        let node = NodeInfo {
            name: self.node_name.clone(),
            addresses: match &self.addresses {
                NodeAddresses::Fixed(a) => a.clone(),
                NodeAddresses::NodeOr(fallback) => node
                    .map(|n| &n.addresses)
                    .filter(|a| !a.is_empty())
                    .unwrap_or(fallback)
                    .clone(),
            },
        };
        let update = touched
            .and_then(|(lookup, keys)| self.planner.update_touched(lookup, &node, keys))
            .unwrap_or_else(|| self.planner.update(objects, &node));
        let planned = started.elapsed();
        debug!(
            replanned = update.replanned,
            removed = update.removed,
            "planned"
        );
        self.report(self.planner.errors(), self.planner.ignored());
        // A failed sync's changes are owed to the next one.
        self.unsynced = match (self.unsynced.take(), self.planner.take_changed()) {
            (Some(mut owed), Some(new)) => {
                owed.extend(new);
                Some(owed)
            }
            _ => None,
        };
        match self
            .dp
            .sync_changed(self.planner.state(), self.unsynced.as_ref())
        {
            Ok(r) => {
                self.unsynced = Some(BTreeSet::new());
                self.update_health_checks();
                let elapsed = started.elapsed();
                self.metrics.sync_duration.observe(elapsed.as_secs_f64());
                Self::observe_state(&self.metrics, &self.planner);
                let sets = self.planner.state().sets.len();
                let (_, frontends, endpoints) = self.planner.counts();
                self.metrics.map_writes.inc_by(r.writes as u64);
                self.metrics.flows_purged.inc_by(r.purged as u64);
                let unix = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                self.metrics.last_sync.set(unix.as_secs_f64());
                self.observe_latency();
                self.health.updated();
                self.failed = false;
                if r.writes > 0 || r.purged > 0 {
                    info!(
                        sets,
                        frontends,
                        endpoints,
                        writes = r.writes,
                        purged = r.purged,
                        plan_us = planned.as_micros() as u64,
                        map_us = r.duration.as_micros() as u64,
                        total_us = elapsed.as_micros() as u64,
                        "synced"
                    );
                } else {
                    info!(frontends, "synced (no change)");
                }
                true
            }
            Err(e) => {
                self.metrics.sync_errors.inc();
                error!(error = format!("{e:#}"), "sync failed; retrying");
                self.failed = true;
                false
            }
        }
    }

    fn report(&mut self, errors: Vec<PlanError>, ignored: Vec<(String, &'static str)>) {
        let errors: BTreeSet<PlanError> = errors.into_iter().collect();
        for e in errors.difference(&self.errors) {
            error!("{e}");
            self.metrics.object_error(e.kind.metric_label());
        }
        self.errors = errors;
        let ignored: BTreeSet<_> = ignored.into_iter().collect();
        for (object, why) in ignored.difference(&self.ignored) {
            info!(object = %object, "ignored: {why}");
        }
        self.ignored = ignored;
    }

    fn observe_state(metrics: &Metrics, planner: &Planner) {
        let (services, frontends, endpoints) = planner.counts();
        metrics.services.set(services as i64);
        metrics.frontends.set(frontends as i64);
        metrics.endpoints.set(endpoints as i64);
    }

    /// Change → data path latency: from each changed object's own change time where
    /// it says, else from the arrival of the oldest change covered.
    fn observe_latency(&mut self) {
        let now = Timestamp::now();
        let triggered = std::mem::take(&mut self.triggered);
        let noticed = self.noticed.take();
        if !triggered.is_empty() {
            for t in triggered {
                let d = Duration::try_from(now.duration_since(t)).unwrap_or_default();
                self.metrics.programming_latency.observe(d.as_secs_f64());
            }
        } else if let Some(at) = noticed {
            self.metrics
                .programming_latency
                .observe(at.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Service, ServicePort, ServiceSpec},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;
    use crate::{dataplane::SyncReport, metrics, model::DesiredState};

    /// Records what it was asked to hold; fails while `fail` is set.
    #[derive(Default)]
    struct FakeDataplane {
        held: DesiredState,
        syncs: usize,
        fail: bool,
    }

    impl Dataplane for FakeDataplane {
        fn mode(&self) -> &'static str {
            "fake"
        }
        fn sync(&mut self, desired: &DesiredState) -> anyhow::Result<SyncReport> {
            self.syncs += 1;
            if self.fail {
                anyhow::bail!("injected failure");
            }
            let writes = usize::from(&self.held != desired);
            self.held = desired.clone();
            Ok(SyncReport {
                writes,
                ..Default::default()
            })
        }
    }

    fn svc(name: &str, ip: &str, port: i32) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(vec![ServicePort {
                    port,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn reconciler() -> (
        Reconciler<FakeDataplane>,
        prometheus_client::registry::Registry,
    ) {
        let (m, r) = Metrics::new();
        let health = Arc::new(Health::new(Duration::from_secs(60), None));
        let rec = Reconciler::new(
            FakeDataplane::default(),
            m,
            health,
            None,
            NodeAddresses::NodeOr(vec![Ipv4Addr::new(198, 18, 100, 1)]),
            PlanOptions::default(),
        );
        (rec, r)
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn gauges_follow_the_state_and_plan_errors_count_once() {
        let (mut rec, reg) = reconciler();
        let objects = Objects {
            services: vec![svc("a", "198.18.0.1", 80), svc("bad", "198.18.0.2", 0)],
            slices: vec![],
        };
        assert!(rec.reconcile(&objects, None));
        assert!(rec.reconcile(&objects, None), "same objects again");
        let text = metrics::encode(&reg);
        assert!(has(&text, "svclb_services 1"), "{text}");
        assert!(has(&text, "svclb_frontends 1"), "{text}");
        assert!(
            has(&text, "svclb_object_errors_total{kind=\"invalid_port\"} 1"),
            "{text}"
        );
        assert!(has(&text, "svclb_map_writes_total 1"), "{text}");
        assert!(
            has(&text, "svclb_sync_proxy_rules_duration_seconds_count 2"),
            "{text}"
        );
        assert!(rec.health.healthz().0);
    }

    #[test]
    fn a_failed_sync_is_counted_and_keeps_its_changes_for_the_retry() {
        let (mut rec, reg) = reconciler();
        let objects = Objects {
            services: vec![svc("a", "198.18.0.1", 80)],
            slices: vec![],
        };
        rec.dp.fail = true;
        rec.queue(Some(Instant::now()), vec![]);
        assert!(!rec.reconcile(&objects, None));
        assert!(rec.failed());
        assert!(!rec.health.healthz().0, "never synced");
        rec.dp.fail = false;
        assert!(rec.reconcile(&objects, None));
        assert!(!rec.failed());
        let text = metrics::encode(&reg);
        assert!(has(&text, "svclb_sync_errors_total 1"), "{text}");
        // The retry measured the change that the failed sync could not apply.
        assert!(
            has(&text, "svclb_network_programming_duration_seconds_count 1"),
            "{text}"
        );
        assert_eq!(rec.dp.held.frontend_count(), 1);
    }

    #[test]
    fn node_addresses_answer_nodeport_unless_fixed_and_fall_back_to_interfaces() {
        let (mut rec, _) = reconciler();
        let mut s = svc("np", "198.18.0.3", 80);
        let spec = s.spec.as_mut().unwrap();
        spec.type_ = Some("NodePort".into());
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
        let objects = Objects {
            services: vec![s],
            slices: vec![],
        };
        let addrs = |rec: &Reconciler<FakeDataplane>| -> BTreeSet<Ipv4Addr> {
            rec.dp
                .held
                .sets
                .values()
                .flat_map(|set| set.frontends.keys())
                .filter(|f| f.port == 30080)
                .map(|f| f.addr)
                .collect()
        };
        let node = NodeView {
            addresses: vec![Ipv4Addr::new(198, 18, 100, 7)],
            eligible: true,
        };
        rec.reconcile(&objects, Some(&node));
        assert_eq!(addrs(&rec), [Ipv4Addr::new(198, 18, 100, 7)].into());
        rec.reconcile(&objects, None);
        assert_eq!(addrs(&rec), [Ipv4Addr::new(198, 18, 100, 1)].into());
        rec.addresses = NodeAddresses::Fixed(vec![Ipv4Addr::new(198, 18, 100, 9)]);
        rec.reconcile(&objects, Some(&node));
        assert_eq!(addrs(&rec), [Ipv4Addr::new(198, 18, 100, 9)].into());
    }
}
