//! `spec.externalIPs` and `status.loadBalancer.ingress[].ip` as frontends, with real TCP
//! from the external client (routed to those addresses through the node, as a router
//! in front of the cluster would). Needs root.

use std::{net::Ipv4Addr, time::Duration};

use svclb_tests::{
    agent::{frontend, has_frontend},
    in_mode,
    manifests::{self, ServicePort, SlicePort, Target},
    modes::Mode,
    sandbox::POD_HTTP_PORT,
    semantics::{as_load_balancer, with_external_ips},
    topology::{NODE_IP, pod_ip},
};

const LB_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 30);
const NODE_PORT: u16 = 30090;
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 60, 1);
const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 60, 2);
const SYNC: Duration = Duration::from_secs(10);

fn lb(external: &[Ipv4Addr], ingress: &[Ipv4Addr], pods: &[Ipv4Addr]) -> String {
    let svc = manifests::service(
        "lb",
        LB_CLUSTER_IP,
        Some("lb"),
        &[
            ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT))
                .with_node_port(NODE_PORT),
        ],
    );
    let http = SlicePort {
        name: "http",
        protocol: "TCP",
        port: POD_HTTP_PORT,
    };
    manifests::documents(&[
        as_load_balancer(&with_external_ips(&svc, external), ingress),
        manifests::endpoint_slice("lb", "lb-1", &[http], pods),
    ])
}

fn external_and_load_balancer_ips_answer_from_outside(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    // The client reaches the Service addresses through the node (its router).
    sb.client()
        .ip(&[
            "route",
            "add",
            "198.18.60.0/24",
            "via",
            &NODE_IP.to_string(),
        ])
        .unwrap();
    sb.manifests
        .write(
            "lb.yaml",
            &lb(&[EXTERNAL_IP], &[INGRESS_IP], &sb.backend_ips()),
        )
        .unwrap();
    // XDP on the external link as well, the fast path real NICs get.
    sb.topo.client_like_nic().unwrap();
    sb.start_agent(&m.args_with(&["--xdp-iface", "ext0"]))
        .unwrap();
    let dump = sb
        .agent()
        .wait_dump("lb frontends", SYNC, |d| {
            has_frontend(d, EXTERNAL_IP, 80, "TCP", 3) && has_frontend(d, INGRESS_IP, 80, "TCP", 3)
        })
        .unwrap();
    for (ip, port, kind) in [
        (EXTERNAL_IP, 80, "ExternalIP"),
        (INGRESS_IP, 80, "LoadBalancer"),
        (LB_CLUSTER_IP, 80, "ClusterIP"),
        (NODE_IP, NODE_PORT, "NodePort"),
    ] {
        let fe = frontend(&dump, ip, port, "TCP")
            .unwrap_or_else(|| panic!("no {ip}:{port} in {dump:#}"));
        assert_eq!(fe["kind"], kind, "{fe:#}");
    }

    for ip in [EXTERNAL_IP, INGRESS_IP] {
        let r = sb
            .probe(
                sb.client(),
                &["tcp", "--target", &format!("{ip}:80"), "--count", "60"],
            )
            .unwrap();
        eprintln!(
            "{ip}:80 from the external client: {} ok of {}, {:?}",
            r.ok, r.attempts, r.backends
        );
        assert_eq!(r.ok, 60, "{r:?}");
        let pods: Vec<&str> = r.backends.keys().map(String::as_str).collect();
        assert_eq!(pods, ["pod1", "pod2", "pod3"], "{r:?}");
        assert_eq!(
            r.ports.keys().copied().collect::<Vec<_>>(),
            [POD_HTTP_PORT],
            "{r:?}"
        );
    }

    // The addresses are frontends only while the Service lists them; the ClusterIP stays.
    sb.manifests
        .write("lb.yaml", &lb(&[], &[], &[pod_ip(1)]))
        .unwrap();
    sb.agent()
        .wait_dump("lb without external addresses", SYNC, |d| {
            frontend(d, EXTERNAL_IP, 80, "TCP").is_none()
                && frontend(d, INGRESS_IP, 80, "TCP").is_none()
                && has_frontend(d, LB_CLUSTER_IP, 80, "TCP", 1)
        })
        .unwrap();
    let r = sb
        .probe(
            sb.client(),
            &[
                "tcp",
                "--target",
                &format!("{INGRESS_IP}:80"),
                "--count",
                "2",
                "--timeout-ms",
                "300",
            ],
        )
        .unwrap();
    assert_eq!(r.ok, 0, "a withdrawn LoadBalancer IP still answers: {r:?}");
}

