//! One self-contained end-to-end environment: the topology, HTTP/UDP servers in the
//! backend pods, a manifests directory, a bpffs pin directory and (once started) the
//! agent. Dropping it tears everything down in order: agent, pins, servers, namespaces,
//! temporary files.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    agent::{Agent, AgentConfig, AgentSource},
    bpffs::PinDir,
    cgroup::TestCgroup,
    manifests::ManifestDir,
    netns::NetNs,
    process::{Process, bin_path},
    report::ProbeReport,
    stock::StockNode,
    topology::{NODE_IP, Pod, Topology},
};

/// HTTP port of every backend pod (a Service's usual targetPort).
pub const POD_HTTP_PORT: u16 = 8080;
/// A second HTTP port, for Services with two ports.
pub const POD_ALT_PORT: u16 = 8081;
/// Port 80 as well, for the selectorless Service example (6666 → 80).
pub const POD_LEGACY_PORT: u16 = 80;
/// UDP echo port of every backend pod.
pub const POD_UDP_PORT: u16 = 5005;
/// By default ([`Sandbox::new`]) the backend pods are pod1..=pod3; pod4 runs no server
/// and is the in-cluster client (a pod reaching a Service it is itself a backend of
/// would need hairpin NAT). [`Sandbox::with_backends`] builds pod1..=podN and the
/// client podN+1.
pub const BACKEND_PODS: u8 = 3;
pub const CLIENT_POD: u8 = BACKEND_PODS + 1;

/// Paths of the binaries the sandbox runs.
#[derive(Debug, Clone)]
pub struct Bins {
    pub agent: PathBuf,
    pub podserver: PathBuf,
    pub probe: PathBuf,
}

impl Bins {
    /// Found next to the running executable (see [`bin_path`]).
    pub fn locate() -> Result<Self> {
        Ok(Self {
            agent: bin_path("svclb-agent")?,
            podserver: bin_path("podserver")?,
            probe: bin_path("probe")?,
        })
    }
}

pub struct Sandbox {
    // Field order is drop order.
    agent: Option<Agent>,
    pins: PinDir,
    /// Where the agent's socket programs attach and node-local clients run.
    cgroup: TestCgroup,
    /// `--cgroup-root` given to agents instead of `cgroup`'s (a test of bad input).
    agent_cgroup: Option<PathBuf>,
    /// `--node-ip` of agents (default NODE_IP; None: the agent's own choice).
    agent_node_ip: Option<Ipv4Addr>,
    /// `--bpffs` given to agents instead of the sandbox's pin directory.
    agent_bpffs: Option<PathBuf>,
    /// The backend pods' servers, killed on drop.
    _servers: Vec<Process>,
    pub topo: Topology,
    pub manifests: ManifestDir,
    tmp: TempDir,
    bins: Bins,
    restarts: AtomicU32,
    /// Number of backend pods: pod1..=backends serve, pod backends+1 is the client.
    backends: u8,
    /// What the last agent was started with, for [`Sandbox::restart_agent`].
    agent_source: Option<AgentSource>,
    /// See [`Sandbox::set_agent_wrapper`].
    wrapper: Vec<String>,
}

impl Sandbox {
    /// Builds the topology (three backend pods serving, one client pod) with servers
    /// ready. Needs root.
    pub fn new() -> Result<Self> {
        Self::with_backends(BACKEND_PODS)
    }

    /// Like [`Sandbox::new`] with `backends` serving pods (1 ≤ backends ≤ 249), pod1..=N;
    /// pod N+1 is the client.
    pub fn with_backends(backends: u8) -> Result<Self> {
        Self::on(backends, StockNode::Systemd)
    }

