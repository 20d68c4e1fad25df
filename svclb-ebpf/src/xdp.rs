//! [`Frame`] for XDP: checksums updated by hand (RFC 1624). Packets from a NIC carry
//! full checksums; XDP cannot see an skb's CHECKSUM_PARTIAL state, so on a veth with a
//! TX-offloading peer the update would be wrong (see main.rs).
use aya_ebpf::{helpers::bpf_xdp_load_bytes, programs::XdpContext};

use crate::{
    csum,
    frame::{Frame, HelperFailed, Rewrite, ptr_at, rewrite_l3},
};

#[inline(always)]
fn ok(ret: i64) -> Result<(), HelperFailed> {
    if ret == 0 { Ok(()) } else { Err(HelperFailed) }
}

impl Frame for XdpContext {
    const SENDS_REJECTS: bool = false;

    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        (self.data_end() - self.data()) as u32
    }

    #[inline(always)]
    fn pull(&self, _want: u32) -> bool {
        false
    }

    #[inline(always)]
    fn rewrite(&self, rw: &Rewrite) -> Result<(), HelperFailed> {
        rewrite_l3(self, rw)?;
        let l4_csum: *mut [u8; 2] = ptr_at(self, rw.csum_off).ok_or(HelperFailed)?;
        unsafe {
            let c = u16::from_ne_bytes(*l4_csum);
            if rw.udp && c == 0 {
                return Ok(());
            }
            let c = csum::replace4(c, rw.old_addr, rw.new_addr);
            let mut c = csum::replace2(c, rw.old_port, rw.new_port);
            if rw.udp && c == 0 {
                c = 0xffff;
            }
            *l4_csum = c.to_ne_bytes();
        }
        Ok(())
    }

    #[inline(always)]
    fn load_bytes(&self, off: u32, dst: *mut u8, len: u32) -> Result<(), HelperFailed> {
        ok(unsafe { bpf_xdp_load_bytes(self.ctx, off, dst.cast(), len) })
    }

    #[inline(always)]
    fn replace<const N: usize>(&self, _buf: &[u8; N], _len: u32) -> Result<(), HelperFailed> {
        // Never called: XDP leaves rejects to TC (SENDS_REJECTS is false).
        Err(HelperFailed)
    }

    #[inline(always)]
    fn ctx_ptr(&self) -> *mut core::ffi::c_void {
        self.ctx.cast()
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        unsafe { (*self.ctx).ingress_ifindex }
    }
}
