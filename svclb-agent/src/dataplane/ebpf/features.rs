//! What the running kernel offers the data path, found by loading, attaching or running
//! a probe, as Calico does, never by comparing version numbers: distribution kernels
//! backport features (and bookworm's bpftool over-reports helpers on 6.12).
//!
//! Each feature has a variant for kernels without it, so one object serves 5.10 to
//! today's: the load-time bits go into the object's read-only global
//! (`svclb_common::GLOBAL_FEATURES`) before verification; the attach method is the
//! agent's own choice.
use std::fmt;

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{ProgramType, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions},
    sys::{BpfHelper, is_helper_supported},
};
use serde::Serialize;
use svclb_common::{
    ALL_MAPS, FEAT_COARSE_CLOCK, FEAT_FIB_SRC, FEAT_NETNS_SOCKOPT, FEAT_SET_RETVAL, FEAT_TCX,
    PROG_PROBE_FIB_SRC,
};
use tracing::warn;

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcAttach {
    /// A pinned TCX bpf_link (Linux 6.6), replaced with `bpf_link_update`.
    Tcx,
    /// A direct-action filter on a clsact qdisc, set through netlink, replaced in place.
    Netlink,
}

/// The features, probed or chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Features {
    pub tc_attach: TcAttach,
    /// `bpf_ktime_get_coarse_ns` (5.11); else `bpf_ktime_get_ns`.
    pub coarse_clock: bool,
    /// `bpf_set_retval` in cgroup programs (5.18): ECONNREFUSED for node-local clients
    /// of a Service without endpoints; else EPERM.
    pub set_retval: bool,
    /// `BPF_FIB_LOOKUP_SRC` (6.7): the FIB gives the source for source NAT; else the
    /// egress interface's address from the interface map.
    pub fib_src: bool,
    /// `SO_NETNS_COOKIE` (5.14) tells the agent its namespace's cookie for the socket
    /// programs; else they tell it from a probe socket.
    pub netns_sockopt: bool,
}

/// Which variants the agent uses (`--kernel-features`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// What the running kernel has.
    #[default]
    Probe,
    /// The oldest kernel's variant of everything, whatever the kernel has (to check
    /// those variants on a new kernel, or to rule a new feature out when debugging).
    Baseline,
}

impl Features {
    /// The oldest supported kernel's variants (5.10).
    pub const BASELINE: Features = Features {
        tc_attach: TcAttach::Netlink,
        coarse_clock: false,
        set_retval: false,
        fib_src: false,
        netns_sockopt: false,
    };

    pub fn choose(choice: Choice) -> Self {
        match choice {
            Choice::Probe => Self::probe(),
            Choice::Baseline => Self::BASELINE,
        }
    }

    /// Probes the running kernel.
    pub fn probe() -> Self {
        let fib_src = probe_fib_src().unwrap_or_else(|e| {
            warn!(
                error = format!("{e:#}"),
                "FIB source probe failed; source NAT takes the egress interface's address"
            );
            false
        });
        Features {
            tc_attach: if tcx_supported() {
                TcAttach::Tcx
            } else {
                TcAttach::Netlink
            },
            coarse_clock: helper(
                ProgramType::SchedClassifier,
                BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
            ),
            set_retval: helper(ProgramType::CgroupSockAddr, BpfHelper::BPF_FUNC_set_retval),
            fib_src,
            netns_sockopt: super::sockets::own_netns_cookie().is_ok(),
        }
    }

    /// The `FEAT_*` bits for the object's global (`EbpfLoader::override_global` with
    /// [`svclb_common::GLOBAL_FEATURES`]).
    pub fn bits(&self) -> u32 {
        let mut bits = 0;
        if self.coarse_clock {
            bits |= FEAT_COARSE_CLOCK;
        }
        if self.set_retval {
            bits |= FEAT_SET_RETVAL;
        }
        if self.fib_src {
            bits |= FEAT_FIB_SRC;
        }
        bits
    }