    /// Like [`Sandbox::with_backends`] on a node with `stock`'s sysctls.
    pub fn on(backends: u8, stock: StockNode) -> Result<Self> {
        ensure!(
            (1..=249).contains(&backends),
            "backends must be in 1..=249, got {backends}"
        );
        ensure_root()?;
        let bins = Bins::locate()?;
        let tmp = TempDir::new()?;
        let topo = Topology::on(backends + 1, stock)?;
        let pins = PinDir::new(&bins.agent, topo.node.name())?;
        let cgroup = TestCgroup::new("node")?;
        let manifests = ManifestDir::create(tmp.path())?;
        let mut servers = Vec::new();
        for pod in &topo.pods[..usize::from(backends)] {
            servers.push(start_podserver(&bins, tmp.path(), pod)?);
        }
        for server in &servers {
            server.wait_line("ready", Duration::from_secs(10))?;
        }
        Ok(Self {
            agent: None,
            pins,
            cgroup,
            agent_cgroup: None,
            agent_node_ip: Some(NODE_IP),
            agent_bpffs: None,
            _servers: servers,
            topo,
            manifests,
            tmp,
            bins,
            restarts: AtomicU32::new(0),
            backends,
            agent_source: None,
            wrapper: Vec::new(),
        })
    }

    pub fn backend_pods(&self) -> &[Pod] {
        &self.topo.pods[..usize::from(self.backends)]
    }

    pub fn backend_ips(&self) -> Vec<Ipv4Addr> {
        self.backend_pods().iter().map(Pod::ip).collect()
    }

    /// The pod that is nobody's backend, for in-cluster clients.
    pub fn client_pod(&self) -> &NetNs {
        &self.topo.pod(self.backends + 1).ns
    }

    /// The external client.
    pub fn client(&self) -> &NetNs {
        &self.topo.client
    }

    pub fn bins(&self) -> &Bins {
        &self.bins
    }

    /// Runs `bin` as the agent from now on (e.g. a wrapper that drops capabilities and
    /// execs the real one, which stays in [`Bins::locate`]'s place).
    pub fn set_agent_bin(&mut self, bin: PathBuf) {
        self.bins.agent = bin;
    }

    pub fn pins(&self) -> &Path {
        self.pins.path()
    }

    /// Starts the agent on every node interface with `extra_args`, reading the
    /// manifests directory, and waits until its pins can be dumped.
    pub fn start_agent(&mut self, extra_args: &[&str]) -> Result<&mut Agent> {
        let source = AgentSource::Manifests(self.manifests.path().to_owned());
        self.start_agent_from(source, extra_args)
    }

    /// Starts the agent on every node interface with `extra_args`, watching the
    /// apiserver of `kubeconfig` (which must be reachable from the node namespace), and
    /// waits until its pins can be dumped.
    pub fn start_agent_kube(
        &mut self,
        kubeconfig: &Path,
        extra_args: &[&str],
    ) -> Result<&mut Agent> {
        let source = AgentSource::Kubeconfig(kubeconfig.to_owned());
        self.start_agent_from(source, extra_args)
    }

    fn start_agent_from(&mut self, source: AgentSource, extra_args: &[&str]) -> Result<&mut Agent> {
        ensure!(self.agent.is_none(), "agent already started");
        let config = self.agent_config(source, "agent.log", extra_args);
        let agent = self.agent.insert(Agent::start(&self.topo.node, config)?);
        agent.wait_dump("agent startup", Duration::from_secs(20), |_| true)?;
        Ok(agent)
    }

    /// Stops the running agent (SIGTERM: pins and attachments stay) and starts a new one
    /// from the same source with `extra_args`, which adopts the pins. Each agent logs to
    /// its own file.
    pub fn restart_agent(&mut self, extra_args: &[&str]) -> Result<&mut Agent> {
        let mut old = self.agent.take().context("no agent to restart")?;
        old.stop();
        let source = self.agent_source.clone().context("no agent source")?;
        let generation = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        let config = self.agent_config(source, &format!("agent-{generation}.log"), extra_args);
        let agent = self.agent.insert(Agent::start(&self.topo.node, config)?);
        agent.wait_dump("agent restart", Duration::from_secs(20), |_| true)?;
        Ok(agent)
    }

