//! End to end: the real `svclb-agent` in a "node" namespace, real TCP and UDP traffic
//! from a pod namespace (pod4, nobody's backend) and from the external client (see
//! svclb_tests::topology). Each test builds its own sandbox, so the tests are independent
//! and may run in parallel. Needs root.

use std::{
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use svclb_tests::{
    agent::{backend_addrs, frontend, frontends, has_frontend},
    fixtures::{DNS_IP, HTTP, WEB_IP, WEB_NODE_PORT, dns, web},
    in_mode,
    manifests::{self, ServicePort, SlicePort, Target},
    modes::Mode,
    report::ProbeReport,
    sandbox::{
        Held, POD_ALT_PORT, POD_HTTP_PORT, POD_LEGACY_PORT, POD_UDP_PORT, Sandbox, finish_probe,
    },
    topology::{CLIENT_IP, NODE_IP, pod_ip},
};

const MULTI_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
const LEGACY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 13);
const EMPTY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 14);
const EMPTY_NODE_PORT: u16 = 30081;
const ORPHAN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 15);

/// The agent reads its directory every 200 ms; this bounds waiting for a sync.
const SYNC: Duration = Duration::from_secs(10);

/// Sandbox with the agent running and `web.yaml` (all three pods) applied.
fn web_sandbox(m: Mode) -> Sandbox {
    web_sandbox_with(m, &[])
}

/// [`web_sandbox`] with the agent's `extra` flags; XDP forced on the external veth gets
/// a client that sends full checksums, like a host behind a NIC.
fn web_sandbox_with(m: Mode, extra: &[&str]) -> Sandbox {
    let mut sb = m.sandbox().unwrap();
    sb.manifests
        .write("web.yaml", &web(&sb.backend_ips()))
        .unwrap();
    if extra.contains(&"--xdp-iface") {
        sb.topo.client_like_nic().unwrap();
    }
    sb.start_agent(&m.args_with(extra)).unwrap();
    wait(&mut sb, "web frontends with 3 backends", |d| {
        has_frontend(d, WEB_IP, 80, "TCP", 3) && has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
    });
    sb
}

fn wait(sb: &mut Sandbox, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    sb.agent().wait_dump(what, SYNC, ready).unwrap()
}

fn tcp(sb: &Sandbox, from: Source, ip: Ipv4Addr, port: u16, count: u64) -> ProbeReport {
    probe(
        sb,
        from,
        &[
            "tcp",
            "--target",
            &format!("{ip}:{port}"),
            "--count",
            &count.to_string(),
        ],
    )
}

fn udp(sb: &Sandbox, from: Source, ip: Ipv4Addr, port: u16, count: u64) -> ProbeReport {
    probe(
        sb,
        from,
        &[
            "udp",
            "--target",
            &format!("{ip}:{port}"),
            "--count",
            &count.to_string(),
        ],
    )
}

#[derive(Clone, Copy)]
enum Source {
    /// pod4: a pod that is nobody's backend.
    Pod,
    /// The external client, outside the cluster.
    Client,
}

fn probe(sb: &Sandbox, from: Source, args: &[&str]) -> ProbeReport {
    let ns = match from {
        Source::Pod => sb.client_pod(),
        Source::Client => sb.client(),
    };
    sb.probe(ns, args).unwrap()
}

fn pod_names() -> [String; 3] {
    ["pod1", "pod2", "pod3"].map(String::from)
}

/// Every request answered, only by the three pods, on `port`.
fn assert_all_answered(r: &ProbeReport, port: Option<u16>) {
    assert_eq!(r.ok, r.attempts, "failures: {r:?}");
    assert!(r.attempts > 0, "{r:?}");
    for backend in r.backends.keys() {
        assert!(
            pod_names().contains(backend),
            "unexpected backend {backend}: {r:?}"
        );
    }
    if let Some(port) = port {
        assert_eq!(r.ports.keys().copied().collect::<Vec<_>>(), [port], "{r:?}");
    }
}

