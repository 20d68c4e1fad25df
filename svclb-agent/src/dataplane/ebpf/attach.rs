//! Attaching the programs through pinned bpf_links, so traffic keeps flowing while no
//! agent runs, and a new agent replaces the program atomically (`bpf_link_update`).
//! Kernels without TCX (< 6.6) get TC as a direct-action filter on a clsact qdisc
//! instead, with the same promises: the filter holds the program while no agent runs,
//! a new agent swaps the program in place (same priority and handle), and a marker
//! directory among the pins records where it is, so cleanup and detaching find it.
use std::{io, path::Path};

use anyhow::{Context as _, Result, bail};
use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, Link as _, LinkError, PinnedLink},
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    xdp::XdpLink,
};
use aya::sys::SyscallError;
use tracing::{debug, info, warn};

use super::{
    features::TcAttach,
    pins::{Hook, PinLayout},
};

/// An existing pin at `path`, or None when there is none.
fn open_pin(path: &Path) -> Result<Option<PinnedLink>> {
    match PinnedLink::from_pin(path) {
        Ok(l) => Ok(Some(l)),
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("opening pinned link {}", path.display())),
    }
}

/// Remove a pinned link: the attachment goes away with the last reference.
pub fn detach_pinned(path: &Path) -> Result<()> {
    if let Some(link) = open_pin(path)? {
        let fd: FdLink = link
            .unpin()
            .with_context(|| format!("unpinning {}", path.display()))?;
        drop(fd);
    }
    Ok(())
}

/// Swap our program into the link pinned at `path`, if there is one (`replace` does the
/// `bpf_link_update`). Returns whether it did; a stale pin (its interface gone) is
/// removed so the caller attaches anew.
fn replace_pinned<L>(
    path: &Path,
    iface: &str,
    hook: &str,
    replace: impl FnOnce(L) -> Result<(), aya::programs::ProgramError>,
) -> Result<bool>
where
    L: TryFrom<FdLink, Error = LinkError>,
{
    let Some(old) = open_pin(path)? else {
        return Ok(false);
    };
    let link = L::try_from(FdLink::from(old)).with_context(|| {
        format!(
            "pinned {hook} link {} is not the expected kind",
            path.display()
        )
    })?;
    match replace(link) {
        Ok(()) => {
            info!(
                iface,
                "{hook} program replaced atomically in the pinned link"
            );
            Ok(true)
        }
        Err(e) => {
            warn!(iface, error = %e, "pinned {hook} link is stale (interface gone?); attaching anew");
            detach_pinned(path)?;
            Ok(false)
        }
    }
}

/// Our filter on a clsact qdisc: a fixed priority and handle, so a new agent finds and
/// replaces it (and never touches another tool's filters).
const NL_PRIORITY: u16 = 1;
const NL_HANDLE: TcHandle = TcHandle::new(0, 0x5c1b);

pub fn attach_tc(
    prog: &mut SchedClassifier,
    pins: &PinLayout,
    iface: &str,
    how: TcAttach,
) -> Result<()> {
    match how {
        TcAttach::Tcx => {
            // A kernel upgraded under pinned state: the netlink filter would run too.
            detach_tc_netlink(pins, iface)?;
            attach_tcx(prog, pins, iface)
        }
        TcAttach::Netlink => {
            detach_pinned(&pins.link(Hook::Tc, iface))?;
            attach_tc_netlink(prog, pins, iface)
        }
    }
}

fn attach_tcx(prog: &mut SchedClassifier, pins: &PinLayout, iface: &str) -> Result<()> {
    let path = pins.link(Hook::Tc, iface);
    // The pin holds the link after the swap; our fd is not needed.
    let swap = |l: SchedClassifierLink| {
        prog.attach_to_link(l)
            .and_then(|id| prog.take_link(id).map(drop))
    };
    if replace_pinned(&path, iface, "TC", swap)? {
        return Ok(());
    }
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(|| format!("attaching TC ingress to {iface} (tcx)"))?;
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .context("TC attachment is not a bpf_link")?;
    link.pin(&path)
        .with_context(|| format!("pinning {}", path.display()))?;
    info!(iface, "TC program attached (tcx ingress)");
    Ok(())
}

