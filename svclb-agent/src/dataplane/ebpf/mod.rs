//! The eBPF backend: loads the embedded object with its maps pinned, attaches TC and
//! XDP through pinned links, and keeps the maps equal to the desired state.
use std::{collections::BTreeSet, path::Path, time::Instant};

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{SchedClassifier, Xdp, XdpMode},
};
use svclb_common::PROTO_UDP;
use svclb_common::{
    ALL_MAPS, CFG_F_DEBUG_LOG, Config, GLOBAL_FEATURES, IF_F_PEER, IfaceInfo, PROG_TC, PROG_XDP,
};
use tracing::{debug, error, info, warn};

pub mod attach;
pub mod batch;
pub mod features;
pub mod maps;
pub mod pins;
pub mod sockets;
pub mod src_ranges;

use self::{
    features::Features,
    maps::Maps,
    pins::{Hook, PinLayout},
    src_ranges::SrcRanges,
};
use super::{Dataplane, SyncReport};
use crate::{
    model::{DesiredState, SetKey},
    netif,
    plan::{applied::Applied, ids::IdAllocator},
    sysctl::{self, ProcSys},
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
    /// Socket-level load balancing for node-local clients: None off; Some(cgroup) on,
    /// at that cgroup v2 directory or (None) the cgroup v2 root.
    pub socket_lb: Option<Option<std::path::PathBuf>>,
    /// Where the node's sysctls are set (`--proc-sys`).
    pub proc_sys: ProcSys,
    /// Probed kernel features, or the baseline (`--kernel-features`).
    pub kernel_features: features::Choice,
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
    /// Every interface's first IPv4 address, as last written to the interface table.
    iface_addrs: Vec<(String, std::net::Ipv4Addr)>,
    xdp_ifaces: Vec<String>,
    features: Features,
    /// The socket programs serve node-local clients (their connected UDP sockets are
    /// closed when their backend goes).
    socket_lb: bool,
    proc_sys: ProcSys,
    /// Keeps the programs loaded for the agent's life (links are pinned anyway); TC is
    /// attached from it to interfaces that appear later.
    ebpf: aya::Ebpf,
}

/// Attaches the socket programs (or removes them when off). Failing to attach is not
/// fatal: the packet path still serves pods and outside clients.
fn start_socket_lb(
    ebpf: &mut aya::Ebpf,
    maps: &mut Maps,
    pins: &PinLayout,
    cgroup: Option<&Option<std::path::PathBuf>>,
    learn_cookie: bool,
) -> Result<bool> {
    let Some(cgroup) = cgroup else {
        sockets::detach_all(pins)?;
        info!(
            "socket-level load balancing off (--socket-lb=false): node-local clients are not translated"
        );
        return Ok(false);
    };
    let attached = sockets::cgroup_root(cgroup.as_deref())
        .and_then(|root| sockets::attach_all(ebpf, pins, &root))
        .and_then(|()| {
            if !learn_cookie {
                return Ok(());
            }
            let cookie = sockets::learn_netns_cookie(maps)?;
            info!(
                cookie,
                "network namespace cookie learned through the socket programs (no SO_NETNS_COOKIE before Linux 5.14)"
            );
            Ok(())
        });
    if let Err(e) = attached {
        error!(
            error = format!("{e:#}"),
            "socket programs not attached: node-local clients (host processes, hostNetwork pods) are not load balanced; pods and outside clients are"
        );
        sockets::detach_all(pins)?;
        return Ok(false);
    }
    Ok(true)
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
        crate::memlock::raise();
        let features = Features::choose(opts.kernel_features);
        let bits = features.bits();
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        loader.override_global(GLOBAL_FEATURES, &bits, true);
        let mut ebpf = loader
            .load(crate::EBPF_OBJECT)
            .context("loading the eBPF object (needs CAP_BPF/CAP_NET_ADMIN and a BTF kernel)")?;
        info!(
            %features,
            choice = ?opts.kernel_features,
            "kernel features for the eBPF data path"
        );

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
        let mut indexed = Vec::new();
        for iface in &tc_ifaces {
            let idx = netif::ifindex(iface).with_context(|| format!("interface {iface}"))?;
            indexed.push((iface.clone(), idx));
        }
        let iface_addrs = first_addrs();
        maps.set_ifaces(&iface_table(&indexed, &iface_addrs))?;
        // The socket programs act only on sockets of this network namespace. Without
        // SO_NETNS_COOKIE (< 5.14) the programs tell the cookie once attached; meanwhile
        // the one an earlier agent learned stays (no window without translation).
        let known = match &opts.socket_lb {
            None => Some(0),
            Some(_) if features.netns_sockopt => Some(sockets::own_netns_cookie()?),
            Some(_) => None,
        };
        let host_netns_cookie = known.unwrap_or(maps.config()?.host_netns_cookie);
        maps.set_config(Config {
            flags: if opts.debug_log { CFG_F_DEBUG_LOG } else { 0 },
            features: features.report_bits(),
            host_netns_cookie,
            probe_sock_cookie: 0,
            learned_netns_cookie: 0,
        })?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC)
            .context("no TC program in the object")?
            .try_into()?;
        tc.load().context("verifying the TC program")?;
        // The programs load: this node runs the eBPF data path, which needs these before
        // the first packet is translated (see sysctl.rs). Not earlier: `auto` may still
        // fall back to a mode that needs none of it.
        let sys = &opts.proc_sys;
        sys.check_ip_forward();
        let done = sys.ensure(&tc_ifaces);
        if !done.is_empty() {
            info!(
                changed = sysctl::describe(&done),
                "node sysctls set for the eBPF data path"
            );
        }
        for iface in &tc_ifaces {
            attach::attach_tc(tc, &pins, iface, features.tc_attach)?;
        }
        attach::detach_others(&pins, Hook::Tc, &tc_ifaces)?;
        attach::detach_others(&pins, Hook::TcNetlink, &tc_ifaces)?;

        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP)
            .context("no XDP program in the object")?
            .try_into()?;
        xdp.load().context("verifying the XDP program")?;
        for iface in &opts.xdp_ifaces {
            attach::attach_xdp(xdp, &pins, iface, opts.xdp_mode)?;
        }
        attach::detach_others(&pins, Hook::Xdp, &opts.xdp_ifaces)?;
        let socket_lb = start_socket_lb(
            &mut ebpf,
            &mut maps,
            &pins,
            opts.socket_lb.as_ref(),
            known.is_none(),
        )?;

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
            iface_addrs,
            features,
            xdp_ifaces: opts.xdp_ifaces.clone(),
            socket_lb,
            proc_sys: opts.proc_sys.clone(),
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
        let addrs = first_addrs();
        if present == self.tc_ifaces && addrs == self.iface_addrs {
            return Ok(());
        }
        // The interface table first: a reject on a new veth must know it has a peer.
        self.maps.set_ifaces(&iface_table(&present, &addrs))?;
        self.iface_addrs = addrs;
        if present == self.tc_ifaces {
            return Ok(());
        }
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
            // A new link (or one created again) starts from `default`.
            let done = self.proc_sys.ensure(std::slice::from_ref(&entry.0));
            if !done.is_empty() {
                info!(
                    iface = entry.0,
                    changed = sysctl::describe(&done),
                    "sysctls set on a newly attached interface"
                );
            }
            match attach::attach_tc(tc, &self.pins, &entry.0, self.features.tc_attach) {
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
        attach::detach_others(&self.pins, Hook::TcNetlink, &names)?;
        info!(interfaces = attached.len(), "TC interfaces updated");
        self.tc_ifaces = attached;
        Ok(())
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }
}

