//! The end-to-end topology: a "node" namespace routing between an external client and
//! pod namespaces. All addresses are from 198.18.0.0/15 and exist only inside these
//! namespaces; the caller's namespace gets no address, route or link.
//!
//! ```text
//!  client 198.18.100.2 ─eth0──ext0─ node 198.18.100.1
//!                                   ├─pod1 198.19.1.1 ──eth0─ pod1 198.19.1.2
//!                                   ├─pod2 198.19.2.1 ──eth0─ pod2 198.19.2.2
//!                                   └─…
//! ```

use std::net::Ipv4Addr;

use anyhow::{Result, ensure};

use crate::{
    netns::{NetNs, veth},
    stock::StockNode,
};

/// The node's address on the external link: NodePorts answer here.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
/// The external client.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
/// The node's interface towards the client.
pub const NODE_EXT_IF: &str = "ext0";
/// Interface name inside the client and every pod.
pub const INNER_IF: &str = "eth0";

/// Pod `n`'s address: 198.19.n.2.
pub fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, n, 2)
}

/// The node's address on pod `n`'s link: 198.19.n.1, pod `n`'s default gateway.
pub fn pod_gateway(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, n, 1)
}

/// The node's interface towards pod `n`.
pub fn pod_node_if(n: u8) -> String {
    format!("pod{n}")
}

/// One pod namespace.
#[derive(Debug)]
pub struct Pod {
    /// 1-based; also the third octet of its addresses.
    pub index: u8,
    pub ns: NetNs,
}

impl Pod {
    /// `pod<n>`, the name the pod's servers answer with.
    pub fn name(&self) -> String {
        format!("pod{}", self.index)
    }

    pub fn ip(&self) -> Ipv4Addr {
        pod_ip(self.index)
    }
}

/// The namespaces and links; everything is deleted on drop.
#[derive(Debug)]
pub struct Topology {
    pub node: NetNs,
    pub client: NetNs,
    pub pods: Vec<Pod>,
}

impl Topology {
    /// Builds the node (a systemd-based one), the client and `pods` pod namespaces
    /// (1 ≤ pods ≤ 250).
    pub fn new(pods: u8) -> Result<Self> {
        Self::on(pods, StockNode::Systemd)
    }

    /// Like [`Topology::new`] on a node with `stock`'s sysctls.
    pub fn on(pods: u8, stock: StockNode) -> Result<Self> {
        ensure!(
            (1..=250).contains(&pods),
            "pods must be in 1..=250, got {pods}"
        );
        let node = NetNs::new("node")?;
        stock.apply(&node)?;

        let client = NetNs::new("client")?;
        veth(&node, NODE_EXT_IF, &client, INNER_IF)?;
        node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", NODE_EXT_IF])?;
        client.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", INNER_IF])?;
        client.ip(&["route", "add", "default", "via", &NODE_IP.to_string()])?;
        // A node has a default route (here towards the client, which does not forward):
        // a Service IP nothing else routes is still routable, as on a real node.
        node.ip(&[
            "route",
            "add",
            "default",
            "via",
            &CLIENT_IP.to_string(),
            "dev",
            NODE_EXT_IF,
        ])?;
        // The client keeps veth's default TX checksum offload (partial checksums), as
        // pods do. Every node-side link computes checksums itself on the way out (no offload), so
        // each receiver verifies the checksums the data path rewrote. Pods keep veth's
        // default (offload on) and send CHECKSUM_PARTIAL packets, as real pods do: that
        // is the state TC's checksum helpers must get right.
        node.tx_checksum_off(NODE_EXT_IF)?;

        let mut topo = Self {
            node,
            client,
            pods: Vec::new(),
        };
        for index in 1..=pods {
            let pod = Pod {
                index,
                ns: NetNs::new(&format!("pod{index}"))?,
            };
            topo.link_pod(&pod)?;
            topo.pods.push(pod);
        }
        Ok(topo)
    }

    /// The veth between the node and `pod`, with addresses and the pod's default route.
    fn link_pod(&self, pod: &Pod) -> Result<()> {
        let node_if = pod_node_if(pod.index);
        veth(&self.node, &node_if, &pod.ns, INNER_IF)?;
        let gateway = pod_gateway(pod.index);
        self.node
            .ip(&["addr", "add", &format!("{gateway}/24"), "dev", &node_if])?;
        pod.ns
            .ip(&["addr", "add", &format!("{}/24", pod.ip()), "dev", INNER_IF])?;
        pod.ns
            .ip(&["route", "add", "default", "via", &gateway.to_string()])?;
        self.node.tx_checksum_off(&node_if)
    }

    /// The client sends full checksums, like a host behind a NIC: for scenarios that
    /// force XDP onto the external veth. (XDP cannot see that a frame from a veth peer
    /// carries a partial checksum, so a peer keeping TX offload gets wrong checksums
    /// rewritten; real NICs deliver full ones, and the agent attaches no XDP to a veth
    /// unless told to.)
    pub fn client_like_nic(&self) -> Result<()> {
        self.client.tx_checksum_off(INNER_IF)
    }

    /// Deletes pod `n`'s link and creates it again (same names and addresses, a new
    /// interface index), as when a pod is replaced by one with the same identity.
    pub fn relink_pod(&self, n: u8) -> Result<()> {
        let pod = self.pod(n);
        self.node.ip(&["link", "del", &pod_node_if(n)])?;
        self.link_pod(pod)
    }

    /// Every node-side interface: the external link first, then the pod links. The agent
    /// attaches to all of them.
    pub fn node_ifaces(&self) -> Vec<String> {
        std::iter::once(NODE_EXT_IF.to_owned())
            .chain(self.pods.iter().map(|p| pod_node_if(p.index)))
            .collect()
    }

    /// Pod `n` (1-based).
    pub fn pod(&self, n: u8) -> &Pod {
        &self.pods[usize::from(n) - 1]
    }
}
