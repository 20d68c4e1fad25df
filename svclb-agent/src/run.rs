//! `svclb-agent run` with a manifest directory: read, plan, sync, repeat on change.
use std::{collections::BTreeSet, net::Ipv4Addr, time::{Duration, Instant}};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use tracing::{error, info, warn};

use crate::{
    cli::{RunArgs, XdpModeArg, parse_port_range},
    dataplane::{
        Dataplane,
        ebpf::{EbpfDataplane, EbpfOptions},
    },
    netif,
    plan::desired::{NodeInfo, PlanOptions, plan},
    source::manifests::{dir_fingerprint, load_dir},
};

pub async fn run(args: RunArgs) -> Result<()> {
    let node_port_range = parse_port_range(&args.service_node_port_range)
        .map_err(|e| anyhow::anyhow!("--service-node-port-range {e}"))?;
    if !args.manifests.is_dir() {
        bail!("--manifests {}: not a directory", args.manifests.display());
    }
    let mut node_ips: Vec<Ipv4Addr> = args.node_ip.clone();
    let mut holders = BTreeSet::new();
    for iface in &args.iface {
        let addrs = netif::ipv4_addrs(iface).with_context(|| format!("reading addresses of {iface}"))?;
        if args.node_ip.is_empty() {
            node_ips.extend(addrs.iter().copied());
        }
        if addrs.iter().any(|a| node_ips.contains(a) || args.node_ip.contains(a)) {
            holders.insert(iface.clone());
        }
    }
    node_ips.sort();
    node_ips.dedup();
    let xdp_ifaces = match (&args.xdp_iface, args.xdp_mode) {
        (_, XdpModeArg::Off) => Vec::new(),
        (Some(list), _) => list.clone(),
        (None, _) => holders.into_iter().collect(),
    };
    let xdp_mode = match args.xdp_mode {
        XdpModeArg::Skb => XdpMode::Skb,
        _ => XdpMode::Driver,
    };
    let node_name = args.hostname_override.clone();
    info!(?node_ips, tc = ?args.iface, xdp = ?xdp_ifaces, node = ?node_name, "starting (manifests mode)");

    let mut dp = EbpfDataplane::start(&EbpfOptions {
        bpffs: args.bpffs.clone(),
        tc_ifaces: args.iface.clone(),
        xdp_ifaces,
        xdp_mode,
        debug_log: args.debug_bpf,
    })?;
    info!(mode = dp.mode(), bpffs = %args.bpffs.display(), "data path ready");

    let node = NodeInfo { name: node_name, addresses: node_ips };
    let opts = PlanOptions { node_port_range, maglev_default: args.maglev };
    let mut last_fp = None;
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        let fp = match dir_fingerprint(&args.manifests) {
            Ok(fp) => fp,
            Err(e) => {
                warn!(dir = %args.manifests.display(), error = %e, "cannot read the manifests directory");
                continue;
            }
        };
        if last_fp == Some(fp) {
            continue;
        }
        last_fp = Some(fp);
        let started = Instant::now();
        let (objects, source_errors) = match load_dir(&args.manifests) {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "cannot load manifests; the data path is left as it is");
                continue;
            }
        };
        for e in &source_errors {
            error!("{e}");
        }
        let planned = plan(&objects, &node, &opts);
        for e in &planned.errors {
            error!("{e}");
        }
        for (object, why) in &planned.ignored {
            info!(object = %object, "ignored: {why}");
        }
        match dp.sync(&planned.state) {
            Ok(r) if r.writes > 0 || r.purged > 0 => info!(
                sets = planned.state.sets.len(),
                frontends = planned.state.frontend_count(),
                endpoints = planned.state.endpoint_count(),
                writes = r.writes,
                purged = r.purged,
                map_us = r.duration.as_micros() as u64,
                total_us = started.elapsed().as_micros() as u64,
                "synced"
            ),
            Ok(_) => info!(frontends = planned.state.frontend_count(), "synced (no change)"),
            Err(e) => {
                error!(error = format!("{e:#}"), "sync failed; retrying on the next change");
                last_fp = None;
            }
        }
    }
    info!("stopping; pinned programs and maps keep serving (`svclb-agent cleanup` removes them)");
    Ok(())
}
