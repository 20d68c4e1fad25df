//! Control-plane benchmark (issue #3): the agent in kube mode against the in-process
//! test apiserver.
//!
//! 1. Initial sync: N Services × E endpoints are created in the apiserver; the agent is
//!    started; we time until every frontend is in the pinned SERVICES map (end to end:
//!    process start, list, plan, program) and read the agent's own map-programming time
//!    from its first "synced" log line.
//! 2. Change latency: C single changes (one EndpointSlice loses or regains an endpoint);
//!    each is timed from the apiserver write to the moment the frontend's backend count
//!    in the map shows it (event → data path). Changes are spaced by a quiet gap
//!    longer than the agent's --min-sync-period-ms (20 ms), so each one is a single
//!    change, not part of a batch that the agent would deliberately hold back.
//! 3. Agent RSS after the initial sync and after the changes.
//!
//! Everything runs in a private network namespace with a veth pair; pins go to a
//! private bpffs dir. `syncbench [--services 10000] [--endpoints 10] [--changes 1000]
//! [--json FILE]`. Needs root and a built agent next to this binary.
use std::{
    net::SocketAddr,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::maps::{HashMap, Map, MapData};
use serde_json::{Value, json};
use svclb_common::{MAP_SERVICES, PROTO_TCP, ServiceKey, ServiceValue};
use svclb_testapi::{Config, TestApiServer};
use svclb_tests::{
    bpffs::PinDir,
    netns::NetNs,
    process::Process,
    sandbox::TempDir,
    synthetic::{endpoint_ip, vip},
};

const NAMESPACE: &str = "default";

fn arg(args: &[String], name: &str, default: u32) -> Result<u32> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context(name.to_string())?
            .parse()
            .context(name.to_string()),
        None => Ok(default),
    }
}

fn service(i: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": NAMESPACE},
        "spec": {"clusterIP": vip(i).to_string(),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    })
}

