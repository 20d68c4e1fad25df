//! Command-line interface. Flag names follow kube-proxy where the meaning is the same.
use std::{net::Ipv4Addr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dataplane::ebpf::pins::DEFAULT_BPFFS_ROOT;
use crate::dataplane::{iptables::BackendArg, select::ModeArg};

#[derive(Debug, Parser)]
#[command(
    name = "svclb-agent",
    version,
    about = "Kubernetes Service load balancer with an eBPF data path"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `svclb_agent=debug`.
    #[arg(long, global = true, default_value = "info", env = "SVCLB_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once; boxing the run flags would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Program the data path and keep it equal to the Services and EndpointSlices.
    Run(RunArgs),
    /// Show what the data path holds, from the pinned maps (no agent needs to run).
    Dump(DumpArgs),
    /// Detach the programs and remove every pin.
    Cleanup(CleanupArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of YAML/JSON manifests (Service, EndpointSlice, Endpoints; multi-document
    /// files and `kind: List`). Re-read every --poll-interval-ms and applied on change.
    /// Without it the agent watches the apiserver (see --kubeconfig).
    #[arg(long, conflicts_with = "kubeconfig")]
    pub manifests: Option<PathBuf>,
    /// kubeconfig of the apiserver to watch. Default: $KUBECONFIG, ~/.kube/config, or
    /// the in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Interfaces that get the TC ingress program (every interface traffic to or from
    /// Services enters by: pod links and external links). Besides names: `auto` (every
    /// interface that is up, except loopback) and patterns (`eth*`, `veth*`), resolved
    /// when the agent starts (interfaces created later are not attached until a restart).
    #[arg(long, value_delimiter = ',', required = true)]
    pub iface: Vec<String>,
    /// Node addresses NodePort answers on. Default: the InternalIP and ExternalIP
    /// addresses of this node's Node object, else the IPv4 addresses of --iface.
    #[arg(long, value_delimiter = ',')]
    pub node_ip: Vec<Ipv4Addr>,
    /// Interfaces that get the XDP fast path (and TC). Default: the --iface interfaces
    /// that hold a node address (where NodePort and external traffic arrives), except
    /// veth/netkit links, whose senders' partial checksums XDP cannot update.
    #[arg(long, value_delimiter = ',')]
    pub xdp_iface: Option<Vec<String>>,
    /// How the XDP program is attached.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub xdp_mode: XdpModeArg,
    /// bpffs directory for pinned maps and links.
    #[arg(long, default_value = DEFAULT_BPFFS_ROOT)]
    pub bpffs: PathBuf,
    /// This node's name, for endpoint locality (EndpointSlice nodeName) and, with an
    /// apiserver, the Node whose InternalIP/ExternalIP addresses NodePorts answer on.
    #[arg(long, env = "NODE_NAME")]
    pub hostname_override: Option<String>,
    /// NodePort range accepted in Services, as kube-apiserver's --service-node-port-range.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Use Maglev for Services without the svclb.io/lb-algorithm annotation.
    #[arg(long)]
    pub maglev: bool,
    /// How often --manifests is checked for changes.
    #[arg(long, default_value_t = 200)]
    pub poll_interval_ms: u64,
    /// Apiserver changes that arrive within this long of the last reconcile are
    /// batched into the next one (a change after a quiet spell is applied at once).
    #[arg(long, default_value_t = 20)]
    pub min_sync_period_ms: u64,
    /// `host:port` for /metrics (Prometheus); port 0 picks one; empty disables.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: String,
    /// `host:port` for /healthz and /livez; port 0 picks one; empty disables.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: String,
    /// /healthz and /livez fail once a change has waited this long for the data path,
    /// or the apiserver has been unreachable this long (kube-proxy: twice its sync
    /// period, 60 s by default).
    #[arg(long, default_value_t = 60)]
    pub healthz_timeout_seconds: u64,
    /// Per-packet debug logs from the data path (slow).
    #[arg(long)]
    pub debug_bpf: bool,
    /// eBPF mode: load balance the node's own clients (processes of the agent's network
    /// namespace: kubelet, hostNetwork pods, the agent) at the socket layer, with cgroup
    /// programs on `connect`/`sendmsg`/`recvmsg`/`getpeername`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub socket_lb: bool,
    /// cgroup v2 directory the socket programs attach to (they serve every process
    /// below it). Default: the cgroup v2 root (the first cgroup2 mount).
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// The node's /proc/sys, where the agent sets the sysctls its data path needs
    /// (`rp_filter`, `accept_local`, `route_localnet`). A container sees /proc/sys
    /// read-only: the DaemonSet mounts the host's /proc/sys/net writable under this.
    #[arg(long, default_value = "/proc/sys")]
    pub proc_sys: PathBuf,
    /// eBPF mode: which variant of each kernel-dependent feature to use (TC attach,
    /// clock, source NAT source, node-local refusal). `probe`: what this kernel has;
    /// `baseline`: the variants of the oldest supported kernel (5.10), anywhere.
    #[arg(long, value_enum, default_value_t = crate::dataplane::ebpf::features::Choice::Probe)]
    pub kernel_features: crate::dataplane::ebpf::features::Choice,
    /// kube-proxy's --iptables-localhost-nodeports: NodePorts also answer node-local
    /// clients on 127.0.0.1 (every mode).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub iptables_localhost_nodeports: bool,
    // --- data path mode (compat: iptables and IPVS) ---
    /// Data path: `auto` takes ebpf when the programs load and attach, else ipvs when
    /// the kernel has IPVS, else iptables. `ipvs` falls back to iptables without IPVS.
    #[arg(long, visible_alias = "proxy-mode", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// iptables implementation for the iptables and ipvs modes.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub iptables_backend: BackendArg,
    /// IPVS scheduler in ipvs mode (rr, lc, dh, sh, sed, nq, wrr, …).
    #[arg(long, default_value = "rr")]
    pub ipvs_scheduler: String,
    /// kube-proxy's --nodeport-addresses: NodePorts answer only on this node's local
    /// IPv4 addresses (any interface) inside these CIDRs. `primary` (the default): the
    /// Node's InternalIP/ExternalIP addresses, else the addresses of --iface.
    #[arg(long, value_delimiter = ',', conflicts_with = "node_ip")]
    pub nodeport_addresses: Vec<String>,
    /// kube-proxy's --cluster-cidr (pod CIDRs). Checked and logged, otherwise unused:
    /// kube-proxy's iptables mode uses it to tell pod traffic from external traffic for
    /// masquerading; svclb's eBPF data path does not masquerade.
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,
    /// YAML file of `run` flags: keys are the long flag names (`iface: auto`,
    /// `nodeport-addresses: [10.0.0.0/8]`, `maglev: true`). Flags given on the command
    /// line (or by their environment variable) override the file; unknown keys are errors.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the flags and --config, print the effective configuration (as a --config
    /// file) and exit, touching nothing.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Driver mode, falling back to generic mode when the driver lacks XDP.
    Native,
    /// Generic (skb) mode.
    Skb,
    /// No XDP: TC handles everything.
    Off,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Which data path to read; `auto`: the one whose state exists (pins, KUBE-SERVICES
    /// chain, IPVS virtual servers).
    #[arg(long, visible_alias = "proxy-mode", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// bpffs directory the agent pinned its maps under (its --bpffs).
    #[arg(long, default_value = DEFAULT_BPFFS_ROOT)]
    pub bpffs: PathBuf,
    /// Explain one flow instead: `SRC:PORT-DST:PORT/PROTO` (e.g.
    /// 198.19.4.2:40000-198.18.0.10:80/tcp) gets which backend, and why (conntrack,
    /// affinity, Maglev slot, random candidates, reject). Reads the maps only.
    #[arg(long, value_name = "SRC:PORT-DST:PORT/PROTO")]
    pub flow: Option<crate::flow::FlowSpec>,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// bpffs directory the agent pinned its maps and links under (its --bpffs).
    #[arg(long, default_value = DEFAULT_BPFFS_ROOT)]
    pub bpffs: PathBuf,
}

/// Parse `A-B` into an inclusive port range.
pub fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected FIRST-LAST"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?}: need 1 <= FIRST <= LAST"));
    }
    Ok(a..=b)
}
