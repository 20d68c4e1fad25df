//! bpffs pin directories for test agents: `/sys/fs/bpf/svclb-test-<pid>-<n>`, emptied by
//! `svclb-agent cleanup` and removed on drop.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result};

use crate::process;

pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there (systemd does this at boot;
/// minimal machines and containers may not), the way the agent does. Never unmounted:
/// others may pin there too.
pub fn ensure_mounted() -> Result<()> {
    svclb_agent::bpffs::ensure_mounted(Path::new(BPFFS_ROOT))
        .map(drop)
        .context("mount bpffs on /sys/fs/bpf")
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
