//! `spec.healthCheckNodePort`: for a LoadBalancer Service with externalTrafficPolicy
//! Local, every node answers HTTP on that port with how many ready endpoints of the
//! Service run on it, so the cloud load balancer only sends to nodes that have one
//! (the others drop such traffic). This is what the planner hands the server
//! (`crate::health_check`).
use std::collections::{BTreeMap, btree_map::Entry};

/// One Service's health check on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// Ready endpoints on this node, summed over the Service's ports (as kube-proxy
    /// counts them). Terminating ones do not count: the load balancer should drain.
    pub local_endpoints: usize,
}

/// The checks to serve, by port. Two Services on one port (possible with manifests
/// only; the apiserver allocates distinct ports) are a conflict: the first by
/// `namespace/name` keeps it, the others are returned as losers.
pub fn by_port<'a>(
    checks: impl IntoIterator<Item = &'a HealthCheck>,
) -> (BTreeMap<u16, HealthCheck>, Vec<&'a HealthCheck>) {
    let mut sorted: Vec<&HealthCheck> = checks.into_iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut out = BTreeMap::new();
    let mut losers = Vec::new();
    for c in sorted {
        match out.entry(c.port) {
            Entry::Occupied(_) => losers.push(c),
            Entry::Vacant(v) => {
                v.insert(c.clone());
            }
        }
    }
    (out, losers)
}
