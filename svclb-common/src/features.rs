//! Kernel features the programs choose between at load time.
//!
//! One object serves every kernel from 5.10: the agent probes the running kernel and
//! writes the bits of what it has into the read-only global [`GLOBAL_FEATURES`] before
//! the programs are verified. The verifier knows a frozen read-only value, so it walks
//! only the branch the bits select: a helper the kernel lacks sits in dead code and is
//! removed unchecked. All bits clear is the oldest kernel's variant, so a loader that
//! sets nothing still loads everywhere.

/// The `.rodata` symbol (a `u32`) holding the `FEAT_*` bits.
pub const GLOBAL_FEATURES: &str = "SVCLB_FEATURES";

/// `bpf_ktime_get_coarse_ns` (Linux 5.11); without it `bpf_ktime_get_ns`.
pub const FEAT_COARSE_CLOCK: u32 = 1 << 0;
/// `bpf_set_retval` in cgroup programs (Linux 5.18): a node-local connect to a
/// Service without endpoints fails with ECONNREFUSED; without it with EPERM.
pub const FEAT_SET_RETVAL: u32 = 1 << 1;

/// `BPF_FIB_LOOKUP_SRC` (Linux 6.7): the FIB lookup gives source NAT its source;
/// without it the egress interface's address from the interface map.
pub const FEAT_FIB_SRC: u32 = 1 << 2;

/// Reported only (in `Config::features`), not read by the programs: TC is attached
/// through TCX (Linux 6.6; else a netlink clsact filter).
pub const FEAT_TCX: u32 = 1 << 8;

/// Reported only: the agent reads its network namespace's cookie with
/// `SO_NETNS_COOKIE` (Linux 5.14; else the socket programs tell it, see
/// `Config::probe_sock_cookie`).
pub const FEAT_NETNS_SOCKOPT: u32 = 1 << 9;

/// Program that runs one `bpf_fib_lookup` with `BPF_FIB_LOOKUP_SRC` and returns the
/// helper's result: the agent's probe of Linux 6.7's source lookup (the helper rejects
/// unknown flags with -EINVAL at run time, so this is a test run, not a load).
pub const PROG_PROBE_FIB_SRC: &str = "svclb_probe_fib_src";
