//! Flag bits and small enumerations stored as integers in map values.

/// [`crate::ServiceValue::flags`]: pick the client's previous backend while it is fresh.
pub const SVC_F_AFFINITY: u16 = 1 << 0;
/// [`crate::ServiceValue::flags`]: traffic policy Local: do not SNAT, preserve client IP.
pub const SVC_F_LOCAL: u16 = 1 << 1;
/// [`crate::ServiceValue::flags`]: slots hold a Maglev lookup table, not a plain list.
pub const SVC_F_MAGLEV: u16 = 1 << 2;
/// [`crate::ServiceValue::flags`]: a LoadBalancer frontend with
/// `loadBalancerSourceRanges`: only sources in the service's prefixes of
/// `MAP_SRC_RANGES` are let in (no prefix at all lets nobody in).
pub const SVC_F_SRC_RANGES: u16 = 1 << 3;
/// [`crate::ServiceValue::flags`]: a Local traffic policy left no endpoint on this node
/// although the Service has some elsewhere: new flows are dropped, as kube-proxy does,
/// instead of rejected (a reject means "no endpoints at all").
pub const SVC_F_NO_LOCAL_DROP: u16 = 1 << 4;
/// [`crate::ServiceValue::flags`]: a LoadBalancer frontend whose
/// `loadBalancerSourceRanges` hold none of the node's addresses: the socket programs
/// deny the node's own clients (kube-proxy lets the node in only when a range holds
/// one of its addresses; at connect() the source address is not chosen yet, so this
/// is decided by the agent, which knows the node's addresses).
pub const SVC_F_NODE_DENIED: u16 = 1 << 5;

/// [`crate::ServiceKey::scope`]: looked up by the packet path (TC, XDP) and, where no
/// host-scope entry exists, by the socket programs too.
pub const SCOPE_PACKET: u8 = 0;
/// [`crate::ServiceKey::scope`]: looked up only by the socket programs, for the node's
/// own clients: `127.0.0.1:<NodePort>`, and external frontends of a Service with
/// `externalTrafficPolicy: Local` (node-local clients get every endpoint, as
/// kube-proxy short-circuits them to the cluster-wide chain). Looked up first.
pub const SCOPE_HOST: u8 = 1;

/// [`crate::ServiceValue::kind`]: what kind of address the frontend is (for dump).
pub const KIND_CLUSTER_IP: u8 = 1;
pub const KIND_NODE_PORT: u8 = 2;
pub const KIND_EXTERNAL_IP: u8 = 3;
pub const KIND_LOAD_BALANCER: u8 = 4;

/// [`crate::Backend::flags`]: endpoint is serving but terminating (only used when no
/// ready endpoint is left; informational for dump).
pub const BE_F_TERMINATING: u8 = 1 << 0;
/// [`crate::Backend::flags`]: endpoint runs on this node.
pub const BE_F_LOCAL: u8 = 1 << 1;

/// [`crate::CtValue::dir`]: the entry is keyed by client → frontend, as the packet
/// arrives. Both directions share one key space (a packet's own tuple), so one lookup
/// classifies any tracked packet.
pub const CT_DIR_FORWARD: u8 = 0;
/// [`crate::CtValue::dir`]: keyed by backend → client, as the reply arrives (before
/// reverse NAT).
pub const CT_DIR_REPLY: u8 = 1;

/// [`crate::CtValue::flags`]: a FIN or RST was seen; a new SYN may reuse the tuple.
pub const CT_F_CLOSING: u8 = 1 << 0;
/// [`crate::CtValue::flags`]: the flow is source-NATed too (externalTrafficPolicy
/// Cluster to another node's endpoint, or hairpin). Forward packets also get their
/// source rewritten to `rev_*`; replies also get their destination rewritten to `rev_*`.
pub const CT_F_SNAT: u8 = 1 << 1;
/// [`crate::CtValue::flags`]: the flow entered by a frontend with
/// `loadBalancerSourceRanges` (`SVC_F_SRC_RANGES`): every forward packet is checked
/// against the list, so narrowing it also cuts tracked flows.
pub const CT_F_SRC_RANGES: u8 = 1 << 2;

