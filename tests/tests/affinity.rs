//! `sessionAffinity: ClientIP` with real connections: the client sticks to one backend
//! per Service port until it has been idle for `timeoutSeconds`, then is spread again;
//! a removed backend hands the client to a live one, where it sticks. Needs root.

use std::{collections::BTreeSet, net::Ipv4Addr, thread, time::Duration};

use serde_json::Value;
use svclb_tests::{
    agent::{frontend, has_frontend},
    in_mode,
    manifests::{self, ServicePort, SlicePort, Target},
    modes::Mode,
    report::ProbeReport,
    sandbox::{POD_ALT_PORT, POD_HTTP_PORT, Sandbox},
    semantics::{dump_flow, flow_backend, with_affinity},
    topology::pod_ip,
};

const STICKY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const DEFAULT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 21);
/// Short, so the test can wait it out.
const TIMEOUT_S: u32 = 2;
const SYNC: Duration = Duration::from_secs(10);
/// Connections per burst: a client without affinity would hit all three pods.
const BURST: u64 = 30;

/// `sticky`: ports 80 → 8080 and 81 → 8081 with a 2 s affinity timeout; `sticky-default`:
/// port 80 → 8080 with affinity and no timeout (the Kubernetes default applies).
fn manifests(pods: &[Ipv4Addr]) -> String {
    let ports = [
        ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT)),
        ServicePort::tcp(Some("alt"), 81, Target::Number(POD_ALT_PORT)),
    ];
    let slice_ports = [
        SlicePort {
            name: "http",
            protocol: "TCP",
            port: POD_HTTP_PORT,
        },
        SlicePort {
            name: "alt",
            protocol: "TCP",
            port: POD_ALT_PORT,
        },
    ];
    manifests::documents(&[
        with_affinity(
            &manifests::service("sticky", STICKY_IP, Some("sticky"), &ports),
            Some(TIMEOUT_S),
        ),
        manifests::endpoint_slice("sticky", "sticky-1", &slice_ports, pods),
        with_affinity(
            &manifests::service("sticky-default", DEFAULT_IP, Some("sticky"), &ports[..1]),
            None,
        ),
        manifests::endpoint_slice(
            "sticky-default",
            "sticky-default-1",
            &slice_ports[..1],
            pods,
        ),
    ])
}

fn burst(sb: &Sandbox, port: u16, count: u64) -> ProbeReport {
    let r = sb
        .probe(
            sb.client_pod(),
            &[
                "tcp",
                "--target",
                &format!("{STICKY_IP}:{port}"),
                "--count",
                &count.to_string(),
            ],
        )
        .unwrap();
    assert_eq!(r.ok, r.attempts, "failed connections: {r:?}");
    r
}

/// The one backend every connection of `r` went to.
fn only_backend(r: &ProbeReport, what: &str) -> String {
    assert_eq!(r.backends.len(), 1, "{what}: not sticky: {r:?}");
    let (name, n) = r.backends.iter().next().unwrap();
    eprintln!("{what}: {n}/{} connections to {name}", r.attempts);
    name.clone()
}

fn addr_of(name: &str, port: u16) -> String {
    let n: u8 = name.trim_start_matches("pod").parse().unwrap();
    format!("{}:{port}", pod_ip(n))
}

fn flow(sb: &Sandbox, port: u16) -> Value {
    // A source port no connection used: the answer is what a new connection gets.
    let spec = format!("{}:45000-{STICKY_IP}:{port}/tcp", pod_ip(4));
    dump_flow(&sb.bins().agent, sb.topo.node.name(), sb.pins(), &spec).unwrap()
}

