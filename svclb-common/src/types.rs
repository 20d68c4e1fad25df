//! Map keys and values. Sizes and offsets are asserted below: a layout change that
//! is not accompanied by a map-name version bump fails to compile here first.
use core::mem::{offset_of, size_of};

/// Key of the services map: one frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Frontend IPv4 address, network byte order.
    pub addr_be: u32,
    /// Frontend port, network byte order.
    pub port_be: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `SCOPE_*`: who looks this frontend up. Was padding (always 0) before node-local
    /// load balancing, and 0 keeps its meaning, so older pins stay valid.
    pub scope: u8,
}

/// Value of the services map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceValue {
    /// Backend-set id (≥ 1): keys the slots, affinity and per-service stats. All
    /// frontends of one Service port that share the same endpoint set share it.
    pub svc_id: u32,
    /// Usable slots are `0..backend_count`; 0 means reject new flows.
    pub backend_count: u16,
    /// `SVC_F_*`.
    pub flags: u16,
    /// Session affinity idle timeout, seconds (used with `SVC_F_AFFINITY`).
    pub affinity_timeout_s: u32,
    /// `KIND_*`, for dump.
    pub kind: u8,
    pub _pad: [u8; 3],
}

/// Key of the slots map: slot `slot` of backend set `svc_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub svc_id: u32,
    pub slot: u32,
}

/// Value of the backends map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// Endpoint IPv4 address, network byte order.
    pub addr_be: u32,
    /// Endpoint (target) port, network byte order.
    pub port_be: u16,
    /// `PROTO_*`.
    pub proto: u8,
    /// `BE_F_*`.
    pub flags: u8,
}

/// Conntrack key: the packet's tuple as it arrives (the value says which direction).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    /// Source address, network byte order.
    pub saddr_be: u32,
    /// Destination address, network byte order.
    pub daddr_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    /// `PROTO_*`.
    pub proto: u8,
    // Not `[u8; 3]`: the BPF target zeroes an odd-sized array with a call to memset,
    // on every packet.
    pub _pad: u8,
    pub _pad2: u16,
}

impl CtKey {
    /// The key of a packet `saddr:sport → daddr:dport` (network byte order).
    #[inline(always)]
    pub const fn new(
        saddr_be: u32,
        daddr_be: u32,
        sport_be: u16,
        dport_be: u16,
        proto: u8,
    ) -> Self {
        Self {
            saddr_be,
            daddr_be,
            sport_be,
            dport_be,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }
}

/// Conntrack value.
///
/// Forward entries (client → frontend) hold the backend to DNAT to; reply entries
/// (backend → client) hold the frontend to put back as the source. The backend address
/// is stored here rather than only its id so an established TCP flow keeps working
/// after its endpoint is removed from the Service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtValue {
    /// Forward: backend address; reply: frontend address. Network byte order.
    pub nat_addr_be: u32,
    /// Forward: backend port; reply: frontend port. Network byte order.
    pub nat_port_be: u16,
    /// `CT_F_*`.
    pub flags: u8,
    /// `CT_DIR_FORWARD` or `CT_DIR_REPLY`: which of the flow's two entries this is.
    pub dir: u8,
    /// Backend id the flow was given (both directions), for purging.
    pub backend_id: u32,
    /// Backend-set id of the frontend the flow entered by.
    pub svc_id: u32,
    /// CLOCK_MONOTONIC (coarse) of the last packet seen in this direction.
    pub last_seen_ns: u64,
    /// With `CT_F_SNAT`: forward: the source to put on forward packets (node or
    /// hairpin address); reply: the client to put back as the destination. Network
    /// byte order; zero otherwise.
    pub rev_addr_be: u32,
    pub rev_port_be: u16,
    pub _pad2: [u8; 2],
}

/// Session-affinity key: one client of one backend set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AffinityKey {
    /// Client IPv4 address, network byte order.
    pub client_addr_be: u32,
    pub svc_id: u32,
}

/// Session-affinity value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` when the client last opened a flow with it.
    pub last_used_ns: u64,
}

/// Data part of an LPM key of `MAP_SRC_RANGES` (the key is `prefix_len` + this):
/// `prefix_len` is 32 (the whole service id) + the source prefix length, so a lookup
/// with a full 64-bit key matches only prefixes of that service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrcRangeKey {
    pub svc_id: u32,
    /// Source address (prefix), network byte order.
    pub addr_be: u32,
}

/// Per-service packet and byte counts (per CPU; user space sums).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SvcStats {
    pub packets: u64,
    pub bytes: u64,
}

/// Global data-path settings written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// `CFG_F_*`.
    pub flags: u32,
    /// `FEAT_*`: what the running agent chose for this kernel, for `dump` to show (the
    /// programs read their own copy, the load-time global).
    pub features: u32,
    /// Cookie of the node's own network namespace (`SO_NETNS_COOKIE`): the socket
    /// programs translate only sockets of that namespace, so pods keep the per-packet
    /// path (a service mesh in a pod still sees the ClusterIP). 0: translate none.
    pub host_netns_cookie: u64,
    /// Kernels before 5.14 have no `SO_NETNS_COOKIE`: the agent writes the cookie of a
    /// socket of its own here (`SO_COOKIE`) and connects it; the forward programs, seeing
    /// that socket, write its namespace's cookie into `learned_netns_cookie`. 0: off.
    pub probe_sock_cookie: u64,
    pub learned_netns_cookie: u64,
}

