//! IPVS mode, as kube-proxy's: one IPVS virtual server per frontend (generic netlink,
//! [`msg`]), NAT-forwarded real servers, persistence for ClientIP affinity, the VIPs
//! bound to the dummy interface `kube-ipvs0` so the node accepts their traffic, and the
//! few iptables rules IPVS needs ([`rules`]): masquerade for external traffic under a
//! Cluster policy and for hairpin traffic, REJECT for Services without endpoints.
//!
//! This kernel (CONFIG_IP_VS unset) cannot run it: the messages are unit-tested byte for
//! byte, and `auto`/`ipvs` fall back to iptables here (see [`probe`]).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use tracing::{info, warn};

pub mod msg;
pub mod rules;
pub mod socket;

use self::{
    msg::{RealServer, VirtualServer},
    socket::IpvsSocket,
};
use super::{
    Dataplane, SyncReport,
    iptables::{self, Backend, BackendArg, restore::Applied},
};
use crate::model::{DesiredState, FrontendKind, Proto, Scope};

/// The dummy interface that holds the VIPs.
pub const DUMMY_IF: &str = "kube-ipvs0";

#[derive(Clone, Debug)]
pub struct IpvsOptions {
    /// `--ipvs-scheduler`: rr, lc, sh, wrr, …
    pub scheduler: String,
    pub iptables_backend: BackendArg,
    /// `--iptables-localhost-nodeports`: NodePort virtual servers on 127.0.0.1 too (as
    /// kube-proxy's IPVS mode lists them), with `route_localnet` set.
    pub localhost_node_ports: bool,
}

/// Whether this kernel has IPVS: `/proc/net/ip_vs`, after loading the `ip_vs` module
/// when it exists, and the "IPVS" generic-netlink family. The error says what is missing.
pub fn probe() -> Result<(), String> {
    if !Path::new("/proc/net/ip_vs").exists() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let release = release.trim();
        let dep = std::fs::read_to_string(format!("/lib/modules/{release}/modules.dep"))
            .unwrap_or_default();
        if !dep.lines().any(|l| {
            l.split(':')
                .next()
                .is_some_and(|m| m.ends_with("/ip_vs.ko") || m.contains("/ip_vs.ko."))
        }) {
            return Err(format!(
                "the kernel has no IPVS (no /proc/net/ip_vs, no ip_vs module for {release}: CONFIG_IP_VS unset?)"
            ));
        }
        let loaded = Command::new("modprobe")
            .arg("ip_vs")
            .status()
            .is_ok_and(|s| s.success());
        if !loaded || !Path::new("/proc/net/ip_vs").exists() {
            return Err(
                "the ip_vs module exists but could not be loaded (modprobe ip_vs)".to_owned(),
            );
        }
    }
    IpvsSocket::open().map(|_| ()).map_err(|e| e.to_string())
}

type VsKey = (Ipv4Addr, u16, u16);

fn key(vs: &VirtualServer) -> VsKey {
    (vs.addr, vs.port, vs.protocol)
}

fn ipproto(p: Proto) -> u16 {
    match p {
        Proto::Tcp => libc::IPPROTO_TCP as u16,
        Proto::Udp => libc::IPPROTO_UDP as u16,
    }
}

/// The virtual servers `state` asks for, with their real servers (pure).
pub fn virtual_servers(
    state: &DesiredState,
    scheduler: &str,
) -> BTreeMap<VsKey, (VirtualServer, BTreeSet<RealServer>)> {
    let mut out = BTreeMap::new();
    for set in state.sets.values() {
        if set.endpoints.is_empty() {
            continue;
        }
        for (fe, kind) in &set.frontends {
            // Host scope: IPVS serves node-local clients from its own virtual servers
            // (IPVS sees locally originated connections), so of those frontends only
            // the one no packet-scope frontend has, 127.0.0.1:<NodePort>, is added
            // (iptables rules serve it: rules.rs). A load balancer with source ranges
            // is iptables mode's rules only: a virtual server would take in the node's
            // own connections from outside the ranges.
            if (fe.scope == Scope::Host && !fe.addr.is_loopback())
                || rules::source_ranged(*kind, set)
            {
                continue;
            }
            let vs = VirtualServer {
                addr: fe.addr,
                port: fe.port,
                protocol: ipproto(fe.proto),
                scheduler: scheduler.to_owned(),
                persistent_s: set.affinity_timeout_s,
            };
            let reals = set
                .endpoints
                .iter()
                .map(|e| RealServer {
                    addr: e.backend.addr,
                    port: e.backend.port,
                    weight: 1,
                })
                .collect();
            out.insert(key(&vs), (vs, reals));
        }
    }
    out
}