/// `spec.loadBalancerSourceRanges` added to a LoadBalancer Service.
fn with_source_ranges(service: &str, ranges: &[&str]) -> String {
    let mut list = String::from("  type: LoadBalancer\n  loadBalancerSourceRanges:\n");
    for r in ranges {
        list += &format!("  - \"{r}\"\n");
    }
    service.replacen("  type: LoadBalancer\n", &list, 1)
}

/// Connections from the external client: (answered, attempted).
fn from_client(
    sb: &svclb_tests::sandbox::Sandbox,
    ip: Ipv4Addr,
    port: u16,
    count: u32,
) -> (u64, u64) {
    let target = format!("{ip}:{port}");
    let r = sb
        .probe(
            sb.client(),
            &[
                "tcp",
                "--target",
                &target,
                "--count",
                &count.to_string(),
                "--timeout-ms",
                "300",
            ],
        )
        .unwrap();
    (r.ok, r.attempts)
}

/// `loadBalancerSourceRanges` lets only the listed sources reach the load-balancer IP;
/// the NodePort and the cluster IP are not filtered.
fn source_ranges_allow_listed_clients_only(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    sb.client()
        .ip(&[
            "route",
            "add",
            "198.18.60.0/24",
            "via",
            &NODE_IP.to_string(),
        ])
        .unwrap();
    let write = |sb: &svclb_tests::sandbox::Sandbox, ranges: &[&str]| {
        let doc = lb(&[], &[INGRESS_IP], &sb.backend_ips());
        sb.manifests
            .write("lb.yaml", &with_source_ranges(&doc, ranges))
            .unwrap();
    };
    // The external client is 198.18.100.2.
    write(&sb, &["198.18.100.0/24"]);
    sb.start_agent(m.agent_args()).unwrap();
    sb.agent()
        .wait_dump("lb frontend", SYNC, |d| {
            has_frontend(d, INGRESS_IP, 80, "TCP", 3)
        })
        .unwrap();
    assert_eq!(
        from_client(&sb, INGRESS_IP, 80, 20),
        (20, 20),
        "a client in range"
    );

    write(&sb, &["198.18.200.0/24", "198.19.0.0/16"]);
    // Wait for the change to land: the frontend stays, so poll the traffic (bounded).
    let deadline = std::time::Instant::now() + SYNC;
    while from_client(&sb, INGRESS_IP, 80, 1).0 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the out-of-range client is still answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        from_client(&sb, INGRESS_IP, 80, 5).0,
        0,
        "a client out of range"
    );
    assert_eq!(
        from_client(&sb, NODE_IP, NODE_PORT, 10),
        (10, 10),
        "the NodePort is not filtered"
    );
    let pod = sb
        .probe(
            sb.client_pod(),
            &[
                "tcp",
                "--target",
                &format!("{LB_CLUSTER_IP}:80"),
                "--count",
                "10",
            ],
        )
        .unwrap();
    assert_eq!(pod.ok, 10, "the cluster IP is not filtered: {pod:?}");
}

// Once per data-path mode (svclb_tests::in_mode): kube-proxy's iptables mode supports
// these scenarios too.

in_mode!(
    ebpf,
    svclb_tests::modes::Mode::Ebpf,
    [
        external_and_load_balancer_ips_answer_from_outside,
        source_ranges_allow_listed_clients_only
    ]
);
in_mode!(
    iptables,
    svclb_tests::modes::Mode::Iptables,
    [
        external_and_load_balancer_ips_answer_from_outside,
        source_ranges_allow_listed_clients_only
    ]
);
