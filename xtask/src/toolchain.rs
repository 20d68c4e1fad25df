//! The toolchain environment every build here needs: LLVM 22 first on PATH (bpf-linker
//! is built against it), cargo's bin directory (bpf-linker itself), and nightly or, when
//! nightly is missing, stable with `RUSTC_BOOTSTRAP=1` (the agent's build.rs then builds
//! the eBPF crate with stable; see shared TOOLCHAIN notes).

use std::{ffi::OsString, path::PathBuf, process::Command};

use crate::cmd;

pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Whether a nightly toolchain is installed (rustup knows it).
pub fn has_nightly() -> bool {
    cmd::succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))
}

/// `$CARGO_HOME/bin`, where `cargo install` puts bpf-linker.
pub fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// PATH with LLVM 22 and cargo's bin directory in front.
pub fn path() -> OsString {
    let mut dirs = vec![PathBuf::from(LLVM_PREFIX).join("bin"), cargo_bin_dir()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).expect("PATH entries contain no separator")
}

/// Applies the build environment to `cmd`. Returns whether stable + RUSTC_BOOTSTRAP is
/// used (nightly missing).
pub fn apply(cmd: &mut Command) -> bool {
    cmd.env("PATH", path()).env("LLVM_PREFIX", LLVM_PREFIX);
    let bootstrap = std::env::var_os("RUSTC_BOOTSTRAP").is_some() || !has_nightly();
    if bootstrap {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    bootstrap
}
