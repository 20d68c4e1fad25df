//! The data path's clock: CLOCK_MONOTONIC at tick resolution.
//!
//! Flow and affinity ages only need to be right to a tick (timeouts are seconds), and
//! `bpf_ktime_get_ns` costs an indirect call to the clocksource plus a TSC read per
//! packet (a retpoline on mitigated CPUs): about 20 ns of a ~150 ns established-flow
//! packet, measured with `pktbench` and perf. The coarse clock reads the timekeeper's
//! last tick instead. It is the same clock user space reads as CLOCK_MONOTONIC, up to
//! one tick behind, so user space subtracts with saturation.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}