fn client_ip_affinity_per_port_with_timeout_and_failover(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    sb.manifests
        .write("sticky.yaml", &manifests(&sb.backend_ips()))
        .unwrap();
    sb.start_agent(&m.args_with(&[])).unwrap();
    let dump = sb
        .agent()
        .wait_dump("sticky frontends", SYNC, |d| {
            has_frontend(d, STICKY_IP, 80, "TCP", 3)
                && has_frontend(d, STICKY_IP, 81, "TCP", 3)
                && has_frontend(d, DEFAULT_IP, 80, "TCP", 3)
        })
        .unwrap();
    for (ip, port, timeout) in [
        (STICKY_IP, 80, TIMEOUT_S),
        (STICKY_IP, 81, TIMEOUT_S),
        (DEFAULT_IP, 80, 10_800),
    ] {
        let fe = frontend(&dump, ip, port, "TCP").unwrap();
        assert!(
            fe["flags"].as_array().unwrap().contains(&"affinity".into()),
            "{fe:#}"
        );
        assert_eq!(fe["affinity_timeout_s"], timeout, "{fe:#}");
    }
    assert!(
        sb.agent()
            .dump_text()
            .unwrap()
            .contains("affinity timeout 10800s")
    );

    // Sticky: every new connection of a burst goes to one pod, on each port.
    let a80 = only_backend(&burst(&sb, 80, BURST), "port 80");
    let a81 = only_backend(&burst(&sb, 81, BURST), "port 81");
    // Affinity state is per Service port: one entry per port's backend set, each naming
    // the backend that port's connections got.
    // eBPF only from here on: `dump --flow` reads the maps (the affinity state of
    // iptables mode is in xt_recent lists the dump does not read).
    let ebpf = m.is_ebpf();
    let (f80, f81) = if ebpf {
        (flow(&sb, 80), flow(&sb, 81))
    } else {
        (Value::Null, Value::Null)
    };
    for (v, name, port) in [(&f80, &a80, POD_HTTP_PORT), (&f81, &a81, POD_ALT_PORT)]
        .into_iter()
        .filter(|_| ebpf)
    {
        assert_eq!(v["decision"], "affinity", "{v:#}");
        assert_eq!(flow_backend(v), Some(addr_of(name, port)), "{v:#}");
        assert_eq!(v["affinity"]["timeout_s"], TIMEOUT_S, "{v:#}");
        assert!(
            v["affinity"]["age_ms"].as_u64().unwrap() < 1000 * u64::from(TIMEOUT_S),
            "{v:#}"
        );
    }
    if ebpf {
        assert_ne!(
            f80["frontend"]["svc_id"], f81["frontend"]["svc_id"],
            "ports share affinity state"
        );
    }

    // Idle longer than the timeout: the next connection is a fresh choice (then sticks
    // again). Over bounded rounds the client lands on more than one pod.
    let mut seen = BTreeSet::from([a80.clone()]);
    let mut rounds = 0;
    while seen.len() < 2 && rounds < 10 {
        rounds += 1;
        thread::sleep(Duration::from_millis(u64::from(TIMEOUT_S) * 1000 + 300));
        if ebpf {
            let v = flow(&sb, 80);
            assert_eq!(v["decision"], "random", "after {TIMEOUT_S} s idle: {v:#}");
            assert_eq!(v["affinity"]["fresh"], false, "{v:#}");
        }
        seen.insert(only_backend(
            &burst(&sb, 80, 10),
            &format!("port 80 after idle round {rounds}"),
        ));
    }
    eprintln!("after idling: {rounds} rounds, pods {seen:?}");
    assert!(
        seen.len() >= 2,
        "always the same pod after {rounds} expiries: {seen:?}"
    );

    // The sticky pod leaves the Service: the client moves to a live pod and sticks there.
    let current = only_backend(&burst(&sb, 80, 5), "port 80 before removal");
    let index: u8 = current.trim_start_matches("pod").parse().unwrap();
    let remaining: Vec<Ipv4Addr> = sb
        .backend_ips()
        .into_iter()
        .filter(|ip| *ip != pod_ip(index))
        .collect();
    sb.manifests
        .write("sticky.yaml", &manifests(&remaining))
        .unwrap();
    sb.agent()
        .wait_dump("sticky with 2 backends", SYNC, |d| {
            has_frontend(d, STICKY_IP, 80, "TCP", 2)
        })
        .unwrap();
    let moved = only_backend(&burst(&sb, 80, BURST), "port 80 after removal");
    assert_ne!(moved, current, "still sent to the removed pod");
    if ebpf {
        let v = flow(&sb, 80);
        assert_eq!(v["decision"], "affinity", "{v:#}");
        assert_eq!(
            flow_backend(&v),
            Some(addr_of(&moved, POD_HTTP_PORT)),
            "{v:#}"
        );
    }
}

// Once per data-path mode (svclb_tests::in_mode): kube-proxy's iptables mode supports
// these scenarios too.

in_mode!(
    ebpf,
    svclb_tests::modes::Mode::Ebpf,
    [client_ip_affinity_per_port_with_timeout_and_failover]
);
in_mode!(
    iptables,
    svclb_tests::modes::Mode::Iptables,
    [client_ip_affinity_per_port_with_timeout_and_failover]
);
