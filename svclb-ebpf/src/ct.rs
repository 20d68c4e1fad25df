//! Connection tracking: two LRU entries per flow in one key space (a packet's own
//! tuple; the value's `dir` says which). The forward entry (keyed by the client →
//! frontend tuple) holds the backend to DNAT to; the reply entry (keyed by the
//! backend → client tuple) holds the frontend to restore as the source. A
//! source-NATed flow (`CT_F_SNAT`) keys its reply entry by the NAT address and port and
//! carries the second translation in `rev_*` in both entries.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_get_prandom_u32,
};
use svclb_common::{
    Backend, CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_CLOSING, CT_F_SNAT, CtKey, CtValue, SNAT_PORT_MIN,
    SNAT_PORT_TRIES, ServiceKey,
};

use crate::{
    maps::{BACKENDS, CONNTRACK, SERVICES},
    parse::Parsed,
};

/// Timestamps are refreshed at most this often, to spare writes to shared cache lines.
const TOUCH_NS: u64 = 1_000_000_000;

/// The packet's own tuple.
#[inline(always)]
pub fn key(p: &Parsed) -> CtKey {
    CtKey::new(p.saddr, p.daddr, p.sport, p.dport, p.proto)
}

#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<&'static mut CtValue> {
    CONNTRACK.get_ptr_mut(key).map(|v| unsafe { &mut *v })
}

#[inline(always)]
pub fn touch(ct: &mut CtValue, now: u64) {
    // Saturating, as for affinity: a stamp from another CPU may be a little ahead.
    if now.saturating_sub(ct.last_seen_ns) > TOUCH_NS {
        ct.last_seen_ns = now;
    }
}

/// An entry a new SYN may keep using: not closing, and its backend still exists.
/// (Other packets of an established flow keep their backend regardless.)
#[inline(always)]
pub fn reusable_for_syn(ct: &CtValue) -> bool {
    ct.flags & CT_F_CLOSING == 0 && BACKENDS.get_ptr(ct.backend_id).is_some()
}

/// Why a new flow could not be recorded.
pub enum CreateError {
    /// The map refused the entry.
    Map,
    /// Source NAT found no free reply tuple (`SNAT_PORT_TRIES` ports tried).
    NoPort,
}

/// Records a new flow of `p` (as it arrived, to the frontend) given to backend `be`.
/// With `snat_addr` ≠ 0 the flow is also source-NATed to that address: returns the
/// source port chosen for it (the client's when that reply tuple is free). `flags`
/// (`CT_F_*`) go on the forward entry.
#[inline(always)]
pub fn create(
    p: &Parsed,
    backend_id: u32,
    be: &Backend,
    svc_id: u32,
    now: u64,
    snat_addr: u32,
    flags: u8,
) -> Result<u16, CreateError> {
    let mut reply_key = CtKey::new(be.addr_be, p.saddr, be.port_be, p.sport, p.proto);
    let mut reply = CtValue {
        nat_addr_be: p.daddr,
        nat_port_be: p.dport,
        flags: 0,
        dir: CT_DIR_REPLY,
        backend_id,
        svc_id,
        last_seen_ns: now,
        rev_addr_be: 0,
        rev_port_be: 0,
        _pad2: [0; 2],
    };
    let mut fwd = CtValue {
        nat_addr_be: be.addr_be,
        nat_port_be: be.port_be,
        flags: flags | if p.is_closing() { CT_F_CLOSING } else { 0 },
        dir: CT_DIR_FORWARD,
        backend_id,
        svc_id,
        last_seen_ns: now,
        rev_addr_be: 0,
        rev_port_be: 0,
        _pad2: [0; 2],
    };
    // Reply first: it must exist before the backend can answer.
    let port = if snat_addr == 0 {
        CONNTRACK
            .insert(reply_key, reply, u64::from(BPF_ANY))
            .map_err(|_| CreateError::Map)?;
        p.sport
    } else {
        reply.flags = CT_F_SNAT;
        reply.rev_addr_be = p.saddr;
        reply.rev_port_be = p.sport;
        reply_key.daddr_be = snat_addr;
        let port = claim_port(p, &mut reply_key, &reply)?;
        fwd.flags |= CT_F_SNAT;
        fwd.rev_addr_be = snat_addr;
        fwd.rev_port_be = port;
        port
    };
    CONNTRACK
        .insert(key(p), fwd, u64::from(BPF_ANY))
        .map_err(|_| CreateError::Map)?;
    Ok(port)
}

/// Inserts the reply entry of a source-NATed flow under a free destination port: the
/// client's own first, then random ones from `SNAT_PORT_MIN..`. A port is free when no
/// other flow's reply entry holds the tuple (the insert is atomic, BPF_NOEXIST) and it
/// is no frontend of the NAT address (that reply would be taken for a new flow).
#[inline(always)]
fn claim_port(p: &Parsed, reply_key: &mut CtKey, reply: &CtValue) -> Result<u16, CreateError> {
    let span = u32::from(u16::MAX - SNAT_PORT_MIN) + 1;
    let mut i = 0;
    while i < SNAT_PORT_TRIES {
        let port = if i == 0 {
            p.sport
        } else {
            let r = unsafe { bpf_get_prandom_u32() } % span;
            (SNAT_PORT_MIN + r as u16).to_be()
        };
        i += 1;
        let fe = ServiceKey {
            addr_be: reply_key.daddr_be,
            port_be: port,
            proto: p.proto,
            scope: svclb_common::SCOPE_PACKET,
        };
        if unsafe { SERVICES.get(fe) }.is_some() {
            continue;
        }
        reply_key.dport_be = port;
        if CONNTRACK
            .insert(*reply_key, *reply, u64::from(BPF_NOEXIST))
            .is_ok()
        {
            return Ok(port);
        }
        // Taken. By this client's own earlier flow on the same tuple (a new SYN after
        // a close)? Then it is ours to reuse.
        if let Some(old) = lookup(reply_key)
            && old.dir == CT_DIR_REPLY
            && old.rev_addr_be == reply.rev_addr_be
            && old.rev_port_be == reply.rev_port_be
            && old.nat_addr_be == reply.nat_addr_be
            && old.nat_port_be == reply.nat_port_be
        {
            *old = *reply;
            return Ok(port);
        }
    }
    Err(CreateError::NoPort)
}

/// Marks the forward entry of the flow a reply `p` belongs to as closing; the reply
/// entry `ct` names the frontend.
#[inline(always)]
pub fn mark_closing_from_reply(p: &Parsed, ct: &CtValue) {
    // A source-NATed flow's client is in the entry, not in the reply's destination.
    let (client, client_port) = if ct.flags & CT_F_SNAT != 0 {
        (ct.rev_addr_be, ct.rev_port_be)
    } else {
        (p.daddr, p.dport)
    };
    let fwd = CtKey::new(client, ct.nat_addr_be, client_port, ct.nat_port_be, p.proto);
    if let Some(f) = lookup(&fwd)
        && f.dir == CT_DIR_FORWARD
    {
        f.flags |= CT_F_CLOSING;
    }
}
