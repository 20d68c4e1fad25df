//! Kernels before 5.11 charge BPF maps and programs to RLIMIT_MEMLOCK (later ones to
//! the memory cgroup): the default few MiB would refuse the maps. Raised before any
//! object loads, as Cilium and aya's examples do.
use tracing::{debug, info};

/// Lifts RLIMIT_MEMLOCK to unlimited; a failure (no CAP_SYS_RESOURCE) is only a warning,
/// since kernels from 5.11 do not need it.
pub fn raise() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        debug!("RLIMIT_MEMLOCK raised to unlimited");
    } else {
        // Kernels from 5.11 charge the memory cgroup instead: only older ones care.
        info!(
            error = %std::io::Error::last_os_error(),
            "RLIMIT_MEMLOCK not raised (no CAP_SYS_RESOURCE): kernels before 5.11 may refuse the maps"
        );
    }
}
