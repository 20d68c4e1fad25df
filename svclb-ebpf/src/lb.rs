//! The per-packet decision shared by TC and XDP: frontend lookup, conntrack, backend
//! choice (random, Maglev hash, session affinity), then NAT or reject.
use aya_ebpf::helpers::bpf_get_prandom_u32;
use svclb_common::{
    AffinityKey, AffinityValue, Backend, CT_DIR_REPLY, CT_F_CLOSING, CT_F_SNAT, CT_F_SRC_RANGES,
    Counter, CtValue, SCOPE_PACKET, SVC_F_AFFINITY, SVC_F_MAGLEV, SVC_F_NO_LOCAL_DROP,
    SVC_F_SRC_RANGES, ServiceKey, ServiceValue, SlotKey,
};

use crate::{
    clock,
    ct::{self, CreateError},
    frame::{Frame, HelperFailed},
    maps::{AFFINITY, BACKENDS, SERVICES, SLOTS},
    nat,
    parse::{Parsed, parse},
    reject,
    snat::{self, Source},
    stats::{self, count},
};

pub enum Verdict {
    /// Let the kernel have the packet (possibly rewritten).
    Pass,
    /// Drop it (map race or helper failure; never forwarded half-translated).
    Drop,
    /// The packet was turned into a reject to send back out where it came in.
    Reject,
}

#[inline(always)]
pub fn process<F: Frame>(f: &F) -> Verdict {
    let p = match parse(f) {
        Ok(p) => p,
        Err(c) => {
            count(c);
            return Verdict::Pass;
        }
    };
    // Both directions of a tracked flow are keyed by the packet's own tuple, so one
    // lookup serves an established packet either way; the Service is only consulted
    // to start a flow. (A tracked flow keeps its backend even after it left the
    // Service, or the Service went; only a new SYN on a closed tuple or a vanished
    // backend starts over.)
    if let Some(ct) = ct::lookup(&ct::key(&p)) {
        if ct.dir == CT_DIR_REPLY {
            return reply(f, &p, ct);
        }
        if !p.is_syn() || ct::reusable_for_syn(ct) {
            return established(f, &p, ct);
        }
    }
    let key = ServiceKey {
        addr_be: p.daddr,
        port_be: p.dport,
        proto: p.proto,
        scope: SCOPE_PACKET,
    };
    match unsafe { SERVICES.get(key) } {
        Some(svc) => {
            let svc = *svc;
            new_flow(f, &p, &svc)
        }
        None => {
            count(Counter::PassMiss);
            Verdict::Pass
        }
    }
}

/// Counts a packet to backend set `svc_id` and checks its source against the set's
/// `loadBalancerSourceRanges` when `ranges` applies; false (counted) to drop it.
#[inline(always)]
fn admit<F: Frame>(f: &F, p: &Parsed, svc_id: u32, ranges: bool) -> bool {
    stats::service(svc_id, f.len());
    if ranges && !snat::source_allowed(p, svc_id) {
        count(Counter::SrcRangeDrop);
        return false;
    }
    true
}

/// A forward packet of a tracked flow.
#[inline(always)]
fn established<F: Frame>(f: &F, p: &Parsed, ct: &mut CtValue) -> Verdict {
    // Every packet, not only new flows: a narrowed allow-list also cuts tracked flows.
    if !admit(f, p, ct.svc_id, ct.flags & CT_F_SRC_RANGES != 0) {
        return Verdict::Drop;
    }
    ct::touch(ct, clock::now_ns());
    if p.is_closing() {
        ct.flags |= CT_F_CLOSING;
    }
    let r = nat::dnat(f, p, ct.nat_addr_be, ct.nat_port_be);
    if ct.flags & CT_F_SNAT != 0 {
        let (saddr, sport) = (ct.rev_addr_be, ct.rev_port_be);
        return done(
            r.and_then(|()| nat::snat(f, p, saddr, sport)),
            Counter::FwdEstablished,
        );
    }
    done(r, Counter::FwdEstablished)
}

