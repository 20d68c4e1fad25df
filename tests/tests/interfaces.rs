//! Interfaces that appear after the agent started (a new pod's veth) get the TC
//! program when `--iface` selects them by pattern; a link deleted and created again
//! under the same name gets it again.
use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use svclb_tests::{
    agent::has_frontend,
    manifests::{self, ServicePort, SlicePort, Target},
    sandbox::{POD_HTTP_PORT, Sandbox},
    topology::pod_node_if,
};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn web(pods: &[Ipv4Addr]) -> String {
    let http = SlicePort {
        name: "http",
        protocol: "TCP",
        port: POD_HTTP_PORT,
    };
    manifests::documents(&[
        manifests::service(
            "web",
            WEB_IP,
            Some("web"),
            &[ServicePort::tcp(
                Some("http"),
                80,
                Target::Number(POD_HTTP_PORT),
            )],
        ),
        manifests::endpoint_slice("web", "web-1", &[http], pods),
    ])
}

/// Connections from the client pod to the ClusterIP: (answered, attempted).
fn from_client_pod(sb: &Sandbox, count: u64) -> (u64, u64) {
    let target = format!("{WEB_IP}:80");
    let r = sb
        .probe(
            sb.client_pod(),
            &[
                "tcp",
                "--target",
                &target,
                "--count",
                &count.to_string(),
                "--timeout-ms",
                "500",
            ],
        )
        .unwrap();
    (r.ok, r.attempts)
}

#[test]
fn a_recreated_pod_link_gets_the_tc_program_again() {
    let mut sb = Sandbox::new().unwrap();
    sb.manifests
        .write("web.yaml", &web(&sb.backend_ips()))
        .unwrap();
    // The harness names every node interface; the pattern makes the set dynamic.
    sb.start_agent(&["--iface", "pod*"]).unwrap();
    sb.agent()
        .wait_dump("web programmed", Duration::from_secs(15), |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 3)
        })
        .unwrap();
    assert_eq!(
        from_client_pod(&sb, 10),
        (10, 10),
        "before the link is recreated"
    );

    // The client pod's link goes away and comes back: a new interface, no TC on it.
    let client_pod = sb.topo.pods.last().unwrap().index;
    sb.topo.relink_pod(client_pod).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, n) = from_client_pod(&sb, 5);
        if ok == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ClusterIP never answered on the new link ({ok}/{n}); log:\n{}",
            sb.agent().log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        from_client_pod(&sb, 20),
        (20, 20),
        "after the link was recreated"
    );
    let log = sb.agent().log();
    assert!(log.contains("TC interfaces updated"), "{log}");
    assert!(
        log.contains(&format!("iface=\"{}\"", pod_node_if(client_pod)))
            || log.contains(&pod_node_if(client_pod)),
        "{log}"
    );
}