/// The addresses `kube-ipvs0` must hold: every frontend's but NodePorts' (node addresses).
pub fn vips(state: &DesiredState) -> BTreeSet<Ipv4Addr> {
    state
        .sets
        .values()
        .flat_map(|s| s.frontends.iter())
        .filter(|(_, k)| **k != FrontendKind::NodePort)
        .map(|(f, _)| f.addr)
        .collect()
}

pub struct IpvsDataplane {
    sock: IpvsSocket,
    scheduler: String,
    backend: Backend,
    applied_rules: Applied,
    /// Virtual servers and their serving (weight 1) real servers.
    services: BTreeMap<VsKey, (VirtualServer, BTreeSet<RealServer>)>,
    localhost_node_ports: bool,
    /// Real servers whose endpoint left, at weight 0 until their connections end
    /// (KEP-1669's graceful termination, as kube-proxy does it): then deleted.
    draining: BTreeMap<VsKey, BTreeSet<RealServer>>,
    last: DesiredState,
}

/// A real server as it serves: the identity the desired state compares.
fn serving(rs: &RealServer) -> RealServer {
    RealServer { weight: 1, ..*rs }
}

/// UDP has no connection end to wait for: kube-proxy deletes its real servers at once.
fn drains(vs: &VirtualServer) -> bool {
    vs.protocol != libc::IPPROTO_UDP as u16
}

impl IpvsDataplane {
    pub fn start(opts: &IpvsOptions, proc_sys: &crate::sysctl::ProcSys) -> Result<Self> {
        let mut sock = IpvsSocket::open().context("IPVS generic netlink")?;
        let backend = opts.iptables_backend.resolve()?;
        ip(&["link", "add", DUMMY_IF, "type", "dummy"])
            .or_else(|e| if link_exists() { Ok(()) } else { Err(e) })?;
        // kube-proxy's settings: IPVS keeps conntrack entries (for iptables masquerade),
        // and connections to removed real servers are dropped instead of hanging.
        for (key, value) in [
            ("conntrack", "1"),
            ("expire_nodest_conn", "1"),
            ("expire_quiescent_template", "1"),
        ] {
            let path = format!("/proc/sys/net/ipv4/vs/{key}");
            if let Err(e) = std::fs::write(&path, value) {
                warn!(path, error = %e, "IPVS sysctl not set");
            }
        }
        if opts.localhost_node_ports {
            proc_sys.route_localnet_for_node_ports();
        }
        // Adopt what an earlier agent left, changing nothing before the first sync:
        // traffic keeps flowing across a restart.
        let mut services = BTreeMap::new();
        let mut draining: BTreeMap<VsKey, BTreeSet<RealServer>> = BTreeMap::new();
        for vs in sock.services()? {
            let mut reals = BTreeSet::new();
            for rs in sock.dests(&vs)? {
                if rs.weight == 0 {
                    draining.entry(key(&vs)).or_default().insert(serving(&rs));
                } else {
                    reals.insert(rs);
                }
            }
            services.insert(key(&vs), (vs, reals));
        }
        if !services.is_empty() {
            info!(
                services = services.len(),
                draining = draining.values().map(BTreeSet::len).sum::<usize>(),
                "adopted the IPVS virtual servers of an earlier run"
            );
        }
        // The iptables chains IPVS mode owns are adopted too: the first sync rewrites
        // them in one restore (and deletes those of iptables mode it does not use).
        let saved = iptables::read(backend, false).with_context(|| {
            format!("reading the rules with iptables-{}-save", backend.as_str())
        })?;
        let applied_rules: Applied = saved
            .keys()
            .filter(|(t, c)| iptables::rules::is_ours(*t, c))
            .map(|k| (k.clone(), None))
            .collect();
        Ok(IpvsDataplane {
            sock,
            scheduler: opts.scheduler.clone(),
            backend,
            applied_rules,
            services,
            localhost_node_ports: opts.localhost_node_ports,
            draining,
            last: DesiredState::default(),
        })
    }
}