/// The harness alone, no agent: pods and the client reach each other through the node,
/// and a Service address goes the node's default route, to nobody who answers.
#[test]
fn topology_routes_without_agent() {
    let sb = Sandbox::new().unwrap();
    for pod in sb.backend_pods() {
        let target = format!("{}:{POD_HTTP_PORT}", pod.ip());
        for from in [Source::Pod, Source::Client] {
            let r = probe(&sb, from, &["tcp", "--target", &target, "--count", "5"]);
            assert_eq!(r.ok, 5, "{r:?}");
            assert_eq!(r.backends.keys().collect::<Vec<_>>(), [&pod.name()]);
        }
        let r = udp(&sb, Source::Client, pod.ip(), POD_UDP_PORT, 5);
        assert_eq!(r.backends.get(&pod.name()), Some(&5), "{r:?}");
    }
    let r = probe(
        &sb,
        Source::Pod,
        &[
            "tcp",
            "--target",
            &format!("{WEB_IP}:80"),
            "--timeout-ms",
            "1000",
        ],
    );
    assert_eq!(r.ok, 0, "{r:?}");
    assert!(r.failures.contains_key("timeout"), "{r:?}");
    assert_ne!(pod_ip(1), CLIENT_IP);
}

fn clusterip_from_pod_and_nodeport_from_external_client(m: Mode) {
    let mut sb = web_sandbox(m);
    let dump = sb.agent().dump_json().unwrap();
    assert_eq!(
        frontend(&dump, WEB_IP, 80, "TCP").unwrap()["kind"],
        "ClusterIP"
    );
    assert_eq!(
        frontend(&dump, NODE_IP, WEB_NODE_PORT, "TCP").unwrap()["kind"],
        "NodePort"
    );
    let expected: Vec<String> = sb
        .backend_ips()
        .iter()
        .map(|ip| format!("{ip}:{POD_HTTP_PORT}"))
        .collect();
    assert_eq!(
        backend_addrs(frontend(&dump, WEB_IP, 80, "TCP").unwrap()),
        expected
    );

    let via_cluster_ip = tcp(&sb, Source::Pod, WEB_IP, 80, 30);
    assert_all_answered(&via_cluster_ip, Some(POD_HTTP_PORT));
    let via_node_port = tcp(&sb, Source::Client, NODE_IP, WEB_NODE_PORT, 30);
    assert_all_answered(&via_node_port, Some(POD_HTTP_PORT));
    // The agent must not have died or complained on the way.
    assert!(sb.agent().is_running());
}

fn new_connections_spread_over_three_backends(m: Mode) {
    let sb = web_sandbox(m);
    for (from, ip, port) in [
        (Source::Pod, WEB_IP, 80),
        (Source::Client, NODE_IP, WEB_NODE_PORT),
    ] {
        let r = tcp(&sb, from, ip, port, 600);
        assert_all_answered(&r, Some(POD_HTTP_PORT));
        for pod in pod_names() {
            assert!(
                r.share(&pod) >= 0.20,
                "{pod} got {:.1}% of {ip}:{port}: {r:?}",
                100.0 * r.share(&pod)
            );
        }
    }
}

fn udp_through_clusterip(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    sb.manifests
        .write("dns.yaml", &dns(&sb.backend_ips()))
        .unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    wait(&mut sb, "the UDP frontend", |d| {
        has_frontend(d, DNS_IP, 53, "UDP", 3)
    });
    // Each datagram from a new socket: a new flow, balanced like a new connection.
    let r = udp(&sb, Source::Pod, DNS_IP, 53, 90);
    assert_all_answered(&r, None);
    assert_eq!(
        r.backends.len(),
        3,
        "every pod answers some of 90 flows: {r:?}"
    );
    // TCP to the same address and port is not a frontend.
    let dump = sb.agent().dump_json().unwrap();
    assert!(frontend(&dump, DNS_IP, 53, "TCP").is_none());
}

