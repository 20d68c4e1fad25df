//! Network namespaces and veth links the tests create, deleted on drop (also when a test
//! panics). Names are `svclb-<pid>-<n>-<role>`: unique per process, so parallel test
//! binaries and other users of the machine never collide, and only this process's own
//! objects are ever deleted.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::Path,
    process::Command,
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::process;

/// Prefix of every namespace this process creates.
pub fn own_prefix() -> String {
    format!("svclb-{}-", std::process::id())
}

/// A fresh `svclb-<pid>-<n>-<role>` name.
pub fn unique_name(role: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}-{role}",
        own_prefix(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// Deletes namespaces left by an earlier process that had our pid (a crashed run whose
/// pid was reused), once per process. Other prefixes are never touched.
fn remove_own_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return;
        };
        let prefix = own_prefix();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    });
}

/// Runs `ip ARGS` in the caller's namespace.
fn ip(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    process::run(cmd, CMD_TIMEOUT)
}

/// A network namespace, deleted on drop. Deleting it also deletes the veth ends in it
/// (and so their peers), and detaches programs attached to them.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `svclb-<pid>-<n>-<role>` with its loopback up.
    pub fn new(role: &str) -> Result<Self> {
        remove_own_leftovers();
        let name = unique_name(role);
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run inside this namespace (see [`process::command`]).
    pub fn command(&self, program: &str) -> Result<Command> {
        process::command(Some(&self.name), program)
    }

    /// Runs `program ARGS` inside the namespace; returns stdout, fails on non-zero exit.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(program)?;
        cmd.args(args);
        process::run(cmd, CMD_TIMEOUT)
    }

    /// Runs `f` on a new thread that entered this namespace (setns affects only the
    /// calling thread): sockets it creates, and threads it spawns, live in the
    /// namespace. For servers run in-process that must listen inside it.
    pub fn in_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let path = Path::new("/run/netns").join(&self.name);
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        thread::spawn(move || -> Result<T> {
            // SAFETY: setns(2) with a valid namespace fd; it changes only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setns {}", path.display()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all).with_context(|| format!("in netns {}", self.name))
    }

    /// Sets `net.*` sysctl `key` (dotted form) inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run("sysctl", &["-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Turns TX checksum offload off on `iface`: a veth otherwise sends partial checksums
    /// that nobody verifies, which would hide a wrong checksum written by the data path.
    pub fn tx_checksum_off(&self, iface: &str) -> Result<()> {
        self.run("ethtool", &["-K", iface, "tx", "off"])?;
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("svclb-tests: deleting netns {}: {e:#}", self.name);
        }
    }
}

/// Creates a veth pair with one end in each namespace, both up. The ends are created
/// directly inside the namespaces (never in the caller's), so their short names cannot
/// clash with anything outside.
pub fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) -> Result<()> {
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .with_context(|| format!("veth {}:{a_if} <-> {}:{b_if}", a.name(), b.name()))?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_carry_the_pid() {
        let a = unique_name("node");
        let b = unique_name("node");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("svclb-{}-", std::process::id())));
        assert!(a.ends_with("-node"));
    }
}
