//! The eBPF backend: loads the embedded object with its maps pinned, attaches TC and
//! XDP through pinned links, and keeps the maps equal to the desired state.
use std::{collections::BTreeSet, path::Path, time::Instant};

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{SchedClassifier, Xdp, XdpMode},
};
use svclb_common::PROTO_UDP;
use svclb_common::{ALL_MAPS, CFG_F_DEBUG_LOG, Config, IF_F_PEER, IfaceInfo, PROG_TC, PROG_XDP};
use tracing::{debug, info, warn};

pub mod attach;
pub mod batch;
pub mod maps;
pub mod pins;
pub mod src_ranges;

use self::{
    maps::Maps,
    pins::{Hook, PinLayout},
    src_ranges::SrcRanges,
};
use super::{Dataplane, SyncReport};
use crate::{
    model::{DesiredState, SetKey},
    netif,
    plan::{applied::Applied, ids::IdAllocator},
};

#[derive(Clone, Debug)]
pub struct EbpfOptions {
    pub bpffs: std::path::PathBuf,
    /// Interfaces that get the TC ingress program.
    pub tc_ifaces: Vec<String>,
    /// Interfaces that get the XDP fast path (they get TC as well).
    pub xdp_ifaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub debug_log: bool,
}

pub struct EbpfDataplane {
    maps: Maps,
    ids: IdAllocator,
    applied: Applied,
    src_ranges: SrcRanges,
    pins: PinLayout,
    /// Interfaces with the TC program (every XDP interface among them), with their
    /// index: a link deleted and created again under the same name needs TC again.
    tc_ifaces: Vec<(String, u32)>,
    xdp_ifaces: Vec<String>,
    /// Keeps the programs loaded for the agent's life (links are pinned anyway); TC is
    /// attached from it to interfaces that appear later.
    ebpf: aya::Ebpf,
}

impl EbpfDataplane {
    /// Load, pin, attach and adopt whatever state an earlier agent left in the pins.
    pub fn start(opts: &EbpfOptions) -> Result<Self> {
        let pins = PinLayout::new(&opts.bpffs);
        for dir in [pins.maps_dir(), pins.links_dir()] {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!(
                    "creating {} (is bpffs mounted at /sys/fs/bpf?)",
                    dir.display()
                )
            })?;
        }
        let map_paths: Vec<_> = ALL_MAPS.iter().map(|m| (*m, pins.map(m))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(crate::EBPF_OBJECT)
            .context("loading the eBPF object (needs CAP_BPF/CAP_NET_ADMIN and a BTF kernel)")?;

        // TC goes wherever XDP goes too: XDP leaves rejects (and anything it cannot
        // handle) to TC on the same interface.
        let mut tc_ifaces = opts.tc_ifaces.clone();
        for x in &opts.xdp_ifaces {
            if !tc_ifaces.contains(x) {
                tc_ifaces.push(x.clone());
            }
        }
        // Maps the programs read are filled before any program is attached.
        let mut maps = Maps::open(&mut ebpf)?;
        let src_ranges = SrcRanges::open(&mut ebpf)?;
        let mut ifaces = Vec::new();
        let mut indexed = Vec::new();
        for iface in &tc_ifaces {
            let idx = netif::ifindex(iface).with_context(|| format!("interface {iface}"))?;
            ifaces.push((idx, iface_info(iface)));
            indexed.push((iface.clone(), idx));
        }
        maps.set_ifaces(&ifaces)?;
        maps.set_config(Config {
            flags: if opts.debug_log { CFG_F_DEBUG_LOG } else { 0 },
            _pad: 0,
        })?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC)
            .context("no TC program in the object")?
            .try_into()?;
        tc.load().context("verifying the TC program")?;
        for iface in &tc_ifaces {
            attach::attach_tc(tc, &pins, iface)?;
        }
        attach::detach_others(&pins, Hook::Tc, &tc_ifaces)?;

        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP)
            .context("no XDP program in the object")?
            .try_into()?;
        xdp.load().context("verifying the XDP program")?;
        for iface in &opts.xdp_ifaces {
            attach::attach_xdp(xdp, &pins, iface, opts.xdp_mode)?;
        }
        attach::detach_others(&pins, Hook::Xdp, &opts.xdp_ifaces)?;

        // Pins of map layouts this version no longer uses (their name carries the layout
        // version): nothing reads them any more.
        for p in pins.pinned_maps() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !ALL_MAPS.contains(&name.as_str()) {
                info!(map = name, "removing the pin of an older map layout");
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        let image = maps.read_image()?;
        if !image.services.is_empty() {
            info!(
                frontends = image.services.len(),
                backends = image.backends.len(),
                "adopted the data path state left in the pins"
            );
        }
        let ids = IdAllocator::adopt(&image);
        Ok(EbpfDataplane {
            maps,
            ids,
            applied: Applied::adopt(image),
            src_ranges,
            pins,
            tc_ifaces: indexed,
            xdp_ifaces: opts.xdp_ifaces.clone(),
            ebpf,
        })
    }

    /// Attaches TC to `wanted` interfaces that lack it and detaches it from those gone
    /// (their links went with them). An interface that vanishes meanwhile is skipped.
    fn update_interfaces(&mut self, wanted: &[String]) -> Result<()> {
        let mut full = wanted.to_vec();
        for x in &self.xdp_ifaces {
            if !full.contains(x) {
                full.push(x.clone());
            }
        }
        let mut present = Vec::new();
        for iface in &full {
            match netif::ifindex(iface) {
                Ok(idx) => present.push((iface.clone(), idx)),
                Err(e) => warn!(iface, error = %e, "interface gone before TC could be attached"),
            }
        }
        // The usual case, checked every second: nothing changed, no driver queries.
        if present == self.tc_ifaces {
            return Ok(());
        }
        // The interface table first: a reject on a new veth must know it has a peer.
        let entries: Vec<_> = present
            .iter()
            .map(|(name, idx)| (*idx, iface_info(name)))
            .collect();
        self.maps.set_ifaces(&entries)?;
        let tc: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROG_TC)
            .context("no TC program in the object")?
            .try_into()?;
        let mut attached = Vec::new();
        for entry in &present {
            if self.tc_ifaces.contains(entry) {
                attached.push(entry.clone());
                continue;
            }
            match attach::attach_tc(tc, &self.pins, &entry.0) {
                Ok(()) => attached.push(entry.clone()),
                Err(e) => warn!(
                    iface = entry.0,
                    error = format!("{e:#}"),
                    "TC not attached; retried at the next interface check"
                ),
            }
        }
        let names: Vec<String> = attached.iter().map(|(n, _)| n.clone()).collect();
        attach::detach_others(&self.pins, Hook::Tc, &names)?;
        info!(interfaces = attached.len(), "TC interfaces updated");
        self.tc_ifaces = attached;
        Ok(())
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }
}

