//! Which data path the agent runs (`--mode`), and the cleanup of what other modes left.
//!
//! `auto` takes the first that works: eBPF when the programs load and attach, else
//! IPVS when the kernel has it, else iptables. An explicit `ipvs` falls back to
//! iptables as kube-proxy's IPVS mode did when the kernel lacked IPVS; an explicit
//! `ebpf` fails rather than silently running something else.
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use tracing::{info, warn};

use super::{
    Dataplane,
    ebpf::{self, EbpfDataplane, EbpfOptions, pins::PinLayout},
    iptables::{self, BackendArg, IptablesDataplane},
    ipvs::{self, IpvsDataplane, IpvsOptions},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// eBPF if it loads and attaches, else IPVS if the kernel has it, else iptables.
    Auto,
    Ebpf,
    Iptables,
    Ipvs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ebpf,
    Ipvs,
    Iptables,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Ipvs => "ipvs",
            Mode::Iptables => "iptables",
        }
    }
}

/// The outcome of the choice: the mode, the started eBPF data path if that was it,
/// and why each mode tried before it was not used.
#[derive(Debug)]
pub struct Choice<E> {
    pub mode: Mode,
    pub ebpf: Option<E>,
    pub passed_over: Vec<(Mode, String)>,
}

/// The decision alone (pure): `try_ebpf` loads and attaches the programs, `ipvs` says
/// whether the kernel has IPVS. Each is called at most once, and only when needed.
pub fn choose<E>(
    requested: ModeArg,
    try_ebpf: impl FnOnce() -> Result<E, String>,
    ipvs: impl FnOnce() -> Result<(), String>,
) -> Result<Choice<E>, String> {
    let mut passed_over = Vec::new();
    let mut ebpf = None;
    let mode = match requested {
        ModeArg::Ebpf => {
            ebpf = Some(try_ebpf().map_err(|e| format!("--mode ebpf: {e}"))?);
            Mode::Ebpf
        }
        ModeArg::Iptables => Mode::Iptables,
        ModeArg::Ipvs => match ipvs() {
            Ok(()) => Mode::Ipvs,
            Err(why) => {
                passed_over.push((Mode::Ipvs, why));
                Mode::Iptables
            }
        },
        ModeArg::Auto => match try_ebpf() {
            Ok(e) => {
                ebpf = Some(e);
                Mode::Ebpf
            }
            Err(why) => {
                passed_over.push((Mode::Ebpf, why));
                match ipvs() {
                    Ok(()) => Mode::Ipvs,
                    Err(why) => {
                        passed_over.push((Mode::Ipvs, why));
                        Mode::Iptables
                    }
                }
            }
        },
    };
    Ok(Choice {
        mode,
        ebpf,
        passed_over,
    })
}

/// Everything the modes need to start.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub requested: ModeArg,
    pub ebpf: EbpfOptions,
    pub iptables_backend: BackendArg,
    pub iptables: iptables::rules::RuleOptions,
    /// Where the rule-based modes set `route_localnet` (the eBPF mode's is in `ebpf`).
    pub proc_sys: crate::sysctl::ProcSys,
    pub ipvs: IpvsOptions,
}

