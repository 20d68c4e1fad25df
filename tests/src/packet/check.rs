//! Checks of the programs' output that do not trust the programs: checksums
//! recomputed from the bytes (RFC 1071), and byte-for-byte comparison against a packet
//! etherparse serialized, with a readable diff on mismatch.
use std::fmt::Write as _;

use anyhow::{Result, bail, ensure};
use etherparse::PacketHeaders;

use super::build::ETH_LEN;

/// One's-complement sum of `data` as 16-bit big-endian words, folded, not inverted.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for w in data.chunks(2) {
        let hi = u32::from(w[0]) << 8;
        let lo = w.get(1).map_or(0, |b| u32::from(*b));
        s += hi | lo;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Verifies the IPv4 header checksum and the TCP, UDP or ICMP checksum of an Ethernet
/// frame, and that the IPv4 total length matches the frame.
pub fn verify_checksums(pkt: &[u8]) -> Result<()> {
    ensure!(
        pkt.len() >= ETH_LEN + 20,
        "frame of {} bytes is too short",
        pkt.len()
    );
    ensure!(pkt[12..14] == [0x08, 0x00], "not IPv4");
    let ip = &pkt[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    ensure!(
        tot_len == ip.len(),
        "IPv4 total length {tot_len} but {} bytes follow Ethernet",
        ip.len()
    );
    ensure!(
        ones_sum(&ip[..ihl]) == 0xffff,
        "bad IPv4 header checksum {:#06x}",
        csum_at(ip, 10)
    );
    let seg = &ip[ihl..tot_len];
    match ip[9] {
        6 | 17 => {
            if ip[9] == 17 && csum_at(seg, 6) == 0 {
                return Ok(()); // UDP without checksum
            }
            let mut pseudo = Vec::with_capacity(12 + seg.len());
            pseudo.extend_from_slice(&ip[12..20]);
            pseudo.extend_from_slice(&[0, ip[9]]);
            pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            pseudo.extend_from_slice(seg);
            let off = if ip[9] == 6 { 16 } else { 6 };
            ensure!(
                ones_sum(&pseudo) == 0xffff,
                "bad L4 checksum {:#06x}",
                csum_at(seg, off)
            );
        }
        1 => ensure!(
            ones_sum(seg) == 0xffff,
            "bad ICMP checksum {:#06x}",
            csum_at(seg, 2)
        ),
        p => bail!("unexpected IP protocol {p}"),
    }
    Ok(())
}

fn csum_at(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Parses a frame with etherparse (for field-level assertions).
pub fn headers(pkt: &[u8]) -> Result<PacketHeaders<'_>> {
    PacketHeaders::from_ethernet_slice(pkt).map_err(|e| anyhow::anyhow!("unparseable frame: {e}"))
}

/// Fails with both frames dumped and the differing offsets marked.
pub fn same_bytes(got: &[u8], want: &[u8]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let mut msg = format!(
        "frames differ: got {} bytes, want {}\n",
        got.len(),
        want.len()
    );
    for off in (0..got.len().max(want.len())).step_by(16) {
        let row = |b: &[u8]| -> String {
            (off..off + 16)
                .map(|i| b.get(i).map_or("  ".into(), |v| format!("{v:02x}")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let diff = (off..off + 16).any(|i| got.get(i) != want.get(i));
        let _ = writeln!(
            msg,
            "{off:04x} got  {}{}",
            row(got),
            if diff { "  <<" } else { "" }
        );
        if diff {
            let _ = writeln!(msg, "{off:04x} want {}", row(want));
        }
    }
    bail!(msg)
}
