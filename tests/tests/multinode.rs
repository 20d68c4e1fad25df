//! Two nodes, two agents, real TCP and UDP: externalTrafficPolicy Cluster (SNAT to
//! the node when the endpoint is on the other node) and Local (client address kept;
//! a node without a local endpoint drops), internalTrafficPolicy Local, ClusterIP
//! across nodes, hairpin, and loadBalancerSourceRanges.
//!
//! Needs root and the binaries (`cargo build --workspace --exclude svclb-ebpf --bins`).
//! `cargo test -p svclb-tests --test multinode`
use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use svclb_tests::{
    agent::frontend,
    multinode::{
        A_EXT_IP, A_LINK_IP, Answer, B_LINK_IP, CLIENT_IP, CLIENT2_IP, PEER_PORT, TwoNodes,
        tcp_ask, udp_ask,
    },
    netns::NetNs,
    topology::INNER_IF,
};

const TIMEOUT: Duration = Duration::from_secs(2);
/// What a dropped flow gets: nothing within this long.
const SILENCE: Duration = Duration::from_millis(1500);
const HAIRPIN_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);

/// A Service `name` with one TCP and one UDP port 80 → the pods' peer port (with
/// NodePort `node_port` on both when set), `spec_extra` indented spec lines and
/// `status` (top-level YAML), plus its EndpointSlice: `endpoints` as (address, node).
fn service(
    name: &str,
    cluster_ip: Ipv4Addr,
    node_port: Option<u16>,
    spec_extra: &str,
    status: &str,
    endpoints: &[(Ipv4Addr, &str)],
) -> String {
    let kind = if spec_extra.contains("type:") {
        ""
    } else if node_port.is_some() {
        "  type: NodePort\n"
    } else {
        "  type: ClusterIP\n"
    };
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n\
         {kind}{spec_extra}  clusterIP: {cluster_ip}\n  ports:\n"
    );
    for proto in ["TCP", "UDP"] {
        let _ = write!(
            y,
            "  - {{name: {}, protocol: {proto}, port: 80, targetPort: {PEER_PORT}",
            proto.to_lowercase()
        );
        if let Some(np) = node_port {
            let _ = write!(y, ", nodePort: {np}");
        }
        y.push_str("}\n");
    }
    y.push_str(status);
    let _ = write!(
        y,
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  \
         namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\n\
         ports:\n- {{name: tcp, protocol: TCP, port: {PEER_PORT}}}\n\
         - {{name: udp, protocol: UDP, port: {PEER_PORT}}}\nendpoints:\n"
    );
    for (addr, node) in endpoints {
        let _ = writeln!(
            y,
            "- {{addresses: [\"{addr}\"], nodeName: {node}, conditions: {{ready: true}}}}"
        );
    }
    y
}

/// Waits until agent A programs `a_addr:port/TCP` and B `b_addr:port/TCP` (and so
/// the whole file).
fn wait_programmed(t: &mut TwoNodes, a_addr: Ipv4Addr, b_addr: Ipv4Addr, port: u16) -> Result<()> {
    for (node, addr) in [(&mut t.a, a_addr), (&mut t.b, b_addr)] {
        let name = node.name.clone();
        node.agent().wait_dump(
            &format!("{name} programs {addr}:{port}"),
            Duration::from_secs(20),
            |d| frontend(d, addr, port, "TCP").is_some(),
        )?;
    }
    Ok(())
}

