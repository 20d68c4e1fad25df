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
use crate::model::{DesiredState, FrontendKind, Proto};

/// The dummy interface that holds the VIPs.
pub const DUMMY_IF: &str = "kube-ipvs0";

#[derive(Clone, Debug)]
pub struct IpvsOptions {
    /// `--ipvs-scheduler`: rr, lc, sh, wrr, …
    pub scheduler: String,
    pub iptables_backend: BackendArg,
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
        for fe in set.frontends.keys() {
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
    services: BTreeMap<VsKey, (VirtualServer, BTreeSet<RealServer>)>,
    last: DesiredState,
}

impl IpvsDataplane {
    pub fn start(opts: &IpvsOptions) -> Result<Self> {
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
        let mut services = BTreeMap::new();
        for vs in sock.services()? {
            let reals = sock.dests(&vs)?.into_iter().collect();
            services.insert(key(&vs), (vs, reals));
        }
        if !services.is_empty() {
            info!(
                services = services.len(),
                "adopted the IPVS virtual servers of an earlier run"
            );
        }
        Ok(IpvsDataplane {
            sock,
            scheduler: opts.scheduler.clone(),
            backend,
            applied_rules: Applied::new(),
            services,
            last: DesiredState::default(),
        })
    }
}

impl Dataplane for IpvsDataplane {
    fn mode(&self) -> &'static str {
        "ipvs"
    }

    fn sync(&mut self, desired: &DesiredState) -> Result<SyncReport> {
        let start = Instant::now();
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
            self.sock
                .call(|f, s| msg::del_service(f, s, &vs), "IPVS_CMD_DEL_SERVICE")?;
            writes += 1;
        }
        for (k, (vs, reals)) in &want {
            let have = match self.services.get(k) {
                Some((old, have)) if old == vs => have.clone(),
                Some((old, _)) => {
                    let old = old.clone();
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
            for rs in reals.difference(&have) {
                self.sock
                    .call(|f, s| msg::new_dest(f, s, vs, rs), "IPVS_CMD_NEW_DEST")?;
                writes += 1;
            }
            for rs in have.difference(reals) {
                self.sock
                    .call(|f, s| msg::del_dest(f, s, vs, rs), "IPVS_CMD_DEL_DEST")?;
                writes += 1;
            }
            self.services.insert(*k, (vs.clone(), reals.clone()));
        }
        for a in have_vips.difference(&want_vips) {
            ip(&["addr", "del", &format!("{a}/32"), "dev", DUMMY_IF])?;
            writes += 1;
        }
        let purged = super::removed_udp_endpoints(&self.last, desired)
            .into_iter()
            .map(|(vip, backend)| iptables::exec::purge_udp(vip, backend).unwrap_or(0))
            .sum();
        self.last = desired.clone();
        Ok(SyncReport {
            writes,
            purged,
            duration: start.elapsed(),
        })
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

/// The IPVS table as the dump view (frontend kinds and Service names are not kept by
/// IPVS: kind is "?" and service empty).
pub fn dump_view() -> Result<crate::dump::DumpView> {
    let mut sock = IpvsSocket::open()?;
    let mut frontends = Vec::new();
    for (i, vs) in sock.services()?.into_iter().enumerate() {
        let protocol = if vs.protocol == libc::IPPROTO_UDP as u16 {
            "UDP"
        } else {
            "TCP"
        };
        let backends: Vec<crate::dump::BackendView> = sock
            .dests(&vs)?
            .into_iter()
            .enumerate()
            .map(|(j, rs)| crate::dump::BackendView {
                id: j as u32 + 1,
                address: rs.addr,
                port: rs.port,
                protocol,
                terminating: false,
                local: false,
            })
            .collect();
        frontends.push(crate::dump::FrontendView {
            kind: "?",
            address: vs.addr,
            port: vs.port,
            protocol,
            service: String::new(),
            svc_id: i as u32 + 1,
            flags: if vs.persistent_s.is_some() {
                vec!["affinity"]
            } else {
                vec![]
            },
            affinity_timeout_s: vs.persistent_s.unwrap_or(0),
            backend_count: backends.len() as u16,
            backends,
            packets: 0,
            bytes: 0,
        });
    }
    Ok(crate::dump::DumpView {
        frontends,
        conntrack: Default::default(),
        counters: Default::default(),
    })
}

fn link_exists() -> bool {
    Path::new("/sys/class/net").join(DUMMY_IF).exists()
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
                "-d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080 -j KUBE-MARK-MASQ"
            ]
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
