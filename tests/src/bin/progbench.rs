//! Programming-time benchmark: how long the eBPF backend takes to write N Services ×
//! E endpoints into the maps (initial sync), and then one changed Service.
//! `progbench [--services 1000,10000] [--endpoints 10] [--reps 3] [--json FILE]`.
//! Needs root. Pins under a private bpffs dir, removed at the end.
use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result};
use svclb_agent::dataplane::{
    Dataplane,
    ebpf::{EbpfDataplane, EbpfOptions, cleanup},
};
use svclb_tests::synthetic;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<u32> = arg(&args, "--services")
        .unwrap_or_else(|| "1000,10000".into())
        .split(',')
        .map(|s| s.parse().context("--services"))
        .collect::<Result<_>>()?;
    let endpoints: u32 = arg(&args, "--endpoints").map_or(Ok(10), |s| s.parse())?;
    let reps: usize = arg(&args, "--reps").map_or(Ok(3), |s| s.parse())?;
    let pins = PathBuf::from(format!("/sys/fs/bpf/svclb-bench-{}", std::process::id()));
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>5} | {:>28} | {:>28} | {:>28}",
        "services",
        "eps",
        "initial sync ms min/med/max",
        "one change: map µs min/med/max",
        "sync total µs min/med/max"
    );
    let result = (|| -> Result<()> {
        for &n in &sizes {
            let desired = synthetic::state(n, endpoints);
            let (mut initial, mut change, mut change_total) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                let _ = cleanup(&pins);
                let mut dp = EbpfDataplane::start(&EbpfOptions {
                    bpffs: pins.clone(),
                    tc_ifaces: vec![],
                    xdp_ifaces: vec![],
                    xdp_mode: aya::programs::XdpMode::Skb,
                    debug_log: false,
                    socket_lb: None,
                    proc_sys: Default::default(),
                    kernel_features: Default::default(),
                })?;
                let t = Instant::now();
                let r = dp.sync(&desired)?;
                initial.push(t.elapsed().as_secs_f64() * 1e3);
                assert!(r.writes > 0);
                // One Service loses an endpoint, then gets it back.
                let mut changed = desired.clone();
                let key = synthetic::set_key(n / 2);
                changed.sets.get_mut(&key).unwrap().endpoints.pop();
                for target in [&changed, &desired] {
                    let t = Instant::now();
                    let r = dp.sync(target)?;
                    change_total.push(t.elapsed().as_secs_f64() * 1e6);
                    change.push(r.duration.as_secs_f64() * 1e6);
                }
                drop(dp);
            }
            let (a, b, c) = stats(&mut initial);
            let (d, e, f) = stats(&mut change);
            let (g, h, i) = stats(&mut change_total);
            println!(
                "{n:>8} {endpoints:>5} | {a:>8.1} {b:>8.1} {c:>8.1}    | {d:>8.1} {e:>8.1} {f:>8.1} | {g:>9.1} {h:>9.1} {i:>9.1}"
            );
            rows.push(format!(
                "{{\"services\":{n},\"endpoints\":{endpoints},\"initial_ms\":[{a:.3},{b:.3},{c:.3}],\"one_change_map_us\":[{d:.3},{e:.3},{f:.3}],\"one_change_total_us\":[{g:.3},{h:.3},{i:.3}]}}"
            ));
        }
        Ok(())
    })();
    let _ = cleanup(&pins);
    result?;
    if let Some(path) = arg(&args, "--json") {
        std::fs::write(&path, format!("[{}]\n", rows.join(",")))?;
    }
    println!(
        "initial sync = compile + diff + all map writes (wall clock); one change: map = the map writes, total = compile + diff + writes"
    );
    Ok(())
}
