//! Clients on the node itself (processes of the node's network namespace, in the
//! sandbox's cgroup, as kubelet and hostNetwork pods are): in eBPF mode the cgroup
//! connect/sendmsg/recvmsg/getpeername programs translate them, in iptables mode the nat
//! OUTPUT rules, as kube-proxy's. Every scenario runs in both modes (what only one mode
//! has, its counters and log lines, is checked in that mode); real TCP and UDP with the
//! real agent, on a stock node; the probe checks that each socket sees the frontend as
//! its peer. Needs root.

use std::{
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use svclb_tests::{
    agent::{backend_addrs, frontend, has_frontend},
    fixtures::{DNS_IP, HTTP, WEB_IP, WEB_NODE_PORT, dns, web, web_service},
    in_mode,
    manifests::{self, ServicePort, Target},
    modes::Mode,
    report::ProbeReport,
    sandbox::{POD_HTTP_PORT, POD_UDP_PORT, Sandbox, finish_probe},
    semantics,
    topology::{NODE_IP, pod_node_if},
};

const EMPTY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 14);
const SYNC: Duration = Duration::from_secs(10);

/// Every scenario below that takes a mode, once per mode.
macro_rules! every_scenario {
    ($(#[$attr:meta])* $module:ident, $mode:expr) => {
        in_mode!(
            $(#[$attr])*
            $module,
            $mode,
            [
                node_reaches_cluster_ip_over_tcp_and_udp,
                node_reaches_its_node_port_on_its_address_and_on_localhost,
                localhost_node_ports_can_be_turned_off,
                service_without_endpoints_refuses_node_local_clients_at_once,
                affinity_holds_for_the_node_as_a_client,
                connected_udp_sockets_leave_a_removed_backend,
                agent_restart_breaks_no_node_local_connection,
                dual_stack_sockets_reach_a_cluster_ip_by_its_ipv4_mapped_address,
                external_policy_local_node_port_serves_the_node_with_every_endpoint,
                host_network_proxy_forwards_to_a_cluster_ip,
                node_port_on_every_node_address_without_node_ip,
                load_balancer_source_ranges_apply_to_the_node,
            ]
        );
    };
}
every_scenario!(ebpf, super::Mode::Ebpf);
every_scenario!(ebpf_baseline, super::Mode::EbpfBaseline);
every_scenario!(iptables, super::Mode::Iptables);
every_scenario!(
    #[ignore = "needs IP_VS: cargo xtask test --kernel 6.1 -- --include-ignored ipvs::"]
    ipvs,
    super::Mode::Ipvs
);

/// web (3 pods, NodePort 30080) and dns (3 pods, UDP), the agent running in mode `m`.
fn sandbox(m: Mode, extra: &[&str]) -> Sandbox {
    let mut sb = m.sandbox().unwrap();
    let pods = sb.backend_ips();
    sb.manifests.write("web.yaml", &web(&pods)).unwrap();
    sb.manifests.write("dns.yaml", &dns(&pods)).unwrap();
    sb.start_agent(&m.args_with(extra)).unwrap();
    wait(&mut sb, "web and dns", |d| {
        has_frontend(d, WEB_IP, 80, "TCP", 3) && has_frontend(d, DNS_IP, 53, "UDP", 3)
    });
    sb
}

fn wait(sb: &mut Sandbox, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    sb.agent().wait_dump(what, SYNC, ready).unwrap()
}

fn node(sb: &Sandbox, args: &[&str]) -> ProbeReport {
    sb.probe_node(args).unwrap()
}

fn tcp_args(target: &str, count: u64) -> Vec<String> {
    ["tcp", "--target", target, "--count", &count.to_string()]
        .map(String::from)
        .to_vec()
}

fn node_tcp(sb: &Sandbox, target: &str, count: u64) -> ProbeReport {
    let args = tcp_args(target, count);
    node(sb, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn assert_pods_answered(r: &ProbeReport) {
    assert!(r.attempts > 0, "{r:?}");
    assert_eq!(r.ok, r.attempts, "failures: {r:?}");
    for b in r.backends.keys() {
        assert!(["pod1", "pod2", "pod3"].contains(&b.as_str()), "{r:?}");
    }
}

fn counter(dump: &Value, name: &str) -> u64 {
    dump["counters"][name].as_u64().unwrap_or(0)
}

fn node_reaches_cluster_ip_over_tcp_and_udp(m: Mode) {
    let mut sb = sandbox(m, &[]);
    let r = node_tcp(&sb, &format!("{WEB_IP}:80"), 30);
    assert_pods_answered(&r);
    assert!(r.backends.len() >= 2, "30 connections, one pod: {r:?}");
    let target = format!("{DNS_IP}:53");
    let connected = node(&sb, &["udp", "--target", &target, "--count", "20"]);
    assert_pods_answered(&connected);
    // sendto/recvfrom: the answer's source is put back to the ClusterIP (recvmsg4).
    let unconnected = node(
        &sb,
        &["udp", "--unconnected", "--target", &target, "--count", "20"],
    );
    assert_pods_answered(&unconnected);
    if m.is_ebpf() {
        let dump = sb.agent().dump_json().unwrap();
        assert!(counter(&dump, "sock_new") >= 70, "{}", dump["counters"]);
        assert!(counter(&dump, "sock_revnat") >= 70, "{}", dump["counters"]);
        // Nothing went through the packet path.
        assert_eq!(counter(&dump, "fwd_new"), 0, "{}", dump["counters"]);
    }
}

fn node_reaches_its_node_port_on_its_address_and_on_localhost(m: Mode) {
    let mut sb = sandbox(m, &[]);
    for target in [
        format!("{NODE_IP}:{WEB_NODE_PORT}"),
        format!("127.0.0.1:{WEB_NODE_PORT}"),
    ] {
        let r = node_tcp(&sb, &target, 20);
        assert_pods_answered(&r);
    }
    let dump = sb.agent().dump_json().unwrap();
    if m.is_ebpf() {
        assert_eq!(counter(&dump, "fwd_new"), 0, "{}", dump["counters"]);
    }
    // 127.0.0.1 is a node-local frontend only: the packet path never matches it.
    let local = frontend(&dump, Ipv4Addr::LOCALHOST, WEB_NODE_PORT, "TCP").expect("listed");
    assert_eq!(local["scope"], "node-local", "{local}");
}

fn localhost_node_ports_can_be_turned_off(m: Mode) {
    let sb = sandbox(m, &["--iptables-localhost-nodeports=false"]);
    let r = node(
        &sb,
        &[
            "tcp",
            "--target",
            &format!("127.0.0.1:{WEB_NODE_PORT}"),
            "--timeout-ms",
            "500",
        ],
    );
    assert_eq!(r.ok, 0, "{r:?}");
    let r = node_tcp(&sb, &format!("{NODE_IP}:{WEB_NODE_PORT}"), 5);
    assert_pods_answered(&r);
}

fn service_without_endpoints_refuses_node_local_clients_at_once(m: Mode) {
    let mut sb = sandbox(m, &[]);
    sb.manifests
        .write(
            "empty.yaml",
            &manifests::service(
                "empty",
                EMPTY_IP,
                Some("empty"),
                &[
                    ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT)),
                    ServicePort::udp(Some("dns"), 53, Target::Number(POD_UDP_PORT)),
                ],
            ),
        )
        .unwrap();
    wait(&mut sb, "empty", |d| {
        has_frontend(d, EMPTY_IP, 80, "TCP", 0)
    });
    // The socket programs refuse with ECONNREFUSED where the kernel has bpf_set_retval
    // (5.18), else with EPERM: the agent says which in its dump.
    let refusal = if m.is_ebpf()
        && sb.agent().dump_json().unwrap()["kernel"]["features"]["set_retval"] == false
    {
        "denied"
    } else {
        "refused"
    };
    let r = node(
        &sb,
        &[
            "tcp",
            "--target",
            &format!("{EMPTY_IP}:80"),
            "--count",
            "5",
            "--timeout-ms",
            "3000",
        ],
    );
    assert_eq!(r.failures.get(refusal), Some(&5), "{r:?}");
    // At once: not a timeout.
    assert!(r.failure_latency_us.unwrap().max < 500_000, "{r:?}");
    let r = node(
        &sb,
        &["udp", "--target", &format!("{EMPTY_IP}:53"), "--count", "3"],
    );
    if m.is_ebpf() {
        assert_eq!(r.failures.get(refusal), Some(&3), "{r:?}");
    } else {
        // kube-proxy's REJECT in filter OUTPUT drops the datagram on its way out, so
        // send() itself fails (EPERM) before any ICMP error could come back: at once
        // too, just another errno.
        assert_eq!(r.failed(), 3, "{r:?}");
        assert!(!r.failures.contains_key("timeout"), "{r:?}");
    }
    assert!(r.failure_latency_us.unwrap().max < 500_000, "{r:?}");
    if m.is_ebpf() {
        let dump = sb.agent().dump_json().unwrap();
        assert!(counter(&dump, "sock_reject") >= 8, "{}", dump["counters"]);
    }
}

fn affinity_holds_for_the_node_as_a_client(m: Mode) {
    let mut sb = sandbox(m, &[]);
    let pods = sb.backend_ips();
    let eps: Vec<_> = pods.iter().map(|&a| semantics::Ep::ready(a)).collect();
    sb.manifests
        .write(
            "web.yaml",
            &manifests::documents(&[
                semantics::with_affinity(&web_service(), None),
                semantics::endpoint_slice("web", "web-x7k2p", &[HTTP], &eps),
            ]),
        )
        .unwrap();
    wait(&mut sb, "web with affinity", |d| {
        frontend(d, WEB_IP, 80, "TCP").is_some_and(|f| f["affinity_timeout_s"] == 10800)
    });
    let r = node_tcp(&sb, &format!("{WEB_IP}:80"), 30);
    assert_pods_answered(&r);
    assert_eq!(r.backends.len(), 1, "30 connections must stick: {r:?}");
    // The NodePort is another backend set with its own affinity; it sticks too.
    let r = node_tcp(&sb, &format!("127.0.0.1:{WEB_NODE_PORT}"), 20);
    assert_eq!(r.backends.len(), 1, "{r:?}");
}

#[test]
fn pods_keep_the_packet_path_in_the_same_cgroup() {
    // A process of a pod's network namespace inside the node's cgroup runs the socket
    // programs too, but they leave other namespaces alone: the packet path serves it.
    let mut sb = sandbox(Mode::Ebpf, &[]);
    let before = counter(&sb.agent().dump_json().unwrap(), "sock_new");
    let mut cmd = sb
        .client_pod()
        .command(&sb.bins().probe.to_string_lossy())
        .unwrap();
    cmd.args(["tcp", "--target", &format!("{WEB_IP}:80"), "--count", "10"]);
    sb.enter_node_cgroup(&mut cmd).unwrap();
    let out = svclb_tests::process::run(cmd, Duration::from_secs(60)).unwrap();
    let r: ProbeReport = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_pods_answered(&r);
    let dump = sb.agent().dump_json().unwrap();
    assert_eq!(counter(&dump, "sock_new"), before, "{}", dump["counters"]);
    assert!(counter(&dump, "fwd_new") >= 10, "{}", dump["counters"]);
}

/// A resolver on the node keeps one connected UDP socket to the DNS ClusterIP while
/// each pod in turn is removed from the Service and then stops answering, and comes
/// back. The agent closes the sockets of a removed backend, so the resolver reconnects
/// to a live one: no query is lost.
fn connected_udp_sockets_leave_a_removed_backend(m: Mode) {
    let mut sb = sandbox(m, &[]);
    let pods = sb.backend_ips();
    let resolver = sb
        .spawn_probe_node(&[
            "resolver",
            "--target",
            &format!("{DNS_IP}:53"),
            "--interval-ms",
            "20",
            "--duration-ms",
            "9000",
            "--timeout-ms",
            "1000",
        ])
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    for (i, pod) in pods.iter().enumerate() {
        let n = (i + 1) as u8;
        let rest: Vec<_> = pods.iter().copied().filter(|p| p != pod).collect();
        sb.manifests.write("dns.yaml", &dns(&rest)).unwrap();
        wait(&mut sb, "removal applied", |d| {
            frontend(d, DNS_IP, 53, "UDP").is_some_and(|f| backend_addrs(f).len() == 2)
        });
        // Only now the pod goes away: a query lost from here on is svclb's fault.
        sb.topo
            .node
            .ip(&["link", "set", &pod_node_if(n), "down"])
            .unwrap();
        thread::sleep(Duration::from_millis(800));
        sb.topo
            .node
            .ip(&["link", "set", &pod_node_if(n), "up"])
            .unwrap();
        sb.manifests.write("dns.yaml", &dns(&pods)).unwrap();
        wait(&mut sb, "re-added", |d| {
            has_frontend(d, DNS_IP, 53, "UDP", 3)
        });
        thread::sleep(Duration::from_millis(500));
    }
    let r = finish_probe(resolver, Duration::from_secs(30)).unwrap();
    eprintln!(
        "resolver: {} queries, {} answered, {} lost, {} answered after a reconnect, backends {:?}",
        r.attempts,
        r.ok,
        r.failed(),
        r.retried,
        r.backends
    );
    assert!(r.attempts > 100, "{r:?}");
    assert_eq!(r.failed(), 0, "queries lost: {r:?}");
    if m.is_ebpf() {
        // The socket was connected to the backend itself: closed, and reopened.
        assert!(r.retried >= 1, "no socket was closed and reopened: {r:?}");
        let log = sb.agent().log();
        assert!(
            log.contains("closed node-local UDP sockets connected to removed endpoints"),
            "{log}"
        );
    }
}

/// Node-local connections in a loop while the agent is replaced: the socket programs
/// stay attached through the pinned links and are swapped atomically.
fn agent_restart_breaks_no_node_local_connection(m: Mode) {
    let mut sb = sandbox(m, &[]);
    let args = tcp_args(&format!("{WEB_IP}:80"), 100_000);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--deadline-ms", "4000"]);
    let load = sb.spawn_probe_node(&args).unwrap();
    thread::sleep(Duration::from_millis(800));
    let started = Instant::now();
    sb.restart_agent(m.agent_args()).unwrap();
    let restart = started.elapsed();
    let r = finish_probe(load, Duration::from_secs(60)).unwrap();
    eprintln!(
        "restart took {restart:?}; {} requests, {} failed",
        r.attempts,
        r.failed()
    );
    assert!(r.attempts > 50, "{r:?}");
    assert_pods_answered(&r);
    if m.is_ebpf() {
        let log = sb.agent().log();
        assert!(
            log.contains("socket program replaced atomically in the pinned link"),
            "{log}"
        );
    }
}

#[test]
fn without_a_usable_cgroup_the_packet_path_still_serves() {
    let mut sb = Mode::Ebpf.sandbox().unwrap();
    let pods = sb.backend_ips();
    sb.manifests.write("web.yaml", &web(&pods)).unwrap();
    // Not a cgroup: the socket programs cannot attach.
    sb.set_agent_cgroup(Some(sb.pins().join("not-a-cgroup")));
    sb.start_agent(Mode::Ebpf.agent_args()).unwrap();
    wait(&mut sb, "web", |d| has_frontend(d, WEB_IP, 80, "TCP", 3));
    let r = sb
        .probe(
            sb.client_pod(),
            &tcp_args(&format!("{WEB_IP}:80"), 10)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_pods_answered(&r);
    let log = sb.agent().log();
    assert!(
        log.contains("socket programs not attached: node-local clients"),
        "{log}"
    );
}

fn dual_stack_sockets_reach_a_cluster_ip_by_its_ipv4_mapped_address(m: Mode) {
    let sb = sandbox(m, &[]);
    let r = node_tcp(&sb, &format!("[::ffff:{WEB_IP}]:80"), 10);
    assert_pods_answered(&r);
    let target = format!("[::ffff:{DNS_IP}]:53");
    for extra in [&[][..], &["--unconnected"][..]] {
        let mut args = vec!["udp", "--target", &target, "--count", "10"];
        args.extend(extra);
        assert_pods_answered(&node(&sb, &args));
    }
}

fn external_policy_local_node_port_serves_the_node_with_every_endpoint(m: Mode) {
    // The pods run on another node: outside clients of this node's NodePort are
    // dropped (no local endpoint), the node's own clients reach them all.
    let mut sb = m.sandbox().unwrap();
    let eps: Vec<_> = sb
        .backend_ips()
        .into_iter()
        .map(semantics::Ep::ready)
        .collect();
    let slice = semantics::endpoint_slice("web", "web-x7k2p", &[HTTP], &eps)
        .replace("nodeName: node\n", "nodeName: node-b\n");
    assert!(slice.contains("nodeName: node-b"), "{slice}");
    let svc = web_service().replace("spec:\n", "spec:\n  externalTrafficPolicy: Local\n");
    assert!(svc.contains("externalTrafficPolicy: Local"), "{svc}");
    sb.manifests
        .write("web.yaml", &manifests::documents(&[svc, slice]))
        .unwrap();
    sb.start_agent(&m.args_with(&["--hostname-override", "node-a"]))
        .unwrap();
    wait(&mut sb, "web", |d| has_frontend(d, WEB_IP, 80, "TCP", 3));
    let r = node_tcp(&sb, &format!("{NODE_IP}:{WEB_NODE_PORT}"), 20);
    assert_pods_answered(&r);
    assert!(r.backends.len() >= 2, "{r:?}");
    let r = sb
        .probe(
            sb.client(),
            &[
                "tcp",
                "--target",
                &format!("{NODE_IP}:{WEB_NODE_PORT}"),
                "--timeout-ms",
                "500",
            ],
        )
        .unwrap();
    assert_eq!(r.ok, 0, "an outside client must be dropped: {r:?}");
}

/// A hostNetwork L7 proxy (socat on the node, in its cgroup) forwarding to a ClusterIP,
/// used by the external client through the node's address.
fn host_network_proxy_forwards_to_a_cluster_ip(m: Mode) {
    const PROXY_PORT: u16 = 8088;
    let sb = sandbox(m, &[]);
    let mut cmd = sb.node_command("socat").unwrap();
    cmd.args([
        &format!("TCP-LISTEN:{PROXY_PORT},fork,reuseaddr,bind={NODE_IP}"),
        &format!("TCP:{WEB_IP}:80"),
    ]);
    let log = std::env::temp_dir().join(format!("svclb-{}-socat.log", std::process::id()));
    let _proxy = svclb_tests::process::Process::spawn("socat proxy", cmd, &log).unwrap();
    let target = format!("{NODE_IP}:{PROXY_PORT}");
    // Bounded wait for the listener.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = sb
            .probe(sb.client(), &["tcp", "--target", &target])
            .unwrap();
        if r.ok == 1 || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let r = sb
        .probe(sb.client(), &["tcp", "--target", &target, "--count", "20"])
        .unwrap();
    assert_pods_answered(&r);
    assert!(r.backends.len() >= 2, "{r:?}");
    let _ = std::fs::remove_file(log);
}

/// Without --node-ip the node's addresses are those of its interfaces: NodePorts answer
/// on each of them, for the node itself, pods and outside clients.
fn node_port_on_every_node_address_without_node_ip(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let pods = sb.backend_ips();
    sb.manifests.write("web.yaml", &web(&pods)).unwrap();
    sb.set_agent_node_ip(None);
    sb.start_agent(m.agent_args()).unwrap();
    let gw4 = svclb_tests::topology::pod_gateway(4);
    wait(&mut sb, "NodePorts", |d| {
        has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
            && has_frontend(d, gw4, WEB_NODE_PORT, "TCP", 3)
    });
    for addr in [NODE_IP, svclb_tests::topology::pod_gateway(1), gw4] {
        let target = format!("{addr}:{WEB_NODE_PORT}");
        assert_pods_answered(&node_tcp(&sb, &target, 5));
        assert_pods_answered(
            &sb.probe(
                sb.client_pod(),
                &["tcp", "--target", &target, "--count", "5"],
            )
            .unwrap(),
        );
    }
    let target = format!("{NODE_IP}:{WEB_NODE_PORT}");
    assert_pods_answered(
        &sb.probe(sb.client(), &["tcp", "--target", &target, "--count", "5"])
            .unwrap(),
    );
}

/// `dump --flow` of a live node-local connection names the backend its socket was sent
/// to; of a new one, the candidates (random at connect()).
#[test]
fn dump_flow_explains_node_local_connections() {
    let sb = sandbox(Mode::Ebpf, &[]);
    let held = sb.hold(None, &format!("{WEB_IP}:80"), 3000).unwrap();
    let (local, pod) = (held.local.clone(), held.pod());
    let flow = format!("{local}-{WEB_IP}:80/tcp");
    let v = semantics::dump_flow(&sb.bins().agent, sb.topo.node.name(), sb.pins(), &flow).unwrap();
    assert_eq!(v["decision"], "socket", "{v:#}");
    assert_eq!(
        semantics::flow_backend(&v),
        Some(format!("198.19.{pod}.2:{POD_HTTP_PORT}")),
        "{v:#}"
    );
    let report = finish_probe(held.probe, Duration::from_secs(15)).unwrap();
    assert_eq!(report.failed(), 0, "{report:?}");
    // A source port no socket has: what a new connection would get.
    let ip = local.split(':').next().unwrap();
    let v = semantics::dump_flow(
        &sb.bins().agent,
        sb.topo.node.name(),
        sb.pins(),
        &format!("{ip}:1-{WEB_IP}:80/tcp"),
    )
    .unwrap();
    assert_eq!(v["decision"], "random", "{v:#}");
    assert_eq!(v["candidates"].as_array().unwrap().len(), 3, "{v:#}");
    assert!(
        v["reason"].as_str().unwrap().contains("node-local"),
        "{v:#}"
    );
}

const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 10);

/// `lb`: web's pods behind a LoadBalancer Service at [`LB_IP`] with `ranges`.
fn lb_service(pods: &[Ipv4Addr], ranges: &str) -> String {
    let svc = manifests::service(
        "lb",
        Ipv4Addr::new(198, 18, 0, 15),
        Some("web"),
        &[ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT)).with_node_port(30085)],
    );
    let svc = svc.replace(
        "type: NodePort\n",
        &format!("type: LoadBalancer\n  loadBalancerSourceRanges: [{ranges}]\n"),
    );
    assert!(svc.contains("loadBalancerSourceRanges"), "{svc}");
    manifests::documents(&[
        format!("{svc}status:\n  loadBalancer:\n    ingress:\n    - ip: {LB_IP}\n"),
        manifests::endpoint_slice("lb", "lb-1", &[HTTP], pods),
    ])
}

