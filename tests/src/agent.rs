//! The real `svclb-agent` binary, run in the node namespace, and its `dump --json`.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{
    netns::NetNs,
    process::{self, Process},
};

/// Where the agent reads Services and EndpointSlices from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// `--manifests DIR`.
    Manifests(PathBuf),
    /// `--kubeconfig FILE`: an apiserver (the test apiserver) reachable from the node
    /// namespace.
    Kubeconfig(PathBuf),
}

/// Everything `svclb-agent run` is started with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub bin: PathBuf,
    pub source: AgentSource,
    pub ifaces: Vec<String>,
    /// `--node-ip`; None: the agent finds the node's addresses itself.
    pub node_ip: Option<Ipv4Addr>,
    pub bpffs: PathBuf,
    /// stderr (the agent's log) goes here.
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// A program (and its arguments) the agent runs under, e.g. `capsh --drop=… --`;
    /// empty: the agent runs directly.
    pub wrapper: Vec<String>,
    /// The test's cgroup for the socket programs (`--cgroup-root`); None: no
    /// socket-level load balancing (`--socket-lb=false`), so a test never attaches
    /// programs to the machine's own cgroup root.
    pub cgroup: Option<PathBuf>,
}

/// A running agent: SIGTERM then SIGKILL on drop. When the current thread is panicking
/// (a failed test), its log is printed first.
pub struct Agent {
    process: Process,
    config: AgentConfig,
    netns: String,
}

impl Agent {
    /// `svclb-agent run --manifests …|--kubeconfig … --iface … --node-ip … --bpffs …`
    /// inside `node`.
    pub fn start(node: &NetNs, config: AgentConfig) -> Result<Self> {
        let (source_flag, source_path) = match &config.source {
            AgentSource::Manifests(dir) => ("--manifests", dir),
            AgentSource::Kubeconfig(file) => ("--kubeconfig", file),
        };
        let mut cmd = match config.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = node.command(program)?;
                cmd.args(args).arg(&config.bin);
                cmd
            }
            None => node.command(&config.bin.to_string_lossy())?,
        };
        cmd.arg("run")
            .arg(source_flag)
            .arg(source_path)
            .arg("--iface")
            .arg(config.ifaces.join(","))
            .arg("--bpffs")
            .arg(&config.bpffs);
        if let Some(ip) = config.node_ip {
            cmd.arg("--node-ip").arg(ip.to_string());
        }
        match &config.cgroup {
            Some(cg) => {
                // As on a node, where the agent's own cgroup is below the one the socket
                // programs serve (kernels before 5.14 need it: the agent learns its
                // namespace's cookie from them). A bad-input test's path is no cgroup.
                if cg.join("cgroup.procs").exists() {
                    crate::cgroup::enter(cg, &mut cmd)?;
                }
                cmd.arg("--cgroup-root").arg(cg)
            }
            None => cmd.arg("--socket-lb=false"),
        };
        cmd.args(&config.extra_args)
            .env("RUST_LOG_STYLE", "never")
            .env("NO_COLOR", "1");
        let process = Process::spawn("svclb-agent", cmd, &config.log)?;
        Ok(Self {
            process,
            config,
            netns: node.name().to_owned(),
        })
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// `svclb-agent dump --json` of this agent's pins.
    pub fn dump_json(&self) -> Result<Value> {
        dump_json(&self.config.bin, &self.netns, &self.config.bpffs)
    }

    /// `svclb-agent dump` (human form) of this agent's pins.
    pub fn dump_text(&self) -> Result<String> {
        let mut cmd = process::command(Some(&self.netns), &self.config.bin)?;
        cmd.arg("dump").arg("--bpffs").arg(&self.config.bpffs);
        process::run(cmd, Duration::from_secs(30))
    }

    /// Polls `dump --json` every 50 ms until `ready` holds (returns that dump), failing
    /// after `timeout` or when the agent exits.
    pub fn wait_dump(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + crate::slowdown::scaled(timeout);
        loop {
            if !self.is_running() {
                bail!(
                    "svclb-agent exited while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            let last = match self.dump_json() {
                Ok(dump) if ready(&dump) => return Ok(dump),
                other => other,
            };
            if Instant::now() >= deadline {
                let last = match last {
                    Ok(dump) => serde_json::to_string_pretty(&dump).unwrap_or_default(),
                    Err(e) => format!("{e:#}"),
                };
                bail!("{what}: not reached within {timeout:?}; last dump:\n{last}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the agent (SIGTERM, as an operator would); pins and attachments stay.
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "----- svclb-agent log ({}) -----\n{}",
                self.config.log.display(),
                self.log()
            );
            if let Ok(dump) = self.dump_text() {
                eprintln!("----- svclb-agent dump -----\n{dump}");
            }
        }
        self.stop();
    }
}

/// `svclb-agent dump --json --bpffs DIR`, run in namespace `netns`; the agent need not run.
pub fn dump_json(bin: &Path, netns: &str, bpffs: &Path) -> Result<Value> {
    let mut cmd = process::command(Some(netns), bin)?;
    cmd.arg("dump").arg("--json").arg("--bpffs").arg(bpffs);
    let out = process::run(cmd, Duration::from_secs(30))?;
    serde_json::from_str(&out).with_context(|| format!("dump --json is not JSON: {out}"))
}

/// The `frontends` array of a dump (empty when absent).
pub fn frontends(dump: &Value) -> &[Value] {
    dump["frontends"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The frontend `address:port/protocol`, if the dump has it.
pub fn frontend<'a>(
    dump: &'a Value,
    address: Ipv4Addr,
    port: u16,
    protocol: &str,
) -> Option<&'a Value> {
    frontends(dump).iter().find(|f| {
        f["address"].as_str() == Some(&address.to_string())
            && f["port"].as_u64() == Some(u64::from(port))
            && f["protocol"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(protocol))
    })
}

/// Backend addresses (`ip:port`) of a frontend, sorted.
pub fn backend_addrs(frontend: &Value) -> Vec<String> {
    let mut addrs: Vec<String> = frontend["backends"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|b| format!("{}:{}", b["address"].as_str().unwrap_or("?"), b["port"]))
        .collect();
    addrs.sort();
    addrs
}

/// Whether `address:port/protocol` is in the dump with exactly `count` backends.
pub fn has_frontend(
    dump: &Value,
    address: Ipv4Addr,
    port: u16,
    protocol: &str,
    count: usize,
) -> bool {
    frontend(dump, address, port, protocol).is_some_and(|f| backend_addrs(f).len() == count)
}
