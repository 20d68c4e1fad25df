//! Real-traffic benchmark (issue #6): new-connection rate and latency through a
//! ClusterIP over veth, in network namespaces, side by side:
//!
//! - `direct`: the client pod talks to the backend pod's address, no load balancer;
//! - `ebpf`, `iptables`: the agent in that mode, N Services programmed, the client
//!   talks to the target Service's ClusterIP. The target Service sorts last (namespace
//!   `zz`), so rule-list data paths walk every other Service first.
//!
//! `--from node`: the client is the node itself (a process of the node's namespace in
//! its cgroup, as a hostNetwork pod is): eBPF mode serves it with the socket programs,
//! iptables mode from the nat OUTPUT chain.
//!
//! Each connection carries one HTTP request (connect, GET, read to the end, close);
//! one client, sequential, so the rate is the inverse of the per-connection time. The
//! modes' runs are interleaved within every repetition (order rotated), so machine
//! noise hits them alike, and "vs direct" is paired: the median over repetitions of
//! (rate / direct rate of the same repetition). On this shared 2-CPU machine single
//! runs of the same mode differ by ±15%, so many short repetitions beat a few long. `trafficbench [--services 100,10000] [--seconds 2]
//! [--reps 3] [--modes direct,ebpf,iptables] [--json FILE]`. Needs root and the
//! agent and pod binaries next to this binary.
use std::{
    fmt::Write as _,
    io::Read,
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use svclb_tests::{
    agent::has_frontend,
    manifests::{self, ServicePort, SlicePort, Target},
    sandbox::{POD_HTTP_PORT, Sandbox},
};

/// The target Service's ClusterIP and port.
const TARGET_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 127, 250);
const TARGET_PORT: u16 = 80;
/// Backend of every other Service: an address nothing answers on (never reached).
const IDLE_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 251, 2);
/// Per-connection bound: a stuck connection counts as failed, it does not hang the run.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound on connections per run, whatever the rate.
const MAX_CONNS: usize = 40_000;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// ClusterIP of filler Service `i` (198.18.128.0 upwards: clear of the test topology).
fn filler_vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + i)
}

/// `services - 1` filler Services, then the target, in one manifest file.
fn manifest(services: u32, backend: Ipv4Addr) -> String {
    let port = |t| {
        [ServicePort::tcp(
            Some("http"),
            TARGET_PORT,
            Target::Number(t),
        )]
    };
    let slice_port = [SlicePort {
        name: "http",
        protocol: "TCP",
        port: POD_HTTP_PORT,
    }];
    let mut docs = Vec::with_capacity(2 * services as usize);
    for i in 0..services - 1 {
        let name = format!("svc-{i}");
        docs.push(manifests::service(
            &name,
            filler_vip(i),
            Some(&name),
            &port(POD_HTTP_PORT),
        ));
        docs.push(manifests::endpoint_slice(
            &name,
            &format!("{name}-1"),
            &slice_port,
            &[IDLE_BACKEND],
        ));
    }
    let target = manifests::service("zz-target", TARGET_VIP, Some("zz"), &port(POD_HTTP_PORT))
        .replace("namespace: default", "namespace: zz");
    let slice = manifests::endpoint_slice("zz-target", "zz-target-1", &slice_port, &[backend])
        .replace("namespace: default", "namespace: zz");
    docs.push(target);
    docs.push(slice);
    manifests::documents(&docs)
}

/// One run's result.
#[derive(Debug, Default)]
struct Run {
    conns: usize,
    failed: usize,
    secs: f64,
    /// Per-connection times, µs, sorted.
    lat_us: Vec<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.conns as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        self.lat_us[((self.lat_us.len() - 1) as f64 * p).round() as usize]
    }
}

/// One HTTP request on a fresh connection (`Connection: close`).
fn request(to: SocketAddrV4, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to.into(), IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    svclb_tests::http::write_get(&mut s, "bench", true)?;
    buf.clear();
    s.read_to_end(buf)?;
    if !buf.starts_with(b"HTTP/1.") {
        return Err(std::io::Error::other("not an HTTP answer"));
    }
    Ok(())
}

