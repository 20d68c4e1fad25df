//! What the agent takes from its own Node object.
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

/// Taint the cluster autoscaler puts on a node it is about to delete; kube-proxy's
/// /healthz then fails so load balancers drain the node first.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// IPv4 InternalIP and ExternalIP addresses, sorted: where NodePorts answer.
    pub addresses: Vec<Ipv4Addr>,
    /// Not being deleted and not tainted for deletion (kube-proxy's "nodeEligible").
    pub eligible: bool,
}

impl NodeView {
    pub fn of(node: &Node) -> Self {
        let mut addresses: Vec<Ipv4Addr> = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        addresses.sort();
        addresses.dedup();
        let deleting = node.metadata.deletion_timestamp.is_some();
        let tainted = node
            .spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .any(|t| t.key == TO_BE_DELETED_TAINT);
        NodeView {
            addresses,
            eligible: !deleting && !tainted,
        }
    }
}
