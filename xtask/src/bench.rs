//! `cargo xtask bench [--quick] [--out DIR]`: per-packet cost through BPF_PROG_TEST_RUN (pktbench,
//! with the no-op XDP floor measured in the same run), map programming time
//! (progbench), the control plane against the test apiserver (syncbench), and real
//! traffic through a ClusterIP against a direct connection and the iptables mode
//! (trafficbench). Writes the raw JSON and the plots (benchplot) to `bench-results/`,
//! the tables and the targets to BENCHMARKS.md.
//! A benchmark, never a test: numbers are reported, not asserted.
use std::{fmt::Write as _, fs, path::Path, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{cmd, toolchain};

pub fn run(quick: bool, out: Option<&Path>) -> Result<()> {
    cmd::ensure_root("`cargo xtask bench`")?;
    let started = Instant::now();
    let root = cmd::workspace_root();
    let mut build = Command::new("cargo");
    toolchain::apply(&mut build);
    cmd::run(build.current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "svclb-tests",
        "--bin",
        "pktbench",
        "--bin",
        "progbench",
        "--bin",
        "syncbench",
        "--bin",
        "trafficbench",
        "--bin",
        "benchplot",
        "--bin",
        "podserver",
        "--bin",
        "probe",
        "-p",
        "svclb-agent",
        "--bin",
        "svclb-agent",
    ]))?;
    let bin = |name: &str| cmd::target_dir().join("release").join(name);
    let report_dir = out.map_or_else(|| root.clone(), Path::to_path_buf);
    let out_dir = report_dir.join("bench-results");
    fs::create_dir_all(&out_dir)?;
    let json = |name: &str| out_dir.join(format!("{name}.json"));

    let (pkt_services, repeat, reps, prog_services) = if quick {
        ("1,1000", "2000", "3", "1000")
    } else {
        ("1,1000,10000,100000", "10000", "7", "1000,10000,100000")
    };
    let pkt_args = [
        "--services",
        pkt_services,
        "--repeat",
        repeat,
        "--reps",
        reps,
    ];
    let pkt = capture(
        Command::new(bin("pktbench"))
            .args(pkt_args)
            .arg("--json")
            .arg(json("pktbench")),
    )?;
    let prog_args = [
        "--services",
        prog_services,
        "--endpoints",
        "10",
        "--reps",
        reps,
    ];
    let prog = capture(
        Command::new(bin("progbench"))
            .args(prog_args)
            .arg("--json")
            .arg(json("progbench")),
    )?;

    // Change latency at 10k; memory at 10k and (full run) 100k.
    let sync_runs: &[(&str, &str, &str)] = if quick {
        &[("1000", "50", "syncbench")]
    } else {
        &[
            ("10000", "1000", "syncbench"),
            ("100000", "100", "syncbench-100k"),
        ]
    };
    let mut sync = Vec::new();
    for (services, changes, name) in sync_runs {
        let args = [
            "--services",
            services,
            "--endpoints",
            "10",
            "--changes",
            changes,
        ];
        let text = capture(
            Command::new(bin("syncbench"))
                .args(args)
                .arg("--json")
                .arg(json(name)),
        )?;
        sync.push((args.join(" "), text));
    }

    let traffic_args: [&str; 8] = if quick {
        [
            "--services",
            "100",
            "--seconds",
            "0.5",
            "--reps",
            "1",
            "--modes",
            "direct,ebpf,iptables",
        ]
    } else {
        [
            "--services",
            "100,10000",
            "--seconds",
            "1.5",
            "--reps",
            "9",
            "--modes",
            "direct,ebpf,iptables",
        ]
    };
    let traffic = capture(
        Command::new(bin("trafficbench"))
            .args(traffic_args)
            .arg("--json")
            .arg(json("trafficbench")),
    )?;
    // The node itself as the client (socket programs in eBPF mode, OUTPUT in iptables).
    let mut node_args: Vec<&str> = traffic_args.to_vec();
    node_args.extend(["--from", "node"]);
    let node_traffic = capture(
        Command::new(bin("trafficbench"))
            .args(&node_args)
            .arg("--json")
            .arg(json("trafficbench-node")),
    )?;
    capture(Command::new(bin("benchplot")).arg(&out_dir))?;

    let uname = cmd::output(Command::new("uname").arg("-r")).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(md, "# svclb benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `cargo xtask bench{}` on kernel {}, {} CPUs, in {:.0} s. These machines are \
         shared and noisy: compare numbers measured side by side in one run. Ratios are paired: \
         each per-packet sample against the no-op XDP sample taken next to it, each traffic \
         repetition against the direct run of the same repetition; the targets use the median \
         of those. Raw results: `bench-results/*.json`. Where the time goes, and why the missed \
         targets are missed: [docs/performance.md](docs/performance.md).\n",
        if quick { " --quick" } else { "" },
        uname.trim(),
        cpus,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(md, "## Targets\n");
    md += &targets(&out_dir);
    let _ = writeln!(
        md,
        "\n## Per-packet cost (BPF_PROG_TEST_RUN, ns per packet)\n"
    );
    let _ = writeln!(md, "![per-packet cost](bench-results/per-packet.png)\n");
    let _ = writeln!(
        md,
        "`pktbench {}`\n\n```text\n{}```\n",
        pkt_args.join(" "),
        pkt
    );
    let _ = writeln!(
        md,
        "## Programming time (Services × 10 endpoints into the BPF maps)\n"
    );
    let _ = writeln!(
        md,
        "`progbench {}`\n\n```text\n{}```\n",
        prog_args.join(" "),
        prog
    );
    let _ = writeln!(
        md,
        "## Control plane: the agent in kube mode against the test apiserver\n"
    );
    for (args, text) in &sync {
        let _ = writeln!(md, "`syncbench {args}`\n\n```text\n{text}```\n");
    }
    let _ = writeln!(
        md,
        "## Real traffic: new connections through a ClusterIP over veth\n"
    );
    let _ = writeln!(md, "![connection rate](bench-results/conn-rate.png)\n");
    let _ = writeln!(
        md,
        "`trafficbench {}`\n\n```text\n{}```",
        traffic_args.join(" "),
        traffic
    );
    let _ = writeln!(
        md,
        "\n## Real traffic from the node itself (hostNetwork clients)\n\n`trafficbench {}`\n\n```text\n{}```",
        node_args.join(" "),
        node_traffic
    );
    let md_path = report_dir.join("BENCHMARKS.md");
    fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    println!(
        "bench: wrote {} and {} in {:.0} s",
        md_path.display(),
        out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The issues' targets, each with the measured value and whether it is met.
fn targets(dir: &Path) -> String {
    let load = |name: &str| -> Option<Value> {
        serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}.json"))).ok()?).ok()
    };
    let mut rows = vec![
        "| target | measured | met |".to_string(),
        "| --- | --- | --- |".to_string(),
    ];
    let mut row = |what: String, measured: String, met: Option<bool>| {
        let met = met.map_or("?", |m| if m { "yes" } else { "**no**" });
        rows.push(format!("| {what} | {measured} | {met} |"));
    };
    if let Some(pkt) = load("pktbench") {
        let result = |n: u64, hook: &str, case: &str| -> Option<&Value> {
            pkt["results"].as_array()?.iter().find(|r| {
                r["services"].as_u64() == Some(n) && r["hook"] == hook && r["case"] == case
            })
        };
        let median = |n: u64, hook: &str, case: &str| result(n, hook, case)?["median_ns"].as_f64();
        // Ratio to the no-op: the median over repetitions of sample i / no-op sample i
        // (pktbench takes them repetition-major, so pairs are close in time).
        let samples = |n: u64, hook: &str, case: &str| -> Option<Vec<f64>> {
            result(n, hook, case)?["samples_ns"]
                .as_array()?
                .iter()
                .map(Value::as_f64)
                .collect()
        };
        let to_noop = |n: u64, hook: &str, case: &str| -> Option<f64> {
            let (c, z) = (samples(n, hook, case)?, samples(n, "xdp_noop", "noop")?);
            let mut r: Vec<f64> = c.iter().zip(&z).map(|(c, z)| c / z).collect();
            r.sort_by(f64::total_cmp);
            r.get(r.len() / 2).copied()
        };
        let sizes: Vec<u64> = pkt["fills"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["services"].as_u64())
            .collect();
        let (small, big) = (
            sizes.first().copied().unwrap_or(1),
            sizes.last().copied().unwrap_or(1),
        );
        for n in if big == small {
            vec![small]
        } else {
            vec![small, big]
        } {
            let Some(noop) = median(n, "xdp_noop", "noop") else {
                continue;
            };
            for hook in ["xdp", "tc"] {
                for (case, limit) in [("established", 4.0), ("new", 8.0)] {
                    if let (Some(ns), Some(r)) = (median(n, hook, case), to_noop(n, hook, case)) {
                        row(
                            format!("{hook} {case} ≤ {limit}× no-op XDP, at {n} Services"),
                            format!("{r:.1}× (medians {ns:.0} / {noop:.0} ns)"),
                            Some(r <= limit),
                        );
                    }
                }
            }
        }
        for hook in ["xdp", "tc"] {
            for case in ["new", "established", "reply", "miss"] {
                if let (Some(a), Some(b)) = (to_noop(small, hook, case), to_noop(big, hook, case)) {
                    let r = b / a;
                    row(
                        format!(
                            "{hook} {case}: cost at {big} Services ≤ 1.1× at {small} (each in no-op units)"
                        ),
                        format!("{r:.2}×"),
                        Some(r <= 1.1),
                    );
                }
            }
        }
    }
    if let Some(prog) = load("progbench") {
        for r in prog.as_array().into_iter().flatten() {
            let n = r["services"].as_u64().unwrap_or(0);
            if n == 10_000 {
                let ms = r["initial_ms"][1].as_f64().unwrap_or(f64::NAN);
                row(
                    "10k Services × 10 endpoints into the maps ≤ 0.25 s".into(),
                    format!("{:.3} s", ms / 1e3),
                    Some(ms <= 250.0),
                );
            }
            let us = r["one_change_map_us"][1].as_f64().unwrap_or(f64::NAN);
            row(
                format!("one changed Service at {n}: ≤ 1 ms of map work"),
                format!("{us:.0} µs"),
                Some(us <= 1000.0),
            );
        }
    }
    if let Some(sync) = load("syncbench") {
        let n = sync["services"].as_u64().unwrap_or(0);
        let s = sync["initial_sync_s"].as_f64().unwrap_or(f64::NAN);
        row(
            format!("initial sync of {n} Services from the apiserver ≤ 2 s"),
            format!("{s:.2} s"),
            Some(s <= 2.0),
        );
        if let Some(m) = sync["map_programming_s"].as_f64() {
            row(
                "…of which map programming ≤ 0.25 s".into(),
                format!("{m:.3} s"),
                Some(m <= 0.25),
            );
        }
        let p99 = sync["change_latency_ms"]["p99"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let p50 = sync["change_latency_ms"]["p50"]
            .as_f64()
            .unwrap_or(f64::NAN);
        row(
            format!("single change → data path at {n}: p99 ≤ 10 ms"),
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
            Some(p99 <= 10.0),
        );
    }
    for (file, who) in [("trafficbench", ""), ("trafficbench-node", "node-local ")] {
        let Some(traffic) = load(file) else { continue };
        for r in traffic
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["mode"] == "ebpf")
        {
            let n = r["services"].as_u64().unwrap_or(0);
            if let Some(ratio) = r["vs_direct"].as_f64() {
                let spread = r["vs_direct_min_med_max"]
                    .as_array()
                    .and_then(|v| {
                        Some(format!(
                            " (per repetition {:.3}–{:.3})",
                            v[0].as_f64()?,
                            v[2].as_f64()?
                        ))
                    })
                    .unwrap_or_default();
                row(
                    format!(
                        "{who}ebpf connection rate ≥ 0.95× direct at {n} Services (median of paired repetitions)"
                    ),
                    format!("{ratio:.3}×{spread}"),
                    Some(ratio >= 0.95),
                );
            }
        }
    }
    rows.join("\n") + "\n"
}

/// Run a benchmark, echo and return its stdout.
fn capture(c: &mut Command) -> Result<String> {
    println!("$ {}", cmd::describe(c));
    let out = c
        .output()
        .with_context(|| format!("running {}", cmd::describe(c)))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            cmd::describe(c),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}
