//! `cargo xtask demo`: builds, then runs the `svclb-demo` binary of the tests crate (the
//! sandbox code is shared with the end-to-end tests there; xtask itself cannot depend on
//! it, or `cargo xtask setup` would need bpf-linker before installing it).

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cmd, toolchain};

pub fn run() -> Result<()> {
    cmd::ensure_root("`cargo xtask demo`")?;
    let mut build = Command::new("cargo");
    toolchain::apply(&mut build);
    cmd::run(build.current_dir(cmd::workspace_root()).args([
        "build",
        "--bins",
        "-p",
        "svclb-agent",
        "-p",
        "svclb-tests",
    ]))?;

    let demo = cmd::target_dir().join("debug").join("svclb-demo");
    // Ctrl-C reaches the whole foreground process group: let the demo handle it and tear
    // its sandbox down, and report its outcome instead of dying first.
    // SAFETY: setting a signal disposition to SIG_IGN; the demo installs its own handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = cmd::status(&mut Command::new(&demo))?;
    if !status.success() {
        bail!("the demo failed ({status})");
    }
    Ok(())
}
