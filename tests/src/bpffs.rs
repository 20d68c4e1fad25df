//! bpffs pin directories for test agents: `/sys/fs/bpf/svclb-test-<pid>-<n>`, emptied by
//! `svclb-agent cleanup` and removed on drop.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::process;

pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) into a zeroed struct we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there (systemd does this at boot;
/// minimal machines and containers may not). Never unmounted: others may pin there too.
pub fn ensure_mounted() -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if is_bpffs(root) {
        return Ok(());
    }
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "bpf", "bpf", BPFFS_ROOT]);
    // Two test threads may race here; the loser's mount fails but the check passes.
    let result = process::run(cmd, Duration::from_secs(10));
    if is_bpffs(root) {
        return Ok(());
    }
    result.context("mount bpffs on /sys/fs/bpf")?;
    bail!("{BPFFS_ROOT} is still not a bpffs after mounting")
}

/// A unique pin directory. On drop: `svclb-agent cleanup --bpffs DIR` (run in the
/// namespace whose interfaces the agent attached to), then the directory is removed.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    agent_bin: PathBuf,
    netns: String,
}

impl PinDir {
    /// Creates `/sys/fs/bpf/svclb-test-<pid>-<n>`; `netns` is where cleanup runs.
    pub fn new(agent_bin: &Path, netns: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        ensure_mounted()?;
        remove_own_leftovers();
        let path = Path::new(BPFFS_ROOT).join(format!(
            "{}{}",
            own_prefix(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self {
            path,
            agent_bin: agent_bin.to_owned(),
            netns: netns.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `svclb-agent cleanup --bpffs DIR` now; returns its failure, if any.
    pub fn cleanup(&self) -> Result<()> {
        let mut cmd = process::command(Some(&self.netns), &self.agent_bin)?;
        cmd.arg("cleanup").arg("--bpffs").arg(&self.path);
        process::run(cmd, Duration::from_secs(30))?;
        Ok(())
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("svclb-tests: cleanup of {}: {e:#}", self.path.display());
        }
        // Whatever cleanup left (or all of it if the namespace is already gone).
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("svclb-tests: removing {}: {e}", self.path.display());
        }
    }
}

fn own_prefix() -> String {
    format!("svclb-test-{}-", std::process::id())
}

/// Removes pin dirs of an earlier process that had our pid, once per process.
fn remove_own_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(BPFFS_ROOT) else {
            return;
        };
        let prefix = own_prefix();
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}
