//! Map names and capacities. The kernel side declares its maps with these names and the
//! agent opens them (and their pins) by the same strings.
//!
//! Every name carries a version suffix: bump it whenever the key or value layout of
//! that map changes, so a new agent never reinterprets an old pinned map.

/// Frontend (address, port, protocol) → [`crate::ServiceValue`].
pub const MAP_SERVICES: &str = "SVCLB_SVC_V1";
/// ([`crate::SlotKey`]) → backend id (`u32`).
pub const MAP_SLOTS: &str = "SVCLB_SLOT_V1";
/// Backend id (`u32`) → [`crate::Backend`].
pub const MAP_BACKENDS: &str = "SVCLB_BE_V1";
/// LRU flow table: [`crate::CtKey`] → [`crate::CtValue`].
pub const MAP_CONNTRACK: &str = "SVCLB_CT_V3";
/// LRU session affinity: [`crate::AffinityKey`] → [`crate::AffinityValue`].
pub const MAP_AFFINITY: &str = "SVCLB_AFF_V1";
/// Per-CPU array of `u64`, indexed by [`crate::Counter`].
pub const MAP_COUNTERS: &str = "SVCLB_CNT_V4";
/// Per-CPU array of [`crate::SvcStats`], indexed by service id.
pub const MAP_SVC_STATS: &str = "SVCLB_SSTAT_V1";
/// Array with one [`crate::Config`] at index 0.
pub const MAP_CONFIG: &str = "SVCLB_CFG_V3";
/// Service id (`u32`) → [`crate::SvcName`]: who owns a backend set, so `dump` can name
/// it from the pins alone. Not read by the programs.
pub const MAP_SVC_NAMES: &str = "SVCLB_NAME_V1";

/// Interface index (`u32`) → [`crate::IfaceInfo`], written by the agent for every
/// interface it attaches to.
pub const MAP_IFACES: &str = "SVCLB_IF_V1";

/// LPM trie: [`crate::SrcRangeKey`] (service id + source prefix) → `u8` (unused):
/// the `loadBalancerSourceRanges` allow-lists.
pub const MAP_SRC_RANGES: &str = "SVCLB_SRCR_V1";

/// LRU: [`crate::SockRevKey`] (socket cookie + backend) → [`crate::SockRevValue`]
/// (the frontend): what the socket programs translated, for `getpeername()`,
/// `recvmsg()` and for closing connected UDP sockets of a removed backend.
pub const MAP_SOCK_REVNAT: &str = "SVCLB_SKRN_V1";

/// Per-CPU scratch of the programs' clock (`svclb-ebpf/src/clock.rs`): never pinned,
/// never read by user space, so not in [`ALL_MAPS`]; a new load starts a new one.
pub const MAP_TICK_CACHE: &str = "SVCLB_TICK";

/// All maps, for pinning, adoption and cleanup.
pub const ALL_MAPS: [&str; 12] = [
    MAP_SERVICES,
    MAP_SLOTS,
    MAP_BACKENDS,
    MAP_CONNTRACK,
    MAP_AFFINITY,
    MAP_COUNTERS,
    MAP_SVC_STATS,
    MAP_CONFIG,
    MAP_SVC_NAMES,
    MAP_IFACES,
    MAP_SRC_RANGES,
    MAP_SOCK_REVNAT,
];

/// Frontends: ClusterIP, every node address × NodePort, externalIPs, LB ingress IPs,
/// each per Service port. 128k frontends ≈ 100k Services with headroom.
pub const MAX_SERVICES: u32 = 131_072;
/// Service (backend set) ids are `1..MAX_SERVICE_IDS`; id 0 means "none".
pub const MAX_SERVICE_IDS: u32 = 131_072;
/// Slots across all services (sum of backend counts).
pub const MAX_SLOTS: u32 = 1_048_576;
/// Distinct backends (address, port, protocol). Id 0 means "none".
pub const MAX_BACKENDS: u32 = 1_048_576;
/// Tracked flows; two entries per flow (forward and reply).
pub const MAX_CONNTRACK: u32 = 262_144;
pub const MAX_AFFINITY: u32 = 65_536;
pub const MAX_IFACES: u32 = 4_096;
/// Source prefixes across all LoadBalancer allow-lists.
pub const MAX_SRC_RANGES: u32 = 65_536;
/// Node-local sockets translated (connected or sending) at once.
pub const MAX_SOCK_REVNAT: u32 = 131_072;
/// Largest backend set of one Service port the data path accepts.
pub const MAX_BACKENDS_PER_SERVICE: u32 = 65_535;

/// Program names (the Rust function names in svclb-ebpf), fetched by the agent.
pub const PROG_TC: &str = "svclb_tc";
pub const PROG_XDP: &str = "svclb_xdp";

/// The socket programs (cgroup sock_addr) and their attach points, for node-local
/// clients. The `*6` ones serve IPv4-mapped addresses (`::ffff:a.b.c.d`) of dual-stack
/// sockets. Pins and names are `sock-<hook>`.
pub const SOCK_PROGS: [(&str, &str); 8] = [
    ("svclb_connect4", "connect4"),
    ("svclb_sendmsg4", "sendmsg4"),
    ("svclb_recvmsg4", "recvmsg4"),
    ("svclb_getpeername4", "getpeername4"),
    ("svclb_connect6", "connect6"),
    ("svclb_sendmsg6", "sendmsg6"),
    ("svclb_recvmsg6", "recvmsg6"),
    ("svclb_getpeername6", "getpeername6"),
];
