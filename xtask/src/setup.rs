//! `cargo xtask setup`: installs what a fresh Debian bookworm machine lacks, skipping
//! every step that is already satisfied, and says what it does.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::{cmd, toolchain};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests, the demo and
/// debugging use.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "ethtool",
    "socat",
    "bpftool",
    "iptables",
    "nftables",
    "tcpdump",
    "curl",
    "dnsmasq",
    "bind9-dnsutils",
    "nginx-light",
    "libcap2-bin",
    // iptables mode: purging UDP flows of removed endpoints, as kube-proxy does.
    "conntrack",
    "fonts-dejavu-core",
    // `cargo xtask test --kernel`: Debian's other kernels in qemu, and IPVS mode there.
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "zstd",
    "ipvsadm",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn run() -> Result<()> {
    apt()?;
    bpf_linker()?;
    rust_src()?;
    println!("setup: done");
    Ok(())
}

fn installed(package: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn have(program: &str) -> bool {
    cmd::succeeds(Command::new("sh").args(["-c", &format!("command -v {program}")]))
}

fn apt() -> Result<()> {
    let mut wanted: Vec<&str> = APT_PACKAGES.to_vec();
    if !have("kubectl") {
        wanted.push("kubernetes-client");
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("setup: apt packages: all installed");
        return Ok(());
    }
    println!("setup: apt packages: installing {}", missing.join(" "));
    if !cmd::is_root() {
        bail!("installing Debian packages needs root: run `cargo xtask setup` as root");
    }
    // Packages like nginx and dnsmasq start their service on install; the tests run
    // their own copies inside network namespaces, so none may start in the root one.
    let _policy = ServicesForbidden::install()?;
    cmd::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "-o",
                "Dpkg::Options::=--force-confold",
            ])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// A policy-rc.d that forbids starting services, removed again on drop — unless one was
/// there already, which is then left alone.
struct ServicesForbidden {
    created: bool,
}

impl ServicesForbidden {
    fn install() -> Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            println!("setup: {POLICY_RC_D} exists, keeping it");
            return Ok(Self { created: false });
        }
        println!("setup: writing {POLICY_RC_D} so no service starts during the install");
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# svclb setup: start no service\nexit 101\n",
        )
        .with_context(|| format!("write {POLICY_RC_D}"))?;
        std::fs::set_permissions(
            POLICY_RC_D,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(Self { created: true })
    }
}

impl Drop for ServicesForbidden {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

fn bpf_linker() -> Result<()> {
    let mut probe = Command::new("bpf-linker");
    probe.arg("--version").env("PATH", toolchain::path());
    if let Some(version) = cmd::output(&mut probe) {
        println!("setup: bpf-linker: {} already installed", version.trim());
        return Ok(());
    }
    println!("setup: bpf-linker: building {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", toolchain::LLVM_PREFIX)
            .env("PATH", toolchain::path()),
    )
}

fn rust_src() -> Result<()> {
    let (toolchain, note) = if toolchain::has_nightly() {
        ("nightly", None)
    } else {
        (
            "stable",
            Some(
                "setup: no nightly toolchain: the eBPF crate builds with stable and \
                 RUSTC_BOOTSTRAP=1. `cargo xtask test|demo|build-ebpf` set it themselves; \
                 for a plain `cargo build`, `export RUSTC_BOOTSTRAP=1` first.",
            ),
        )
    };
    let components = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ]))
    .unwrap_or_default();
    if components.lines().any(|c| c.trim().starts_with("rust-src")) {
        println!("setup: rust-src ({toolchain}): already installed");
    } else {
        println!("setup: rust-src ({toolchain}): installing (build-std for the BPF target)");
        cmd::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            toolchain,
        ]))?;
    }
    if let Some(note) = note {
        println!("{note}");
    }
    Ok(())
}
