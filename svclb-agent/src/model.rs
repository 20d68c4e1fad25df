//! The desired data-path state: the one plain type where the planner (which knows
//! Kubernetes objects) and the dataplane backends (which know maps or rules) meet.
use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
};

use svclb_common::{KIND_CLUSTER_IP, KIND_EXTERNAL_IP, KIND_LOAD_BALANCER, KIND_NODE_PORT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => svclb_common::PROTO_TCP,
            Proto::Udp => svclb_common::PROTO_UDP,
        }
    }
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            svclb_common::PROTO_TCP => Some(Proto::Tcp),
            svclb_common::PROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendKind {
    ClusterIp,
    NodePort,
    ExternalIp,
    LoadBalancer,
}

impl FrontendKind {
    pub fn code(self) -> u8 {
        match self {
            FrontendKind::ClusterIp => KIND_CLUSTER_IP,
            FrontendKind::NodePort => KIND_NODE_PORT,
            FrontendKind::ExternalIp => KIND_EXTERNAL_IP,
            FrontendKind::LoadBalancer => KIND_LOAD_BALANCER,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            KIND_CLUSTER_IP => Some(FrontendKind::ClusterIp),
            KIND_NODE_PORT => Some(FrontendKind::NodePort),
            KIND_EXTERNAL_IP => Some(FrontendKind::ExternalIp),
            KIND_LOAD_BALANCER => Some(FrontendKind::LoadBalancer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::ExternalIp => "ExternalIP",
            FrontendKind::LoadBalancer => "LoadBalancer",
        }
    }
    /// Traffic entering through this kind of frontend is "external" for
    /// externalTrafficPolicy purposes.
    pub fn is_external(self) -> bool {
        !matches!(self, FrontendKind::ClusterIp)
    }
}

/// Who a frontend serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every client: packets through the node, and node-local sockets too unless a
    /// host-scope frontend of the same address says otherwise.
    #[default]
    Packet,
    /// Only the node's own sockets (the eBPF mode's socket programs):
    /// `127.0.0.1:<NodePort>`, and the external frontends of an
    /// `externalTrafficPolicy: Local` Service, which node-local clients reach with
    /// every endpoint (kube-proxy short-circuits them to the cluster-wide chain). The
    /// iptables and IPVS modes do this with their own rules and skip these.
    Host,
}

impl Scope {
    pub fn code(self) -> u8 {
        match self {
            Scope::Packet => svclb_common::SCOPE_PACKET,
            Scope::Host => svclb_common::SCOPE_HOST,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            svclb_common::SCOPE_PACKET => Some(Scope::Packet),
            svclb_common::SCOPE_HOST => Some(Scope::Host),
            _ => None,
        }
    }
}

/// A virtual address: where clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
    pub scope: Scope,
}

impl Frontend {
    /// A frontend every client uses.
    pub fn new(addr: Ipv4Addr, port: u16, proto: Proto) -> Self {
        Frontend {
            addr,
            port,
            proto,
            scope: Scope::Packet,
        }
    }

    /// Only node-local sockets use it.
    pub fn is_host(&self) -> bool {
        self.scope == Scope::Host
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.addr, self.port, self.proto)?;
        if self.is_host() {
            f.write_str(" (node-local)")?;
        }
        Ok(())
    }
}

/// One endpoint a frontend may forward to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub addr: Ipv4Addr,
    /// The resolved target port.
    pub port: u16,
    pub proto: Proto,
}

impl BackendAddr {
    pub fn socket(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr, self.port)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub backend: BackendAddr,
    /// `serving && terminating`, used only because no ready endpoint is left.
    pub terminating: bool,
    /// Runs on this node (EndpointSlice `nodeName` equals ours).
    pub local: bool,
}

/// Stable identity of a backend set across syncs and agent restarts:
/// `namespace/name:portname/PROTO`, plus `@ext` for the external-scope set of a
/// Service whose traffic policies make external and internal sets differ.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey(pub String);

impl fmt::Display for SetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group of frontends that share one endpoint list (one Service port, one traffic
/// scope). The data path gives it one service id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSet {
    /// Endpoints that may take new flows, in a stable order (sorted). Empty means
    /// "reject". Already filtered: ready ones, or serving+terminating ones when no
    /// ready one is left, restricted to local ones under a Local traffic policy.
    pub endpoints: Vec<Endpoint>,
    /// `sessionAffinity: ClientIP` timeout in seconds; `None` without affinity.
    pub affinity_timeout_s: Option<u32>,
    /// Traffic policy Local for this set: client source address is preserved.
    pub local_policy: bool,
    /// Use Maglev instead of random selection.
    pub maglev: bool,
    /// The frontends that use this set, with their kind.
    pub frontends: BTreeMap<Frontend, FrontendKind>,
    /// `loadBalancerSourceRanges` (IPv4 prefixes, host bits cleared) for the set's
    /// LoadBalancer frontends; `None` lets every source in, an empty list none.
    pub source_ranges: Option<Vec<(Ipv4Addr, u8)>>,
    /// `local_policy` left no endpoint although the Service has some on other nodes:
    /// new flows are dropped (as kube-proxy does) rather than rejected.
    pub no_local_drop: bool,
    /// `source_ranges` hold none of the node's addresses: the node's own clients are
    /// not let in to the LoadBalancer frontends either.
    pub node_denied: bool,
}

/// Everything the data path should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub sets: BTreeMap<SetKey, BackendSet>,
}

impl DesiredState {
    pub fn frontend_count(&self) -> usize {
        self.sets.values().map(|s| s.frontends.len()).sum()
    }
    pub fn endpoint_count(&self) -> usize {
        self.sets.values().map(|s| s.endpoints.len()).sum()
    }
}
