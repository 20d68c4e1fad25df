//! `svclb-agent run`: a source (the apiserver, or a manifest directory) yields the
//! whole object state whenever it changes; each change is planned and synced into the
//! data path (level-based: the plan is always of everything, the sync writes only the
//! delta). The data path starts first and adopts its pins, so traffic keeps flowing
//! while the source is still connecting; nothing is synced before the source has
//! listed everything once.
use std::{collections::BTreeSet, net::Ipv4Addr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::{
    cli::{RunArgs, XdpModeArg, parse_port_range},
    dataplane::{Dataplane, ebpf::EbpfOptions, ipvs::IpvsOptions, select},
    health::Health,
    http,
    metrics::Metrics,
    netif,
    plan::{Lookup, Touched, desired::PlanOptions},
    source::{
        Objects,
        change::Change,
        kube::{
            KubeOptions, KubeSource,
            client::{ApiReachability, connect},
            node::NodeView,
        },
    },
    sysctl::ProcSys,
};

pub mod manifests;
pub mod reconcile;

use self::{
    manifests::ManifestSource,
    reconcile::{NodeAddresses, Reconciler},
};

/// How often `--iface` selectors are matched again against the interfaces present.
const IFACE_CHECK: Duration = Duration::from_secs(1);
/// How often the data path does work that waits on the kernel (IPVS drains).
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// A failed sync is retried after this, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

// One instance for the agent's life.
#[allow(clippy::large_enum_variant)]
enum Source {
    Manifests(ManifestSource),
    Kube(KubeSource),
}

impl Source {
    async fn next(&mut self) -> Change {
        match self {
            Source::Manifests(s) => s.next().await,
            Source::Kube(s) => s.next().await,
        }
    }

    fn objects(&self) -> &Objects {
        match self {
            Source::Manifests(s) => s.objects(),
            Source::Kube(s) => s.objects(),
        }
    }

    fn node(&self) -> Option<&NodeView> {
        match self {
            Source::Manifests(_) => None,
            Source::Kube(s) => s.node(),
        }
    }

    /// The objects the last change covered, with a way to look them up; None when
    /// everything must be looked at (manifests are re-read whole).
    fn touched(&self) -> Option<(&dyn Lookup, &Touched)> {
        match self {
            Source::Manifests(_) => None,
            Source::Kube(s) => Some((s as &dyn Lookup, s.touched()?)),
        }
    }
}

pub async fn run(mut args: RunArgs) -> Result<()> {
    crate::config::check(&args)?;
    let present = crate::ifaces::list().context("listing interfaces")?;
    // Selectors (`auto`, `veth*`) are looked at again every IFACE_CHECK: pods come and
    // go, and a new pod's veth needs the TC program to get its Service traffic.
    let selectors = args.iface.clone();
    let dynamic = selectors.iter().any(|v| crate::ifaces::is_selector(v));
    args.iface = crate::ifaces::select(&args.iface, &present)?;
    if let crate::nodeport::NodePortAddresses::Cidrs(cidrs) =
        crate::nodeport::parse(&args.nodeport_addresses)?
    {
        // Fixed addresses, exactly as if given with --node-ip (they conflict).
        args.node_ip = crate::nodeport::local_in(&cidrs, &present)?;
    }
    if !args.cluster_cidr.is_empty() {
        info!(cluster_cidr = ?args.cluster_cidr, "--cluster-cidr is not used by the eBPF data path (it never masquerades)");
    }
    let node_port_range = parse_port_range(&args.service_node_port_range)
        .map_err(|e| anyhow::anyhow!("--service-node-port-range {e}"))?;
    if let Some(dir) = &args.manifests
        && !dir.is_dir()
    {
        bail!("--manifests {}: not a directory", dir.display());
    }
    let (iface_ips, xdp_ifaces) = interfaces(&args)?;
    let addresses = if args.node_ip.is_empty() {
        NodeAddresses::NodeOr(iface_ips.clone())
    } else {
        NodeAddresses::Fixed(iface_ips.clone())
    };
    let xdp_mode = match args.xdp_mode {
        XdpModeArg::Skb => XdpMode::Skb,
        _ => XdpMode::Driver,
    };
    let node_name = args.hostname_override.clone();
    let mode = if args.manifests.is_some() {
        "manifests"
    } else {
        "apiserver"
    };
    info!(node_ips = ?iface_ips, tc = ?args.iface, xdp = ?xdp_ifaces, node = ?node_name, mode, "starting");

    let (metrics, registry) = Metrics::new();
    let reach = args
        .manifests
        .is_none()
        .then(|| Arc::new(ApiReachability::default()));
    let health = Arc::new(Health::new(
        Duration::from_secs(args.healthz_timeout_seconds),
        reach.clone(),
    ));
    let registry = Arc::new(registry);
    let mut servers = Vec::new();
    for (what, addr, registry) in [
        ("metrics", &args.metrics_bind_address, Some(registry)),
        ("healthz", &args.healthz_bind_address, None),
    ] {
        if addr.is_empty() {
            continue;
        }
        let routes = http::Routes {
            registry,
            health: health.clone(),
        };
        // Like kube-proxy: without metrics or health the data path still matters more.
        match http::serve(what, addr, routes).await {
            Ok((_, task)) => servers.push(task),
            Err(e) => error!(error = format!("{e:#}"), "{what} server not started"),
        }
    }

    let dp = select::start(&select::StartOptions {
        requested: args.mode,
        ebpf: EbpfOptions {
            bpffs: args.bpffs.clone(),
            tc_ifaces: args.iface.clone(),
            xdp_ifaces,
            xdp_mode,
            debug_log: args.debug_bpf,
            socket_lb: args.socket_lb.then(|| args.cgroup_root.clone()),
            proc_sys: ProcSys::new(&args.proc_sys),
            kernel_features: args.kernel_features,
        },
        iptables_backend: args.iptables_backend,
        iptables: crate::dataplane::iptables::rules::RuleOptions {
            localhost_node_ports: args.iptables_localhost_nodeports,
        },
        proc_sys: ProcSys::new(&args.proc_sys),
        ipvs: IpvsOptions {
            scheduler: args.ipvs_scheduler.clone(),
            iptables_backend: args.iptables_backend,
            localhost_node_ports: args.iptables_localhost_nodeports,
        },
    })?;
    info!(mode = dp.mode(), bpffs = %args.bpffs.display(), "data path ready");

    let mut source = match (&args.manifests, reach) {
        (Some(dir), _) => Source::Manifests(ManifestSource::new(
            dir,
            Duration::from_millis(args.poll_interval_ms),
            metrics.clone(),
        )),
        (None, reach) => {
            let reach = reach.unwrap_or_default();
            let client = connect(args.kubeconfig.as_deref(), reach).await?;
            let opts = KubeOptions {
                node_name: node_name.clone(),
                min_sync_period: Duration::from_millis(args.min_sync_period_ms),
            };
            Source::Kube(KubeSource::start(client, opts, metrics.clone()))
        }
    };

    let opts = PlanOptions {
        node_port_range,
        maglev_default: args.maglev,
        host_scope: dp.serves_host_scope(),
        localhost_node_ports: args.iptables_localhost_nodeports,
    };
    let mut rec = Reconciler::new(dp, metrics, health.clone(), node_name, addresses, opts);
    rec.serve_health_checks(crate::health_check::HealthCheckServers::new(health.clone()));
    let mut retry = RETRY_MIN;
    let mut retry_at: Option<Instant> = None;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut iface_check = tokio::time::interval(IFACE_CHECK);
    iface_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let change = tokio::select! {
            change = source.next() => change,
            _ = housekeeping.tick() => {
                if let Err(e) = rec.dp.housekeep() {
                    warn!(error = format!("{e:#}"), "data path housekeeping failed; retrying");
                }
                continue;
            }
            _ = iface_check.tick(), if dynamic => {
                let selected = crate::ifaces::list()
                    .context("listing interfaces")
                    .and_then(|present| Ok(crate::ifaces::select(&selectors, &present)?));
                match selected.and_then(|tc| rec.dp.set_interfaces(&tc)) {
                    Ok(()) => {}
                    Err(e) => warn!(error = format!("{e:#}"), "interface check failed; retrying"),
                }
                continue;
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                Change::Changed { noticed: None, triggered: Vec::new() }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        match change {
            // Nothing new and nothing owed: the data path is current.
            Change::Unchanged if !rec.failed() => health.updated(),
            Change::Unchanged => {}
            Change::Changed { noticed, triggered } => {
                rec.queue(noticed, triggered);
                if rec.reconcile_touched(source.objects(), source.node(), source.touched()) {
                    retry = RETRY_MIN;
                    retry_at = None;
                } else {
                    retry_at = Some(Instant::now() + retry);
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }
    for s in servers {
        s.abort();
    }
    info!("stopping; pinned programs and maps keep serving (`svclb-agent cleanup` removes them)");
    Ok(())
}

/// NodePort addresses (--node-ip, else the interfaces' IPv4 addresses) and the XDP
/// interfaces (--xdp-iface, else the interfaces that hold one of those addresses).
fn interfaces(args: &RunArgs) -> Result<(Vec<Ipv4Addr>, Vec<String>)> {
    let mut node_ips: Vec<Ipv4Addr> = args.node_ip.clone();
    let mut holders = BTreeSet::new();
    for iface in &args.iface {
        let addrs =
            netif::ipv4_addrs(iface).with_context(|| format!("reading addresses of {iface}"))?;
        if args.node_ip.is_empty() {
            node_ips.extend(addrs.iter().copied());
        }
        if addrs
            .iter()
            .any(|a| node_ips.contains(a) || args.node_ip.contains(a))
        {
            holders.insert(iface.clone());
        }
    }
    node_ips.sort();
    node_ips.dedup();
    let xdp_ifaces = match (&args.xdp_iface, args.xdp_mode) {
        (_, XdpModeArg::Off) => Vec::new(),
        (Some(list), _) => {
            for iface in list.iter().filter(|i| netif::has_peer(i)) {
                warn!(
                    iface,
                    "XDP forced on a veth/netkit link: its peer must send full checksums \
                     (TX checksum offload off), or translated packets get wrong ones"
                );
            }
            list.clone()
        }
        // By default not on veth/netkit: their senders usually use TX checksum offload
        // (CHECKSUM_PARTIAL), which XDP's by-hand checksum update would corrupt; TC
        // handles those links correctly. Name them in --xdp-iface to force XDP.
        (None, _) => holders
            .into_iter()
            .filter(|iface| {
                let virtual_pair = netif::has_peer(iface);
                if virtual_pair {
                    info!(iface, "no XDP on a veth/netkit link by default (TC serves it); --xdp-iface forces it");
                }
                !virtual_pair
            })
            .collect(),
    };
    Ok((node_ips, xdp_ifaces))
}