/// Source address of hairpin flows (a pod reaching itself through a Service): the pod
/// would drop a packet from its own address, so it sees this link-local one, never a
/// frontend (the planner refuses link-local frontends), and answers through the node.
pub const HAIRPIN_ADDR: [u8; 4] = [169, 254, 42, 1];
/// First source port tried after the client's own when source-NATing: ports above
/// Linux's default ephemeral range (32768-60999), so node-local sockets rarely clash.
pub const SNAT_PORT_MIN: u16 = 61_000;
/// Source ports tried per new source-NATed flow (the client's, then random ones from
/// `SNAT_PORT_MIN..=65535`) before giving up (`Counter::SnatNoPort`).
pub const SNAT_PORT_TRIES: u32 = 8;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Indexes into the per-CPU counters map. Keep `COUNTER_NAMES` in the same order.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Not IPv4 (IPv6, ARP, …): passed untouched.
    PassNotIpv4 = 0,
    /// IPv4 but neither TCP nor UDP (ICMP, …): passed untouched.
    PassOtherProto = 1,
    /// TCP/UDP to no frontend and not a tracked reply: passed untouched.
    PassMiss = 2,
    /// IP fragment (offset ≠ 0 or MF set): passed untouched, not load balanced.
    PassFragment = 3,
    /// Headers shorter than they claim: passed without a write.
    PassTruncated = 4,
    /// New flow: backend chosen, conntrack created, DNAT done.
    FwdNew = 5,
    /// Tracked flow: DNAT to the recorded backend.
    FwdEstablished = 6,
    /// Reply of a tracked flow: reverse NAT to the frontend.
    Reply = 7,
    /// Frontend without usable backends: TCP RST / ICMP port unreachable sent.
    Reject = 8,
    /// Could not be handled (map full, helper failed): dropped.
    Drop = 9,
    /// New flow whose backend came from session affinity.
    AffinityHit = 10,
    /// XDP saw a packet to a frontend without backends and left it to TC, which sends
    /// the reject (an XDP_TX reply is lost on veth unless the peer runs XDP).
    RejectToTc = 11,
    /// New flow whose source was NATed to the node (externalTrafficPolicy Cluster,
    /// endpoint on another node).
    SnatNew = 12,
    /// New flow of a pod to itself through a Service, source NATed to `HAIRPIN_ADDR`.
    HairpinNew = 13,
    /// No free source port for a source-NATed flow: dropped.
    SnatNoPort = 14,
    /// No route (or no source address) towards the endpoint to source NAT with: dropped.
    SnatNoRoute = 15,
    /// Source outside a LoadBalancer's `loadBalancerSourceRanges`: dropped.
    SrcRangeDrop = 16,
    /// New flow to a Local-policy frontend without a local endpoint: dropped.
    NoLocalDrop = 17,
    /// A node-local socket's connect() or sendmsg() to a frontend, sent to a backend.
    SockNew = 18,
    /// A node-local connect() or sendmsg() to a frontend without endpoints: refused
    /// (ECONNREFUSED).
    SockReject = 19,
    /// A node-local connect() or sendmsg() refused with EPERM: a Local policy without
    /// a local endpoint, or a slot/backend missing mid-update.
    SockDrop = 20,
    /// getpeername() or recvmsg() of a node-local socket shown the frontend instead of
    /// the backend.
    SockRevNat = 21,
}

pub const COUNTER_COUNT: u32 = 22;

pub const COUNTER_NAMES: [&str; COUNTER_COUNT as usize] = [
    "pass_not_ipv4",
    "pass_other_proto",
    "pass_miss",
    "pass_fragment",
    "pass_truncated",
    "fwd_new",
    "fwd_established",
    "reply",
    "reject",
    "drop",
    "affinity_hit",
    "reject_to_tc",
    "snat_new",
    "hairpin_new",
    "snat_no_port",
    "snat_no_route",
    "src_range_drop",
    "no_local_drop",
    "sock_new",
    "sock_reject",
    "sock_drop",
    "sock_revnat",
];
