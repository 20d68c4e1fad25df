//! Host-scope frontends: what only the node's own sockets look up (eBPF mode).
use super::*;

use super::nodeport_web as web;

const KEY: &str = "default/web:http/TCP";
const EXT: &str = "default/web:http/TCP@ext";
const NODE: &str = "default/web:http/TCP@node";

fn ebpf(localhost: bool) -> PlanOptions {
    PlanOptions {
        host_scope: true,
        localhost_node_ports: localhost,
        ..PlanOptions::default()
    }
}

fn run_with(yaml: &str, opts: &PlanOptions) -> Plan {
    let p = plan(&objects(yaml), &node(), opts);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    p
}

#[test]
fn localhost_node_port_joins_the_cluster_wide_set() {
    let p = run_with(&web(""), &ebpf(true));
    assert_eq!(keys(&p), [KEY]);
    assert_eq!(
        frontends(set(&p, KEY)),
        [
            "NodePort 127.0.0.1:30080/TCP (node-local)",
            "ClusterIP 198.18.0.10:80/TCP",
            "NodePort 198.18.100.1:30080/TCP"
        ]
    );
    // Off: no 127.0.0.1 frontend; without host scope (iptables, IPVS): none at all.
    for opts in [ebpf(false), PlanOptions::default()] {
        let p = run_with(&web(""), &opts);
        assert!(
            set(&p, KEY).frontends.keys().all(|f| !f.is_host()),
            "{:?}",
            frontends(set(&p, KEY))
        );
    }
}

#[test]
fn external_policy_local_gives_node_local_clients_every_endpoint() {
    let p = run_with(&web("  externalTrafficPolicy: Local"), &ebpf(true));
    assert_eq!(keys(&p), [KEY, EXT]);
    // Packets from outside: local endpoints only. The node's own sockets: all of them,
    // through the internal set (kube-proxy's src-type LOCAL short-circuit).
    assert_eq!(frontends(set(&p, EXT)), ["NodePort 198.18.100.1:30080/TCP"]);
    assert_eq!(backends(set(&p, EXT)), ["198.19.1.2:8080 local"]);
    let internal = set(&p, KEY);
    assert_eq!(
        frontends(internal),
        [
            "NodePort 127.0.0.1:30080/TCP (node-local)",
            "ClusterIP 198.18.0.10:80/TCP",
            "NodePort 198.18.100.1:30080/TCP (node-local)"
        ]
    );
    assert_eq!(
        backends(internal),
        ["198.19.1.2:8080 local", "198.19.2.2:8080"]
    );
}

#[test]
fn internal_policy_local_sends_localhost_node_ports_to_the_external_set() {
    let p = run_with(&web("  internalTrafficPolicy: Local"), &ebpf(true));
    assert_eq!(keys(&p), [KEY, EXT]);
    assert_eq!(
        frontends(set(&p, EXT)),
        [
            "NodePort 127.0.0.1:30080/TCP (node-local)",
            "NodePort 198.18.100.1:30080/TCP"
        ]
    );
    assert_eq!(frontends(set(&p, KEY)), ["ClusterIP 198.18.0.10:80/TCP"]);
}

#[test]
fn both_policies_local_get_a_node_local_set_of_every_endpoint() {
    let p = run_with(
        &web("  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local"),
        &ebpf(true),
    );
    assert_eq!(keys(&p), [KEY, NODE]);
    let s = set(&p, NODE);
    assert_eq!(
        frontends(s),
        [
            "NodePort 127.0.0.1:30080/TCP (node-local)",
            "NodePort 198.18.100.1:30080/TCP (node-local)"
        ]
    );
    assert_eq!(backends(s), ["198.19.1.2:8080 local", "198.19.2.2:8080"]);
    assert!(!s.local_policy);
    // Without host scope that set does not exist.
    let p = run_with(
        &web("  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local"),
        &PlanOptions::default(),
    );
    assert_eq!(keys(&p), [KEY]);
}

#[test]
fn cluster_ip_only_services_get_no_host_frontends() {
    let yaml = web("")
        .replace("  type: NodePort\n", "")
        .replace(", nodePort: 30080", "");
    let p = run_with(&yaml, &ebpf(true));
    assert_eq!(frontends(set(&p, KEY)), ["ClusterIP 198.18.0.10:80/TCP"]);
}
