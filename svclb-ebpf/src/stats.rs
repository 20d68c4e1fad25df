//! Per-CPU verdict counters and per-service packet/byte counts.
use svclb_common::Counter;

use crate::maps::{COUNTERS, SVC_STATS};

#[inline(always)]
pub fn count(c: Counter) {
    if let Some(v) = COUNTERS.get_ptr_mut(c as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *v += 1 };
    }
}

#[inline(always)]
pub fn service(svc_id: u32, bytes: u32) {
    if let Some(s) = SVC_STATS.get_ptr_mut(svc_id) {
        unsafe {
            (*s).packets += 1;
            (*s).bytes += u64::from(bytes);
        }
    }
}