/// Asks over TCP, then UDP, until an answer comes (the first flows may race the
/// agents' first sync or ARP); returns both answers.
fn ask_both(ns: &NetNs, target: SocketAddrV4) -> Result<[Answer; 2]> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    for udp in [false, true] {
        loop {
            let a = if udp {
                udp_ask(ns, target, TIMEOUT)?
            } else {
                tcp_ask(ns, target, TIMEOUT)?
            };
            if matches!(a, Answer::From(..)) || Instant::now() > deadline {
                out.push(a);
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok([out[0].clone(), out[1].clone()])
}

/// Both protocols answered by `pod`, which saw the source address `seen`.
fn expect_from(answers: &[Answer; 2], pod: &str, seen: Ipv4Addr) -> Result<()> {
    for (a, proto) in answers.iter().zip(["TCP", "UDP"]) {
        match a {
            Answer::From(name, peer) if name == pod && *peer.ip() == seen => {}
            other => bail!("{proto}: got {other:?}, want an answer from {pod} that saw {seen}"),
        }
    }
    Ok(())
}

/// Neither protocol gets any answer (no reset, no ICMP either).
fn expect_silence(ns: &NetNs, target: SocketAddrV4) -> Result<()> {
    let tcp = tcp_ask(ns, target, SILENCE)?;
    let udp = udp_ask(ns, target, SILENCE)?;
    ensure!(
        tcp == Answer::Silence && udp == Answer::Silence,
        "{target}: TCP {tcp:?}, UDP {udp:?}; want silence (dropped)"
    );
    Ok(())
}

fn counter(t: &TwoNodes, node: char, name: &str) -> Result<u64> {
    let n = if node == 'a' { &t.a } else { &t.b };
    let dump = n.agent_ref().dump_json()?;
    dump.pointer(&format!("/counters/{name}"))
        .and_then(|v| v.as_u64())
        .with_context(|| format!("no counter {name} in the dump: {dump}"))
}

/// `a_args`: extra flags of node A's agent.
fn cluster_policy(a_args: &[&str]) -> Result<()> {
    let vip = Ipv4Addr::new(198, 18, 0, 11);
    let mut t = TwoNodes::new(2)?;
    let b1 = t.b.pod(1).ip;
    let a1 = t.a.pod(1).ip;
    t.manifests.write(
        "svc.yaml",
        &service("remote", vip, Some(30101), "", "", &[(b1, "node-b")]),
    )?;
    if a_args.contains(&"--xdp-iface") {
        // XDP on a veth needs a peer sending full checksums, as a NIC delivers them.
        t.client.tx_checksum_off(INNER_IF)?;
    }
    t.start_agents(a_args, &[])?;
    wait_programmed(&mut t, A_EXT_IP, B_LINK_IP, 30101)?;

    // NodePort on A, endpoint on B: the pod sees A's address towards B; the reply
    // comes back to A, which restores the NodePort and the client.
    let answers = ask_both(&t.client, SocketAddrV4::new(A_EXT_IP, 30101))?;
    expect_from(&answers, "b-p1", A_LINK_IP).context("NodePort on A → pod on B")?;
    ensure!(
        counter(&t, 'a', "snat_new")? >= 2,
        "A's snat_new counter did not move"
    );

    // ClusterIP from a pod on A to a pod on B: no SNAT, the pod's own address.
    let answers = ask_both(&t.a.pod(1).ns, SocketAddrV4::new(vip, 80))?;
    expect_from(&answers, "b-p1", a1).context("ClusterIP from A to a pod on B")?;

    // The same NodePort on B: local endpoint, no SNAT, the client's own address.
    let answers = ask_both(&t.client, SocketAddrV4::new(B_LINK_IP, 30101))?;
    expect_from(&answers, "b-p1", CLIENT_IP).context("NodePort on B → local pod")?;
    Ok(())
}

#[test]
fn external_policy_cluster_snats_to_the_node_towards_a_remote_endpoint() -> Result<()> {
    cluster_policy(&[])
}

/// The same through A's XDP program (generic mode) on the client links.
#[test]
fn external_policy_cluster_through_xdp() -> Result<()> {
    cluster_policy(&["--xdp-iface", "ext0,ext1", "--xdp-mode", "skb"])
}

/// Kernels before 6.7 have no FIB source lookup: A takes the address of the interface
/// the FIB sends the flow out of, from its interface table (TC and XDP).
#[test]
fn external_policy_cluster_with_the_baseline_kernel_features() -> Result<()> {
    cluster_policy(&["--kernel-features", "baseline"])
}

#[test]
fn external_policy_cluster_through_xdp_with_the_baseline_kernel_features() -> Result<()> {
    cluster_policy(&[
        "--kernel-features",
        "baseline",
        "--xdp-iface",
        "ext0,ext1",
        "--xdp-mode",
        "skb",
    ])
}

#[test]
fn external_policy_local_keeps_the_client_and_drops_without_local_endpoint() -> Result<()> {
    let mut t = TwoNodes::new(2)?;
    let a2 = t.a.pod(2).ip;
    t.manifests.write(
        "svc.yaml",
        &service(
            "local",
            Ipv4Addr::new(198, 18, 0, 12),
            Some(30102),
            "  externalTrafficPolicy: Local\n",
            "",
            &[(a2, "node-a")],
        ),
    )?;
    t.start_agents(&[], &[])?;
    wait_programmed(&mut t, A_EXT_IP, B_LINK_IP, 30102)?;

    let answers = ask_both(&t.client, SocketAddrV4::new(A_EXT_IP, 30102))?;
    expect_from(&answers, "a-p2", CLIENT_IP).context("NodePort on A, local endpoint")?;

    // B has no local endpoint: dropped, as kube-proxy does (no reset, no ICMP).
    let before = counter(&t, 'b', "no_local_drop")?;
    expect_silence(&t.client, SocketAddrV4::new(B_LINK_IP, 30102))?;
    ensure!(
        counter(&t, 'b', "no_local_drop")? > before,
        "B's no_local_drop did not move"
    );
    Ok(())
}

#[test]
fn internal_policy_local_stays_on_the_node() -> Result<()> {
    let vip = Ipv4Addr::new(198, 18, 0, 13);
    let mut t = TwoNodes::new(2)?;
    let only_b = Ipv4Addr::new(198, 18, 0, 16);
    let (a2, b2) = (t.a.pod(2).ip, t.b.pod(2).ip);
    let itp = "  internalTrafficPolicy: Local\n";
    let manifest = [
        service("itp", vip, None, itp, "", &[(a2, "node-a"), (b2, "node-b")]),
        service("itp-b", only_b, None, itp, "", &[(b2, "node-b")]),
    ]
    .join("---\n");
    t.manifests.write("svc.yaml", &manifest)?;
    t.start_agents(&[], &[])?;
    wait_programmed(&mut t, vip, vip, 80)?;
    for (node, client, want) in [('a', &t.a.pod(1), "a-p2"), ('b', &t.b.pod(1), "b-p2")] {
        for i in 0..10 {
            let tcp = tcp_ask(&client.ns, SocketAddrV4::new(vip, 80), TIMEOUT)?;
            let udp = udp_ask(&client.ns, SocketAddrV4::new(vip, 80), TIMEOUT)?;
            for (a, proto) in [(tcp, "TCP"), (udp, "UDP")] {
                ensure!(
                    a.pod() == Some(want),
                    "node {node}, request {i}, {proto}: {a:?}, want {want}"
                );
            }
        }
    }
    // No endpoint on A: A's pods are dropped (kube-proxy), B's are served.
    wait_programmed(&mut t, only_b, only_b, 80)?;
    let before = counter(&t, 'a', "no_local_drop")?;
    expect_silence(&t.a.pod(1).ns, SocketAddrV4::new(only_b, 80))?;
    ensure!(counter(&t, 'a', "no_local_drop")? > before);
    let answers = ask_both(&t.b.pod(1).ns, SocketAddrV4::new(only_b, 80))?;
    expect_from(&answers, "b-p2", t.b.pod(1).ip)
}

#[test]
fn hairpin_pod_reaches_itself_through_its_service() -> Result<()> {
    let vip = Ipv4Addr::new(198, 18, 0, 14);
    let mut t = TwoNodes::new(2)?;
    let a1 = t.a.pod(1).ip;
    t.manifests.write(
        "svc.yaml",
        &service("self", vip, None, "", "", &[(a1, "node-a")]),
    )?;
    t.start_agents(&[], &[])?;
    wait_programmed(&mut t, vip, vip, 80)?;
    let answers = ask_both(&t.a.pod(1).ns, SocketAddrV4::new(vip, 80))?;
    expect_from(&answers, "a-p1", HAIRPIN_IP).context("hairpin")?;
    ensure!(counter(&t, 'a', "hairpin_new")? >= 2);
    // Another pod still reaches it with its own address.
    let answers = ask_both(&t.a.pod(2).ns, SocketAddrV4::new(vip, 80))?;
    expect_from(&answers, "a-p1", t.a.pod(2).ip)
}

/// `a_args`: extra flags of node A's agent.
fn source_ranges(a_args: &[&str]) -> Result<()> {
    let lb_ip = Ipv4Addr::new(198, 18, 200, 10);
    let mut t = TwoNodes::new(2)?;
    let a2 = t.a.pod(2).ip;
    t.manifests.write(
        "svc.yaml",
        &service(
            "lb",
            Ipv4Addr::new(198, 18, 0, 15),
            Some(30105),
            "  type: LoadBalancer\n  loadBalancerSourceRanges: [198.18.100.0/24]\n",
            &format!("status: {{loadBalancer: {{ingress: [{{ip: {lb_ip}}}]}}}}\n"),
            &[(a2, "node-a")],
        ),
    )?;
    if a_args.contains(&"--xdp-iface") {
        // XDP on a veth needs a peer sending full checksums, as a NIC delivers them.
        t.client.tx_checksum_off(INNER_IF)?;
    }
    t.start_agents(a_args, &[])?;
    wait_programmed(&mut t, lb_ip, lb_ip, 80)?;

    let answers = ask_both(&t.client, SocketAddrV4::new(lb_ip, 80))?;
    expect_from(&answers, "a-p2", CLIENT_IP).context("client in range")?;
    expect_silence(&t.client2, SocketAddrV4::new(lb_ip, 80)).context("client out of range")?;
    ensure!(counter(&t, 'a', "src_range_drop")? >= 2);
    // kube-proxy applies the ranges to load-balancer IPs only: the NodePort answers.
    let answers = ask_both(&t.client2, SocketAddrV4::new(A_EXT_IP, 30105))?;
    expect_from(&answers, "a-p2", CLIENT2_IP).context("NodePort from out of range")?;

    // Widening the list lets client2 in.
    t.manifests.write(
        "svc.yaml",
        &service(
            "lb",
            Ipv4Addr::new(198, 18, 0, 15),
            Some(30105),
            "  type: LoadBalancer\n  loadBalancerSourceRanges: [198.18.100.0/24, 198.18.101.2/32]\n",
            &format!("status: {{loadBalancer: {{ingress: [{{ip: {lb_ip}}}]}}}}\n"),
            &[(a2, "node-a")],
        ),
    )?;
    let answers = ask_both(&t.client2, SocketAddrV4::new(lb_ip, 80))?;
    expect_from(&answers, "a-p2", CLIENT2_IP).context("client2 after widening")
}

#[test]
fn load_balancer_source_ranges_allow_list() -> Result<()> {
    source_ranges(&[])
}

#[test]
fn load_balancer_source_ranges_through_xdp() -> Result<()> {
    source_ranges(&["--xdp-iface", "ext0,ext1", "--xdp-mode", "skb"])
}

/// One GET of `target` from `ns`: (status, body), or None when nothing listens.
fn health_check(ns: &NetNs, target: SocketAddrV4) -> Result<Option<(u16, serde_json::Value)>> {
    ns.in_thread(move || -> Result<Option<(u16, serde_json::Value)>> {
        let mut s = match std::net::TcpStream::connect_timeout(&target.into(), TIMEOUT) {
            Ok(s) => s,
            // A listener closing under a connect resets it: not serving, as refused.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e).context(format!("connect {target}")),
        };
        s.set_read_timeout(Some(TIMEOUT))?;
        svclb_tests::http::write_get(&mut s, "lb", true)?;
        let msg = svclb_tests::http::read_message(&mut s, &mut Vec::new())?.context("no answer")?;
        let status = msg.status().context("no status")?;
        Ok(Some((status, serde_json::from_slice(&msg.body)?)))
    })?
}

/// Polls until `target` answers with `status` and `local` endpoints (bounded).
fn wait_health(ns: &NetNs, target: SocketAddrV4, want: Option<(u16, u64)>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = health_check(ns, target)?;
        let seen = got
            .as_ref()
            .map(|(s, b)| (*s, b["localEndpoints"].as_u64().unwrap_or(u64::MAX)));
        if seen == want {
            if let Some((_, body)) = &got {
                ensure!(
                    body["service"] == serde_json::json!({"namespace": "default", "name": "lb"}),
                    "{body}"
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{target}: want {want:?}, got {got:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_check_node_port_tells_the_load_balancer_which_nodes_have_endpoints() -> Result<()> {
    const HCNP: u16 = 31999;
    let mut t = TwoNodes::new(2)?;
    let (a2, b1) = (t.a.pod(2).ip, t.b.pod(1).ip);
    let lb = |endpoints: &[(Ipv4Addr, &str)]| {
        service(
            "lb",
            Ipv4Addr::new(198, 18, 0, 13),
            Some(30103),
            &format!(
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: {HCNP}\n"
            ),
            "status: {loadBalancer: {ingress: [{ip: 198.18.61.1}]}}\n",
            endpoints,
        )
    };
    t.manifests.write("svc.yaml", &lb(&[(a2, "node-a")]))?;
    t.start_agents(&[], &[])?;
    wait_programmed(&mut t, A_EXT_IP, B_LINK_IP, 30103)?;
    let (on_a, on_b) = (
        SocketAddrV4::new(A_EXT_IP, HCNP),
        SocketAddrV4::new(B_LINK_IP, HCNP),
    );

    // The endpoint runs on A: A says 200 (one ready endpoint on each of the two
    // ports, summed as kube-proxy does), B 503.
    wait_health(&t.client, on_a, Some((200, 2)))?;
    wait_health(&t.client, on_b, Some((503, 0)))?;

    // It moves to B.
    t.manifests.write("svc.yaml", &lb(&[(b1, "node-b")]))?;
    wait_health(&t.client, on_a, Some((503, 0)))?;
    wait_health(&t.client, on_b, Some((200, 2)))?;

    // Policy Cluster: no health check any more; the port closes on both nodes.
    t.manifests.write(
        "svc.yaml",
        &lb(&[(b1, "node-b")]).replace(
            "externalTrafficPolicy: Local",
            "externalTrafficPolicy: Cluster",
        ),
    )?;
    wait_health(&t.client, on_a, None)?;
    wait_health(&t.client, on_b, None)?;
    Ok(())
}
