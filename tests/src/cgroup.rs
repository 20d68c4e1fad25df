//! A cgroup v2 directory of the test's own, under the machine's cgroup v2 mount: the
//! agent attaches its socket programs there (never at the root, where every process
//! of the machine would run them), and node-local clients are started inside it.
//! Removed on drop; named `svclb-<pid>-<n>-<role>` like the namespaces.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::netns::unique_name;

#[derive(Debug)]
pub struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    /// Creates a new cgroup directory below the first cgroup2 mount.
    pub fn new(role: &str) -> Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let root = mountinfo
            .lines()
            .find_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                if post.split_whitespace().next()? != "cgroup2" {
                    return None;
                }
                Some(PathBuf::from(pre.split_whitespace().nth(4)?))
            })
            .context("no cgroup v2 mounted on this machine")?;
        let path = root.join(unique_name(role));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `cmd`'s process (and what it starts) a member, before it runs anything.
    pub fn enter(&self, cmd: &mut Command) -> Result<()> {
        enter(&self.path, cmd)
    }
}

/// Makes `cmd`'s process a member of cgroup `dir` before it runs anything.
pub fn enter(dir: &Path, cmd: &mut Command) -> Result<()> {
    let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())?;
    // SAFETY: only open/write/close between fork and exec; the path was allocated
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0": the writing process itself.
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// The calling process moved into a cgroup; moved back where it was on drop.
pub struct Joined {
    back: PathBuf,
}

impl TestCgroup {
    /// Moves this whole process (every thread) into the cgroup, until the guard drops.
    pub fn join_self(&self) -> Result<Joined> {
        // "0::/some/path" under the cgroup2 mount (the parent of our directory).
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("no cgroup v2 entry in /proc/self/cgroup")?;
        let root = self.path.parent().context("cgroup without parent")?;
        let back = root.join(rel.trim_start_matches('/'));
        std::fs::write(self.path.join("cgroup.procs"), "0")
            .with_context(|| format!("joining {}", self.path.display()))?;
        Ok(Joined { back })
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(self.back.join("cgroup.procs"), "0") {
            eprintln!("cannot return to cgroup {}: {e}", self.back.display());
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Members may still be exiting (killed on drop just before): bounded retries.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("cannot remove cgroup {}: {e}", self.path.display());
                    return;
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
