//! [`Frame`] for TC (`__sk_buff`): L4 checksums through the kernel helpers, which are
//! also correct for CHECKSUM_PARTIAL skbs (veth with TX offload) and keep
//! CHECKSUM_COMPLETE's `skb->csum` in step. The IPv4 header checksum is always a full
//! one, so it is updated by hand ([`rewrite_l3`]), as `bpf_l3_csum_replace` would:
//! one helper call less per rewrite.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM},
    helpers::{bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_pull_data, bpf_skb_store_bytes},
    programs::TcContext,
};

use crate::frame::{Frame, HelperFailed, Rewrite, rewrite_l3};

#[inline(always)]
fn ok(ret: i64) -> Result<(), HelperFailed> {
    if ret == 0 { Ok(()) } else { Err(HelperFailed) }
}

impl Frame for TcContext {
    const SENDS_REJECTS: bool = true;

    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }

    #[inline(always)]
    fn pull(&self, want: u32) -> bool {
        let linear = (self.data_end() - self.data()) as u32;
        let want = if want < self.len() { want } else { self.len() };
        want > linear && unsafe { bpf_skb_pull_data(self.skb.skb, want) } == 0
    }

    #[inline(always)]
    fn rewrite(&self, rw: &Rewrite) -> Result<(), HelperFailed> {
        // Direct writes first: the checksum helpers invalidate packet pointers.
        rewrite_l3(self, rw)?;
        let mangled = if rw.udp {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        };
        let skb = self.skb.skb;
        let (old_addr, new_addr) = (u64::from(rw.old_addr), u64::from(rw.new_addr));
        let (old_port, new_port) = (u64::from(rw.old_port), u64::from(rw.new_port));
        unsafe {
            use aya_ebpf::helpers::bpf_l4_csum_replace;
            let pseudo = u64::from(BPF_F_PSEUDO_HDR) | mangled | 4;
            ok(bpf_l4_csum_replace(
                skb,
                rw.csum_off as u32,
                old_addr,
                new_addr,
                pseudo,
            ))?;
            ok(bpf_l4_csum_replace(
                skb,
                rw.csum_off as u32,
                old_port,
                new_port,
                mangled | 2,
            ))
        }
    }

    #[inline(always)]
    fn load_bytes(&self, off: u32, dst: *mut u8, len: u32) -> Result<(), HelperFailed> {
        ok(unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), off, dst.cast(), len) })
    }

    #[inline(always)]
    fn replace<const N: usize>(&self, buf: &[u8; N], len: u32) -> Result<(), HelperFailed> {
        let skb = self.skb.skb;
        unsafe {
            ok(bpf_skb_change_tail(skb, len, 0))?;
            // RECOMPUTE_CSUM keeps a CHECKSUM_COMPLETE skb->csum right for the new bytes.
            ok(bpf_skb_store_bytes(
                skb,
                0,
                buf.as_ptr().cast(),
                len,
                u64::from(BPF_F_RECOMPUTE_CSUM),
            ))
        }
    }

    #[inline(always)]
    fn ctx_ptr(&self) -> *mut core::ffi::c_void {
        self.skb.skb.cast()
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        unsafe { (*self.skb.skb).ifindex }
    }
}