/// The classic example: a Service without selector, port 6666 → targetPort 80, and a
/// hand-written Endpoints object.
fn selectorless_service_with_hand_written_endpoints(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let unnamed = SlicePort {
        name: "",
        protocol: "TCP",
        port: POD_LEGACY_PORT,
    };
    let legacy = manifests::documents(&[
        manifests::service(
            "legacy",
            LEGACY_IP,
            None,
            &[ServicePort::tcp(
                None,
                6666,
                Target::Number(POD_LEGACY_PORT),
            )],
        ),
        manifests::endpoints("legacy", &[unnamed], &sb.backend_ips()),
    ]);
    sb.manifests.write("legacy.yaml", &legacy).unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    wait(&mut sb, "the selectorless frontend", |d| {
        has_frontend(d, LEGACY_IP, 6666, "TCP", 3)
    });
    let r = tcp(&sb, Source::Pod, LEGACY_IP, 6666, 60);
    assert_all_answered(&r, Some(POD_LEGACY_PORT));
    assert_eq!(r.backends.len(), 3, "{r:?}");
}

/// Two ports in one Service, one of them with a named targetPort (resolved through the
/// EndpointSlice's port of the same name, as the controller writes it).
fn named_target_port_and_two_ports_in_one_service(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let multi = manifests::documents(&[
        manifests::service(
            "multi",
            MULTI_IP,
            Some("multi"),
            &[
                ServicePort::tcp(Some("http"), 80, Target::Name("web")),
                ServicePort::tcp(Some("alt"), 81, Target::Number(POD_ALT_PORT)),
            ],
        ),
        manifests::endpoint_slice(
            "multi",
            "multi-9zq8d",
            &[
                HTTP,
                SlicePort {
                    name: "alt",
                    protocol: "TCP",
                    port: POD_ALT_PORT,
                },
            ],
            &sb.backend_ips(),
        ),
    ]);
    sb.manifests.write("multi.yaml", &multi).unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    wait(&mut sb, "both ports of multi", |d| {
        has_frontend(d, MULTI_IP, 80, "TCP", 3) && has_frontend(d, MULTI_IP, 81, "TCP", 3)
    });
    let http = tcp(&sb, Source::Pod, MULTI_IP, 80, 30);
    assert_all_answered(&http, Some(POD_HTTP_PORT));
    let alt = tcp(&sb, Source::Pod, MULTI_IP, 81, 30);
    assert_all_answered(&alt, Some(POD_ALT_PORT));
}

/// An endpoint removed from the manifest gets no new connection 2 s later, while a
/// connection established to it before keeps working.
fn removed_endpoint_gets_no_new_connections_but_keeps_established_ones(m: Mode) {
    let mut sb = web_sandbox(m);
    let Held {
        probe: hold,
        backend: held,
        ..
    } = sb
        .hold(Some(sb.client_pod()), &format!("{WEB_IP}:80"), 5000)
        .unwrap();
    let index: u8 = held.trim_start_matches("pod").parse().unwrap();

    let remaining: Vec<Ipv4Addr> = sb
        .backend_ips()
        .into_iter()
        .filter(|ip| *ip != pod_ip(index))
        .collect();
    sb.manifests.write("web.yaml", &web(&remaining)).unwrap();
    let removed_at = Instant::now();
    thread::sleep(Duration::from_secs(2).saturating_sub(removed_at.elapsed()));

    let dump = sb.agent().dump_json().unwrap();
    assert!(has_frontend(&dump, WEB_IP, 80, "TCP", 2), "{dump:#}");
    let fresh = tcp(&sb, Source::Pod, WEB_IP, 80, 150);
    assert_all_answered(&fresh, Some(POD_HTTP_PORT));
    assert!(
        !fresh.backends.contains_key(&held),
        "{held} still gets new connections: {fresh:?}"
    );
    assert_eq!(fresh.backends.len(), 2, "{fresh:?}");

    let held_report = finish_probe(hold, Duration::from_secs(15)).unwrap();
    assert!(
        held_report.failures.is_empty(),
        "the established connection broke: {held_report:?}"
    );
    assert_eq!(
        held_report.backends.keys().collect::<Vec<_>>(),
        [&held],
        "{held_report:?}"
    );
    // It was used throughout: before, during and after the change (≈ 50 requests).
    assert!(held_report.ok >= 40, "{held_report:?}");
}