/// The namespace connections start in.
fn client(sb: &Sandbox, from_node: bool) -> &svclb_tests::netns::NetNs {
    if from_node {
        &sb.topo.node
    } else {
        sb.client_pod()
    }
}

/// Connections to `to` from the client (pod, or the node) for `secs` (bounded in
/// count too).
fn load(sb: &Sandbox, from_node: bool, to: SocketAddrV4, secs: f64) -> Result<Run> {
    client(sb, from_node).in_thread(move || {
        let mut run = Run::default();
        let mut buf = Vec::with_capacity(256);
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs && run.conns + run.failed < MAX_CONNS {
            let t = Instant::now();
            match request(to, &mut buf) {
                Ok(()) => {
                    run.conns += 1;
                    run.lat_us.push(t.elapsed().as_secs_f64() * 1e6);
                }
                Err(_) => run.failed += 1,
            }
        }
        run.secs = start.elapsed().as_secs_f64();
        run.lat_us.sort_by(f64::total_cmp);
        run
    })
}

/// Starts the agent in `mode` and waits until the target Service is programmed.
fn start(sb: &mut Sandbox, mode: &str) -> Result<()> {
    let agent = sb.start_agent(&["--mode", mode, "--xdp-mode", "off"])?;
    agent.wait_dump("target programmed", Duration::from_secs(120), |d| {
        has_frontend(d, TARGET_VIP, TARGET_PORT, "TCP", 1)
    })?;
    Ok(())
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<u32> = arg(&args, "--services")
        .unwrap_or_else(|| "100,10000".into())
        .split(',')
        .map(|s| s.parse().context("--services"))
        .collect::<Result<_>>()?;
    ensure!(
        sizes.iter().all(|&n| (1..=30_000).contains(&n)),
        "--services: 1 to 30000 each"
    );
    let secs: f64 = arg(&args, "--seconds").map_or(Ok(2.0), |s| s.parse())?;
    let reps: usize = arg(&args, "--reps").map_or(Ok(3), |s| s.parse())?;
    let modes: Vec<String> = arg(&args, "--modes")
        .unwrap_or_else(|| "direct,ebpf,iptables".into())
        .split(',')
        .map(str::to_string)
        .collect();
    ensure!(
        secs > 0.0 && secs <= 30.0 && (1..=20).contains(&reps),
        "--seconds ≤ 30, --reps 1..=20"
    );
    ensure!(
        (1..=3).contains(&modes.len()),
        "--modes: one to three (each gets its own source-port range)"
    );
    let json_out = arg(&args, "--json").map(PathBuf::from);
    let from_node = match arg(&args, "--from").as_deref() {
        None | Some("pod") => false,
        Some("node") => true,
        Some(other) => bail!("--from {other}: pod or node"),
    };

    let mut rows = Vec::new();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:>8} {:>9} | {:>26} | {:>8} {:>8} | {:>24} | {:>6}",
        "services",
        "mode",
        "conn/s min/med/max",
        "p50 µs",
        "p99 µs",
        "vs direct min/med/max",
        "failed"
    );
    for &n in &sizes {
        let mut sb = Sandbox::with_backends(1)?;
        // Many short connections from one client: reuse TIME_WAIT ports.
        client(&sb, from_node).sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        if from_node {
            // Node-local packets need a route before iptables' OUTPUT DNAT sees them; a
            // real node has a default route.
            if sb
                .topo
                .node
                .ip(&["route", "show", "default"])?
                .trim()
                .is_empty()
            {
                sb.topo.node.ip(&[
                    "route",
                    "add",
                    "default",
                    "via",
                    &svclb_tests::topology::CLIENT_IP.to_string(),
                ])?;
            }
        }
        let _joined = if from_node {
            Some(sb.join_node_cgroup()?)
        } else {
            None
        };
        let backend = sb.backend_ips()[0];
        sb.manifests.write("bench.yaml", &manifest(n, backend))?;
        let mut runs: Vec<(String, Vec<Run>)> =
            modes.iter().map(|m| (m.clone(), Vec::new())).collect();
        for rep in 0..reps {
            for k in 0..modes.len() {
                let i = (k + rep) % modes.len();
                let mode = runs[i].0.clone();
                // A source port of its own per mode. The backend keeps TIME_WAIT for the
                // tuples it served; the client's TCP timestamp offset depends on the
                // address it dialled (VIP or pod). A port reused across modes meets a
                // TIME_WAIT with newer timestamps (PAWS) and the connection stalls, which
                // showed as a ~15 ms p99 in every mode once the modes were interleaved.
                let (lo, hi) = (10_000 + 18_000 * i, 10_000 + 18_000 * i + 17_999);
                client(&sb, from_node)
                    .sysctl("net.ipv4.ip_local_port_range", &format!("{lo} {hi}"))?;
                let run = if mode == "direct" {
                    load(
                        &sb,
                        from_node,
                        SocketAddrV4::new(backend, POD_HTTP_PORT),
                        secs,
                    )?
                } else {
                    start(&mut sb, &mode).with_context(|| format!("{n} Services, mode {mode}"))?;
                    let run = load(
                        &sb,
                        from_node,
                        SocketAddrV4::new(TARGET_VIP, TARGET_PORT),
                        secs,
                    );
                    sb.stop_agent_and_cleanup()?;
                    run?
                };
                eprintln!(
                    "{n} services, rep {rep}, {mode}: {:.0} conn/s, p50 {:.0} µs, p99 {:.0} µs, {} failed",
                    run.rate(),
                    run.pct(0.5),
                    run.pct(0.99),
                    run.failed
                );
                runs[i].1.push(run);
            }
        }
        // Ratios are paired: each repetition's rate over the direct rate of the same
        // repetition (measured seconds apart), so slow drifts of a shared machine
        // cancel; the median of those is the figure the targets use.
        let direct: Option<Vec<f64>> = runs
            .iter()
            .find(|(m, _)| m == "direct")
            .map(|(_, r)| r.iter().map(Run::rate).collect());
        for (mode, rs) in &runs {
            let rates: Vec<f64> = rs.iter().map(Run::rate).collect();
            let (lo, med, hi) = stats(&rates);
            let p50 = stats(&rs.iter().map(|r| r.pct(0.5)).collect::<Vec<_>>()).1;
            let p99 = stats(&rs.iter().map(|r| r.pct(0.99)).collect::<Vec<_>>()).1;
            let failed: usize = rs.iter().map(|r| r.failed).sum();
            let ratios: Option<Vec<f64>> = direct
                .as_ref()
                .map(|d| rates.iter().zip(d).map(|(r, d)| r / d).collect());
            let ratio = ratios.as_deref().map(stats);
            let _ = writeln!(
                table,
                "{n:>8} {mode:>9} | {lo:>8.0} {med:>8.0} {hi:>8.0} | {p50:>8.0} {p99:>8.0} | {:>24} | {failed:>6}",
                ratio.map_or("-".into(), |(a, m, b)| format!("{a:.3} {m:.3}× {b:.3}"))
            );
            rows.push(
                json!({"services": n, "mode": mode, "conn_per_s": [lo, med, hi],
                "p50_us": p50, "p99_us": p99, "vs_direct": ratio.map(|r| r.1),
                "vs_direct_min_med_max": ratio.map(|(a, m, b)| [a, m, b]),
                "vs_direct_per_rep": ratios, "failed": failed,
                "connections": rs.iter().map(|r| r.conns).sum::<usize>()}),
            );
        }
        if runs.iter().any(|(_, rs)| rs.iter().all(|r| r.conns == 0)) {
            bail!("a mode completed no connection:\n{table}");
        }
    }
    print!("{table}");
    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&rows)? + "\n")?;
    }
    Ok(())
}