/// Where the agent's probe socket connects (see [`Config::probe_sock_cookie`]): the
/// discard port on loopback, always routable, never a frontend.
pub const NETNS_PROBE_ADDR: [u8; 4] = [127, 0, 0, 1];
pub const NETNS_PROBE_PORT: u16 = 9;

/// Key of the socket reverse-NAT map: a node-local socket and the backend the socket
/// programs sent it to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockRevKey {
    /// `bpf_get_socket_cookie` of the socket.
    pub cookie: u64,
    /// Backend IPv4 address, network byte order.
    pub addr_be: u32,
    /// Backend port, network byte order.
    pub port_be: u16,
    /// `PROTO_*`.
    pub proto: u8,
    pub _pad: u8,
}

/// Value of the socket reverse-NAT map: the frontend the socket asked for, which
/// `getpeername()` and `recvmsg()` show instead of the backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevValue {
    /// Frontend IPv4 address, network byte order.
    pub addr_be: u32,
    /// Frontend port, network byte order.
    pub port_be: u16,
    pub _pad: u16,
    /// Backend-set id the backend was chosen from (for dump).
    pub svc_id: u32,
    /// Backend id (for dump and for closing sockets of a removed backend).
    pub backend_id: u32,
}

/// What the data path needs to know about a node interface: every interface with an
/// IPv4 address is listed (flags only where a program is attached).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceInfo {
    /// `IF_F_*`.
    pub flags: u32,
    /// The interface's first IPv4 address, network byte order (0: none): the source of
    /// source-NATed flows leaving through it on kernels whose FIB lookup cannot return
    /// one (`BPF_FIB_LOOKUP_SRC` is Linux 6.7).
    pub addr_be: u32,
}

/// [`IfaceInfo::flags`]: the device has a peer (veth, netkit): a packet sent back to the
/// sender goes to the peer's ingress (`bpf_redirect_peer`), because an egress redirect
/// would let the kernel "complete" a CHECKSUM_PARTIAL skb's checksum over the rebuilt
/// packet and corrupt it.
pub const IF_F_PEER: u32 = 1 << 0;

/// Owner of a backend set, `namespace/name:port/PROTO[@ext]`, NUL padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SvcName {
    pub name: [u8; SVC_NAME_LEN],
}

pub const SVC_NAME_LEN: usize = 160;

/// [`Config::flags`]: emit per-packet debug logs through aya-log (slow; off by default).
pub const CFG_F_DEBUG_LOG: u32 = 1 << 0;

const _: () = {
    assert!(size_of::<ServiceKey>() == 8);
    assert!(offset_of!(ServiceKey, port_be) == 4);
    assert!(offset_of!(ServiceKey, proto) == 6);
    assert!(size_of::<ServiceValue>() == 16);
    assert!(offset_of!(ServiceValue, backend_count) == 4);
    assert!(offset_of!(ServiceValue, flags) == 6);
    assert!(offset_of!(ServiceValue, affinity_timeout_s) == 8);
    assert!(offset_of!(ServiceValue, kind) == 12);
    assert!(size_of::<SlotKey>() == 8);
    assert!(size_of::<Backend>() == 8);
    assert!(offset_of!(Backend, port_be) == 4);
    assert!(offset_of!(Backend, proto) == 6);
    assert!(size_of::<CtKey>() == 16);
    assert!(offset_of!(CtKey, sport_be) == 8);
    assert!(offset_of!(CtKey, dport_be) == 10);
    assert!(offset_of!(CtKey, proto) == 12);
    assert!(offset_of!(CtValue, dir) == 7);
    assert!(size_of::<CtValue>() == 32);
    assert!(offset_of!(CtValue, rev_addr_be) == 24);
    assert!(offset_of!(CtValue, rev_port_be) == 28);
    assert!(size_of::<SrcRangeKey>() == 8);
    assert!(offset_of!(CtValue, backend_id) == 8);
    assert!(offset_of!(CtValue, svc_id) == 12);
    assert!(offset_of!(CtValue, last_seen_ns) == 16);
    assert!(size_of::<AffinityKey>() == 8);
    assert!(size_of::<AffinityValue>() == 16);
    assert!(offset_of!(AffinityValue, last_used_ns) == 8);
    assert!(size_of::<SvcStats>() == 16);
    assert!(size_of::<Config>() == 32);
    assert!(offset_of!(Config, host_netns_cookie) == 8);
    assert!(offset_of!(Config, learned_netns_cookie) == 24);
    assert!(size_of::<SockRevKey>() == 16);
    assert!(offset_of!(SockRevKey, addr_be) == 8);
    assert!(offset_of!(SockRevKey, proto) == 14);
    assert!(size_of::<SockRevValue>() == 16);
    assert!(offset_of!(SockRevValue, svc_id) == 8);
    assert!(offset_of!(ServiceKey, scope) == 7);
    assert!(size_of::<IfaceInfo>() == 8);
    assert!(size_of::<SvcName>() == SVC_NAME_LEN);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are repr(C), Copy, contain only integers and have no implicit
    // padding (asserted above), so every bit pattern is valid.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for SlotKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityValue {}
    unsafe impl aya::Pod for SvcStats {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for IfaceInfo {}
    unsafe impl aya::Pod for SvcName {}
    unsafe impl aya::Pod for SrcRangeKey {}
    unsafe impl aya::Pod for SockRevKey {}
    unsafe impl aya::Pod for SockRevValue {}
}