/// The pinned data path keeps serving while no agent runs, and a new agent adopts the
/// pins (atomic program replacement, no map rewrite): a request loop and an open
/// connection see no failure through stop, downtime and restart.
fn agent_restart_does_not_interrupt_traffic(m: Mode) {
    // eBPF: XDP on the external link too, so its pinned link is replaced as well.
    let extra: &[&str] = if m.is_ebpf() {
        &["--xdp-iface", "ext0"]
    } else {
        &[]
    };
    let mut sb = web_sandbox_with(m, extra);
    let hold = sb
        .spawn_probe(
            sb.client_pod(),
            &[
                "hold",
                "--target",
                &format!("{WEB_IP}:80"),
                "--interval-ms",
                "50",
                "--duration-ms",
                "6000",
            ],
        )
        .unwrap();
    hold.wait_line("backend ", Duration::from_secs(5)).unwrap();
    let target = format!("{WEB_IP}:80");
    let lp = sb
        .spawn_probe(
            sb.client_pod(),
            &[
                "tcp",
                "--target",
                &target,
                "--count",
                "100000",
                "--deadline-ms",
                "5000",
            ],
        )
        .unwrap();

    thread::sleep(Duration::from_millis(1000));
    sb.agent().stop();
    // No agent at all for a while: the pinned programs and maps keep serving.
    thread::sleep(Duration::from_millis(1000));
    let during = tcp(&sb, Source::Client, NODE_IP, WEB_NODE_PORT, 50);
    assert_all_answered(&during, Some(POD_HTTP_PORT));
    sb.restart_agent(&m.args_with(extra)).unwrap();
    // Pins answer dump at once; wait for the new agent's own first sync.
    let started = Instant::now();
    let log = loop {
        let log = sb.agent().log();
        if log.contains("synced") || started.elapsed() > SYNC {
            break log;
        }
        thread::sleep(Duration::from_millis(50));
    };
    if m.is_ebpf() {
        // eBPF only: pinned links replaced in place and maps adopted unchanged. In
        // iptables mode the rules simply stay in the kernel while no agent runs, and the
        // new agent's first sync rewrites its chains in one atomic iptables-restore
        // (iptables-save's canonical text cannot be compared with the generated one).
        assert!(
            log.contains("TC program replaced atomically"),
            "the new agent must reuse the pinned links:\n{log}"
        );
        assert!(log.contains("XDP program replaced atomically"), "{log}");
        assert!(
            log.contains("socket program replaced atomically"),
            "the socket programs' pinned links too:\n{log}"
        );
        assert!(
            log.contains("synced (no change)"),
            "adoption must not rewrite the maps:\n{log}"
        );
    } else if m == Mode::Ipvs {
        // The virtual servers stay in the kernel and are taken over as they are.
        assert!(
            log.contains("adopted the IPVS virtual servers of an earlier run"),
            "the new agent must adopt the virtual servers:\n{log}"
        );
    } else {
        assert!(
            log.contains("found chains of an earlier run"),
            "the new agent must adopt the chains:\n{log}"
        );
    }

    let loop_report = finish_probe(lp, Duration::from_secs(30)).unwrap();
    eprintln!(
        "restart loop: {} ok, {} failed; held: see below",
        loop_report.ok,
        loop_report.failed()
    );
    assert!(loop_report.ok >= 100, "{loop_report:?}");
    assert!(
        loop_report.failures.is_empty(),
        "requests failed across the restart: {loop_report:?}"
    );
    let held = finish_probe(hold, Duration::from_secs(15)).unwrap();
    assert!(
        held.failures.is_empty(),
        "the open connection broke: {held:?}"
    );
    assert!(held.ok >= 80, "{held:?}");
    // The new agent still applies changes.
    sb.manifests
        .write("web.yaml", &web(&sb.backend_ips()[..2]))
        .unwrap();
    wait(&mut sb, "web with 2 backends after restart", |d| {
        has_frontend(d, WEB_IP, 80, "TCP", 2)
    });
}