fn slice(i: u32, endpoints: u32) -> Value {
    let eps: Vec<Value> = (0..endpoints)
        .map(|j| json!({"addresses": [endpoint_ip(i, j).to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-a1b2c"), "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps
    })
}

fn key(i: u32) -> ServiceKey {
    ServiceKey {
        addr_be: u32::from(vip(i)).to_be(),
        port_be: 80u16.to_be(),
        proto: PROTO_TCP,
        scope: 0,
    }
}

fn open_services(pins: &std::path::Path) -> Option<HashMap<MapData, ServiceKey, ServiceValue>> {
    let data = MapData::from_pin(pins.join("maps").join(MAP_SERVICES)).ok()?;
    HashMap::try_from(Map::from_map_data(data).ok()?).ok()
}

/// Kernel memory charged to the pinned maps (`memlock` of each map fd), KiB.
fn map_memory_kib(pins: &std::path::Path) -> u64 {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    svclb_common::ALL_MAPS
        .iter()
        .filter_map(|name| {
            let data = MapData::from_pin(pins.join("maps").join(name)).ok()?;
            let fd = data.fd().as_fd().as_raw_fd();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            let line = info.lines().find(|l| l.starts_with("memlock:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum::<u64>()
        / 1024
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Longer than the agent's default --min-sync-period-ms (20 ms).
const QUIET_GAP: Duration = Duration::from_millis(25);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--services", 10_000)?;
    let e = arg(&args, "--endpoints", 10)?;
    let changes = arg(&args, "--changes", 1000)?;
    ensure!(
        n >= 1 && (2..=16).contains(&e),
        "need --services ≥ 1 and 2 ≤ --endpoints ≤ 16"
    );
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);

    // Only the agent is needed, built in the same profile as this binary.
    let agent_bin = std::env::current_exe()?.with_file_name("svclb-agent");
    ensure!(
        agent_bin.exists(),
        "{} not found: build the agent (cargo xtask bench does)",
        agent_bin.display()
    );
    let ns = NetNs::new("syncbench")?;
    // A veth pair inside the namespace (this kernel has no dummy driver): no traffic,
    // just an interface to attach to.
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
    ns.ip(&["link", "set", "d0", "up"])?;
    ns.ip(&["link", "set", "d1", "up"])?;
    ns.ip(&["addr", "add", "198.18.200.1/24", "dev", "d0"])?;
    // Cluster IPs are given explicitly, so the default allocation range does not matter.
    let config = Config::default();
    let bind: SocketAddr = "127.0.0.1:0".parse()?;
    let server = ns.in_thread(move || TestApiServer::start_with(bind, config))??;
    let objects = server.objects();
    let seed_start = Instant::now();
    for i in 0..n {
        objects
            .create(&service(i))
            .map_err(|e| anyhow::anyhow!("create svc-{i}: {e}"))?;
        objects
            .create(&slice(i, e))
            .map_err(|e| anyhow::anyhow!("create slice {i}: {e}"))?;
    }
    let seeded = seed_start.elapsed();
    let tmp = TempDir::named("syncbench")?;
    let dir = tmp.path();
    let kubeconfig = dir.join("kubeconfig");
    server.kubeconfig(&kubeconfig)?;
    let pins = PinDir::new(&agent_bin, ns.name())?;

    let mut cmd = ns.command(&agent_bin.to_string_lossy())?;
    cmd.args(["run", "--kubeconfig"]).arg(&kubeconfig).args([
        "--socket-lb=false",
        "--iface",
        "d0",
        "--xdp-mode",
        "off",
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--healthz-bind-address",
        "127.0.0.1:0",
    ]);
    cmd.arg("--bpffs").arg(pins.path());
    let log = dir.join("agent.log");
    let started = Instant::now();
    let mut agent = Process::spawn("svclb-agent", cmd, &log)?;

    // 1. Initial sync: until every frontend is in the map (bounded).
    let services = loop {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "no full sync after 120 s; agent log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        // Every frontend, not a sample: one sync writes them in batches, in key order.
        if let Some(m) = open_services(pins.path())
            && (0..n).all(|i| m.get(&key(i), 0).is_ok())
        {
            break m;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let initial = started.elapsed();
    // The agent logs its first sync after the last map write: wait for the line (bounded).
    let first_sync_map_us = || -> Option<u64> {
        std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .find(|l| l.contains(" synced") && l.contains("map_us="))
            .and_then(|l| {
                l.split("map_us=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
    };
    let waited = Instant::now();
    let map_us = loop {
        match first_sync_map_us() {
            Some(us) => break Some(us),
            None if waited.elapsed() > Duration::from_secs(30) => break None,
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    let rss_initial = rss_kib(agent.pid());
    let maps_kib = map_memory_kib(pins.path());

    // 2. Change latency: alternately drop and restore the last endpoint of one slice.
    let mut lat_ms = Vec::with_capacity(changes as usize);
    let mut state = vec![e; n as usize];
    for c in 0..changes {
        let i = (c.wrapping_mul(2_654_435_761) >> 7) % n;
        let want = if state[i as usize] == e { e - 1 } else { e };
        thread::sleep(QUIET_GAP);
        let t0 = Instant::now();
        objects
            .replace(&slice(i, want))
            .map_err(|err| anyhow::anyhow!("replace slice {i}: {err}"))?;
        loop {
            if services
                .get(&key(i), 0)
                .is_ok_and(|v| u32::from(v.backend_count) == want)
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("change {c} (svc-{i} → {want} endpoints) not applied after 10 s");
            }
            thread::sleep(Duration::from_micros(100));
        }
        lat_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        state[i as usize] = want;
    }
    let rss_after = rss_kib(agent.pid());
    agent.terminate(Duration::from_secs(5));
    // The agent's own share of each change: its reconcile (plan + map writes), from
    // the `synced` lines after the initial one.
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    if let Some(keep) = std::env::var_os("SYNCBENCH_KEEP_LOG") {
        std::fs::write(&keep, &agent_log)?;
    }
    let mut reconcile_ms: Vec<f64> = agent_log
        .lines()
        .filter(|l| l.contains(" synced") && l.contains("total_us="))
        .skip(1)
        .filter_map(|l| {
            l.split("total_us=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|us| us / 1e3)
        .collect();
    reconcile_ms.sort_by(f64::total_cmp);
    drop(services);
    drop(pins);
    drop(server);

    lat_ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&lat_ms, 0.5),
        percentile(&lat_ms, 0.99),
        *lat_ms.last().unwrap_or(&0.0),
    );
    println!(
        "services {n} × {e} endpoints (seeded into the apiserver in {:.2} s)",
        seeded.as_secs_f64()
    );
    println!(
        "initial sync, agent start → all {n} frontends in the map: {:.3} s",
        initial.as_secs_f64()
    );
    println!(
        "  of which map programming (agent's first sync, map_us): {}",
        map_us.map_or("?".into(), |u| format!("{:.3} s", u as f64 / 1e6))
    );
    println!(
        "change → data path over {changes} changes: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
    );
    if !reconcile_ms.is_empty() {
        println!(
            "  of which the agent's reconcile (plan + map writes) over {} syncs: p50 {:.2} ms, p99 {:.2} ms",
            reconcile_ms.len(),
            percentile(&reconcile_ms, 0.5),
            percentile(&reconcile_ms, 0.99)
        );
    }
    println!(
        "agent RSS: {} MiB after the initial sync, {} MiB after the changes",
        rss_initial / 1024,
        rss_after / 1024
    );
    println!(
        "BPF map memory (memlock of the pinned maps, preallocated for their capacity): {} MiB",
        maps_kib / 1024
    );
    if let Some(path) = json_out {
        let v = json!({"services": n, "endpoints": e, "initial_sync_s": initial.as_secs_f64(),
            "map_programming_s": map_us.map(|u| u as f64 / 1e6),
            "change_latency_ms": {"p50": p50, "p99": p99, "max": max, "count": changes},
            "agent_reconcile_ms": {"p50": percentile(&reconcile_ms, 0.5), "p99": percentile(&reconcile_ms, 0.99), "count": reconcile_ms.len()},
            "agent_rss_kib": {"initial": rss_initial, "after_changes": rss_after}, "map_memlock_kib": maps_kib});
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    Ok(())
}
