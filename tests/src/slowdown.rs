//! How much slower than this machine the tests run: `SVCLB_TEST_SLOWDOWN` (default 1),
//! which the VM runs set (qemu's TCG is 10-30× slower than the host). Waits for the
//! agent scale by it; what a test measures (requests, failures) does not.
use std::{sync::OnceLock, time::Duration};

/// The factor, 1 to 30.
pub fn factor() -> u32 {
    static F: OnceLock<u32> = OnceLock::new();
    *F.get_or_init(|| {
        std::env::var("SVCLB_TEST_SLOWDOWN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .clamp(1, 30)
    })
}

/// `d` stretched by [`factor`].
pub fn scaled(d: Duration) -> Duration {
    d * factor()
}
