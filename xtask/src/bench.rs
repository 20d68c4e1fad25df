//! `cargo xtask bench [--quick]`: per-packet cost through BPF_PROG_TEST_RUN (pktbench,
//! with the no-op XDP floor measured in the same run), map programming time
//! (progbench), and the control plane against the test apiserver (syncbench). Writes the raw JSON to `bench-results/` and the tables to BENCHMARKS.md.
//! A benchmark, never a test: numbers are reported, not asserted.
use std::{fmt::Write as _, fs, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, toolchain};

pub fn run(quick: bool) -> Result<()> {
    cmd::ensure_root("`cargo xtask bench`")?;
    let root = cmd::workspace_root();
    let mut build = Command::new("cargo");
    toolchain::apply(&mut build);
    cmd::run(build.current_dir(&root).args([
        "build", "--release", "-p", "svclb-tests", "--bin", "pktbench", "--bin", "progbench",
        "--bin", "syncbench", "-p", "svclb-agent", "--bin", "svclb-agent",
    ]))?;
    let bin = |name: &str| cmd::target_dir().join("release").join(name);
    let out_dir = root.join("bench-results");
    fs::create_dir_all(&out_dir)?;

    let (pkt_services, repeat, reps, prog_services, sync_services, changes) = if quick {
        ("1,1000", "2000", "3", "1000", "1000", "50")
    } else {
        ("1,1000,10000,100000", "10000", "7", "1000,10000,100000", "10000", "1000")
    };
    let pkt_json = out_dir.join("pktbench.json");
    let pkt_args = ["--services", pkt_services, "--repeat", repeat, "--reps", reps];
    let pkt = capture(Command::new(bin("pktbench")).args(pkt_args).arg("--json").arg(&pkt_json))?;
    let prog_json = out_dir.join("progbench.json");
    let prog_args = ["--services", prog_services, "--endpoints", "10", "--reps", reps];
    let prog = capture(Command::new(bin("progbench")).args(prog_args).arg("--json").arg(&prog_json))?;

    let sync_json = out_dir.join("syncbench.json");
    let sync_args = ["--services", sync_services, "--endpoints", "10", "--changes", changes];
    let sync = capture(Command::new(bin("syncbench")).args(sync_args).arg("--json").arg(&sync_json))?;

    let uname = cmd::output(Command::new("uname").arg("-r")).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(md, "# svclb benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `cargo xtask bench{}` on kernel {}, {} CPUs. These machines are shared and \
         noisy: compare numbers measured side by side in one run (the no-op XDP program is \
         measured in the same run as the floor). Raw results: `bench-results/*.json`.\n",
        if quick { " --quick" } else { "" },
        uname.trim(),
        cpus
    );
    let _ = writeln!(md, "## Per-packet cost (BPF_PROG_TEST_RUN, ns per packet)\n");
    let _ = writeln!(md, "`pktbench {}`\n\n```text\n{}```\n", pkt_args.join(" "), pkt);
    let _ = writeln!(md, "## Programming time (Services × 10 endpoints into the BPF maps)\n");
    let _ = writeln!(md, "`progbench {}`\n\n```text\n{}```\n", prog_args.join(" "), prog);
    let _ = writeln!(md, "## Control plane: the agent in kube mode against the test apiserver\n");
    let _ = writeln!(md, "`syncbench {}`\n\n```text\n{}```", sync_args.join(" "), sync);
    fs::write(root.join("BENCHMARKS.md"), md).context("writing BENCHMARKS.md")?;
    println!("bench: wrote BENCHMARKS.md and {}", out_dir.display());
    Ok(())
}

/// Run a benchmark, echo and return its stdout.
fn capture(c: &mut Command) -> Result<String> {
    println!("$ {}", cmd::describe(c));
    let out = c.output().with_context(|| format!("running {}", cmd::describe(c)))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("{} failed: {}", cmd::describe(c), String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}
