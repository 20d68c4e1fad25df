//! What the shared packet logic needs from a program context. TC (`tc.rs`) and XDP
//! (`xdp.rs`) differ only in how bytes are rewritten, checksums fixed and packets
//! resized; everything else is written once against this trait.
use core::mem::size_of;

use crate::{csum, parse::IP_CSUM_OFF};

/// One address + port rewrite, with the checksums it touches.
pub struct Rewrite {
    /// Offset of the IPv4 address to replace (source or destination).
    pub addr_off: usize,
    pub old_addr: u32,
    pub new_addr: u32,
    /// Offset of the L4 port to replace.
    pub port_off: usize,
    pub old_port: u16,
    pub new_port: u16,
    /// Offset of the L4 checksum.
    pub csum_off: usize,
    /// UDP: a zero checksum means "none" and stays zero; a computed zero is sent as
    /// 0xffff.
    pub udp: bool,
}

/// Failure of a packet-changing helper; the caller drops the packet.
pub struct HelperFailed;

pub trait Frame {
    /// Whether this hook sends rejects itself. XDP does not: it leaves them to TC on
    /// the same interface, whose redirect works on every device (XDP_TX on veth is
    /// lost unless the peer runs an XDP program).
    const SENDS_REJECTS: bool;
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Whole packet length, for byte counters.
    fn len(&self) -> u32;
    /// Makes at least the first `want` bytes (or the whole packet, if shorter) directly
    /// accessible. Returns false when nothing changed (already linear, or impossible).
    fn pull(&self, want: u32) -> bool;
    /// Replaces one address and port and fixes the IPv4 and L4 checksums.
    fn rewrite(&self, rw: &Rewrite) -> Result<(), HelperFailed>;
    /// Copies `len` packet bytes at `off` to `dst`.
    fn load_bytes(&self, off: u32, dst: *mut u8, len: u32) -> Result<(), HelperFailed>;
    /// Replaces the whole packet by `buf[..len]`.
    fn replace<const N: usize>(&self, buf: &[u8; N], len: u32) -> Result<(), HelperFailed>;
    /// The program context, for helpers that take it (`bpf_fib_lookup`).
    fn ctx_ptr(&self) -> *mut core::ffi::c_void;
    /// Index of the interface the packet came in on.
    fn ingress_ifindex(&self) -> u32;
}

/// Bounds-checked pointer to a `T` at `off`; re-derived from the context each time so
/// it is valid after helpers that invalidate packet pointers.
#[inline(always)]
pub fn ptr_at<F: Frame, T>(f: &F, off: usize) -> Option<*mut T> {
    let start = f.data();
    let end = f.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// The part of a rewrite both hooks do by direct access: the address, the port and the
/// IPv4 header checksum (always a full one, RFC 1624). The L4 checksum is left to the
/// hook: by hand in XDP, through the skb-aware helpers in TC.
#[inline(always)]
pub fn rewrite_l3<F: Frame>(f: &F, rw: &Rewrite) -> Result<(), HelperFailed> {
    let ip_csum: *mut [u8; 2] = ptr_at(f, IP_CSUM_OFF).ok_or(HelperFailed)?;
    let addr: *mut [u8; 4] = ptr_at(f, rw.addr_off).ok_or(HelperFailed)?;
    let port: *mut [u8; 2] = ptr_at(f, rw.port_off).ok_or(HelperFailed)?;
    // SAFETY: bounds-checked pointers into the packet.
    unsafe {
        *addr = rw.new_addr.to_ne_bytes();
        *port = rw.new_port.to_ne_bytes();
        let c = u16::from_ne_bytes(*ip_csum);
        *ip_csum = csum::replace4(c, rw.old_addr, rw.new_addr).to_ne_bytes();
    }
    Ok(())
}