    /// The agent's command line on every node interface; remembers `source` for
    /// restarts.
    fn agent_config(&mut self, source: AgentSource, log: &str, extra_args: &[&str]) -> AgentConfig {
        self.agent_source = Some(source.clone());
        AgentConfig {
            bin: self.bins.agent.clone(),
            source,
            ifaces: self.topo.node_ifaces(),
            node_ip: self.agent_node_ip,
            bpffs: self
                .agent_bpffs
                .clone()
                .unwrap_or_else(|| self.pins.path().to_owned()),
            log: self.tmp.path().join(log),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            wrapper: self.wrapper.clone(),
            cgroup: Some(
                self.agent_cgroup
                    .clone()
                    .unwrap_or_else(|| self.cgroup.path().to_owned()),
            ),
        }
    }

    /// Agents started from now on run under `wrapper` (a program and its arguments,
    /// which must end by running the agent command line appended to them).
    pub fn set_agent_wrapper(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
    }

    /// Stops the agent and removes what it programmed (`svclb-agent cleanup`), so that
    /// the next agent starts from nothing, whatever its mode.
    pub fn stop_agent_and_cleanup(&mut self) -> Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
        self.pins.cleanup()
    }

    pub fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("start_agent first")
    }

    /// Runs `probe ARGS` in `ns` to completion and parses its report.
    pub fn probe(&self, ns: &NetNs, args: &[&str]) -> Result<ProbeReport> {
        let (status, lines) = self
            .spawn_probe(ns, args)?
            .finish(Duration::from_secs(120))?;
        parse_report(status, &lines)
    }

    /// Starts `probe ARGS` in `ns` (for `hold`); finish it with [`finish_probe`].
    pub fn spawn_probe(&self, ns: &NetNs, args: &[&str]) -> Result<Process> {
        let mut cmd = ns.command(&self.bins.probe.to_string_lossy())?;
        cmd.args(args);
        self.spawn_probe_cmd(cmd, args)
    }

    /// Starts `probe hold` from `from` (None: the node itself) to `target`: one
    /// connection kept for `duration_ms`, a request every 100 ms; returns once the first
    /// answer says where it went.
    pub fn hold(&self, from: Option<&NetNs>, target: &str, duration_ms: u64) -> Result<Held> {
        let duration = duration_ms.to_string();
        let args = [
            "hold",
            "--target",
            target,
            "--interval-ms",
            "100",
            "--duration-ms",
            &duration,
        ];
        let probe = match from {
            Some(ns) => self.spawn_probe(ns, &args)?,
            None => self.spawn_probe_node(&args)?,
        };
        let line = |prefix: &str| -> Result<String> {
            Ok(probe
                .wait_line(prefix, Duration::from_secs(5))?
                .trim()
                .trim_start_matches(prefix)
                .to_owned())
        };
        let local = line("local ")?;
        let backend = line("backend ")?;
        Ok(Held {
            probe,
            local,
            backend,
        })
    }

    /// Runs `probe ARGS` on the node itself: a process of the node's network
    /// namespace (as kubelet or a hostNetwork pod is), in the node's cgroup.
    pub fn probe_node(&self, args: &[&str]) -> Result<ProbeReport> {
        let (status, lines) = self
            .spawn_probe_node(args)?
            .finish(Duration::from_secs(120))?;
        parse_report(status, &lines)
    }

    /// Starts `probe ARGS` on the node (see [`Sandbox::probe_node`]).
    pub fn spawn_probe_node(&self, args: &[&str]) -> Result<Process> {
        let mut cmd = self.node_command(&self.bins.probe.to_string_lossy())?;
        cmd.args(args);
        self.spawn_probe_cmd(cmd, args)
    }

    /// A command that runs on the node: its network namespace and cgroup.
    pub fn node_command(&self, program: &str) -> Result<std::process::Command> {
        let mut cmd = self.topo.node.command(program)?;
        self.cgroup.enter(&mut cmd)?;
        Ok(cmd)
    }

    /// Moves the calling process into the node's cgroup until the guard drops (its
    /// threads then connect as node-local clients when they enter the node's
    /// namespace). Drop the guard before the sandbox.
    pub fn join_node_cgroup(&self) -> Result<crate::cgroup::Joined> {
        self.cgroup.join_self()
    }

    /// Makes `cmd` (of any namespace) start in the node's cgroup.
    pub fn enter_node_cgroup(&self, cmd: &mut std::process::Command) -> Result<()> {
        self.cgroup.enter(cmd)
    }

    /// Agents started from now on get `--node-ip IP` (None: no flag).
    pub fn set_agent_node_ip(&mut self, ip: Option<Ipv4Addr>) {
        self.agent_node_ip = ip;
    }

    /// Agents started from now on pin under `path` (None: the sandbox's pin directory,
    /// which its drop cleans; the caller cleans its own).
    pub fn set_agent_bpffs(&mut self, path: Option<PathBuf>) {
        self.agent_bpffs = path;
    }

    /// Agents started from now on get `--cgroup-root PATH` (None: the sandbox's own).
    pub fn set_agent_cgroup(&mut self, path: Option<PathBuf>) {
        self.agent_cgroup = path;
    }

    fn spawn_probe_cmd(&self, cmd: std::process::Command, args: &[&str]) -> Result<Process> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let log = self.tmp.path().join(format!(
            "probe-{}.log",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Process::spawn(format!("probe {}", args.join(" ")), cmd, &log)
    }
}

