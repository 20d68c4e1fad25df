//! The IPv4 sysctls a Kubernetes node comes with, before any agent runs. Test topologies
//! start from these and nothing else: whatever the data path needs beyond them, the
//! agent must set itself (a topology tuned by hand proves the rig, not the product).
use anyhow::{Context as _, Result};

use crate::netns::NetNs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockNode {
    /// systemd's `50-default.conf` (Debian, Ubuntu): loose reverse-path filtering.
    Systemd,
    /// The RHEL family: strict reverse-path filtering.
    Rhel,
}

impl StockNode {
    pub fn rp_filter(self) -> &'static str {
        match self {
            StockNode::Systemd => "2",
            StockNode::Rhel => "1",
        }
    }

    /// Sets `ns` up like such a node: forwarding on (the CNI plugin's doing),
    /// `rp_filter` as the distribution has it, `accept_local` off. Before any interface
    /// exists, so every new one starts from `default`.
    pub fn apply(self, ns: &NetNs) -> Result<()> {
        let rp = self.rp_filter();
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", rp),
            ("net.ipv4.conf.default.rp_filter", rp),
            ("net.ipv4.conf.all.accept_local", "0"),
            ("net.ipv4.conf.default.accept_local", "0"),
            ("net.ipv4.conf.all.route_localnet", "0"),
        ] {
            ns.sysctl(key, value)
                .with_context(|| format!("{} sysctls ({self:?} node)", ns.name()))?;
        }
        Ok(())
    }
}
