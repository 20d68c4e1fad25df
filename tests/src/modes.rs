//! The data-path modes the end-to-end suite runs in, and what each needs from the
//! sandbox. One scenario source runs in every mode (see tests/tests/e2e.rs).

use anyhow::Result;

use crate::{netns::NetNs, sandbox::Sandbox};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The eBPF programs as the agent attaches them by default: TC on every link here
    /// (all veths), socket programs for the node's own clients. XDP is tested where a
    /// scenario forces it (the external client then sends full checksums, like a NIC).
    Ebpf,
    /// The eBPF mode with the oldest supported kernel's variant of every kernel feature
    /// (`--kernel-features baseline`: TC through a netlink clsact filter, the precise
    /// clock, source NAT from the interface table, EPERM for node-local refusals), so
    /// those variants are proven on this kernel too, not only in the VMs.
    EbpfBaseline,
    /// kube-proxy's iptables rules through iptables-nft.
    Iptables,
    /// The same rules through iptables-legacy (x_tables).
    IptablesLegacy,
    /// kube-proxy's IPVS mode: virtual servers, `kube-ipvs0`, the iptables rules beside
    /// them. Needs a kernel with IP_VS (this machine's has none: the VMs run it).
    Ipvs,
}

impl Mode {
    /// The agent's arguments for this mode.
    pub fn agent_args(self) -> &'static [&'static str] {
        match self {
            Mode::Ebpf => &["--mode", "ebpf"],
            Mode::EbpfBaseline => &["--mode", "ebpf", "--kernel-features", "baseline"],
            Mode::Iptables => &["--mode", "iptables", "--iptables-backend", "nft"],
            Mode::IptablesLegacy => &["--mode", "iptables", "--iptables-backend", "legacy"],
            Mode::Ipvs => &["--mode", "ipvs", "--iptables-backend", "nft"],
        }
    }

    /// Only the mode-selecting flags.
    pub fn mode_args(self) -> &'static [&'static str] {
        self.agent_args()
    }

    /// The mode-selecting flags followed by `extra` (a scenario's own flags).
    pub fn args_with<'a>(self, extra: &[&'a str]) -> Vec<&'a str> {
        self.mode_args()
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    }

    /// Like [`Mode::sandbox`] with `backends` serving pods.
    pub fn sandbox_with(self, backends: u8) -> Result<Sandbox> {
        if self == Mode::Ipvs {
            require_ipvs();
        }
        Sandbox::with_backends(backends)
    }

    pub fn is_ebpf(self) -> bool {
        matches!(self, Mode::Ebpf | Mode::EbpfBaseline)
    }

    pub fn is_iptables(self) -> bool {
        matches!(self, Mode::Iptables | Mode::IptablesLegacy)
    }

    /// A sandbox on a stock node (the same for every mode).
    pub fn sandbox(self) -> Result<Sandbox> {
        if self == Mode::Ipvs {
            require_ipvs();
        }
        Sandbox::new()
    }
}

/// `iptables-<backend>-save -t TABLE` inside `ns`.
pub fn iptables_save(ns: &NetNs, backend: &str, table: &str) -> Result<String> {
    ns.run(&format!("iptables-{backend}-save"), &["-t", table])
}

/// Whether any KUBE-* chain of ours is in either iptables backend of `ns`.
pub fn has_kube_chains(ns: &NetNs) -> Result<bool> {
    for backend in ["nft", "legacy"] {
        for table in ["nat", "filter"] {
            if iptables_save(ns, backend, table)?
                .lines()
                .any(|l| l.starts_with(":KUBE-"))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// `in_mode!(module, Mode::X, [scenario, ...])`: a `#[test]` per scenario in `mod
/// module`, calling the scenario function `fn scenario(m: Mode)` of the enclosing file
/// with that mode. Every scenario file runs its scenarios once per mode from one source.
/// Attributes before the module name go on every test (`#[ignore = "why"]` for a mode
/// this kernel cannot run: the VM harness runs those with `--include-ignored`).
#[macro_export]
macro_rules! in_mode {
    (@module $attrs:tt $module:ident, $mode:expr, [$($name:ident),*]) => {
        mod $module {
            $( $crate::in_mode!(@test $attrs $name, $mode); )*
        }
    };
    (@test [$($attr:tt)*] $name:ident, $mode:expr) => {
        #[test]
        $($attr)*
        fn $name() {
            super::$name($mode)
        }
    };
    ($(#[$attr:meta])* $module:ident, $mode:expr, [$($name:ident),* $(,)?]) => {
        $crate::in_mode!(@module [$(#[$attr])*] $module, $mode, [$($name),*]);
    };
}

/// For the IPVS scenarios: panics unless this kernel has IPVS, so that `ipvs::` tests
/// never pass by falling back to iptables.
pub fn require_ipvs() {
    if let Err(why) = svclb_agent::dataplane::ipvs::probe() {
        panic!("IPVS scenario on a kernel without IPVS: {why}");
    }
}