/// A UDP flow (one 5-tuple) whose backend is removed moves to a live backend: the agent
/// purges the flow's conntrack entries. The removed pod keeps serving, so without the
/// purge the flow would stay on it.
fn udp_flow_leaves_a_removed_backend(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    sb.manifests
        .write("dns.yaml", &dns(&sb.backend_ips()))
        .unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    wait(&mut sb, "the UDP frontend", |d| {
        has_frontend(d, DNS_IP, 53, "UDP", 3)
    });

    let target = format!("{DNS_IP}:53");
    let flow = [
        "udp",
        "--target",
        target.as_str(),
        "--count",
        "5",
        "--sport",
        "40123",
    ];
    let first = sb.probe(sb.client_pod(), &flow).unwrap();
    assert_eq!(first.ok, 5, "{first:?}");
    assert_eq!(first.backends.len(), 1, "one flow, one backend: {first:?}");
    let held = first.backends.keys().next().unwrap().clone();
    let index: u8 = held.trim_start_matches("pod").parse().unwrap();
    let remaining: Vec<Ipv4Addr> = sb
        .backend_ips()
        .into_iter()
        .filter(|ip| *ip != pod_ip(index))
        .collect();
    sb.manifests.write("dns.yaml", &dns(&remaining)).unwrap();
    wait(&mut sb, "the UDP frontend with 2 backends", |d| {
        has_frontend(d, DNS_IP, 53, "UDP", 2)
    });
    // The purge follows the rule or map update in the same sync: the dump can show the
    // new backends a moment before it. The sync's log line comes after both. In IPVS
    // mode the kernel does it: the UDP real server is deleted, and expire_nodest_conn
    // expires its connections with their conntrack entries (nothing left to purge).
    let deadline = Instant::now() + Duration::from_secs(10);
    while m != Mode::Ipvs
        && !sb
            .agent()
            .log()
            .lines()
            .any(|l| l.contains("synced") && l.contains("purged=") && !l.contains("purged=0"))
    {
        assert!(
            Instant::now() < deadline,
            "no purge logged:\n{}",
            sb.agent().log()
        );
        thread::sleep(Duration::from_millis(50));
    }

    let after = sb.probe(sb.client_pod(), &flow).unwrap();
    assert_eq!(after.ok, 5, "{after:?}");
    assert!(
        !after.backends.contains_key(&held),
        "the flow still goes to removed {held}: {after:?}"
    );
    assert_eq!(after.backends.len(), 1, "{after:?}");
}

fn deleted_service_disappears_from_dump(m: Mode) {
    let mut sb = web_sandbox(m);
    sb.manifests
        .write("dns.yaml", &dns(&sb.backend_ips()))
        .unwrap();
    wait(&mut sb, "web and dns", |d| {
        has_frontend(d, WEB_IP, 80, "TCP", 3) && has_frontend(d, DNS_IP, 53, "UDP", 3)
    });
    assert_all_answered(&tcp(&sb, Source::Pod, WEB_IP, 80, 5), Some(POD_HTTP_PORT));

    sb.manifests.remove("web.yaml").unwrap();
    let dump = wait(&mut sb, "web gone", |d| {
        frontends(d).iter().all(|f| {
            f["service"]
                .as_str()
                .is_none_or(|s| !s.starts_with("default/web:"))
        }) && frontend(d, WEB_IP, 80, "TCP").is_none()
            && frontend(d, NODE_IP, WEB_NODE_PORT, "TCP").is_none()
    });
    assert!(
        has_frontend(&dump, DNS_IP, 53, "UDP", 3),
        "the other Service must stay: {dump:#}"
    );
    let gone = probe(
        &sb,
        Source::Pod,
        &[
            "tcp",
            "--target",
            &format!("{WEB_IP}:80"),
            "--timeout-ms",
            "3000",
        ],
    );
    assert_eq!(gone.ok, 0, "{gone:?}");
}

