//! `cargo xtask demo`: the agent in a sandbox with three pods behind an nginx-style
//! Service (ClusterIP 198.18.0.10:80 and NodePort 30080 → targetPort 8080), a few hundred
//! requests through each frontend, requests per backend and the agent's `dump`.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{
    agent::has_frontend,
    manifests::{self, ServicePort, SlicePort, Target},
    report::ProbeReport,
    sandbox::{self, POD_HTTP_PORT, Sandbox},
    topology::NODE_IP,
};

pub const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const NODE_PORT: u16 = 30080;
const REQUESTS: u64 = 300;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C / SIGTERM only set a flag: the demo stops at the next step and unwinds, so the
/// sandbox is torn down (its children are in their own process groups and unaffected).
fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run() -> Result<()> {
    sandbox::ensure_root()?;
    install_signal_handlers();
    let started = Instant::now();

    println!(
        "== building the sandbox: node, external client, pods pod1..pod3 (+ pod4 as a client)"
    );
    let mut sb = Sandbox::new()?;
    for pod in sb.backend_pods() {
        println!(
            "   {} {} serving HTTP on :{POD_HTTP_PORT}",
            pod.name(),
            pod.ip()
        );
    }
    check_interrupted()?;

    let service = manifests::service(
        "nginx",
        CLUSTER_IP,
        Some("nginx"),
        &[
            ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT))
                .with_node_port(NODE_PORT),
        ],
    );
    let ips = sb.backend_ips();
    let slice = manifests::endpoint_slice(
        "nginx",
        "nginx-demo1",
        &[SlicePort {
            name: "http",
            protocol: "TCP",
            port: POD_HTTP_PORT,
        }],
        &ips,
    );
    sb.manifests.write(
        "nginx.yaml",
        &manifests::documents(&[service.clone(), slice]),
    )?;
    println!(
        "\n== {}/nginx.yaml: the Service",
        sb.manifests.path().display()
    );
    println!("{service}");
    let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
    println!(
        "   and its EndpointSlice, as the EndpointSlice controller writes it: port http = {POD_HTTP_PORT}, \
         ready endpoints {}\n",
        ips.join(", ")
    );

    println!("== starting svclb-agent in the node namespace");
    let agent = sb.start_agent(&[])?;
    agent.wait_dump("the nginx frontends", Duration::from_secs(20), |d| {
        has_frontend(d, CLUSTER_IP, 80, "TCP", 3) && has_frontend(d, NODE_IP, NODE_PORT, "TCP", 3)
    })?;
    println!("   synced after {:.1?}", started.elapsed());
    check_interrupted()?;

    let count = REQUESTS.to_string();
    let cluster = format!("{CLUSTER_IP}:80");
    let via_cluster = sb.probe(
        sb.client_pod(),
        &["tcp", "--target", &cluster, "--count", &count],
    )?;
    print_report(&format!("ClusterIP {cluster} from pod4"), &via_cluster);
    check_interrupted()?;

    let node_port = format!("{NODE_IP}:{NODE_PORT}");
    let via_node_port = sb.probe(
        sb.client(),
        &["tcp", "--target", &node_port, "--count", &count],
    )?;
    print_report(
        &format!("NodePort {node_port} from the external client"),
        &via_node_port,
    );
    check_interrupted()?;

    println!("\n== svclb-agent dump\n{}", sb.agent().dump_text()?);
    let ok = [&via_cluster, &via_node_port]
        .iter()
        .all(|r| r.failed() == 0 && r.backends.len() == 3);
    println!("== tearing the sandbox down");
    drop(sb);
    println!("   done in {:.1?}", started.elapsed());
    if !ok {
        bail!("some requests failed or a backend got none: see above");
    }
    Ok(())
}

fn print_report(title: &str, r: &ProbeReport) {
    println!("\n== {title}: {} new connections, one GET each", r.attempts);
    for (backend, n) in &r.backends {
        println!("   {backend:<6} {n:>5}  {:>5.1}%", 100.0 * r.share(backend));
    }
    if !r.failures.is_empty() {
        println!("   failures: {:?}", r.failures);
    }
    if let Some(l) = r.latency_us {
        println!(
            "   latency per request: p50 {} µs, p99 {} µs, max {} µs",
            l.p50, l.p99, l.max
        );
    }
}
