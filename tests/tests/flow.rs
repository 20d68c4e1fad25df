//! `svclb-agent dump --flow` against real flows: the backend it names for a tracked
//! flow is the one the real connection got (the pod names itself in every answer), and
//! for a new flow on a Maglev Service the backend it predicts is the one a real flow
//! then gets. Needs root.

use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

use serde_json::Value;
use svclb_tests::{
    agent::has_frontend,
    manifests::{self, ServicePort, SlicePort, Target},
    sandbox::{Held, POD_HTTP_PORT, POD_UDP_PORT, Sandbox, finish_probe},
    semantics::{dump_flow, flow_backend, with_maglev},
    topology::pod_ip,
};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const ECHO_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
const HASHED_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 16);
const EMPTY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 14);
const SYNC: Duration = Duration::from_secs(10);

fn http() -> SlicePort<'static> {
    SlicePort {
        name: "http",
        protocol: "TCP",
        port: POD_HTTP_PORT,
    }
}

fn echo() -> SlicePort<'static> {
    SlicePort {
        name: "echo",
        protocol: "UDP",
        port: POD_UDP_PORT,
    }
}

/// web (TCP 80 → 8080), echo (UDP 53 → 5005), hashed (Maglev, UDP 53 → 5005) on all
/// pods, and empty (TCP 80, no endpoints).
fn manifests(pods: &[Ipv4Addr]) -> String {
    let udp = [ServicePort::udp(
        Some("echo"),
        53,
        Target::Number(POD_UDP_PORT),
    )];
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
        manifests::endpoint_slice("web", "web-1", &[http()], pods),
        manifests::service("echo", ECHO_IP, Some("echo"), &udp),
        manifests::endpoint_slice("echo", "echo-1", &[echo()], pods),
        with_maglev(&manifests::service(
            "hashed",
            HASHED_IP,
            Some("hashed"),
            &udp,
        )),
        manifests::endpoint_slice("hashed", "hashed-1", &[echo()], pods),
        manifests::service(
            "empty",
            EMPTY_IP,
            Some("empty"),
            &[ServicePort::tcp(
                Some("http"),
                80,
                Target::Number(POD_HTTP_PORT),
            )],
        ),
        manifests::endpoint_slice("empty", "empty-1", &[http()], &[]),
    ])
}

fn sandbox() -> Sandbox {
    let mut sb = Sandbox::new().unwrap();
    sb.manifests
        .write("all.yaml", &manifests(&sb.backend_ips()))
        .unwrap();
    sb.start_agent(&[]).unwrap();
    sb.agent()
        .wait_dump("all frontends", SYNC, |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 3)
                && has_frontend(d, ECHO_IP, 53, "UDP", 3)
                && has_frontend(d, HASHED_IP, 53, "UDP", 3)
                && has_frontend(d, EMPTY_IP, 80, "TCP", 0)
        })
        .unwrap();
    sb
}

fn flow(sb: &Sandbox, spec: &str) -> Value {
    let v = dump_flow(&sb.bins().agent, sb.topo.node.name(), sb.pins(), spec).unwrap();
    eprintln!("dump --flow {spec}: {} {}", v["decision"], v["reason"]);
    v
}

/// `ip:port` of pod `podN`'s `port`.
fn pod_addr(name: &str, port: u16) -> String {
    let n: u8 = name.trim_start_matches("pod").parse().unwrap();
    format!("{}:{port}", pod_ip(n))
}

