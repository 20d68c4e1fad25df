//! IPVS mode against the kernel's own view (`ipvsadm -Ln`): `dump` lists what IPVS
//! serves, and a removed endpoint drains (weight 0, kept while its connection lives,
//! deleted once it ends), as kube-proxy's graceful termination does. The scenarios
//! shared with the other modes are `ipvs::NAME` in e2e.rs and socket_lb.rs.
//!
//! Needs IP_VS, which this machine's kernel lacks: ignored here, run in the 6.1 VM by
//! `cargo xtask test --kernel 6.1 --set ipvs`.
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use svclb_tests::{
    agent::{backend_addrs, frontends, has_frontend},
    fixtures::{WEB_IP, WEB_NODE_PORT, web},
    modes::Mode,
    sandbox::{Held, Sandbox, finish_probe},
    topology::{NODE_IP, pod_ip},
};

const SYNC: Duration = Duration::from_secs(10);

fn web_sandbox() -> Sandbox {
    let mut sb = Mode::Ipvs.sandbox().unwrap();
    sb.manifests
        .write("web.yaml", &web(&sb.backend_ips()))
        .unwrap();
    sb.start_agent(Mode::Ipvs.agent_args()).unwrap();
    sb.agent()
        .wait_dump("web with 3 backends", SYNC, |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 3)
                && has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
        })
        .unwrap();
    let log = sb.agent().log();
    assert!(log.contains("mode=\"ipvs\""), "not in IPVS mode:\n{log}");
    sb
}

/// `ipvsadm -Ln` as (virtual server, real server, weight) rows.
fn ipvsadm(sb: &Sandbox) -> BTreeSet<(String, String, u32)> {
    let out = sb.topo.node.run("ipvsadm", &["-Ln"]).unwrap();
    let mut rows = BTreeSet::new();
    let mut vs = String::new();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [proto @ ("TCP" | "UDP"), addr, ..] => vs = format!("{proto} {addr}"),
            ["->", real, _fwd, weight, ..] if real.contains(':') && !vs.is_empty() => {
                rows.insert((vs.clone(), real.to_string(), weight.parse().unwrap_or(99)));
            }
            _ => {}
        }
    }
    rows
}

/// The dump's rows in the same form (weight 1 serving, 0 draining).
fn dumped(sb: &mut Sandbox) -> BTreeSet<(String, String, u32)> {
    let d = sb.agent().dump_json().unwrap();
    let mut rows = BTreeSet::new();
    for fe in frontends(&d) {
        let vs = format!(
            "{} {}:{}",
            fe["protocol"].as_str().unwrap(),
            fe["address"].as_str().unwrap(),
            fe["port"]
        );
        for real in backend_addrs(fe) {
            rows.insert((vs.clone(), real, 1));
        }
        for b in fe["draining"].as_array().into_iter().flatten() {
            let real = format!("{}:{}", b["address"].as_str().unwrap(), b["port"]);
            rows.insert((vs.clone(), real, 0));
        }
    }
    rows
}

#[test]
#[ignore = "needs IP_VS: cargo xtask test --kernel 6.1 --set ipvs"]
fn dump_agrees_with_ipvsadm() {
    let mut sb = web_sandbox();
    let kernel = ipvsadm(&sb);
    assert_eq!(dumped(&mut sb), kernel);
    // ClusterIP, NodePort on the node address and on 127.0.0.1, three pods each.
    for vs in [
        format!("TCP {WEB_IP}:80"),
        format!("TCP {NODE_IP}:{WEB_NODE_PORT}"),
        format!("TCP 127.0.0.1:{WEB_NODE_PORT}"),
    ] {
        assert_eq!(
            kernel
                .iter()
                .filter(|(v, _, w)| *v == vs && *w == 1)
                .count(),
            3,
            "{vs}: {kernel:?}"
        );
    }
}

#[test]
#[ignore = "needs IP_VS: cargo xtask test --kernel 6.1 --set ipvs"]
fn removed_endpoint_drains_until_its_connection_ends() {
    let mut sb = web_sandbox();
    let Held {
        probe: hold,
        backend: held,
        ..
    } = sb
        .hold(Some(sb.client_pod()), &format!("{WEB_IP}:80"), 4000)
        .unwrap();
    let index: u8 = held.trim_start_matches("pod").parse().unwrap();
    let gone = format!("{}:8080", pod_ip(index));
    let rest: Vec<Ipv4Addr> = sb
        .backend_ips()
        .into_iter()
        .filter(|ip| *ip != pod_ip(index))
        .collect();
    sb.manifests.write("web.yaml", &web(&rest)).unwrap();
    sb.agent()
        .wait_dump("web with 2 serving backends", SYNC, |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 2)
        })
        .unwrap();
    // While the connection lives: weight 0, still there.
    let vs = format!("TCP {WEB_IP}:80");
    let rows = ipvsadm(&sb);
    assert!(
        rows.contains(&(vs.clone(), gone.clone(), 0)),
        "{gone} must drain at weight 0: {rows:?}"
    );
    assert_eq!(
        dumped(&mut sb),
        rows,
        "dump and ipvsadm disagree while draining"
    );
    let report = finish_probe(hold, Duration::from_secs(15)).unwrap();
    assert!(
        report.failures.is_empty(),
        "the held connection broke: {report:?}"
    );
    assert!(report.ok >= 30, "{report:?}");
    // After it ended (IPVS counts a closed connection as inactive until its TIME_WAIT
    // entry expires), the real server goes: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let rows = ipvsadm(&sb);
        if !rows.iter().any(|(v, r, _)| *v == vs && *r == gone) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{gone} still in IPVS after its connection ended: {rows:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }
    let log = sb.agent().log();
    assert!(log.contains("drained real server deleted"), "{log}");
}