    /// Every bit, the reported ones too, for `Config::features`.
    pub fn report_bits(&self) -> u32 {
        let mut bits = self.bits();
        if self.tc_attach == TcAttach::Tcx {
            bits |= FEAT_TCX;
        }
        if self.netns_sockopt {
            bits |= FEAT_NETNS_SOCKOPT;
        }
        bits
    }

    /// The features a running agent reported in the config map.
    pub fn from_report(bits: u32) -> Self {
        Features {
            tc_attach: if bits & FEAT_TCX != 0 {
                TcAttach::Tcx
            } else {
                TcAttach::Netlink
            },
            coarse_clock: bits & FEAT_COARSE_CLOCK != 0,
            set_retval: bits & FEAT_SET_RETVAL != 0,
            fib_src: bits & FEAT_FIB_SRC != 0,
            netns_sockopt: bits & FEAT_NETNS_SOCKOPT != 0,
        }
    }
}

/// Runs the object's FIB probe (one `bpf_fib_lookup` with `BPF_FIB_LOOKUP_SRC`; the
/// helper refuses a flag it does not know with -EINVAL at run time) in a throwaway copy
/// of the object whose maps hold one entry each, before the real one loads.
fn probe_fib_src() -> Result<bool> {
    let mut loader = EbpfLoader::new();
    for name in ALL_MAPS {
        loader.map_max_entries(name, 1);
    }
    let mut ebpf = loader
        .load(crate::EBPF_OBJECT)
        .context("loading the eBPF object for the FIB probe")?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROG_PROBE_FIB_SRC)
        .with_context(|| format!("no {PROG_PROBE_FIB_SRC} in the object"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("verifying {PROG_PROBE_FIB_SRC}"))?;
    // The smallest frame a TC test run takes: an Ethernet header.
    let frame = [0u8; 64];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..Default::default()
        })
        .with_context(|| format!("running {PROG_PROBE_FIB_SRC}"))?;
    Ok(r.return_value as i32 != -libc::EINVAL)
}

/// Whether `helper` loads in a program of `ty`; an error of the probe itself counts as
/// missing (the variant without it works everywhere).
fn helper(ty: ProgramType, helper: BpfHelper) -> bool {
    is_helper_supported(ty, helper).unwrap_or(false)
}

/// TCX exists when the kernel answers a TCX query on the loopback device (EINVAL for an
/// attach type it does not know).
fn tcx_supported() -> bool {
    SchedClassifier::query_tcx("lo", TcAttachType::Ingress).is_ok()
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tc = match self.tc_attach {
            TcAttach::Tcx => "tcx",
            TcAttach::Netlink => "netlink (clsact)",
        };
        let clock = if self.coarse_clock {
            "ktime_get_coarse_ns"
        } else {
            "ktime_get_ns"
        };
        let snat = if self.fib_src {
            "fib-lookup-src"
        } else {
            "egress-interface-address"
        };
        let refuse = if self.set_retval {
            "ECONNREFUSED"
        } else {
            "EPERM"
        };
        let cookie = if self.netns_sockopt {
            "SO_NETNS_COOKIE"
        } else {
            "learned-by-probe-socket"
        };
        write!(
            f,
            "tc-attach={tc} clock={clock} snat-source={snat} node-local-refusal={refuse} netns-cookie={cookie}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_the_features() {
        let mut f = Features::BASELINE;
        assert_eq!(f.bits(), 0, "the oldest kernel's variant is all clear");
        assert_eq!(f.report_bits(), 0);
        f.coarse_clock = true;
        assert_eq!(f.bits(), FEAT_COARSE_CLOCK);
        f.set_retval = true;
        f.fib_src = true;
        assert_eq!(f.bits(), FEAT_COARSE_CLOCK | FEAT_SET_RETVAL | FEAT_FIB_SRC);
        f.tc_attach = TcAttach::Tcx;
        f.netns_sockopt = true;
        assert_eq!(
            f.bits(),
            FEAT_COARSE_CLOCK | FEAT_SET_RETVAL | FEAT_FIB_SRC,
            "the attach method is the agent's, not the programs'"
        );
        assert_eq!(Features::from_report(f.report_bits()), f);
        assert_eq!(
            Features::from_report(Features::BASELINE.report_bits()),
            Features::BASELINE
        );
    }
}