#[test]
fn dump_flow_names_the_backend_of_real_tracked_flows() {
    let sb = sandbox();
    let client = sb.client_pod();
    let client_ip = pod_ip(4);

    // An open TCP connection: its conntrack entry names the pod that answers on it.
    let Held {
        probe: hold,
        local,
        backend: held,
    } = sb
        .hold(Some(client), &format!("{WEB_IP}:80"), 3000)
        .unwrap();
    let v = flow(&sb, &format!("{local}-{WEB_IP}:80/tcp"));
    assert_eq!(v["decision"], "conntrack", "{v:#}");
    assert_eq!(
        flow_backend(&v),
        Some(pod_addr(&held, POD_HTTP_PORT)),
        "{v:#}"
    );
    assert_eq!(v["conntrack"]["direction"], "forward");
    assert_eq!(
        v["frontend"]["service"]
            .as_str()
            .map(|s| s.starts_with("default/web")),
        Some(true),
        "{v:#}"
    );
    // The backend's replies of that flow are translated back to the ClusterIP.
    let reply = flow(
        &sb,
        &format!("{}-{local}/tcp", pod_addr(&held, POD_HTTP_PORT)),
    );
    assert_eq!(reply["decision"], "reply", "{reply:#}");
    assert_eq!(reply["conntrack"]["nat_address"], WEB_IP.to_string());
    let report = finish_probe(hold, Duration::from_secs(15)).unwrap();
    assert!(report.failures.is_empty(), "{report:?}");

    // A UDP flow from a fixed source port.
    for sport in [40111u16, 40112, 40113] {
        let r = sb
            .probe(
                client,
                &[
                    "udp",
                    "--target",
                    &format!("{ECHO_IP}:53"),
                    "--count",
                    "3",
                    "--sport",
                    &sport.to_string(),
                ],
            )
            .unwrap();
        assert_eq!((r.ok, r.backends.len()), (3, 1), "{r:?}");
        let pod = r.backends.keys().next().unwrap();
        let v = flow(&sb, &format!("{client_ip}:{sport}-{ECHO_IP}:53/udp"));
        assert_eq!(v["decision"], "conntrack", "{v:#}");
        assert_eq!(flow_backend(&v), Some(pod_addr(pod, POD_UDP_PORT)), "{v:#}");
    }

    // A flow nobody opened: a random pick among the three, with equal odds.
    let v = flow(&sb, &format!("{client_ip}:40999-{WEB_IP}:80/tcp"));
    assert_eq!(v["decision"], "random", "{v:#}");
    let candidates: BTreeSet<String> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(
                (c["odds"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
                "{c}"
            );
            format!(
                "{}:{}",
                c["backend"]["address"].as_str().unwrap(),
                c["backend"]["port"]
            )
        })
        .collect();
    let want: BTreeSet<String> = (1..=3)
        .map(|n| format!("{}:{POD_HTTP_PORT}", pod_ip(n)))
        .collect();
    assert_eq!(candidates, want, "{v:#}");

    let v = flow(&sb, &format!("{client_ip}:40999-{EMPTY_IP}:80/tcp"));
    assert_eq!(v["decision"], "reject", "{v:#}");
    let v = flow(&sb, &format!("{client_ip}:40999-198.18.0.99:80/tcp"));
    assert_eq!(v["decision"], "no-service", "{v:#}");
    // Asking created no state: the flow is still new.
    let v = flow(&sb, &format!("{client_ip}:40999-{WEB_IP}:80/tcp"));
    assert_eq!(v["decision"], "random", "{v:#}");
}

/// Maglev: `dump --flow` predicts a new flow's backend, and real flows from those source
/// ports get exactly it.
#[test]
fn dump_flow_predicts_the_maglev_backend_of_new_flows() {
    let sb = sandbox();
    let client = sb.client_pod();
    let client_ip = pod_ip(4);
    let mut predicted_pods = BTreeSet::new();
    for sport in 41000u16..41024 {
        let spec = format!("{client_ip}:{sport}-{HASHED_IP}:53/udp");
        let before = flow(&sb, &spec);
        assert_eq!(before["decision"], "maglev", "{before:#}");
        let predicted = flow_backend(&before).unwrap();
        let slot = before["maglev"]["slot"].as_u64().unwrap();
        assert!(
            slot < before["maglev"]["table_size"].as_u64().unwrap(),
            "{before:#}"
        );

        let r = sb
            .probe(
                client,
                &[
                    "udp",
                    "--target",
                    &format!("{HASHED_IP}:53"),
                    "--count",
                    "1",
                    "--sport",
                    &sport.to_string(),
                ],
            )
            .unwrap();
        assert_eq!(r.ok, 1, "{r:?}");
        let got = pod_addr(r.backends.keys().next().unwrap(), POD_UDP_PORT);
        assert_eq!(
            got, predicted,
            "flow {spec}: predicted {predicted}, the real flow got {got}"
        );
        predicted_pods.insert(predicted);

        let after = flow(&sb, &spec);
        assert_eq!(after["decision"], "conntrack", "{after:#}");
        assert_eq!(flow_backend(&after), Some(got));
    }
    // 24 flows over 3 backends: all on one would mean a broken hash (chance 3^-23).
    assert!(predicted_pods.len() >= 2, "{predicted_pods:?}");
}
