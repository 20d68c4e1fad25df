//! Refusing a new flow to a frontend without backends, as kube-proxy's REJECT does:
//! TCP gets a RST, UDP an ICMP port unreachable, both from the frontend address. The
//! answer is built in a stack buffer with full checksums and replaces the packet,
//! which the caller sends back out of the interface it came in on.
use svclb_common::{Counter, PROTO_TCP};

use crate::{
    csum::{fold, sum_u32, sum_words},
    frame::{Frame, ptr_at},
    lb::{Verdict, drop},
    parse::{ETH_LEN, IP_OFF, Parsed, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    stats::count,
};

const IP_HDR_LEN: usize = 20;
const L4_OFF: usize = ETH_LEN + IP_HDR_LEN;
const TCP_HDR_LEN: usize = 20;
const ICMP_HDR_LEN: usize = 8;
/// Where the ICMP error quotes the offending datagram.
const QUOTE_OFF: usize = L4_OFF + ICMP_HDR_LEN;
/// Largest answer: ICMP quoting a 60-byte IPv4 header and 8 bytes of UDP.
const BUF_LEN: usize = QUOTE_OFF + 60 + 8 + 2;
const PROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const TTL: u8 = 64;

#[inline(always)]
pub fn reject<F: Frame>(f: &F, p: &Parsed) -> Verdict {
    let mut buf = [0u8; BUF_LEN];
    let len = if p.is_tcp() {
        tcp_rst(f, p, &mut buf)
    } else {
        icmp_port_unreach(f, p, &mut buf)
    };
    let Some(len) = len else {
        return drop();
    };
    if f.replace(&buf, len).is_err() {
        return drop();
    }
    count(Counter::Reject);
    Verdict::Reject
}

/// RST for a TCP segment, as RFC 793 (and Linux's nf_reject) build it: if the segment
/// had an ACK, the RST takes its sequence number from it; otherwise seq 0 and RST|ACK
/// acknowledging everything the segment occupied.
#[inline(always)]
fn tcp_rst<F: Frame>(f: &F, p: &Parsed, buf: &mut [u8; BUF_LEN]) -> Option<u32> {
    let ip: *const [u8; 20] = ptr_at(f, IP_OFF)?;
    let th: *const [u8; TCP_HDR_LEN] = ptr_at(f, p.l4_off)?;
    let (ip, th) = unsafe { (&*ip, &*th) };
    let tot_len = u32::from(u16::from_be_bytes([ip[2], ip[3]]));
    let ihl = u32::from(ip[0] & 0x0f) * 4;
    let doff = u32::from(th[12] >> 4) * 4;
    let seg_len = tot_len.saturating_sub(ihl).saturating_sub(doff);
    let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let ack = u32::from_be_bytes([th[8], th[9], th[10], th[11]]);
    let flags = th[13];
    let (rseq, rack, rflags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let occupied = seg_len + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        (0, seq.wrapping_add(occupied), TCP_RST | TCP_ACK)
    };

    eth_swapped(f, buf)?;
    ip_header(
        buf,
        (IP_HDR_LEN + TCP_HDR_LEN) as u16,
        PROTO_TCP,
        p.daddr,
        p.saddr,
    );
    let t = L4_OFF;
    buf[t..t + 2].copy_from_slice(&p.dport.to_ne_bytes());
    buf[t + 2..t + 4].copy_from_slice(&p.sport.to_ne_bytes());
    buf[t + 4..t + 8].copy_from_slice(&rseq.to_be_bytes());
    buf[t + 8..t + 12].copy_from_slice(&rack.to_be_bytes());
    buf[t + 12] = ((TCP_HDR_LEN / 4) as u8) << 4;
    buf[t + 13] = rflags;
    // Window, checksum and urgent pointer stay zero until the checksum below.
    let pseudo = sum_u32(p.daddr)
        + sum_u32(p.saddr)
        + u64::from(u16::from_ne_bytes([0, PROTO_TCP]))
        + u64::from((TCP_HDR_LEN as u16).to_be());
    let c = !fold(pseudo + sum_words(buf, t, TCP_HDR_LEN));
    buf[t + 16..t + 18].copy_from_slice(&c.to_ne_bytes());
    Some((L4_OFF + TCP_HDR_LEN) as u32)
}

/// ICMP destination unreachable / port unreachable quoting the datagram's IPv4
/// header (with options) and first 8 bytes, as RFC 792 asks.
#[inline(always)]
fn icmp_port_unreach<F: Frame>(f: &F, p: &Parsed, buf: &mut [u8; BUF_LEN]) -> Option<u32> {
    let vihl: *const u8 = ptr_at(f, IP_OFF)?;
    let quote_len = u32::from(unsafe { *vihl } & 0x0f) * 4 + 8;
    // The parser checked the header and 8 bytes of UDP are there.
    let dst = unsafe { buf.as_mut_ptr().add(QUOTE_OFF) };
    f.load_bytes(IP_OFF as u32, dst, quote_len).ok()?;

    eth_swapped(f, buf)?;
    let icmp_len = ICMP_HDR_LEN as u32 + quote_len;
    ip_header(
        buf,
        (IP_HDR_LEN as u32 + icmp_len) as u16,
        PROTO_ICMP,
        p.daddr,
        p.saddr,
    );
    buf[L4_OFF] = ICMP_DEST_UNREACH;
    buf[L4_OFF + 1] = ICMP_PORT_UNREACH;
    let c = !fold(sum_words(buf, L4_OFF, icmp_len as usize));
    buf[L4_OFF + 2..L4_OFF + 4].copy_from_slice(&c.to_ne_bytes());
    Some(L4_OFF as u32 + icmp_len)
}

/// Ethernet header back to the sender: MACs swapped, IPv4.
#[inline(always)]
fn eth_swapped<F: Frame>(f: &F, buf: &mut [u8; BUF_LEN]) -> Option<()> {
    let eth: *const [u8; ETH_LEN] = ptr_at(f, 0)?;
    let eth = unsafe { &*eth };
    buf[0..6].copy_from_slice(&eth[6..12]);
    buf[6..12].copy_from_slice(&eth[0..6]);
    buf[12] = 0x08;
    buf[13] = 0x00;
    Some(())
}

/// A 20-byte IPv4 header with its checksum.
#[inline(always)]
fn ip_header(buf: &mut [u8; BUF_LEN], tot_len: u16, proto: u8, saddr: u32, daddr: u32) {
    let h = IP_OFF;
    buf[h] = 0x45;
    buf[h + 1] = 0;
    buf[h + 2..h + 4].copy_from_slice(&tot_len.to_be_bytes());
    // id 0 and DF: these are never fragmented.
    buf[h + 4] = 0;
    buf[h + 5] = 0;
    buf[h + 6] = 0x40;
    buf[h + 7] = 0;
    buf[h + 8] = TTL;
    buf[h + 9] = proto;
    buf[h + 12..h + 16].copy_from_slice(&saddr.to_ne_bytes());
    buf[h + 16..h + 20].copy_from_slice(&daddr.to_ne_bytes());
    let c = !fold(sum_words(buf, h, IP_HDR_LEN));
    buf[h + 10..h + 12].copy_from_slice(&c.to_ne_bytes());
}
