//! The data path's clock: CLOCK_MONOTONIC at tick resolution.
//!
//! Flow and affinity ages only need to be right to a tick (timeouts are seconds), and
//! on mitigated CPUs (retpolines, return thunks) every call a helper makes costs
//! several ns: `bpf_ktime_get_ns` is an indirect call to the clocksource plus a TSC
//! read (~20 ns of a ~100 ns established-flow packet, measured with `pktbench` and
//! perf); `bpf_ktime_get_coarse_ns` reads the timekeeper's last tick through two
//! nested calls. The coarse time only moves when jiffies do (both advance in the tick),
//! so it is read once per tick and CPU and cached against `bpf_jiffies64`, a helper
//! that is a single load (≈ 11 ns less per established packet than calling the coarse
//! clock each time). The value is the coarse CLOCK_MONOTONIC user space can read, a
//! tick or two behind (a packet between the jiffies increment and the timekeeper
//! update keeps the older time for that tick), so user space subtracts with
//! saturation. Kernels before 5.11 have no coarse clock: there the cached value is
//! `bpf_ktime_get_ns`, the same CLOCK_MONOTONIC read precisely, once per tick too.
use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::map,
    maps::PerCpuArray,
};
use svclb_common::{FEAT_COARSE_CLOCK, MAP_TICK_CACHE};

use crate::features;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct TickCache {
    jiffies: u64,
    ns: u64,
}

/// Per CPU: the jiffies value the cached coarse time was read at.
#[map(name = "SVCLB_TICK")]
static TICK_CACHE: PerCpuArray<TickCache> = PerCpuArray::with_max_entries(1, 0);

const _: () = assert!(crate::maps::same(MAP_TICK_CACHE, "SVCLB_TICK"));

#[inline(always)]
fn read_clock() -> u64 {
    if features::has(FEAT_COARSE_CLOCK) {
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        unsafe { bpf_ktime_get_ns() }
    }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    let j = unsafe { bpf_jiffies64() };
    let Some(c) = TICK_CACHE.get_ptr_mut(0) else {
        return read_clock();
    };
    // SAFETY: this CPU's slot; a program runs to completion on one CPU.
    unsafe {
        if (*c).jiffies != j {
            *c = TickCache {
                jiffies: j,
                ns: read_clock(),
            };
        }
        (*c).ns
    }
}
