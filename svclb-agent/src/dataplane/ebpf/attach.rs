//! Attaching the programs through pinned bpf_links, so traffic keeps flowing while no
//! agent runs, and a new agent replaces the program atomically (`bpf_link_update`).
use std::{io, path::Path};

use anyhow::{Context as _, Result, bail};
use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, LinkError, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
    xdp::XdpLink,
};
use aya::sys::SyscallError;
use tracing::{info, warn};

use super::pins::{Hook, PinLayout};

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

pub fn attach_tc(prog: &mut SchedClassifier, pins: &PinLayout, iface: &str) -> Result<()> {
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
        .with_context(|| format!("attaching TC ingress to {iface} (tcx needs kernel ≥ 6.6)"))?;
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .context("TC attachment is not a bpf_link")?;
    link.pin(&path)
        .with_context(|| format!("pinning {}", path.display()))?;
    info!(iface, "TC program attached (tcx ingress)");
    Ok(())
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
            detach_pinned(&path)?;
        }
    }
    Ok(())
}
