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
mod vm;

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
    /// With `--kernel`/`--kernels`: the svclb-tests binaries inside Debian's kernels in
    /// qemu instead (5.10, 6.1, 6.12).
    Test {
        /// One kernel line to run the tests in (a VM): 5.10, 6.1 or 6.12.
        #[arg(long, conflicts_with = "kernels")]
        kernel: Option<String>,
        /// Several kernel lines, one VM each, e.g. 5.10,6.1,6.12.
        #[arg(long, value_delimiter = ',')]
        kernels: Vec<String>,
        /// VM runs: the svclb-tests targets to run (default: all of them).
        #[arg(long, value_delimiter = ',', conflicts_with = "set")]
        tests: Vec<String>,
        /// VM runs: a named selection (smoke, ipvs) instead of --tests.
        #[arg(long)]
        set: Option<String>,
        /// VM runs: the longest one VM may take, in seconds.
        #[arg(long, default_value_t = 2400)]
        vm_timeout_s: u64,
        /// Passed to the test binaries (after `--`), e.g. a test name filter.
        args: Vec<String>,
    },
    /// Inside a test VM (PID 1): mount, run the plan in DIR, power off.
    #[command(hide = true)]
    VmGuest {
        dir: std::path::PathBuf,
        #[arg(long)]
        modules: std::path::PathBuf,
        #[arg(long)]
        workdir: std::path::PathBuf,
        /// The child of PID 1 that runs the test binaries.
        #[arg(long)]
        runner: bool,
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
        Cmd::Test {
            kernel,
            mut kernels,
            tests,
            set,
            vm_timeout_s,
            args,
        } => {
            kernels.extend(kernel);
            if kernels.is_empty() {
                if !tests.is_empty() || set.is_some() {
                    anyhow::bail!("--tests and --set choose what runs in a VM: add --kernel");
                }
                return test::run(&args);
            }
            vm::run(&vm::Selection {
                kernels,
                tests,
                set,
                args: &args,
                timeout: std::time::Duration::from_secs(vm_timeout_s),
            })
        }
        Cmd::VmGuest {
            dir,
            modules,
            workdir,
            runner,
        } => {
            if runner {
                vm::guest::runner(&dir, &workdir)
            } else {
                vm::guest::init(&dir, &modules, &workdir)
            }
        }
        Cmd::Demo => demo::run(),
        Cmd::Bench { quick, out } => bench::run(quick, out.as_deref()),
        Cmd::Image => docker::image(),
        Cmd::KindE2e => kind::run(),
    }
}
