//! The load-time feature bits (`svclb_common::features`): read through a volatile load
//! so the compiler keeps the branch, and the verifier, which knows the frozen value,
//! drops the side this kernel cannot run.

/// Written by the agent before the programs load (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static SVCLB_FEATURES: u32 = 0;

#[inline(always)]
pub fn has(feature: u32) -> bool {
    // SAFETY: a plain read of a static.
    unsafe { core::ptr::read_volatile(&SVCLB_FEATURES) & feature != 0 }
}