/// kube-proxy lets the node's own clients through `loadBalancerSourceRanges` only when a
/// range holds one of the node's addresses; outside clients by their own address.
fn load_balancer_source_ranges_apply_to_the_node(m: Mode) {
    let mut sb = sandbox(m, &[]);
    let pods = sb.backend_ips();
    let target = format!("{LB_IP}:80");
    let args = ["tcp", "--target", &target, "--timeout-ms", "300"];
    let node_denied = |sb: &Sandbox| sb.probe_node(&args).unwrap().ok == 0;
    let client_denied = |sb: &Sandbox| sb.probe(sb.client(), &args).unwrap().ok == 0;
    // 198.18.100.0/24 holds the node's address and the outside client's.
    sb.manifests
        .write("lb.yaml", &lb_service(&pods, "198.18.100.0/24"))
        .unwrap();
    wait(&mut sb, "lb", |d| has_frontend(d, LB_IP, 80, "TCP", 3));
    assert_pods_answered(&node_tcp(&sb, &target, 20));
    assert_pods_answered(
        &sb.probe(sb.client(), &["tcp", "--target", &target, "--count", "10"])
            .unwrap(),
    );
    // A range with neither: both are kept out.
    sb.manifests
        .write("lb.yaml", &lb_service(&pods, "198.18.150.0/24"))
        .unwrap();
    let deadline = Instant::now() + SYNC;
    while !node_denied(&sb) {
        assert!(Instant::now() < deadline, "the node still gets in");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(client_denied(&sb), "the outside client still gets in");
    let r = node_tcp(&sb, &target, 5);
    assert_eq!(r.ok, 0, "{r:?}");
    if m.is_ebpf() {
        let dump = sb.agent().dump_json().unwrap();
        let fe = frontend(&dump, LB_IP, 80, "TCP").unwrap();
        assert!(
            fe["flags"]
                .as_array()
                .unwrap()
                .contains(&"node-denied".into()),
            "{fe:#}"
        );
        assert!(counter(&dump, "sock_drop") >= 5, "{}", dump["counters"]);
    }
}
