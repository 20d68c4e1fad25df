//! Connection tracking: two LRU entries per flow. The forward entry (keyed by the
//! client → frontend tuple) holds the backend to DNAT to; the reply entry (keyed by
//! the backend → client tuple) holds the frontend to restore as the source.
use aya_ebpf::bindings::BPF_ANY;
use svclb_common::{Backend, CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_CLOSING, CtKey, CtValue};

use crate::{
    maps::{BACKENDS, CONNTRACK},
    parse::Parsed,
};

/// Timestamps are refreshed at most this often, to spare writes to shared cache lines.
const TOUCH_NS: u64 = 1_000_000_000;

/// The packet's own tuple in direction `dir`.
#[inline(always)]
pub fn key(p: &Parsed, dir: u8) -> CtKey {
    CtKey {
        saddr_be: p.saddr,
        daddr_be: p.daddr,
        sport_be: p.sport,
        dport_be: p.dport,
        proto: p.proto,
        dir,
        _pad: [0; 2],
    }
}

#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<&'static mut CtValue> {
    CONNTRACK.get_ptr_mut(key).map(|v| unsafe { &mut *v })
}

#[inline(always)]
pub fn touch(ct: &mut CtValue, now: u64) {
    if now.wrapping_sub(ct.last_seen_ns) > TOUCH_NS {
        ct.last_seen_ns = now;
    }
}

/// An entry a new SYN may keep using: not closing, and its backend still exists.
/// (Other packets of an established flow keep their backend regardless.)
#[inline(always)]
pub fn reusable_for_syn(ct: &CtValue) -> bool {
    ct.flags & CT_F_CLOSING == 0 && BACKENDS.get_ptr(ct.backend_id).is_some()
}

/// Records a new flow of `p` (as it arrived, to the frontend) given to backend `be`.
#[inline(always)]
pub fn create(p: &Parsed, backend_id: u32, be: &Backend, svc_id: u32, now: u64) -> Result<(), i32> {
    let reply_key = CtKey {
        saddr_be: be.addr_be,
        daddr_be: p.saddr,
        sport_be: be.port_be,
        dport_be: p.sport,
        proto: p.proto,
        dir: CT_DIR_REPLY,
        _pad: [0; 2],
    };
    let reply = CtValue {
        nat_addr_be: p.daddr,
        nat_port_be: p.dport,
        flags: 0,
        _pad: 0,
        backend_id,
        svc_id,
        last_seen_ns: now,
    };
    // Reply first: it must exist before the backend can answer.
    CONNTRACK.insert(reply_key, reply, u64::from(BPF_ANY))?;
    let fwd = CtValue {
        nat_addr_be: be.addr_be,
        nat_port_be: be.port_be,
        flags: if p.is_closing() { CT_F_CLOSING } else { 0 },
        _pad: 0,
        backend_id,
        svc_id,
        last_seen_ns: now,
    };
    CONNTRACK.insert(key(p, CT_DIR_FORWARD), fwd, u64::from(BPF_ANY))
}

/// Marks the forward entry of the flow a reply `p` belongs to as closing; the reply
/// entry `ct` names the frontend.
#[inline(always)]
pub fn mark_closing_from_reply(p: &Parsed, ct: &CtValue) {
    let fwd = CtKey {
        saddr_be: p.daddr,
        daddr_be: ct.nat_addr_be,
        sport_be: p.dport,
        dport_be: ct.nat_port_be,
        proto: p.proto,
        dir: CT_DIR_FORWARD,
        _pad: [0; 2],
    };
    if let Some(f) = lookup(&fwd) {
        f.flags |= CT_F_CLOSING;
    }
}