fn attach_tc_netlink(prog: &mut SchedClassifier, pins: &PinLayout, iface: &str) -> Result<()> {
    match tc::qdisc_add_clsact(iface) {
        Ok(()) => {}
        // EEXIST: the qdisc is there already (ours or another tool's: it is shared).
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(tc::TcError::AlreadyAttached) => {}
        Err(e) => return Err(e).with_context(|| format!("adding a clsact qdisc to {iface}")),
    }
    let marker = pins.link(Hook::TcNetlink, iface);
    let existing = || {
        SchedClassifierLink::attached(iface, TcAttachType::Ingress, NL_PRIORITY, NL_HANDLE, None)
            .with_context(|| format!("interface {iface}"))
    };
    // Replace in place when our filter is there: no moment without a program.
    let replaced = if marker.exists() {
        match prog.attach_to_link(existing()?) {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(iface, error = %e, "our TC filter is gone (interface recreated?); adding it anew");
                None
            }
        }
    } else {
        None
    };
    let in_place = replaced.is_some();
    let id = match replaced {
        Some(id) => id,
        None => {
            let opts = TcAttachOptions::Netlink(NlOptions {
                priority: NL_PRIORITY,
                handle: NL_HANDLE,
                classid: None,
            });
            match prog.attach_with_options(iface, TcAttachType::Ingress, opts) {
                Ok(id) => id,
                // Taken (EEXIST): ours, from an agent whose marker was lost; swap it.
                Err(e) => prog
                    .attach_to_link(existing()?)
                    .map_err(|_| e)
                    .with_context(|| format!("attaching TC ingress to {iface} (netlink)"))?,
            }
        }
    };
    // The filter must outlive this process: a dropped link would delete it.
    std::mem::forget(prog.take_link(id)?);
    if !marker.exists() {
        std::fs::create_dir(&marker).with_context(|| format!("creating {}", marker.display()))?;
    }
    if in_place {
        info!(
            iface,
            "TC program replaced atomically in our clsact filter (netlink)"
        );
    } else {
        info!(iface, "TC program attached (clsact filter through netlink)");
    }
    Ok(())
}

/// Remove our netlink filter from `iface` and its marker, if the marker is there.
pub fn detach_tc_netlink(pins: &PinLayout, iface: &str) -> Result<()> {
    let marker = pins.link(Hook::TcNetlink, iface);
    if !marker.exists() {
        return Ok(());
    }
    match SchedClassifierLink::attached(iface, TcAttachType::Ingress, NL_PRIORITY, NL_HANDLE, None)
    {
        Ok(link) => {
            if let Err(e) = link.detach() {
                // The interface or the filter went on its own: nothing is attached.
                debug!(iface, error = %e, "TC filter already gone");
            }
        }
        Err(e) => debug!(iface, error = %e, "interface gone with its TC filter"),
    }
    std::fs::remove_dir(&marker).with_context(|| format!("removing {}", marker.display()))
}

pub fn attach_xdp(prog: &mut Xdp, pins: &PinLayout, iface: &str, mode: XdpMode) -> Result<()> {
    let path = pins.link(Hook::Xdp, iface);
    let swap = |l: XdpLink| {
        prog.attach_to_link(l)
            .and_then(|id| prog.take_link(id).map(drop))
    };
    if replace_pinned(&path, iface, "XDP", swap)? {
        return Ok(());
    }
    let id = match prog.attach(iface, mode) {
        Ok(id) => id,
        Err(e) if mode == XdpMode::Driver => {
            warn!(iface, error = %e, "native XDP failed; falling back to generic (skb) mode");
            prog.attach(iface, XdpMode::Skb)
                .with_context(|| format!("attaching XDP to {iface} in skb mode"))?
        }
        Err(e) => return Err(e).with_context(|| format!("attaching XDP to {iface}")),
    };
    let link: FdLink = match prog.take_link(id)?.try_into() {
        Ok(l) => l,
        Err(_) => bail!(
            "XDP on {iface} attached through netlink, not a bpf_link: cannot pin it (kernel < 5.9?)"
        ),
    };
    link.pin(&path)
        .with_context(|| format!("pinning {}", path.display()))?;
    info!(iface, ?mode, "XDP program attached");
    Ok(())
}

/// Detach pinned links of `hook` on interfaces not in `keep`.
pub fn detach_others(pins: &PinLayout, hook: Hook, keep: &[String]) -> Result<()> {
    for (iface, path) in pins.pinned_links(hook) {
        if !keep.contains(&iface) {
            info!(
                iface,
                ?hook,
                "detaching from an interface no longer configured"
            );
            detach(pins, hook, &iface, &path)?;
        }
    }
    Ok(())
}

/// Detach whatever `path` (a pin of `hook`) stands for.
pub fn detach(pins: &PinLayout, hook: Hook, iface: &str, path: &Path) -> Result<()> {
    match hook {
        Hook::TcNetlink => detach_tc_netlink(pins, iface),
        Hook::Tc | Hook::Xdp | Hook::Sock => detach_pinned(path),
    }
}
