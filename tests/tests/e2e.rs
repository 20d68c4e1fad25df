//! End to end: the real agent in a "node" namespace, real TCP and UDP traffic from pod
//! and external-client namespaces (see svclb_tests::topology). Needs root.

use std::time::Duration;

use svclb_tests::{
    sandbox::{POD_HTTP_PORT, POD_UDP_PORT, Sandbox},
    topology::{CLIENT_IP, pod_ip},
};

/// The harness itself, no agent: pods reach each other through the node, the client
/// reaches pods, and nothing answers on an address that has no route.
#[test]
fn topology_routes_without_agent() {
    let sb = Sandbox::new().unwrap();
    for pod in sb.backend_pods() {
        let target = format!("{}:{POD_HTTP_PORT}", pod.ip());
        let from_pod = sb
            .probe(
                sb.client_pod(),
                &["tcp", "--target", &target, "--count", "5"],
            )
            .unwrap();
        assert_eq!(from_pod.ok, 5, "{from_pod:?}");
        assert_eq!(from_pod.backends.keys().collect::<Vec<_>>(), [&pod.name()]);
        assert_eq!(from_pod.ports.keys().collect::<Vec<_>>(), [&POD_HTTP_PORT]);

        let from_client = sb
            .probe(sb.client(), &["tcp", "--target", &target, "--count", "5"])
            .unwrap();
        assert_eq!(from_client.ok, 5, "{from_client:?}");

        let udp = format!("{}:{POD_UDP_PORT}", pod.ip());
        let udp = sb
            .probe(sb.client(), &["udp", "--target", &udp, "--count", "5"])
            .unwrap();
        assert_eq!(udp.backends.get(&pod.name()), Some(&5), "{udp:?}");
    }
    // Pod 1 sees the client's real address (no NAT in the topology itself).
    assert_ne!(pod_ip(1), CLIENT_IP);
    // A ClusterIP without an agent: the node has no route, so it fails fast.
    let miss = sb
        .probe(
            sb.client_pod(),
            &["tcp", "--target", "198.18.0.10:80", "--timeout-ms", "2000"],
        )
        .unwrap();
    assert_eq!(miss.ok, 0, "{miss:?}");
    assert!(miss.failures.contains_key("unreachable"), "{miss:?}");
    let _ = Duration::ZERO;
}