impl Dataplane for IpvsDataplane {
    fn mode(&self) -> &'static str {
        "ipvs"
    }
    /// `127.0.0.1:<NodePort>` and the node's view of Local-policy external frontends
    /// (see [`virtual_servers`] and rules.rs).
    fn serves_host_scope(&self) -> bool {
        true
    }

    fn sync(&mut self, desired: &DesiredState) -> Result<SyncReport> {
        let start = Instant::now();
        let without_localhost;
        let desired = if self.localhost_node_ports {
            desired
        } else {
            // --iptables-localhost-nodeports=false: no 127.0.0.1 NodePorts at all.
            let mut d = desired.clone();
            for set in d.sets.values_mut() {
                set.frontends.retain(|fe, _| !fe.addr.is_loopback());
            }
            without_localhost = d;
            &without_localhost
        };
        let mut writes = 0;
        // Addresses and rules first, so a new virtual server is reachable at once.
        let want_vips = vips(desired);
        let have_vips = dummy_addrs()?;
        for a in want_vips.difference(&have_vips) {
            ip(&["addr", "add", &format!("{a}/32"), "dev", DUMMY_IF])?;
            writes += 1;
        }
        let chains = rules::generate(desired)?;
        if let Some((text, count)) = iptables::restore::payload(&chains, &self.applied_rules) {
            self.backend.restore(&text)?;
            self.applied_rules = chains.into_iter().map(|(k, v)| (k, Some(v))).collect();
            writes += count + self.backend.ensure_jumps()?;
        }
        let want = virtual_servers(desired, &self.scheduler);
        let gone: Vec<VsKey> = self
            .services
            .keys()
            .filter(|k| !want.contains_key(*k))
            .copied()
            .collect();
        for k in gone {
            let (vs, _) = self.services.remove(&k).expect("listed");
            self.draining.remove(&k);
            self.sock
                .call(|f, s| msg::del_service(f, s, &vs), "IPVS_CMD_DEL_SERVICE")?;
            writes += 1;
        }
        for (k, (vs, reals)) in &want {
            let have = match self.services.get(k) {
                Some((old, have)) if old == vs => have.clone(),
                Some((old, _)) => {
                    let old = old.clone();
                    self.draining.remove(k);
                    self.sock
                        .call(|f, s| msg::del_service(f, s, &old), "IPVS_CMD_DEL_SERVICE")?;
                    self.sock
                        .call(|f, s| msg::new_service(f, s, vs), "IPVS_CMD_NEW_SERVICE")?;
                    writes += 2;
                    BTreeSet::new()
                }
                None => {
                    self.sock
                        .call(|f, s| msg::new_service(f, s, vs), "IPVS_CMD_NEW_SERVICE")?;
                    writes += 1;
                    BTreeSet::new()
                }
            };
            let draining = self.draining.entry(*k).or_default();
            for rs in reals.difference(&have) {
                // An endpoint back while it drained: serving again, same connections.
                if draining.remove(rs) {
                    self.sock
                        .call(|f, s| msg::set_dest(f, s, vs, rs), "IPVS_CMD_SET_DEST")?;
                } else {
                    self.sock
                        .call(|f, s| msg::new_dest(f, s, vs, rs), "IPVS_CMD_NEW_DEST")?;
                }
                writes += 1;
            }
            for rs in have.difference(reals) {
                if drains(vs) {
                    let quiet = RealServer { weight: 0, ..*rs };
                    self.sock
                        .call(|f, s| msg::set_dest(f, s, vs, &quiet), "IPVS_CMD_SET_DEST")?;
                    draining.insert(*rs);
                } else {
                    self.sock
                        .call(|f, s| msg::del_dest(f, s, vs, rs), "IPVS_CMD_DEL_DEST")?;
                }
                writes += 1;
            }
            if draining.is_empty() {
                self.draining.remove(k);
            }
            self.services.insert(*k, (vs.clone(), reals.clone()));
        }
        for a in have_vips.difference(&want_vips) {
            ip(&["addr", "del", &format!("{a}/32"), "dev", DUMMY_IF])?;
            writes += 1;
        }
        let purged = iptables::exec::purge_removed_udp(&self.last, desired);
        self.last = desired.clone();
        Ok(SyncReport {
            writes,
            purged,
            duration: start.elapsed(),
        })
    }

    /// Deletes the drained real servers whose connections have all ended.
    fn housekeep(&mut self) -> Result<()> {
        let keys: Vec<VsKey> = self.draining.keys().copied().collect();
        for k in keys {
            let Some((vs, _)) = self.services.get(&k) else {
                self.draining.remove(&k);
                continue;
            };
            let vs = vs.clone();
            let present = self.sock.dests_with_conns(&vs)?;
            let set = self.draining.get_mut(&k).expect("listed");
            let mut done = Vec::new();
            for rs in set.iter() {
                match present.iter().find(|(p, _)| serving(p) == *rs) {
                    // Gone already (deleted by hand, or with its virtual server).
                    None => done.push(*rs),
                    Some((p, 0)) => {
                        self.sock
                            .call(|f, s| msg::del_dest(f, s, &vs, p), "IPVS_CMD_DEL_DEST")?;
                        info!(
                            vs = %format!("{}:{}", vs.addr, vs.port),
                            real = %format!("{}:{}", p.addr, p.port),
                            "drained real server deleted: its connections ended"
                        );
                        done.push(*rs);
                    }
                    Some(_) => {}
                }
            }
            for rs in &done {
                set.remove(rs);
            }
            if set.is_empty() {
                self.draining.remove(&k);
            }
        }
        Ok(())
    }
}