impl Dataplane for EbpfDataplane {
    fn mode(&self) -> &'static str {
        "ebpf"
    }

    fn set_interfaces(&mut self, tc_ifaces: &[String]) -> Result<()> {
        self.update_interfaces(tc_ifaces)
    }

    fn sync(&mut self, desired: &DesiredState) -> Result<SyncReport> {
        self.sync_changed(desired, None)
    }

    fn sync_changed(
        &mut self,
        desired: &DesiredState,
        changed: Option<&BTreeSet<SetKey>>,
    ) -> Result<SyncReport> {
        let pending = self.applied.delta(desired, changed, &mut self.ids)?;
        let delta = &pending.delta;
        // Allow-list prefixes go in before the frontends that check them, out after.
        let ranges = self.src_ranges.wanted(desired, changed, &self.ids);
        let ranges_added = self.src_ranges.add(&ranges)?;
        if delta.is_empty() {
            let writes = ranges_added + self.src_ranges.remove_stale(&ranges)?;
            return Ok(SyncReport {
                writes,
                ..SyncReport::default()
            });
        }
        let start = Instant::now();
        if let Err(e) = self.maps.write(delta) {
            // We no longer know what the maps hold: read them back so the next sync
            // computes its delta from the truth.
            match self.maps.read_image() {
                Ok(img) => self.applied.reset(img),
                Err(re) => warn!(error = %re, "re-reading the maps after a failed write"),
            }
            return Err(e);
        }
        let image = self.applied.image();
        let udp_pairs: Vec<(u32, u32)> = delta
            .purge
            .iter()
            .copied()
            .filter(|(_, b)| {
                image
                    .backends
                    .get(b)
                    .is_some_and(|be| be.proto == PROTO_UDP)
            })
            .collect();
        let writes = delta.writes();
        self.ids.release(&delta.del_names, &delta.del_backends);
        let gone = delta.purge.clone();
        // The maps hold the target now, whatever the purge below does.
        self.applied.commit(pending);
        let purged = self.maps.purge(&udp_pairs, &gone)?;
        let ranges_removed = self.src_ranges.remove_stale(&ranges)?;
        let duration = start.elapsed();
        debug!(writes, purged, "map delta applied");
        let writes = writes + ranges_added + ranges_removed;
        Ok(SyncReport {
            writes,
            purged,
            duration,
        })
    }
}

/// The interface table entry: veth/netkit links get rejects through their peer.
fn iface_info(iface: &str) -> IfaceInfo {
    let flags = if netif::has_peer(iface) { IF_F_PEER } else { 0 };
    IfaceInfo { flags, _pad: 0 }
}

/// Detach every program and remove every pin under `bpffs`.
pub fn cleanup(bpffs: &Path) -> Result<()> {
    let pins = PinLayout::new(bpffs);
    for hook in [Hook::Tc, Hook::Xdp] {
        for (iface, path) in pins.pinned_links(hook) {
            attach::detach_pinned(&path)?;
            info!(iface, ?hook, "detached");
        }
    }
    // Every version: pins of an older map layout are ours too.
    for p in pins.pinned_maps() {
        std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    for dir in [pins.links_dir(), pins.maps_dir(), pins.root().to_path_buf()] {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("removing {} (unknown files left in it?)", dir.display())
                });
            }
        }
    }
    Ok(())
}
