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
        let fd: FdLink = link.unpin().with_context(|| format!("unpinning {}", path.display()))?;
        drop(fd);
    }
    Ok(())
}

pub fn attach_tc(prog: &mut SchedClassifier, pins: &PinLayout, iface: &str) -> Result<()> {
    let path = pins.link(Hook::Tc, iface);
    if let Some(old) = open_pin(&path)? {
        let link: SchedClassifierLink = FdLink::from(old).try_into().context("pinned TC link is not a tcx link")?;
        match prog.attach_to_link(link) {
            Ok(id) => {
                // The pin holds the link; our fd is not needed.
                drop(prog.take_link(id)?);
                info!(iface, "TC program replaced atomically in the pinned link");
                return Ok(());
            }
            Err(e) => {
                warn!(iface, error = %e, "pinned TC link is stale (interface gone?); attaching anew");
                detach_pinned(&path)?;
            }
        }
    }
    let id = prog
        .attach_with_options(iface, TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .with_context(|| format!("attaching TC ingress to {iface} (tcx needs kernel ≥ 6.6)"))?;
    let link: FdLink = prog.take_link(id)?.try_into().context("TC attachment is not a bpf_link")?;
    link.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
    info!(iface, "TC program attached (tcx ingress)");
    Ok(())
}

pub fn attach_xdp(prog: &mut Xdp, pins: &PinLayout, iface: &str, mode: XdpMode) -> Result<()> {
    let path = pins.link(Hook::Xdp, iface);
    if let Some(old) = open_pin(&path)? {
        let link: XdpLink = FdLink::from(old).try_into().context("pinned XDP link is not an XDP bpf_link")?;
        match prog.attach_to_link(link) {
            Ok(id) => {
                // The pin holds the link; our fd is not needed.
                drop(prog.take_link(id)?);
                info!(iface, "XDP program replaced atomically in the pinned link");
                return Ok(());
            }
            Err(e) => {
                warn!(iface, error = %e, "pinned XDP link is stale; attaching anew");
                detach_pinned(&path)?;
            }
        }
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
        Err(_) => bail!("XDP on {iface} attached through netlink, not a bpf_link: cannot pin it (kernel < 5.9?)"),
    };
    link.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
    info!(iface, ?mode, "XDP program attached");
    Ok(())
}

/// Detach pinned links of `hook` on interfaces not in `keep`.
pub fn detach_others(pins: &PinLayout, hook: Hook, keep: &[String]) -> Result<()> {
    for (iface, path) in pins.pinned_links(hook) {
        if !keep.contains(&iface) {
            info!(iface, ?hook, "detaching from an interface no longer configured");
            detach_pinned(&path)?;
        }
    }
    Ok(())
}
