//! `cargo xtask <command>`: svclb's developer workflows.

mod bench;
mod build_ebpf;
mod cmd;
mod demo;
mod docker;
mod kind;
mod setup;
mod test;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "svclb developer workflows")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what this machine lacks to build and test (idempotent; apt needs root).
    Setup,
    /// Build the eBPF object alone and print its path.
    BuildEbpf,
    /// Build everything and run every test: unit, packet fixtures, end to end (as root).
    Test {
        /// Passed to `cargo test` after `--` (e.g. a test name filter).
        args: Vec<String>,
    },
    /// Run the agent in a sandbox of network namespaces with three pods and real traffic
    /// through a ClusterIP and a NodePort (as root).
    Demo,
    /// Per-packet cost (TestRun) and map programming time; writes BENCHMARKS.md (as root).
    Bench {
        /// A short run (smoke test: checks the benchmarks still work, not their numbers).
        #[arg(long)]
        quick: bool,
        /// Write BENCHMARKS.md and bench-results/ here instead of the repository root
        /// (CI's smoke run keeps the committed results untouched).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Build the agent's container image (deploy/Dockerfile) with Docker.
    Image,
    /// kind cluster without kube-proxy: install svclb from deploy/, check a sample app
    /// from a pod and from the host, delete the cluster (needs Docker, kind, kubectl).
    KindE2e,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::BuildEbpf => build_ebpf::run().map(|path| println!("{}", path.display())),
        Cmd::Test { args } => test::run(&args),
        Cmd::Demo => demo::run(),
        Cmd::Bench { quick, out } => bench::run(quick, out.as_deref()),
        Cmd::Image => docker::image(),
        Cmd::KindE2e => kind::run(),
    }
}
