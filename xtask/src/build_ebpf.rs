//! `cargo xtask build-ebpf`: the eBPF object on its own (the agent embeds its own copy,
//! built by aya-build from build.rs). Same flags as aya-build uses.

use std::{path::PathBuf, process::Command};

use anyhow::{Result, ensure};

use crate::{cmd, toolchain};

const TARGET: &str = "bpfel-unknown-none";

pub fn run() -> Result<PathBuf> {
    let mut build = if toolchain::has_nightly() {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo"]);
        c
    } else {
        Command::new("cargo")
    };
    toolchain::apply(&mut build);
    build
        .current_dir(cmd::workspace_root())
        .args([
            "build",
            "-p",
            "svclb-ebpf",
            "--release",
            "--target",
            TARGET,
            "-Z",
            "build-std=core",
        ])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "--cfg=bpf_target_arch=\"x86_64\"",
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
            ]
            .join("\x1f"),
        );
    cmd::run(&mut build)?;
    let object = cmd::target_dir().join(TARGET).join("release").join("svclb");
    ensure!(
        object.is_file(),
        "the build finished but {} is missing",
        object.display()
    );
    Ok(object)
}
