//! Service-value flags that depend on the frontend's kind as well as on its set.
use svclb_common::{SVC_F_NO_LOCAL_DROP, SVC_F_NODE_DENIED, SVC_F_SRC_RANGES};

use crate::model::{BackendSet, FrontendKind};

/// `SVC_F_SRC_RANGES` on LoadBalancer frontends of a set with source ranges
/// (kube-proxy applies them to load-balancer IPs only), with `SVC_F_NODE_DENIED` when
/// they admit no node address; `SVC_F_NO_LOCAL_DROP` on every frontend of a
/// Local-policy set that has no local endpoint.
pub fn extra(set: &BackendSet, kind: FrontendKind) -> u16 {
    let mut flags = 0;
    if kind == FrontendKind::LoadBalancer && set.source_ranges.is_some() {
        flags |= SVC_F_SRC_RANGES;
        if set.node_denied {
            flags |= SVC_F_NODE_DENIED;
        }
    }
    if set.no_local_drop {
        flags |= SVC_F_NO_LOCAL_DROP;
    }
    flags
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ranges_only_on_load_balancer_frontends() {
        let set = BackendSet {
            source_ranges: Some(vec![(Ipv4Addr::new(198, 18, 0, 0), 16)]),
            ..Default::default()
        };
        assert_eq!(extra(&set, FrontendKind::LoadBalancer), SVC_F_SRC_RANGES);
        for kind in [
            FrontendKind::ClusterIp,
            FrontendKind::NodePort,
            FrontendKind::ExternalIp,
        ] {
            assert_eq!(extra(&set, kind), 0, "{kind:?}");
        }
        // An empty allow-list still restricts (to nobody).
        let closed = BackendSet {
            source_ranges: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(extra(&closed, FrontendKind::LoadBalancer), SVC_F_SRC_RANGES);
        assert_eq!(extra(&BackendSet::default(), FrontendKind::LoadBalancer), 0);
    }

    #[test]
    fn node_denied_only_with_source_ranges_on_load_balancer_frontends() {
        let set = BackendSet {
            source_ranges: Some(vec![(Ipv4Addr::new(198, 18, 150, 0), 24)]),
            node_denied: true,
            ..Default::default()
        };
        assert_eq!(
            extra(&set, FrontendKind::LoadBalancer),
            SVC_F_SRC_RANGES | SVC_F_NODE_DENIED
        );
        assert_eq!(extra(&set, FrontendKind::NodePort), 0);
    }

    #[test]
    fn no_local_drop_on_every_kind() {
        let set = BackendSet {
            no_local_drop: true,
            ..Default::default()
        };
        assert_eq!(extra(&set, FrontendKind::NodePort), SVC_F_NO_LOCAL_DROP);
        assert_eq!(extra(&set, FrontendKind::ClusterIp), SVC_F_NO_LOCAL_DROP);
    }
}