impl Dataplane for EbpfDataplane {
    fn mode(&self) -> &'static str {
        "ebpf"
    }
    fn serves_host_scope(&self) -> bool {
        self.socket_lb
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
        if self.socket_lb && !udp_pairs.is_empty() {
            let pairs = udp_pairs.iter().copied().collect();
            match sockets::close_udp(&self.maps.sock_revnat, &pairs) {
                Ok(0) => {}
                Ok(n) => info!(
                    sockets = n,
                    "closed node-local UDP sockets connected to removed endpoints"
                ),
                Err(e) => warn!(
                    error = format!("{e:#}"),
                    "node-local UDP sockets of removed endpoints not closed"
                ),
            }
        }
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

/// Every interface's first IPv4 address (getifaddrs order: the primary one first).
fn first_addrs() -> Vec<(String, std::net::Ipv4Addr)> {
    let list = crate::ifaces::list().unwrap_or_else(|e| {
        warn!(error = %e, "cannot list interface addresses");
        Vec::new()
    });
    list.into_iter()
        .filter_map(|i| Some((i.name, *i.ipv4.first()?)))
        .collect()
}

/// The interface table: the attached interfaces (veth/netkit links get rejects through
/// their peer) and every interface with an address (the source NAT address of flows
/// leaving through it, on kernels whose FIB lookup gives none).
fn iface_table(
    attached: &[(String, u32)],
    addrs: &[(String, std::net::Ipv4Addr)],
) -> Vec<(u32, IfaceInfo)> {
    let addr_of = |name: &str| {
        addrs
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, a)| u32::from_ne_bytes(a.octets()))
    };
    let mut table: Vec<(u32, IfaceInfo)> = attached
        .iter()
        .map(|(name, idx)| {
            let flags = if netif::has_peer(name) { IF_F_PEER } else { 0 };
            let addr_be = addr_of(name);
            (*idx, IfaceInfo { flags, addr_be })
        })
        .collect();
    for (name, _) in addrs {
        if attached.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Ok(idx) = netif::ifindex(name) {
            let addr_be = addr_of(name);
            table.push((idx, IfaceInfo { flags: 0, addr_be }));
        }
    }
    table
}

/// Detach every program and remove every pin under `bpffs`.
pub fn cleanup(bpffs: &Path) -> Result<()> {
    let pins = PinLayout::new(bpffs);
    for hook in Hook::ALL {
        for (iface, path) in pins.pinned_links(hook) {
            attach::detach(&pins, hook, &iface, &path)?;
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