/// No endpoints: TCP gets a RST and UDP an ICMP port unreachable, well under a second —
/// never a silent drop. Both for an empty EndpointSlice and for no EndpointSlice at all.
fn service_without_endpoints_is_refused_fast(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let empty = manifests::documents(&[
        manifests::service(
            "empty",
            EMPTY_IP,
            Some("empty"),
            &[
                ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT))
                    .with_node_port(EMPTY_NODE_PORT),
                ServicePort::udp(Some("dns"), 53, Target::Number(POD_UDP_PORT)),
            ],
        ),
        manifests::endpoint_slice(
            "empty",
            "empty-2bq7x",
            &[
                HTTP,
                SlicePort {
                    name: "dns",
                    protocol: "UDP",
                    port: POD_UDP_PORT,
                },
            ],
            &[],
        ),
        manifests::service(
            "orphan",
            ORPHAN_IP,
            Some("orphan"),
            &[ServicePort::tcp(None, 80, Target::Number(POD_HTTP_PORT))],
        ),
    ]);
    sb.manifests.write("empty.yaml", &empty).unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    wait(&mut sb, "frontends without backends", |d| {
        has_frontend(d, EMPTY_IP, 80, "TCP", 0)
            && has_frontend(d, EMPTY_IP, 53, "UDP", 0)
            && has_frontend(d, NODE_IP, EMPTY_NODE_PORT, "TCP", 0)
            && has_frontend(d, ORPHAN_IP, 80, "TCP", 0)
    });
    let cases = [
        ("tcp", Source::Pod, EMPTY_IP, 80),
        ("udp", Source::Pod, EMPTY_IP, 53),
        ("tcp", Source::Client, NODE_IP, EMPTY_NODE_PORT),
        ("tcp", Source::Pod, ORPHAN_IP, 80),
    ];
    for (mode, from, ip, port) in cases {
        let target = format!("{ip}:{port}");
        let r = probe(
            &sb,
            from,
            &[
                mode,
                "--target",
                &target,
                "--count",
                "3",
                "--timeout-ms",
                "3000",
            ],
        );
        assert_eq!(r.ok, 0, "{mode} {target}: {r:?}");
        assert_eq!(
            r.failures.get("refused"),
            Some(&3),
            "{mode} {target} must be refused: {r:?}"
        );
        let slowest = r.failure_latency_us.unwrap().max;
        assert!(
            slowest < 1_000_000,
            "{mode} {target} refused after {slowest} µs"
        );
    }
}