/// Removes every virtual server and `kube-ipvs0` (cleanup, switching modes). Without
/// IPVS in the kernel there is nothing to remove but a leftover dummy interface.
pub fn cleanup() -> Result<()> {
    if let Ok(mut sock) = IpvsSocket::open() {
        for vs in sock.services()? {
            sock.call(|f, s| msg::del_service(f, s, &vs), "IPVS_CMD_DEL_SERVICE")?;
        }
    }
    if link_exists() {
        ip(&["link", "del", DUMMY_IF])?;
        info!("removed {DUMMY_IF}");
    }
    Ok(())
}

/// The IPVS table as the dump view. IPVS keeps no names: a virtual server's kind and
/// Service come from the comment of its rule in KUBE-SERVICES (rules.rs), else "?".
pub fn dump_view(iptables: Option<crate::dump::DumpView>) -> Result<crate::dump::DumpView> {
    let labels: BTreeMap<(Ipv4Addr, u16, &'static str), crate::dump::FrontendView> = iptables
        .map(|v| v.frontends)
        .unwrap_or_default()
        .into_iter()
        .map(|f| ((f.address, f.port, f.protocol), f))
        .collect();
    let mut sock = IpvsSocket::open()?;
    let mut frontends = Vec::new();
    for (i, vs) in sock.services()?.into_iter().enumerate() {
        let protocol = if vs.protocol == libc::IPPROTO_UDP as u16 {
            "UDP"
        } else {
            "TCP"
        };
        let view = |(j, rs): (usize, &RealServer)| crate::dump::BackendView {
            id: j as u32 + 1,
            address: rs.addr,
            port: rs.port,
            protocol,
            terminating: false,
            local: false,
        };
        let dests = sock.dests(&vs)?;
        let (serving, quiet): (Vec<&RealServer>, Vec<&RealServer>) =
            dests.iter().partition(|rs| rs.weight > 0);
        let backends: Vec<crate::dump::BackendView> =
            serving.into_iter().enumerate().map(view).collect();
        let draining = quiet.into_iter().enumerate().map(view).collect();
        let label = labels.get(&(vs.addr, vs.port, protocol));
        frontends.push(crate::dump::FrontendView {
            kind: label.map_or("?", |l| l.kind),
            // 127.0.0.1 is reached from the node only.
            scope: if vs.addr.is_loopback() {
                "node-local"
            } else {
                "all"
            },
            address: vs.addr,
            port: vs.port,
            protocol,
            service: label.map(|l| l.service.clone()).unwrap_or_default(),
            svc_id: label.map_or(i as u32 + 1, |l| l.svc_id),
            flags: if vs.persistent_s.is_some() {
                vec!["affinity"]
            } else {
                vec![]
            },
            affinity_timeout_s: vs.persistent_s.unwrap_or(0),
            backend_count: backends.len() as u16,
            backends,
            draining,
            packets: 0,
            bytes: 0,
        });
    }
    // Frontends without a virtual server, as their rules show them: those without
    // endpoints (REJECT) and those iptables rules serve (rules::by_iptables).
    let served: BTreeSet<_> = frontends
        .iter()
        .map(|f| (f.address, f.port, f.protocol))
        .collect();
    frontends.extend(
        labels
            .into_iter()
            .filter(|(k, _)| !served.contains(k))
            .map(|(_, f)| f),
    );
    Ok(crate::dump::DumpView {
        frontends,
        conntrack: Default::default(),
        kernel: None,
        counters: Default::default(),
    })
}

/// Whether IPVS mode ran here: its dummy link exists and the kernel has IPVS.
pub fn holds_ours() -> bool {
    link_exists() && probe().is_ok()
}

/// By name in this process's network namespace (/sys/class/net may show another's).
fn link_exists() -> bool {
    let name = std::ffi::CString::new(DUMMY_IF).expect("no NUL");
    // SAFETY: a NUL-terminated name; the call only reads it.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

fn dummy_addrs() -> Result<BTreeSet<Ipv4Addr>> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", DUMMY_IF])
        .output()
        .context("running ip")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        dataplane::iptables::rules::Table,
        model::{BackendAddr, BackendSet, Endpoint, Frontend, SetKey},
    };

    fn state() -> DesiredState {
        let ep = |n: u8| Endpoint {
            backend: BackendAddr {
                addr: Ipv4Addr::new(198, 19, n, 2),
                port: 8080,
                proto: Proto::Tcp,
            },
            terminating: false,
            local: false,
        };
        let fe = |a: [u8; 4], port| Frontend {
            addr: Ipv4Addr::from(a),
            port,
            proto: Proto::Tcp,
            scope: Default::default(),
        };
        let web = BackendSet {
            endpoints: vec![ep(1), ep(2)],
            affinity_timeout_s: Some(60),
            frontends: BTreeMap::from([
                (fe([198, 18, 0, 10], 80), FrontendKind::ClusterIp),
                (fe([198, 18, 100, 1], 30080), FrontendKind::NodePort),
            ]),
            ..Default::default()
        };
        let empty = BackendSet {
            frontends: BTreeMap::from([(fe([198, 18, 0, 14], 80), FrontendKind::ClusterIp)]),
            ..Default::default()
        };
        DesiredState {
            sets: BTreeMap::from([
                (SetKey("default/web:http/TCP".into()), web),
                (SetKey("default/empty:http/TCP".into()), empty),
            ]),
        }
    }

    #[test]
    fn one_virtual_server_per_frontend_with_persistence_for_affinity() {
        let vss = virtual_servers(&state(), "lc");
        let keys: Vec<_> = vss.keys().copied().collect();
        assert_eq!(
            keys,
            [
                (Ipv4Addr::new(198, 18, 0, 10), 80, 6),
                (Ipv4Addr::new(198, 18, 100, 1), 30080, 6)
            ]
        );
        let (vs, reals) = &vss[&keys[0]];
        assert_eq!((vs.scheduler.as_str(), vs.persistent_s), ("lc", Some(60)));
        assert_eq!(
            reals
                .iter()
                .map(|r| (r.addr, r.port, r.weight))
                .collect::<Vec<_>>(),
            [
                (Ipv4Addr::new(198, 19, 1, 2), 8080, 1),
                (Ipv4Addr::new(198, 19, 2, 2), 8080, 1)
            ]
        );
    }

    #[test]
    fn of_the_host_scope_only_localhost_node_ports_get_virtual_servers() {
        let mut st = state();
        let web = st
            .sets
            .get_mut(&SetKey("default/web:http/TCP".into()))
            .unwrap();
        let host = |a: Ipv4Addr, port| Frontend {
            addr: a,
            port,
            proto: Proto::Tcp,
            scope: Scope::Host,
        };
        web.frontends
            .insert(host(Ipv4Addr::LOCALHOST, 30080), FrontendKind::NodePort);
        // An externalTrafficPolicy: Local twin: IPVS serves the node from the packet
        // frontend's virtual server.
        web.frontends.insert(
            host(Ipv4Addr::new(198, 18, 100, 1), 30080),
            FrontendKind::NodePort,
        );
        let keys: Vec<_> = virtual_servers(&st, "rr").keys().copied().collect();
        assert_eq!(
            keys,
            [
                (Ipv4Addr::new(127, 0, 0, 1), 30080, 6),
                (Ipv4Addr::new(198, 18, 0, 10), 80, 6),
                (Ipv4Addr::new(198, 18, 100, 1), 30080, 6)
            ]
        );
        assert!(!vips(&st).contains(&Ipv4Addr::LOCALHOST));
        let chains = rules::generate(&st).unwrap();
        let services = &chains[&(Table::Nat, "KUBE-SERVICES".into())];
        assert!(
            services
                .iter()
                .any(|r| r.starts_with("-d 127.0.0.1/32") && r.ends_with("-j KUBE-MARK-MASQ")),
            "{services:?}"
        );
        // 127.0.0.1, the ClusterIP, the node address, the jump to KUBE-NODEPORTS last:
        // no rule for the twin.
        assert_eq!(services.len(), 4, "{services:?}");
        assert!(services[3].ends_with("-j KUBE-NODEPORTS"), "{services:?}");
        // IPVS cannot forward a loopback source: iptables DNATs 127.0.0.1 before it, and
        // the twin (the node's own view) the same way, to every endpoint.
        let node_ports = &chains[&(Table::Nat, "KUBE-NODEPORTS".into())];
        assert_eq!(node_ports.len(), 2, "{node_ports:?}");
        assert!(
            node_ports[0].starts_with("-d 127.0.0.1/32") && node_ports[0].contains("-j KUBE-EXT-"),
            "{node_ports:?}"
        );
        assert!(
            node_ports[1].starts_with("-d 198.18.100.1/32")
                && node_ports[1].contains("--src-type LOCAL -j KUBE-EXT-"),
            "{node_ports:?}"
        );
        let ext = node_ports[0].rsplit(' ').next().unwrap();
        let svc = chains[&(Table::Nat, ext.to_owned())]
            .last()
            .unwrap()
            .clone();
        let svc = svc.rsplit(' ').next().unwrap();
        let seps = &chains[&(Table::Nat, svc.to_owned())];
        assert_eq!(seps.len(), 2 * 2, "affinity checks + choices: {seps:?}");
        assert!(chains.iter().any(|((_, c), r)| {
            c.starts_with("KUBE-SEP-")
                && r.iter()
                    .any(|r| r.contains("DNAT --to-destination 198.19.1.2:8080"))
        }),);
        assert_eq!(
            chains[&(Table::Filter, "KUBE-FIREWALL".into())],
            [crate::dataplane::iptables::rules::LOCALNET_GUARD]
        );
    }

    #[test]
    fn a_source_ranged_load_balancer_is_served_by_iptables_rules_not_ipvs() {
        let mut st = state();
        let web = st
            .sets
            .get_mut(&SetKey("default/web:http/TCP".into()))
            .unwrap();
        let lb = Frontend {
            addr: Ipv4Addr::new(198, 18, 200, 1),
            port: 80,
            proto: Proto::Tcp,
            scope: Scope::Packet,
        };
        web.frontends.insert(lb, FrontendKind::LoadBalancer);
        web.source_ranges = Some(vec![(Ipv4Addr::new(198, 18, 100, 0), 24)]);
        assert!(
            !virtual_servers(&st, "rr").contains_key(&(lb.addr, 80, 6)),
            "IPVS would take the node's own connections from outside the ranges"
        );
        assert!(vips(&st).contains(&lb.addr));
        let chains = rules::generate(&st).unwrap();
        let services = &chains[&(Table::Nat, "KUBE-SERVICES".into())];
        let fw = services
            .iter()
            .find(|r| r.starts_with("-d 198.18.200.1/32"))
            .and_then(|r| r.rsplit(' ').next())
            .unwrap();
        assert!(fw.starts_with("KUBE-FW-"), "{services:?}");
        let fw_rules = &chains[&(Table::Nat, fw.to_owned())];
        assert!(
            fw_rules[0].starts_with("-s 198.18.100.0/24"),
            "{fw_rules:?}"
        );
        // The node's own connections leave from the VIP on kube-ipvs0.
        assert!(
            fw_rules[1].starts_with("-s 198.18.200.1/32"),
            "{fw_rules:?}"
        );
        st.sets.values_mut().for_each(|s| s.node_denied = true);
        let denied = rules::generate(&st).unwrap();
        assert_eq!(denied[&(Table::Nat, fw.to_owned())].len(), 1, "{denied:?}");
        assert!(
            chains[&(Table::Filter, "KUBE-EXTERNAL-SERVICES".into())]
                .iter()
                .any(|r| r.starts_with("-d 198.18.200.1/32") && r.ends_with("-j DROP")),
            "the rest is dropped"
        );
    }

    #[test]
    fn vips_are_every_address_but_node_ports() {
        assert_eq!(
            vips(&state()),
            [Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 14)].into()
        );
    }

    #[test]
    fn rules_mark_external_traffic_masquerade_hairpin_and_reject_the_empty() {
        let chains = rules::generate(&state()).unwrap();
        assert_eq!(
            chains[&(Table::Nat, "KUBE-SERVICES".into())],
            [
                "-d 198.18.0.10/32 -p tcp -m comment --comment \"default/web:http/TCP cluster IP\" -m tcp --dport 80 -j ACCEPT",
                "-d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080 -j KUBE-MARK-MASQ"
            ]
        );
        // `dump` names the virtual servers after these comments.
        use crate::dataplane::iptables::dump;
        let mut save = String::new();
        for ((table, chain), rules) in &chains {
            save.push_str(if *table == Table::Nat {
                "*nat\n"
            } else {
                "*filter\n"
            });
            for r in rules {
                save.push_str(&format!("-A {chain} {r}\n"));
            }
        }
        let mut saved = dump::Saved::new();
        dump::parse_save(&save, &mut saved);
        let named = dump::build(&saved).unwrap();
        let kinds: Vec<_> = named
            .frontends
            .iter()
            .map(|f| (f.address, f.kind, f.service.as_str()))
            .collect();
        assert!(
            kinds.contains(&(
                Ipv4Addr::new(198, 18, 0, 10),
                "ClusterIP",
                "default/web:http/TCP"
            )),
            "{kinds:?}"
        );
        assert_eq!(
            chains[&(Table::Filter, "KUBE-EXTERNAL-SERVICES".into())],
            [
                "-d 198.18.0.14/32 -p tcp -m comment --comment \"default/empty:http/TCP cluster IP has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with tcp-reset"
            ]
        );
        let post = &chains[&(Table::Nat, "KUBE-POSTROUTING".into())];
        assert_eq!(post.len(), 5);
        assert!(
            post.iter().any(
                |r| r.starts_with("-s 198.19.1.2/32 -d 198.19.1.2/32 -p tcp")
                    && r.ends_with("--dport 8080 -j MASQUERADE")
            ),
            "{post:?}"
        );
        // Only chains iptables mode also owns: switching modes cleans them up.
        assert!(
            chains
                .keys()
                .all(|(t, c)| crate::dataplane::iptables::rules::is_ours(*t, c))
        );
    }
}
