//! `svclb-agent dump`: what the data path holds, read from the pinned maps alone.
use std::{collections::BTreeMap, fmt::Write as _, net::Ipv4Addr, path::Path};

use anyhow::Result;
use serde::Serialize;
use svclb_common::{
    BE_F_LOCAL, BE_F_TERMINATING, COUNTER_NAMES, CT_DIR_FORWARD, PROTO_TCP, PROTO_UDP,
    SVC_F_AFFINITY, SVC_F_LOCAL, SVC_F_MAGLEV,
};

use crate::{
    dataplane::ebpf::{
        features::Features,
        maps::Maps,
        pins::{Hook, PinLayout},
    },
    model::FrontendKind,
    plan::image::{MapImage, backend_addr, frontend},
};

#[derive(Debug, Serialize)]
pub struct DumpView {
    pub frontends: Vec<FrontendView>,
    pub conntrack: ConntrackView,
    /// eBPF mode: the variant of each kernel feature the agent chose, and how TC sits
    /// on each interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelView>,
    pub counters: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct KernelView {
    pub features: Features,
    /// Interface → `tcx` or `netlink`.
    pub tc: BTreeMap<String, &'static str>,
}

#[derive(Debug, Serialize)]
pub struct FrontendView {
    pub kind: &'static str,
    /// `all`, or `node-local` for a frontend only the node's own sockets look up.
    pub scope: &'static str,
    pub address: Ipv4Addr,
    pub port: u16,
    pub protocol: &'static str,
    pub service: String,
    pub svc_id: u32,
    pub flags: Vec<&'static str>,
    pub affinity_timeout_s: u32,
    pub backend_count: u16,
    pub backends: Vec<BackendView>,
    /// IPVS mode: real servers of endpoints that left, at weight 0 until their
    /// connections end (they take no new ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<BackendView>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct BackendView {
    pub id: u32,
    pub address: Ipv4Addr,
    pub port: u16,
    pub protocol: &'static str,
    pub terminating: bool,
    pub local: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct ConntrackView {
    pub entries: usize,
    pub forward: usize,
    pub reply: usize,
    pub tcp: usize,
    pub udp: usize,
}

pub fn read(bpffs: &Path) -> Result<DumpView> {
    let pins = PinLayout::new(bpffs);
    let maps = Maps::open(&pins)?;
    let image = maps.read_image()?;
    let mut view = build(&image, |id| {
        maps.svc_stats(id)
            .map(|s| (s.packets, s.bytes))
            .unwrap_or((0, 0))
    });
    for (k, v) in maps.conntrack_entries() {
        view.conntrack.entries += 1;
        if v.dir == CT_DIR_FORWARD {
            view.conntrack.forward += 1;
        } else {
            view.conntrack.reply += 1;
        }
        match k.proto {
            PROTO_TCP => view.conntrack.tcp += 1,
            PROTO_UDP => view.conntrack.udp += 1,
            _ => {}
        }
    }
    for (name, value) in COUNTER_NAMES.iter().zip(maps.counters()?) {
        view.counters.insert(name, value);
    }
    let cfg = maps.config.get(&0, 0)?;
    let mut tc = BTreeMap::new();
    for (hook, how) in [(Hook::Tc, "tcx"), (Hook::TcNetlink, "netlink")] {
        for (iface, _) in pins.pinned_links(hook) {
            tc.insert(iface, how);
        }
    }
    view.kernel = Some(KernelView {
        features: Features::from_report(cfg.features),
        tc,
    });
    Ok(view)
}

/// The view of the data path `mode` (`auto`: whichever holds state).
pub fn read_mode(mode: crate::dataplane::select::ModeArg, bpffs: &Path) -> Result<DumpView> {
    use crate::dataplane::{
        iptables,
        select::{Mode, ModeArg, detect},
    };
    let mode = match mode {
        ModeArg::Auto => detect(bpffs)?,
        ModeArg::Ebpf => Mode::Ebpf,
        ModeArg::Iptables => Mode::Iptables,
        ModeArg::Ipvs => Mode::Ipvs,
    };
    let iptables_view = || -> Result<DumpView> {
        let backend = iptables::BackendArg::Auto.resolve()?;
        let saved = iptables::read(backend, true)?;
        iptables::dump::build(&saved).ok_or_else(|| {
            anyhow::anyhow!("no KUBE-SERVICES chain in iptables-{}", backend.as_str())
        })
    };
    match mode {
        Mode::Ebpf => read(bpffs),
        // Service names from IPVS mode's rules; without them the table still shows.
        Mode::Ipvs => crate::dataplane::ipvs::dump_view(iptables_view().ok()),
        Mode::Iptables => iptables_view(),
    }
}

/// The frontend part of the view, from a map image (pure: unit-testable).
pub fn build(image: &MapImage, stats: impl Fn(u32) -> (u64, u64)) -> DumpView {
    let mut frontends = Vec::new();
    for (key, val) in &image.services {
        let Some(fe) = frontend(key) else { continue };
        // Distinct backends in slot order (a Maglev table names each one many times).
        let mut seen = std::collections::BTreeSet::new();
        let backends = (0..u32::from(val.backend_count))
            .filter_map(|slot| {
                image.slots.get(&svclb_common::SlotKey {
                    svc_id: val.svc_id,
                    slot,
                })
            })
            .filter(|id| seen.insert(**id))
            .filter_map(|id| Some((*id, image.backends.get(id)?)))
            .filter_map(|(id, be)| {
                let addr = backend_addr(be)?;
                Some(BackendView {
                    id,
                    address: addr.addr,
                    port: addr.port,
                    protocol: addr.proto.as_str(),
                    terminating: be.flags & BE_F_TERMINATING != 0,
                    local: be.flags & BE_F_LOCAL != 0,
                })
            })
            .collect();
        let mut flags = Vec::new();
        for (bit, name) in [
            (SVC_F_AFFINITY, "affinity"),
            (SVC_F_LOCAL, "local"),
            (SVC_F_MAGLEV, "maglev"),
            (svclb_common::SVC_F_SRC_RANGES, "source-ranges"),
            (svclb_common::SVC_F_NO_LOCAL_DROP, "no-local-drop"),
            (svclb_common::SVC_F_NODE_DENIED, "node-denied"),
        ] {
            if val.flags & bit != 0 {
                flags.push(name);
            }
        }
        let (packets, bytes) = stats(val.svc_id);
        frontends.push(FrontendView {
            kind: FrontendKind::from_code(val.kind).map_or("?", FrontendKind::as_str),
            scope: if fe.is_host() { "node-local" } else { "all" },
            address: fe.addr,
            port: fe.port,
            protocol: fe.proto.as_str(),
            service: image.names.get(&val.svc_id).cloned().unwrap_or_default(),
            svc_id: val.svc_id,
            flags,
            affinity_timeout_s: val.affinity_timeout_s,
            backend_count: val.backend_count,
            backends,
            draining: Vec::new(),
            packets,
            bytes,
        });
    }
    // Group by owner then address, the way an operator scans the list.
    frontends.sort_by(|a, b| {
        (&a.service, a.kind, a.address, a.port, a.scope)
            .cmp(&(&b.service, b.kind, b.address, b.port, b.scope))
    });
    DumpView {
        frontends,
        conntrack: ConntrackView::default(),
        kernel: None,
        counters: BTreeMap::new(),
    }
}

/// Human output, modelled on `ipvsadm -Ln`.
pub fn render_text(view: &DumpView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "svclb data path: {} frontends", view.frontends.len());
    let _ = writeln!(
        s,
        "Prot LocalAddress:Port      Kind          Service                                  Flags"
    );
    let _ = writeln!(
        s,
        "  -> RemoteAddress:Port                   Id        State"
    );
    for fe in &view.frontends {
        let mut flags = fe.flags.join(",");
        if fe.scope != "all" {
            if !flags.is_empty() {
                flags.push(',');
            }
            flags.push_str(fe.scope);
        }
        if fe.flags.contains(&"affinity") {
            let _ = write!(flags, " timeout {}s", fe.affinity_timeout_s);
        }
        if fe.backend_count == 0 {
            flags.push_str(if flags.is_empty() {
                "reject (no endpoints)"
            } else {
                " reject (no endpoints)"
            });
        }
        let addr = format!("{}:{}", fe.address, fe.port);
        let _ = writeln!(
            s,
            "{:<4} {:<21} {:<13} {:<40} {}",
            fe.protocol, addr, fe.kind, fe.service, flags
        );
        for be in &fe.backends {
            let baddr = format!("{}:{}", be.address, be.port);
            let state = match (be.terminating, be.local) {
                (true, true) => "terminating,local",
                (true, false) => "terminating",
                (false, true) => "ready,local",
                (false, false) => "ready",
            };
            let _ = writeln!(s, "  -> {:<37} {:<9} {}", baddr, be.id, state);
        }
        for be in &fe.draining {
            let baddr = format!("{}:{}", be.address, be.port);
            let _ = writeln!(s, "  -> {:<37} {:<9} draining (weight 0)", baddr, be.id);
        }
        let _ = writeln!(s, "     packets {} bytes {}", fe.packets, fe.bytes);
    }
    let ct = &view.conntrack;
    let _ = writeln!(
        s,
        "\nConntrack: {} entries ({} forward, {} reply; {} TCP, {} UDP)",
        ct.entries, ct.forward, ct.reply, ct.tcp, ct.udp
    );
    if let Some(k) = &view.kernel {
        let _ = writeln!(s, "Kernel features: {}", k.features);
        let tc: Vec<String> = k.tc.iter().map(|(i, how)| format!("{i} ({how})")).collect();
        let _ = writeln!(s, "TC attached: {}", tc.join(", "));
    }
    let _ = writeln!(s, "Counters:");
    for (name, v) in &view.counters {
        let _ = writeln!(s, "  {name:<18} {v}");
    }
    s
}
