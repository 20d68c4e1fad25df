//! Which source a new flow gets when it must be source-NATed, and the
//! `loadBalancerSourceRanges` check.
use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LOOKUP_SKIP_NEIGH, BPF_FIB_LOOKUP_SRC, bpf_fib_lookup,
    },
    helpers::bpf_fib_lookup as fib_lookup,
    maps::lpm_trie::Key,
};
use svclb_common::{
    BE_F_LOCAL, Backend, FEAT_FIB_SRC, HAIRPIN_ADDR, KIND_CLUSTER_IP, SVC_F_LOCAL, ServiceValue,
    SrcRangeKey,
};

use crate::{
    features,
    frame::Frame,
    maps::{IFACES, SRC_RANGES},
    parse::Parsed,
};

const AF_INET: u8 = 2;

/// What source a new flow to `be` leaves with.
pub enum Source {
    /// The client's own.
    Client,
    /// This address (network byte order).
    Nat(u32),
    /// It needs NAT but the node has no route (or no address) towards `be`.
    NoRoute,
}

/// Hairpin (the client is the endpoint) → `HAIRPIN_ADDR`; external traffic under
/// policy Cluster to an endpoint on another node → this node's address towards it,
/// so the reply comes back here to be translated; anything else keeps the client's.
#[inline(always)]
pub fn source<F: Frame>(f: &F, p: &Parsed, svc: &ServiceValue, be: &Backend) -> Source {
    if be.addr_be == p.saddr {
        return Source::Nat(u32::from_ne_bytes(HAIRPIN_ADDR));
    }
    let external = svc.kind != KIND_CLUSTER_IP;
    if !external || svc.flags & SVC_F_LOCAL != 0 || be.flags & BE_F_LOCAL != 0 {
        return Source::Client;
    }
    match address_towards(f, p, be) {
        Some(a) => Source::Nat(a),
        None => Source::NoRoute,
    }
}

/// The source address the kernel would pick for a packet to `be` routed from the
/// ingress interface: the preferred source of the route, else the address of the
/// egress interface (BPF_FIB_LOOKUP_SRC, Linux ≥ 6.7). Older kernels reject the flag,
/// so there the plain lookup gives the egress interface and its address comes from the
/// interface map the agent fills. That misses only a route's own `src`, which
/// Kubernetes nodes rarely set on routes to other nodes.
#[inline(always)]
fn address_towards<F: Frame>(f: &F, p: &Parsed, be: &Backend) -> Option<u32> {
    // SAFETY: a plain C struct of integers and unions of integers.
    let mut q: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fill(&mut q, f, p, be);
    if features::has(FEAT_FIB_SRC) {
        let rc = lookup(f, &mut q, BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_SKIP_NEIGH);
        let src = unsafe { q.__bindgen_anon_3.ipv4_src };
        return (rc == 0 && src != 0).then_some(src);
    }
    // No SKIP_NEIGH either (6.2): a missing neighbour still gives the interface.
    let rc = lookup(f, &mut q, 0);
    if rc != 0 && rc != i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        return None;
    }
    let out = q.ifindex;
    let addr = unsafe { IFACES.get(&out) }.map_or(0, |i| i.addr_be);
    (addr != 0).then_some(addr)
}

#[inline(always)]
fn fill<F: Frame>(q: &mut bpf_fib_lookup, f: &F, p: &Parsed, be: &Backend) {
    q.family = AF_INET;
    q.l4_protocol = p.proto;
    q.sport = p.sport;
    q.dport = be.port_be;
    q.ifindex = f.ingress_ifindex();
    q.__bindgen_anon_3.ipv4_src = p.saddr;
    q.__bindgen_anon_4.ipv4_dst = be.addr_be;
}

#[inline(always)]
fn lookup<F: Frame>(f: &F, q: &mut bpf_fib_lookup, flags: u32) -> i64 {
    unsafe {
        fib_lookup(
            f.ctx_ptr(),
            q,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            flags,
        )
    }
}

/// The probe behind `svclb_common::PROG_PROBE_FIB_SRC`: a lookup with
/// `BPF_FIB_LOOKUP_SRC` from the loopback interface; -EINVAL means the kernel lacks it.
#[inline(always)]
pub fn probe_fib_src<F: Frame>(f: &F) -> i32 {
    // SAFETY: as above.
    let mut q: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    q.family = AF_INET;
    q.ifindex = 1;
    q.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([127, 0, 0, 1]);
    lookup(f, &mut q, BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_SKIP_NEIGH) as i32
}

/// Whether `p`'s source is in the service's allow-list.
#[inline(always)]
pub fn source_allowed(p: &Parsed, svc_id: u32) -> bool {
    let key = Key::new(
        64,
        SrcRangeKey {
            svc_id,
            addr_be: p.saddr,
        },
    );
    SRC_RANGES.get(key).is_some()
}
