//! The maps, declared with the names and capacities of the ABI in `svclb-common`.
//!
//! `#[map(name = ...)]` takes a literal, so the names are repeated here and checked
//! against the shared constants at compile time.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use svclb_common::{
    AffinityKey, AffinityValue, Backend, COUNTER_COUNT, Config, CtKey, CtValue, IfaceInfo,
    MAP_AFFINITY, MAP_BACKENDS, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_IFACES, MAP_SERVICES,
    MAP_SLOTS, MAP_SOCK_REVNAT, MAP_SRC_RANGES, MAP_SVC_NAMES, MAP_SVC_STATS, MAX_AFFINITY,
    MAX_BACKENDS, MAX_CONNTRACK, MAX_IFACES, MAX_SERVICE_IDS, MAX_SERVICES, MAX_SLOTS,
    MAX_SOCK_REVNAT, MAX_SRC_RANGES, ServiceKey, ServiceValue, SlotKey, SockRevKey, SockRevValue,
    SrcRangeKey, SvcName, SvcStats,
};

#[map(name = "SVCLB_SVC_V1")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// (svc_id, slot) → backend id.
#[map(name = "SVCLB_SLOT_V1")]
pub static SLOTS: HashMap<SlotKey, u32> = HashMap::with_max_entries(MAX_SLOTS, 0);

/// Backend id → backend.
#[map(name = "SVCLB_BE_V1")]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::with_max_entries(MAX_BACKENDS, 0);

#[map(name = "SVCLB_CT_V3")]
pub static CONNTRACK: LruHashMap<CtKey, CtValue> = LruHashMap::with_max_entries(MAX_CONNTRACK, 0);

#[map(name = "SVCLB_AFF_V1")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::with_max_entries(MAX_AFFINITY, 0);

/// Indexed by `svclb_common::Counter`.
#[map(name = "SVCLB_CNT_V4")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// Indexed by service id.
#[map(name = "SVCLB_SSTAT_V1")]
pub static SVC_STATS: PerCpuArray<SvcStats> = PerCpuArray::with_max_entries(MAX_SERVICE_IDS, 0);

/// Read by the socket programs (the host network namespace's cookie); not per packet.
#[map(name = "SVCLB_CFG_V3")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Attached interfaces: how to send a packet back where it came from.
#[map(name = "SVCLB_IF_V1")]
pub static IFACES: HashMap<u32, IfaceInfo> = HashMap::with_max_entries(MAX_IFACES, 0);

/// Written and read by user space only; not preallocated since the data path never
/// touches it (160 B × 128k ids would be 20 MiB for nothing).
#[map(name = "SVCLB_NAME_V1")]
pub static SVC_NAMES: HashMap<u32, SvcName> =
    HashMap::with_max_entries(MAX_SERVICE_IDS, BPF_F_NO_PREALLOC);

/// `loadBalancerSourceRanges` allow-lists (LPM tries are never preallocated).
#[map(name = "SVCLB_SRCR_V1")]
pub static SRC_RANGES: LpmTrie<SrcRangeKey, u8> = LpmTrie::with_max_entries(MAX_SRC_RANGES, 0);

/// What the socket programs translated: `getpeername()`/`recvmsg()` put the frontend
/// back.
#[map(name = "SVCLB_SKRN_V1")]
pub static SOCK_REVNAT: LruHashMap<SockRevKey, SockRevValue> =
    LruHashMap::with_max_entries(MAX_SOCK_REVNAT, 0);

pub const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// The literals above must be the ABI's names.
const _: () = {
    assert!(same(MAP_SERVICES, "SVCLB_SVC_V1"));
    assert!(same(MAP_SLOTS, "SVCLB_SLOT_V1"));
    assert!(same(MAP_BACKENDS, "SVCLB_BE_V1"));
    assert!(same(MAP_CONNTRACK, "SVCLB_CT_V3"));
    assert!(same(MAP_AFFINITY, "SVCLB_AFF_V1"));
    assert!(same(MAP_COUNTERS, "SVCLB_CNT_V4"));
    assert!(same(MAP_SOCK_REVNAT, "SVCLB_SKRN_V1"));
    assert!(same(MAP_SRC_RANGES, "SVCLB_SRCR_V1"));
    assert!(same(MAP_IFACES, "SVCLB_IF_V1"));
    assert!(same(MAP_SVC_STATS, "SVCLB_SSTAT_V1"));
    assert!(same(MAP_CONFIG, "SVCLB_CFG_V3"));
    assert!(same(MAP_SVC_NAMES, "SVCLB_NAME_V1"));
};