/// A packet to a frontend that starts a flow.
#[inline(always)]
fn new_flow<F: Frame>(f: &F, p: &Parsed, svc: &ServiceValue) -> Verdict {
    let ranges = svc.flags & SVC_F_SRC_RANGES != 0;
    if !admit(f, p, svc.svc_id, ranges) {
        return Verdict::Drop;
    }
    let now = clock::now_ns();
    if svc.backend_count == 0 {
        if svc.flags & SVC_F_NO_LOCAL_DROP != 0 {
            count(Counter::NoLocalDrop);
            return Verdict::Drop;
        }
        if !F::SENDS_REJECTS {
            count(Counter::RejectToTc);
            return Verdict::Pass;
        }
        return reject::reject(f, p);
    }
    let Some((id, be)) = choose(p.saddr, svc, now, || packet_hash(p, svc)) else {
        // The agent updates slots before counts, so this is a race with a removal.
        return drop();
    };
    let snat_addr = match snat::source(f, p, svc, &be) {
        Source::Client => 0,
        Source::Nat(a) => a,
        Source::NoRoute => {
            count(Counter::SnatNoRoute);
            return Verdict::Drop;
        }
    };
    let flags = if ranges { CT_F_SRC_RANGES } else { 0 };
    let snat_port = match ct::create(p, id, &be, svc.svc_id, now, snat_addr, flags) {
        Ok(port) => port,
        Err(CreateError::Map) => return drop(),
        Err(CreateError::NoPort) => {
            count(Counter::SnatNoPort);
            return Verdict::Drop;
        }
    };
    let r = nat::dnat(f, p, be.addr_be, be.port_be);
    if snat_addr == 0 {
        return done(r, Counter::FwdNew);
    }
    let r = r.and_then(|()| nat::snat(f, p, snat_addr, snat_port));
    if be.addr_be == p.saddr {
        count(Counter::HairpinNew);
    } else {
        count(Counter::SnatNew);
    }
    done(r, Counter::FwdNew)
}

/// The reply of a tracked flow (`ct` is its reply entry).
#[inline(always)]
fn reply<F: Frame>(f: &F, p: &Parsed, ct: &mut CtValue) -> Verdict {
    ct::touch(ct, clock::now_ns());
    if p.is_closing() {
        ct::mark_closing_from_reply(p, ct);
    }
    let (addr, port) = (ct.nat_addr_be, ct.nat_port_be);
    let r = nat::snat(f, p, addr, port);
    if ct.flags & CT_F_SNAT != 0 {
        // Back to the client the node stood in for.
        let (daddr, dport) = (ct.rev_addr_be, ct.rev_port_be);
        return done(
            r.and_then(|()| nat::dnat(f, p, daddr, dport)),
            Counter::Reply,
        );
    }
    done(r, Counter::Reply)
}

/// Backend for a new flow of `client` (an IPv4 address, network byte order; 0 for the
/// node's own sockets): the client's affinity backend while fresh, else the slot
/// `slot_hash() % backend_count`. Shared by the packet and the socket paths.
#[inline(always)]
pub fn choose(
    client: u32,
    svc: &ServiceValue,
    now: u64,
    slot_hash: impl FnOnce() -> u32,
) -> Option<(u32, Backend)> {
    if svc.flags & SVC_F_AFFINITY == 0 {
        return pick_slot(svc, slot_hash());
    }
    let akey = AffinityKey {
        client_addr_be: client,
        svc_id: svc.svc_id,
    };
    let picked = match affinity(&akey, svc, now) {
        Some(hit) => {
            count(Counter::AffinityHit);
            hit
        }
        None => pick_slot(svc, slot_hash())?,
    };
    let val = AffinityValue {
        backend_id: picked.0,
        _pad: 0,
        last_used_ns: now,
    };
    // Best effort: without it the next flow just picks again.
    let _ = AFFINITY.insert(akey, val, 0);
    Some(picked)
}

#[inline(always)]
fn affinity(akey: &AffinityKey, svc: &ServiceValue, now: u64) -> Option<(u32, Backend)> {
    let a = unsafe { AFFINITY.get(akey) }?;
    let timeout_ns = u64::from(svc.affinity_timeout_s) * 1_000_000_000;
    // Saturating: another CPU may have stamped the entry a little later within the
    // same tick (each CPU caches its own clock read), which is no expiry.
    if now.saturating_sub(a.last_used_ns) >= timeout_ns {
        return None;
    }
    let id = a.backend_id;
    let be = unsafe { BACKENDS.get(id) }?;
    Some((id, *be))
}

/// The packet path's slot choice: the flow's hash for Maglev, else random.
#[inline(always)]
fn packet_hash(p: &Parsed, svc: &ServiceValue) -> u32 {
    if svc.flags & SVC_F_MAGLEV != 0 {
        svclb_common::flow_hash(p.saddr, p.daddr, p.sport, p.dport, p.proto)
    } else {
        unsafe { bpf_get_prandom_u32() }
    }
}

#[inline(always)]
fn pick_slot(svc: &ServiceValue, r: u32) -> Option<(u32, Backend)> {
    let n = u32::from(svc.backend_count);
    let slot = SlotKey {
        svc_id: svc.svc_id,
        slot: r % n,
    };
    let id = *unsafe { SLOTS.get(slot) }?;
    let be = *unsafe { BACKENDS.get(id) }?;
    Some((id, be))
}

#[inline(always)]
fn done(r: Result<(), HelperFailed>, ok: Counter) -> Verdict {
    match r {
        Ok(()) => {
            count(ok);
            Verdict::Pass
        }
        Err(HelperFailed) => drop(),
    }
}

#[inline(always)]
pub fn drop() -> Verdict {
    count(Counter::Drop);
    Verdict::Drop
}
