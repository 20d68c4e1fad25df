//! Ethernet → IPv4 → TCP/UDP header parsing, read only.
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use svclb_common::{Counter, PROTO_TCP, PROTO_UDP};

use crate::frame::{Frame, ptr_at};

pub const ETH_LEN: usize = 14;
pub const IP_OFF: usize = ETH_LEN;
pub const IP_CSUM_OFF: usize = IP_OFF + 10;
pub const IP_SADDR_OFF: usize = IP_OFF + 12;
pub const IP_DADDR_OFF: usize = IP_OFF + 16;
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const IP_MF_OFFSET_MASK: u16 = 0x3fff;
const TCP_HDR_LEN: usize = 20;
const UDP_HDR_LEN: usize = 8;
/// Ethernet + largest IPv4 header + TCP header without options.
pub const MAX_HDR_LEN: u32 = (ETH_LEN + 60 + TCP_HDR_LEN) as u32;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The fields the load balancer needs. Addresses and ports are as they appear in the
/// packet (network byte order), like the map keys.
#[derive(Clone, Copy)]
pub struct Parsed {
    /// Offset of the L4 header: after Ethernet and the IPv4 header with its options.
    pub l4_off: usize,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
}

impl Parsed {
    pub fn is_tcp(&self) -> bool {
        self.proto == PROTO_TCP
    }

    /// A SYN without ACK: the first packet of a TCP connection.
    pub fn is_syn(&self) -> bool {
        self.is_tcp() && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// FIN or RST: the connection is closing and its tuple may be reused.
    pub fn is_closing(&self) -> bool {
        self.is_tcp() && self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }

    pub fn l4_csum_off(&self) -> usize {
        self.l4_off + if self.is_tcp() { 16 } else { 6 }
    }
}

/// Parses the headers; on `Err` the packet is passed untouched and the counter says
/// why. TC packets whose headers are not in the linear part are pulled once.
#[inline(always)]
pub fn parse<F: Frame>(f: &F) -> Result<Parsed, Counter> {
    match parse_direct(f) {
        Err(Counter::PassTruncated) if f.pull(MAX_HDR_LEN) => parse_direct(f),
        r => r,
    }
}

#[inline(always)]
fn parse_direct<F: Frame>(f: &F) -> Result<Parsed, Counter> {
    let eth: *const EthHdr = ptr_at(f, 0).ok_or(Counter::PassTruncated)?;
    if unsafe { (*eth).ether_type } != ETH_P_IP_BE {
        return Err(Counter::PassNotIpv4);
    }
    let ip: *const Ipv4Hdr = ptr_at(f, IP_OFF).ok_or(Counter::PassTruncated)?;
    let ip = unsafe { &*ip };
    if ip.vihl >> 4 != 4 {
        return Err(Counter::PassNotIpv4);
    }
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(Counter::PassTruncated);
    }
    let proto = ip.proto;
    let l4_min = match proto {
        PROTO_TCP => TCP_HDR_LEN,
        PROTO_UDP => UDP_HDR_LEN,
        _ => return Err(Counter::PassOtherProto),
    };
    // Only a first fragment carries ports, and later ones would not follow it to the
    // same backend: fragments are left to the kernel.
    if u16::from_be_bytes(ip.frags) & IP_MF_OFFSET_MASK != 0 {
        return Err(Counter::PassFragment);
    }
    if usize::from(u16::from_be_bytes(ip.tot_len)) < ihl + l4_min {
        return Err(Counter::PassTruncated);
    }
    let saddr = u32::from_ne_bytes(ip.src_addr);
    let daddr = u32::from_ne_bytes(ip.dst_addr);
    let l4_off = ETH_LEN + ihl;

    let (ports, tcp_flags) = if proto == PROTO_TCP {
        let th: *const [u8; TCP_HDR_LEN] = ptr_at(f, l4_off).ok_or(Counter::PassTruncated)?;
        let th = unsafe { &*th };
        ([th[0], th[1], th[2], th[3]], th[13])
    } else {
        let uh: *const [u8; UDP_HDR_LEN] = ptr_at(f, l4_off).ok_or(Counter::PassTruncated)?;
        let uh = unsafe { &*uh };
        ([uh[0], uh[1], uh[2], uh[3]], 0)
    };
    Ok(Parsed {
        l4_off,
        saddr,
        daddr,
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        proto,
        tcp_flags,
    })
}
