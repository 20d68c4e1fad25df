//! Child processes of the harness: commands run inside a network namespace, long-running
//! ones killed on drop, their stdout lines readable with a deadline and their stderr kept
//! in a file for the failure report.

use std::{
    ffi::CString,
    fs::File,
    io::{BufRead, BufReader},
    os::unix::{ffi::OsStringExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

/// A command that runs in network namespace `netns` (a name under /run/netns), or in the
/// caller's namespace when `None`.
///
/// Enters only the network namespace (setns), unlike `ip netns exec`, which also remounts
/// /sys and so hides the bpffs pins the agent and the tests share. The child gets its own
/// process group (a Ctrl-C at the terminal reaches only the harness, which then tears down
/// in order) and is killed when the thread that spawned it exits.
pub fn command(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
    let mut cmd = Command::new(program);
    let ns_path = match netns {
        Some(name) => {
            let path = Path::new("/run/netns").join(name);
            if !path.exists() {
                bail!("network namespace {} does not exist", path.display());
            }
            Some(CString::new(path.into_os_string().into_vec()).context("netns path")?)
        }
        None => None,
    };
    // SAFETY: only async-signal-safe calls (open, setns, close, setpgid, prctl) between
    // fork and exec; the path was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(path) = &ns_path {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(cmd)
}

/// Runs a short command to completion (bounded by `timeout`) and returns its stdout;
/// a non-zero exit is an error that carries the command line and its stderr.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<String> {
    let line = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("spawn `{line}`"))?;
    let output = wait_with_timeout(child, timeout).with_context(|| format!("`{line}`"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Waits for `child` to exit, killing it after `timeout`.
fn wait_with_timeout(child: Child, timeout: Duration) -> Result<std::process::Output> {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => Ok(output?),
        Err(_) => {
            // SAFETY: plain kill(2) of our own child, which has not been reaped yet.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(5));
            bail!("timed out after {timeout:?}")
        }
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A long-running child: killed (and reaped) on drop. Its stdout is read line by line in
/// a thread; its stderr goes to a log file.
pub struct Process {
    label: String,
    child: Child,
    lines: Receiver<String>,
    stderr_log: PathBuf,
}

impl Process {
    /// Spawns `cmd`; stderr goes to `stderr_log` (created or truncated).
    pub fn spawn(label: impl Into<String>, mut cmd: Command, stderr_log: &Path) -> Result<Self> {
        let label = label.into();
        let log =
            File::create(stderr_log).with_context(|| format!("create {}", stderr_log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let line = describe(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {label}: `{line}`"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            label,
            child,
            lines,
            stderr_log: stderr_log.to_owned(),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Next stdout line, waiting at most until `deadline`.
    pub fn next_line(&self, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(anyhow!(
                "{}: no output line before the deadline",
                self.label
            )),
            Err(RecvTimeoutError::Disconnected) => Err(anyhow!(
                "{}: stdout closed (exited?); stderr:\n{}",
                self.label,
                self.stderr()
            )),
        }
    }

    /// Skips stdout lines until one starts with `prefix`; returns it.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + crate::slowdown::scaled(timeout);
        loop {
            let line = self.next_line(deadline)?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit on its own within `timeout` (else kills it) and
    /// returns its exit status and the stdout lines not read yet.
    pub fn finish(mut self, timeout: Duration) -> Result<(ExitStatus, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}; stderr:\n{}",
                    self.label,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The reader thread drains the pipe until EOF; bounded in case a grandchild
        // kept it open.
        let mut rest = Vec::new();
        let drain_deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = self
            .lines
            .recv_timeout(drain_deadline.saturating_duration_since(Instant::now()))
        {
            rest.push(line);
        }
        Ok((status, rest))
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        // SAFETY: kill(2) of our own child, not reaped yet (is_running said so).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a binary of this workspace, found next to the running executable: tests run
/// from target/<profile>/deps, the demo from target/<profile>. `SVCLB_BIN_DIR` overrides.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("SVCLB_BIN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_owned());
        if let Some(parent) = dir.parent() {
            dirs.push(parent.to_owned());
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "binary `{name}` not found in {dirs:?}: build the workspace first \
                 (`cargo build`; `cargo xtask test` does it)"
            )
        })
}