/// Chooses and starts the data path, logging the choice, then removes what the other
/// modes left behind (pins and links, KUBE-* chains, IPVS services and kube-ipvs0).
pub fn start(opts: &StartOptions) -> Result<Box<dyn Dataplane>> {
    // Before the choice, so that `auto` takes eBPF on a node that booted without a
    // bpffs; a mount that fails is the reason eBPF is not used.
    let bpffs = if matches!(opts.requested, ModeArg::Auto | ModeArg::Ebpf) {
        match crate::bpffs::ensure_mounted(&opts.ebpf.bpffs) {
            Ok(Some(at)) => {
                info!(at = %at.display(), "mounted bpffs (nothing was mounted there)");
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Ok(())
    };
    let choice = choose(
        opts.requested,
        || {
            bpffs?;
            EbpfDataplane::start(&opts.ebpf).map_err(|e| format!("{e:#}"))
        },
        ipvs::probe,
    )
    .map_err(anyhow::Error::msg)?;
    for (mode, why) in &choice.passed_over {
        info!(mode = mode.as_str(), reason = %why, "data path mode not used");
    }
    // Before the chosen mode writes anything of its own: the modes share chain names
    // (IPVS mode has its own KUBE-SERVICES) and the eBPF programs would see traffic first.
    clean_other_modes(choice.mode, &opts.ebpf.bpffs)?;
    let dp: Box<dyn Dataplane> = match choice.mode {
        Mode::Ebpf => Box::new(choice.ebpf.context("eBPF data path started")?),
        Mode::Ipvs => Box::new(IpvsDataplane::start(&opts.ipvs, &opts.proc_sys)?),
        Mode::Iptables => {
            let backend = opts.iptables_backend.resolve()?;
            info!(backend = backend.as_str(), "iptables backend");
            Box::new(IptablesDataplane::start(
                backend,
                opts.iptables,
                &opts.proc_sys,
            )?)
        }
    };
    info!(mode = choice.mode.as_str(), requested = ?opts.requested, "data path mode chosen");
    Ok(dp)
}

/// Removes the state of every mode but `keep`.
pub fn clean_other_modes(keep: Mode, bpffs: &Path) -> Result<()> {
    if keep != Mode::Ebpf && ebpf_pins_exist(bpffs) {
        match ebpf::cleanup(bpffs) {
            Ok(()) => {
                info!(bpffs = %bpffs.display(), "removed the eBPF programs and pins of an earlier run")
            }
            // Without CAP_BPF the pinned links cannot be detached here: say so, go on.
            Err(e) => warn!(
                error = format!("{e:#}"),
                "eBPF pins of an earlier run left in place"
            ),
        }
    }
    // Leftovers are reported, not fatal: the chosen mode must still come up. IPVS mode
    // owns KUBE-* chains too: it adopts the iptables state and rewrites it in its
    // first sync rather than flushing it (that would break NodePorts until then).
    if !matches!(keep, Mode::Iptables | Mode::Ipvs)
        && let Err(e) = iptables::cleanup()
    {
        warn!(
            error = format!("{e:#}"),
            "iptables rules of an earlier run left in place"
        );
    }
    if keep != Mode::Ipvs
        && let Err(e) = ipvs::cleanup()
    {
        warn!(
            error = format!("{e:#}"),
            "IPVS state of an earlier run left in place"
        );
    }
    Ok(())
}

/// `svclb-agent cleanup`: every mode's state.
pub fn cleanup_all(bpffs: &Path) -> Result<()> {
    if ebpf_pins_exist(bpffs) {
        ebpf::cleanup(bpffs)?;
    }
    iptables::cleanup()?;
    ipvs::cleanup()?;
    Ok(())
}

fn ebpf_pins_exist(bpffs: &Path) -> bool {
    let pins = PinLayout::new(bpffs);
    pins.maps_dir().exists() || pins.links_dir().exists()
}

/// Which mode's state `dump` should read: pins, else IPVS when its dummy link is up (IPVS
/// mode keeps iptables chains too, so they come after), else our iptables chains, else
/// IPVS.
pub fn detect(bpffs: &Path) -> Result<Mode> {
    if ebpf_pins_exist(bpffs) {
        return Ok(Mode::Ebpf);
    }
    if ipvs::holds_ours() {
        return Ok(Mode::Ipvs);
    }
    if iptables::Backend::ALL
        .into_iter()
        .any(|b| b.available() && iptables::holds_ours(b))
    {
        return Ok(Mode::Iptables);
    }
    if ipvs::probe().is_ok() {
        return Ok(Mode::Ipvs);
    }
    bail!(
        "no svclb data path here: no pins under {}, no KUBE-SERVICES chain, no IPVS",
        bpffs.display()
    )
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn run(
        req: ModeArg,
        ebpf: Result<u8, &str>,
        ipvs: Result<(), &str>,
    ) -> (Result<Choice<u8>, String>, u32, u32) {
        let (e_calls, i_calls) = (Cell::new(0), Cell::new(0));
        let c = choose(
            req,
            || {
                e_calls.set(e_calls.get() + 1);
                ebpf.map_err(str::to_owned)
            },
            || {
                i_calls.set(i_calls.get() + 1);
                ipvs.map_err(str::to_owned)
            },
        );
        (c, e_calls.get(), i_calls.get())
    }

    #[test]
    fn auto_prefers_ebpf_and_tries_nothing_else() {
        let (c, e, i) = run(ModeArg::Auto, Ok(7), Ok(()));
        let c = c.unwrap();
        assert_eq!((c.mode, c.ebpf, e, i), (Mode::Ebpf, Some(7), 1, 0));
        assert!(c.passed_over.is_empty());
    }

    #[test]
    fn auto_without_bpf_takes_ipvs_when_the_kernel_has_it() {
        let (c, _, i) = run(ModeArg::Auto, Err("EPERM"), Ok(()));
        let c = c.unwrap();
        assert_eq!((c.mode, i), (Mode::Ipvs, 1));
        assert_eq!(c.passed_over, vec![(Mode::Ebpf, "EPERM".to_owned())]);
    }

    #[test]
    fn auto_without_bpf_or_ipvs_takes_iptables_and_says_why() {
        let (c, _, _) = run(ModeArg::Auto, Err("EPERM"), Err("no ip_vs"));
        let c = c.unwrap();
        assert_eq!(c.mode, Mode::Iptables);
        assert_eq!(
            c.passed_over,
            vec![
                (Mode::Ebpf, "EPERM".to_owned()),
                (Mode::Ipvs, "no ip_vs".to_owned())
            ]
        );
    }

    #[test]
    fn explicit_ipvs_falls_back_to_iptables_without_trying_bpf() {
        let (c, e, _) = run(ModeArg::Ipvs, Ok(1), Err("no ip_vs"));
        let c = c.unwrap();
        assert_eq!((c.mode, e), (Mode::Iptables, 0));
        assert_eq!(c.passed_over, vec![(Mode::Ipvs, "no ip_vs".to_owned())]);
        let (c, _, _) = run(ModeArg::Ipvs, Ok(1), Ok(()));
        assert_eq!(c.unwrap().mode, Mode::Ipvs);
    }

    #[test]
    fn explicit_ebpf_fails_instead_of_falling_back() {
        let (c, _, i) = run(ModeArg::Ebpf, Err("EPERM"), Ok(()));
        assert_eq!(c.unwrap_err(), "--mode ebpf: EPERM");
        assert_eq!(i, 0);
    }

    #[test]
    fn explicit_iptables_tries_nothing() {
        let (c, e, i) = run(ModeArg::Iptables, Ok(1), Ok(()));
        assert_eq!((c.unwrap().mode, e, i), (Mode::Iptables, 0, 0));
    }
}