/// Waits for a probe started with [`Sandbox::spawn_probe`] and parses its report.
pub fn finish_probe(probe: Process, timeout: Duration) -> Result<ProbeReport> {
    let (status, lines) = probe.finish(crate::slowdown::scaled(timeout))?;
    parse_report(status, &lines)
}

/// A connection held by `probe hold` ([`Sandbox::hold`]).
pub struct Held {
    /// The running probe ([`finish_probe`] gives its report).
    pub probe: Process,
    /// The connection's local `address:port`.
    pub local: String,
    /// The pod that answered first (`pod<n>`).
    pub backend: String,
}

impl Held {
    /// `n` of the `pod<n>` that answered.
    pub fn pod(&self) -> u8 {
        self.backend
            .trim_start_matches("pod")
            .parse()
            .unwrap_or_else(|_| panic!("backend {:?} is not pod<n>", self.backend))
    }
}

fn parse_report(status: std::process::ExitStatus, lines: &[String]) -> Result<ProbeReport> {
    if !status.success() {
        bail!("probe failed ({status}): {lines:?}");
    }
    let last = lines.last().context("probe printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("probe report: {last}"))
}

fn start_podserver(bins: &Bins, tmp: &Path, pod: &Pod) -> Result<Process> {
    let mut cmd = pod.ns.command(&bins.podserver.to_string_lossy())?;
    let tcp = [POD_HTTP_PORT, POD_ALT_PORT, POD_LEGACY_PORT]
        .map(|p| p.to_string())
        .join(",");
    cmd.args([
        "--name",
        &pod.name(),
        "--tcp",
        &tcp,
        "--udp",
        &POD_UDP_PORT.to_string(),
    ]);
    Process::spawn(
        format!("podserver {}", pod.name()),
        cmd,
        &tmp.join(format!("{}.log", pod.name())),
    )
}

/// Fails with a clear message unless running as root.
pub fn ensure_root() -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the end-to-end tests and the demo create network namespaces: run them as root");
    }
    Ok(())
}

/// `/tmp/svclb-<pid>-<n>-<role>`, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Result<Self> {
        Self::named("sandbox")
    }

    pub fn named(role: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(crate::netns::unique_name(role));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
