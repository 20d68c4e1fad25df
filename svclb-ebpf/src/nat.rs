//! DNAT of forward packets and reverse NAT of replies.
use crate::{
    frame::{Frame, HelperFailed, Rewrite},
    parse::{IP_DADDR_OFF, IP_SADDR_OFF, Parsed},
};

/// Destination → `addr:port` (client → frontend becomes client → backend).
#[inline(always)]
pub fn dnat<F: Frame>(f: &F, p: &Parsed, addr: u32, port: u16) -> Result<(), HelperFailed> {
    f.rewrite(&Rewrite {
        addr_off: IP_DADDR_OFF,
        old_addr: p.daddr,
        new_addr: addr,
        port_off: p.l4_off + 2,
        old_port: p.dport,
        new_port: port,
        csum_off: p.l4_csum_off(),
        udp: !p.is_tcp(),
    })
}

/// Source → `addr:port` (backend → client becomes frontend → client).
#[inline(always)]
pub fn snat<F: Frame>(f: &F, p: &Parsed, addr: u32, port: u16) -> Result<(), HelperFailed> {
    f.rewrite(&Rewrite {
        addr_off: IP_SADDR_OFF,
        old_addr: p.saddr,
        new_addr: addr,
        port_off: p.l4_off,
        old_port: p.sport,
        new_port: port,
        csum_off: p.l4_csum_off(),
        udp: !p.is_tcp(),
    })
}
