//! The data-path modes the end-to-end suite runs in, and what each needs from the
//! sandbox. One scenario source runs in every mode (see tests/tests/e2e.rs).

use anyhow::Result;

use crate::{
    netns::NetNs,
    sandbox::Sandbox,
    topology::{CLIENT_IP, NODE_EXT_IF},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// TC + XDP programs (XDP forced on the external veth, as the eBPF tests always did).
    Ebpf,
    /// kube-proxy's iptables rules through iptables-nft.
    Iptables,
    /// The same rules through iptables-legacy (x_tables).
    IptablesLegacy,
}

impl Mode {
    /// The agent's arguments for this mode.
    pub fn agent_args(self) -> &'static [&'static str] {
        match self {
            // The external link is a veth, where the agent attaches no XDP by default;
            // the client sends full checksums like a host behind a NIC, so force XDP
            // there to test that path.
            Mode::Ebpf => &["--mode", "ebpf", "--xdp-iface", "ext0"],
            Mode::Iptables => &["--mode", "iptables", "--iptables-backend", "nft"],
            Mode::IptablesLegacy => &["--mode", "iptables", "--iptables-backend", "legacy"],
        }
    }

    /// Only the mode-selecting flags.
    pub fn mode_args(self) -> &'static [&'static str] {
        let all = self.agent_args();
        &all[..if self == Mode::Ebpf { 2 } else { all.len() }]
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
        let sb = Sandbox::with_backends(backends)?;
        if self.is_iptables() {
            prepare_node(&sb.topo.node)?;
        }
        Ok(sb)
    }

    pub fn is_iptables(self) -> bool {
        matches!(self, Mode::Iptables | Mode::IptablesLegacy)
    }

    /// A sandbox ready for this mode (see [`prepare_node`]).
    pub fn sandbox(self) -> Result<Sandbox> {
        let sb = Sandbox::new()?;
        if self.is_iptables() {
            prepare_node(&sb.topo.node)?;
        }
        Ok(sb)
    }
}

/// What a node running kube-proxy's iptables rules has and the bare test node lacks: a
/// default route (here towards the external client, which does not forward). Service
/// IPs are DNATed before routing, but a Service without endpoints is REJECTed in the
/// filter table's FORWARD chain, which a packet reaches only once it has a route.
pub fn prepare_node(node: &NetNs) -> Result<()> {
    node.ip(&[
        "route",
        "add",
        "default",
        "via",
        &CLIENT_IP.to_string(),
        "dev",
        NODE_EXT_IF,
    ])?;
    Ok(())
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
#[macro_export]
macro_rules! in_mode {
    ($module:ident, $mode:expr, [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    super::$name($mode)
                }
            )*
        }
    };
}