/// `sessionAffinity: ClientIP` (#4): every new connection of one client lands on one
/// backend, through the ClusterIP and through the NodePort, and the dump shows the
/// timeout.
fn session_affinity_keeps_a_client_on_one_backend(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let sticky = web(&sb.backend_ips()).replacen(
        "spec:\n",
        "spec:\n  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 30\n",
        1,
    );
    sb.manifests.write("web.yaml", &sticky).unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    let dump = wait(&mut sb, "web with affinity", |d| {
        has_frontend(d, WEB_IP, 80, "TCP", 3) && has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
    });
    for (ip, port) in [(WEB_IP, 80), (NODE_IP, WEB_NODE_PORT)] {
        let fe = frontend(&dump, ip, port, "TCP").unwrap();
        assert!(
            fe["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "affinity"),
            "{fe:#}"
        );
        assert_eq!(fe["affinity_timeout_s"], 30, "{fe:#}");
    }
    for (from, ip, port) in [
        (Source::Pod, WEB_IP, 80),
        (Source::Client, NODE_IP, WEB_NODE_PORT),
    ] {
        let r = tcp(&sb, from, ip, port, 40);
        assert_all_answered(&r, Some(POD_HTTP_PORT));
        assert_eq!(
            r.backends.len(),
            1,
            "{ip}:{port}: one client, one backend: {r:?}"
        );
    }
}

/// Headless and ExternalName Services get no frontend and no complaint; the Service
/// beside them works.
fn headless_and_external_name_services_are_ignored(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: default\n\
        spec:\n  clusterIP: None\n  selector:\n    app: db\n  ports:\n  - name: pg\n    port: 5432\n    \
        targetPort: 8080\n";
    let external = "apiVersion: v1\nkind: Service\nmetadata:\n  name: search\n  namespace: default\n\
        spec:\n  type: ExternalName\n  externalName: search.example.com\n";
    let all = manifests::documents(&[
        headless.to_owned(),
        manifests::endpoint_slice(
            "db",
            "db-5kq2w",
            &[SlicePort {
                name: "pg",
                protocol: "TCP",
                port: 8080,
            }],
            &sb.backend_ips(),
        ),
        external.to_owned(),
        web(&sb.backend_ips()),
    ]);
    sb.manifests.write("mixed.yaml", &all).unwrap();
    sb.start_agent(m.agent_args()).unwrap();
    let dump = wait(&mut sb, "web", |d| has_frontend(d, WEB_IP, 80, "TCP", 3));
    // Only web's two frontends (ClusterIP and NodePort; the eBPF socket programs add
    // the node-local 127.0.0.1 NodePort): nothing for db or search.
    let packet_path = frontends(&dump)
        .iter()
        .filter(|f| f["scope"] != "node-local")
        .count();
    assert_eq!(packet_path, 2, "{dump:#}");
    assert!(
        frontends(&dump).iter().all(|f| f["service"]
            .as_str()
            .is_some_and(|s| s.starts_with("default/web:"))),
        "{dump:#}"
    );
    assert_all_answered(&tcp(&sb, Source::Pod, WEB_IP, 80, 10), Some(POD_HTTP_PORT));
    // A few more sync periods, then the log: no warning or error about either.
    thread::sleep(Duration::from_millis(600));
    let agent = sb.agent();
    assert!(agent.is_running());
    let log = agent.log();
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("WARN") || l.contains("ERROR"))
                && (l.contains("default/db") || l.contains("default/search"))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "complaints about ignored Services: {complaints:#?}"
    );
}

/// Every scenario above, once per mode: `ebpf::NAME`, `iptables::NAME` (iptables-nft)
/// and, for a subset, `iptables_legacy::NAME`. kube-proxy's iptables mode satisfies them
/// all; only the eBPF-specific parts (pinned-link replacement, untouched maps on restart)
/// are checked in eBPF mode alone, inside the scenario.
macro_rules! every_scenario {
    ($(#[$attr:meta])* $module:ident, $mode:expr) => {
        in_mode!(
            $(#[$attr])*
            $module,
            $mode,
            [
                clusterip_from_pod_and_nodeport_from_external_client,
                new_connections_spread_over_three_backends,
                udp_through_clusterip,
                selectorless_service_with_hand_written_endpoints,
                named_target_port_and_two_ports_in_one_service,
                removed_endpoint_gets_no_new_connections_but_keeps_established_ones,
                agent_restart_does_not_interrupt_traffic,
                udp_flow_leaves_a_removed_backend,
                deleted_service_disappears_from_dump,
                service_without_endpoints_is_refused_fast,
                headless_and_external_name_services_are_ignored,
                session_affinity_keeps_a_client_on_one_backend,
            ]
        );
    };
}

every_scenario!(ebpf, svclb_tests::modes::Mode::Ebpf);
every_scenario!(ebpf_baseline, svclb_tests::modes::Mode::EbpfBaseline);
every_scenario!(iptables, svclb_tests::modes::Mode::Iptables);
every_scenario!(
    #[ignore = "needs IP_VS: cargo xtask test --kernel 6.1 -- --include-ignored ipvs::"]
    ipvs,
    svclb_tests::modes::Mode::Ipvs
);
// The same rules through iptables-legacy: the scenarios that exercise each rule kind
// (DNAT with masquerade, UDP, REJECT, conntrack purge).
in_mode!(
    iptables_legacy,
    svclb_tests::modes::Mode::IptablesLegacy,
    [
        clusterip_from_pod_and_nodeport_from_external_client,
        udp_flow_leaves_a_removed_backend,
        service_without_endpoints_is_refused_fast,
    ]
);
