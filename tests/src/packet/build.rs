//! Test packets, serialized by etherparse (which computes every checksum itself, so
//! an expected packet built here is an independent reference for the program's
//! output).
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use etherparse::{
    Icmpv4Type, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, PacketBuilder,
    TcpHeader, icmpv4::DestUnreachableHeader,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const NODE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const ETH_LEN: usize = 14;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    pub fn proto(self) -> u8 {
        match self {
            L4::Tcp => svclb_common::PROTO_TCP,
            L4::Udp => svclb_common::PROTO_UDP,
        }
    }
}

/// An Ethernet + IPv4 + TCP/UDP packet, described field by field.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub l4: L4,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub ttl: u8,
    pub ip_id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// In 8-byte units.
    pub frag_offset: u16,
    /// Raw IPv4 options, a multiple of 4 bytes, at most 40.
    pub ip_options: Vec<u8>,
    /// TCP flag bits (`SYN`, `ACK`, …).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Raw TCP options, a multiple of 4 bytes.
    pub tcp_options: Vec<u8>,
    pub payload: Vec<u8>,
    /// Send UDP without a checksum (0), which NAT must leave at 0.
    pub udp_no_checksum: bool,
}

impl Pkt {
    /// A TCP SYN with an MSS option, client MAC → node MAC.
    pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Pkt {
            l4: L4::Tcp,
            src_mac: CLIENT_MAC,
            dst_mac: NODE_MAC,
            src,
            sport,
            dst,
            dport,
            ttl: 64,
            ip_id: 0x1234,
            dont_fragment: true,
            more_fragments: false,
            frag_offset: 0,
            ip_options: Vec::new(),
            flags: SYN,
            seq: 0x0102_0304,
            ack: 0,
            window: 64240,
            tcp_options: vec![2, 4, 0x05, 0xb4],
            payload: Vec::new(),
            udp_no_checksum: false,
        }
    }

    /// A UDP datagram with a small payload.
    pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Pkt {
            l4: L4::Udp,
            flags: 0,
            seq: 0,
            tcp_options: Vec::new(),
            payload: b"hello, svclb".to_vec(),
            ..Pkt::tcp(src, sport, dst, dport)
        }
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn seq_ack(mut self, seq: u32, ack: u32) -> Self {
        self.seq = seq;
        self.ack = ack;
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn ip_options(mut self, options: &[u8]) -> Self {
        self.ip_options = options.to_vec();
        self
    }

    pub fn sport(mut self, sport: u16) -> Self {
        self.sport = sport;
        self
    }

    /// The same packet with another destination (what DNAT should produce).
    pub fn to(&self, dst: Ipv4Addr, dport: u16) -> Self {
        Pkt {
            dst,
            dport,
            ..self.clone()
        }
    }

    /// The same packet with another source (what reverse NAT should produce).
    pub fn from(&self, src: Ipv4Addr, sport: u16) -> Self {
        Pkt {
            src,
            sport,
            ..self.clone()
        }
    }

    /// The reply direction: addresses, ports and MACs swapped, TCP flags `flags`.
    pub fn reply(&self, flags: u8) -> Self {
        Pkt {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
            flags,
            seq: 0x0a0b_0c0d,
            ack: self.seq.wrapping_add(1),
            ..self.clone()
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.try_bytes().expect("valid packet description")
    }

    pub fn try_bytes(&self) -> Result<Vec<u8>> {
        let proto = match self.l4 {
            L4::Tcp => IpNumber::TCP,
            L4::Udp => IpNumber::UDP,
        };
        let mut ip = Ipv4Header::new(0, self.ttl, proto, self.src.octets(), self.dst.octets())?;
        ip.identification = self.ip_id;
        ip.dont_fragment = self.dont_fragment;
        ip.more_fragments = self.more_fragments;
        ip.fragment_offset = IpFragOffset::try_new(self.frag_offset)?;
        ip.options = Ipv4Options::try_from(&self.ip_options[..])
            .map_err(|e| anyhow::anyhow!("ip options: {e:?}"))?;
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ip(IpHeaders::Ipv4(ip, Default::default()));
        let mut out = Vec::new();
        match self.l4 {
            L4::Tcp => {
                let mut th = TcpHeader::new(self.sport, self.dport, self.seq, self.window);
                th.fin = self.flags & FIN != 0;
                th.syn = self.flags & SYN != 0;
                th.rst = self.flags & RST != 0;
                th.psh = self.flags & PSH != 0;
                th.ack = self.flags & ACK != 0;
                th.acknowledgment_number = self.ack;
                th.set_options_raw(&self.tcp_options)
                    .map_err(|e| anyhow::anyhow!("tcp options: {e:?}"))?;
                eth.tcp_header(th)
                    .write(&mut out, &self.payload)
                    .context("write tcp")?;
            }
            L4::Udp => {
                eth.udp(self.sport, self.dport)
                    .write(&mut out, &self.payload)
                    .context("write udp")?;
                if self.udp_no_checksum {
                    let c = ETH_LEN + 20 + self.ip_options.len() + 6;
                    out[c..c + 2].copy_from_slice(&[0, 0]);
                }
            }
        }
        Ok(out)
    }
}

/// The RST a frontend answers `to` with when it has no backends: headers only, from
/// `to`'s destination, window 0, IP id 0 with DF, TTL 64, MACs swapped.
pub fn tcp_reset(to: &Pkt, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    Pkt {
        src_mac: to.dst_mac,
        dst_mac: to.src_mac,
        src: to.dst,
        sport: to.dport,
        dst: to.src,
        dport: to.sport,
        ttl: 64,
        ip_id: 0,
        dont_fragment: true,
        more_fragments: false,
        frag_offset: 0,
        ip_options: Vec::new(),
        flags,
        seq,
        ack,
        window: 0,
        tcp_options: Vec::new(),
        payload: Vec::new(),
        ..to.clone()
    }
    .bytes()
}

/// ICMP port unreachable for the datagram `orig` (a frame), from its destination
/// address, quoting its IPv4 header (with options) and first 8 bytes of payload.
pub fn icmp_port_unreachable(orig: &[u8]) -> Vec<u8> {
    let ihl = usize::from(orig[ETH_LEN] & 0x0f) * 4;
    let quoted = &orig[ETH_LEN..ETH_LEN + ihl + 8];
    let (src_mac, dst_mac) = (&orig[0..6], &orig[6..12]);
    let (src, dst) = (&quoted[16..20], &quoted[12..16]);
    let mut ip = Ipv4Header::new(
        0,
        64,
        IpNumber::ICMP,
        src.try_into().unwrap(),
        dst.try_into().unwrap(),
    )
    .expect("ipv4 header");
    ip.identification = 0;
    ip.dont_fragment = true;
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src_mac.try_into().unwrap(), dst_mac.try_into().unwrap())
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ))
        .write(&mut out, quoted)
        .expect("icmp");
    out
}

/// An ICMP echo request (neither TCP nor UDP).
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, b"ping")
        .expect("icmp echo");
    out
}

/// An IPv6 TCP SYN.
pub fn ipv6_tcp_syn(dport: u16) -> Vec<u8> {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    // 2001:db8::/32 documentation prefix; never leaves the test.
    src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    dst[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    src[15] = 1;
    dst[15] = 2;
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv6(src, dst, 64)
        .tcp(40000, dport, 1, 64240)
        .syn()
        .write(&mut out, &[])
        .expect("ipv6 tcp");
    out
}

/// An ARP request (who has `target`, tell `sender`), written out by hand.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&[0x08, 0x06]);
    out.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&sender.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&target.octets());
    out
}
