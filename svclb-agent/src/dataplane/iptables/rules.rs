//! Pure rule generation: a [`DesiredState`] becomes kube-proxy's iptables chains. No
//! I/O here, so the whole rule set is unit-tested byte for byte.
//!
//! Per backend set (one Service port and traffic scope):
//! - `KUBE-SVC-…` (or `KUBE-SVL-…` under a Local policy: local endpoints only) picks an
//!   endpoint with `-m statistic --mode random --probability 1/n, 1/(n-1), …, 1`, after
//!   `-m recent --rcheck` rules that keep a client on its endpoint under ClientIP affinity;
//! - `KUBE-SEP-…` per endpoint: hairpin masquerade, `-m recent --set`, DNAT;
//! - `KUBE-EXT-…` for external frontends (NodePort, externalIPs, load balancer):
//!   masquerade (Cluster policy: the reply must come back through this node) or keep the
//!   client address (Local policy), then the set's chain;
//! - frontends jump from `KUBE-SERVICES` (`KUBE-NODEPORTS` for NodePorts);
//! - a set without endpoints gets REJECT rules in the filter table instead
//!   (`KUBE-SERVICES` for cluster IPs, `KUBE-EXTERNAL-SERVICES` for the rest): a TCP
//!   reset, or ICMP port unreachable for UDP; DROP when a Local policy leaves no local
//!   endpoint while other nodes have some (as kube-proxy);
//! - `loadBalancerSourceRanges`: load-balancer frontends jump to `KUBE-FW-…`, which
//!   sends only the listed sources on to `KUBE-EXT-…`; the rest stay addressed to the
//!   load-balancer IP and are dropped in the filter table's `KUBE-EXTERNAL-SERVICES`.
//!
//! - host-scope frontends (`127.0.0.1:<NodePort>`, the node's own view of an
//!   `externalTrafficPolicy: Local` Service) match `-m addrtype --src-type LOCAL` and
//!   come first in their chain, masqueraded (a 127.0.0.1 source cannot leave the node);
//!   `127.0.0.1` needs `route_localnet`, and filter `KUBE-FIREWALL` drops what reaches
//!   127.0.0.0/8 from elsewhere (kube-proxy's guard for that sysctl).
//!
//! Maglev sets are programmed like the others (random choice): iptables has no
//! consistent hashing.
use std::collections::BTreeMap;

use thiserror::Error;

use super::names::SetName;
use crate::model::{
    BackendSet, DesiredState, Endpoint, Frontend, FrontendKind, Proto, Scope, SetKey,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Filter,
    Nat,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }
}

/// Chain → its rules, each the text after `-A CHAIN `.
pub type Chains = BTreeMap<(Table, String), Vec<String>>;

pub const SERVICES: &str = "KUBE-SERVICES";
pub const NODEPORTS: &str = "KUBE-NODEPORTS";
pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const FIREWALL: &str = "KUBE-FIREWALL";
/// kube-proxy's masquerade bit (its --iptables-masquerade-bit default, 14).
pub const MASQ_MARK: &str = "0x4000";

/// Chains every sync holds, even with no Service at all.
pub const FIXED: &[(Table, &str)] = &[
    (Table::Filter, SERVICES),
    (Table::Filter, EXTERNAL_SERVICES),
    (Table::Filter, FIREWALL),
    (Table::Nat, SERVICES),
    (Table::Nat, NODEPORTS),
    (Table::Nat, POSTROUTING),
    (Table::Nat, MARK_MASQ),
];

/// Prefixes of the per-Service chains.
pub const PER_SERVICE: &[&str] = &[
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
];

/// Whether `chain` is one this agent writes (fixed or per-Service).
pub fn is_ours(table: Table, chain: &str) -> bool {
    FIXED.contains(&(table, chain))
        || (table == Table::Nat && PER_SERVICE.iter().any(|p| chain.starts_with(p)))
}

/// Jumps from the built-in chains into ours: (table, built-in chain, rule after `-A X `).
/// Kept out of the restore payload (appending them there would duplicate them on every
/// agent start); they are checked with `-C` and inserted with `-I`.
pub const JUMPS: &[(Table, &str, &str)] = &[
    (
        Table::Nat,
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        Table::Nat,
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        Table::Nat,
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    ),
    (
        Table::Filter,
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        Table::Filter,
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        Table::Filter,
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        Table::Filter,
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    // The node's own packets to a load-balancer IP that its source ranges leave out
    // are dropped there too (kube-proxy's KUBE-PROXY-FIREWALL is in OUTPUT as well).
    (
        Table::Filter,
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (Table::Filter, "INPUT", "-j KUBE-FIREWALL"),
    (Table::Filter, "OUTPUT", "-j KUBE-FIREWALL"),
];

/// kube-proxy's guard for `route_localnet` (https://issue.k8s.io/90259): nothing from
/// outside the node reaches a 127.0.0.0/8 address unless it was DNATed there.
pub const LOCALNET_GUARD: &str = "-m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP";

/// Choices of the node, not of any Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOptions {
    /// `--iptables-localhost-nodeports`: NodePorts answer on 127.0.0.1 too.
    pub localhost_node_ports: bool,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            localhost_node_ports: true,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("backend set {0}: key is not namespace/name:port/PROTO")]
    BadKey(SetKey),
}

/// How a frontend kind reads in comments (kube-proxy's words); `dump` parses them back.
pub fn kind_words(kind: FrontendKind) -> &'static str {
    match kind {
        FrontendKind::ClusterIp => "cluster IP",
        FrontendKind::NodePort => "nodePort",
        FrontendKind::ExternalIp => "external IP",
        FrontendKind::LoadBalancer => "loadbalancer IP",
    }
}

fn proto_lower(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

/// `-d A/32 -p tcp -m comment --comment "…" -m tcp --dport P`, and for a host-scope
/// frontend ` -m addrtype --src-type LOCAL` (sent by the node itself).
fn match_frontend(fe: &Frontend, comment: &str) -> String {
    let p = proto_lower(fe.proto);
    let local = if fe.scope == Scope::Host {
        " -m addrtype --src-type LOCAL"
    } else {
        ""
    };
    format!(
        "-d {}/32 -p {p} -m comment --comment \"{comment}\" -m {p} --dport {}{local}",
        fe.addr, fe.port
    )
}

/// TCP gets a reset, UDP a port unreachable. (kube-proxy answers both with ICMP; the
/// kernel rate-limits ICMP errors per destination, a burst of 6 then one a second, so a
/// client retrying a Service without endpoints would wait seconds; a RST is not limited
/// and refuses the connection just the same.)
fn reject_with(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp-reset",
        Proto::Udp => "icmp-port-unreachable",
    }
}

/// `1/n` the way kube-proxy prints it.
fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Every chain for `state` with the default options (tests).
pub fn generate(state: &DesiredState) -> Result<Chains, RulesError> {
    generate_with(state, RuleOptions::default())
}

/// Every chain for `state`, fixed ones included.
pub fn generate_with(state: &DesiredState, opts: RuleOptions) -> Result<Chains, RulesError> {
    let mut chains = Chains::new();
    // Host-scope rules go first in their chain (before a packet-scope rule for the same
    // address and port); collected here, put in front at the end.
    let mut host_first: BTreeMap<(Table, String), Vec<String>> = BTreeMap::new();
    for (table, chain) in FIXED {
        chains.insert((*table, (*chain).to_owned()), Vec::new());
    }
    let nat = |c: &str| (Table::Nat, c.to_owned());
    let filter = |c: &str| (Table::Filter, c.to_owned());
    chains.insert(
        nat(MARK_MASQ),
        vec![format!("-j MARK --or-mark {MASQ_MARK}")],
    );
    chains.insert(
        nat(POSTROUTING),
        vec![
            format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
            format!("-j MARK --xor-mark {MASQ_MARK}"),
            "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".to_owned(),
        ],
    );
    for (key, set) in &state.sets {
        let name = SetName::parse(key).ok_or_else(|| RulesError::BadKey(key.clone()))?;
        if set.endpoints.is_empty() {
            for (fe, kind) in &set.frontends {
                let chain = if *kind == FrontendKind::ClusterIp {
                    SERVICES
                } else {
                    EXTERNAL_SERVICES
                };
                let rule = if set.no_local_drop {
                    let comment = format!("{key} {} has no local endpoints", kind_words(*kind));
                    format!("{} -j DROP", match_frontend(fe, &comment))
                } else {
                    let comment = format!("{key} {} has no endpoints", kind_words(*kind));
                    format!(
                        "{} -j REJECT --reject-with {}",
                        match_frontend(fe, &comment),
                        reject_with(fe.proto)
                    )
                };
                if fe.scope == Scope::Host {
                    host_first.entry(filter(chain)).or_default().push(rule);
                } else {
                    chains
                        .get_mut(&filter(chain))
                        .expect("fixed chain")
                        .push(rule);
                }
            }
            continue;
        }
        let set_chain = if set.local_policy {
            name.svl_chain()
        } else {
            name.svc_chain()
        };
        set_rules(&mut chains, &name, set, &set_chain);
        let mut external = false;
        for (fe, kind) in &set.frontends {
            let comment = format!("{key} {}", kind_words(*kind));
            let (chain, target) = match kind {
                // Masqueraded like external traffic: a 127.0.0.1 source cannot leave.
                _ if fe.scope == Scope::Host => {
                    external = true;
                    let chain = if *kind == FrontendKind::NodePort {
                        NODEPORTS
                    } else {
                        SERVICES
                    };
                    host_first.entry(nat(chain)).or_default().push(format!(
                        "{} -j {}",
                        match_frontend(fe, &comment),
                        name.ext_chain()
                    ));
                    continue;
                }
                FrontendKind::ClusterIp => (SERVICES, set_chain.clone()),
                FrontendKind::NodePort => (NODEPORTS, name.ext_chain()),
                FrontendKind::LoadBalancer if set.source_ranges.is_some() => {
                    let fw = name.fw_chain();
                    let dropped = format!("{key} traffic not accepted by {fw}");
                    chains
                        .get_mut(&filter(EXTERNAL_SERVICES))
                        .expect("fixed chain")
                        .push(format!("{} -j DROP", match_frontend(fe, &dropped)));
                    (SERVICES, fw)
                }
                FrontendKind::ExternalIp | FrontendKind::LoadBalancer => {
                    (SERVICES, name.ext_chain())
                }
            };
            external |= kind.is_external();
            chains
                .get_mut(&nat(chain))
                .expect("fixed chain")
                .push(format!("{} -j {target}", match_frontend(fe, &comment)));
        }
        if external {
            let base = &name.base;
            let rules = if set.local_policy {
                // The client address is kept; only traffic from this node itself must
                // be masqueraded (its source address would not route back from a pod).
                vec![
                    format!(
                        "-m comment --comment \"masquerade LOCAL traffic for {base} external destinations\" -m addrtype --src-type LOCAL -j {MARK_MASQ}"
                    ),
                    format!("-j {set_chain}"),
                ]
            } else {
                vec![
                    format!(
                        "-m comment --comment \"masquerade traffic for {base} external destinations\" -j {MARK_MASQ}"
                    ),
                    format!("-j {set_chain}"),
                ]
            };
            chains.insert(nat(&name.ext_chain()), rules);
        }
        if let Some(ranges) = &set.source_ranges {
            // An empty list (every entry invalid) lets nobody in, as in the eBPF path.
            let rules = ranges
                .iter()
                .map(|(addr, len)| {
                    format!(
                        "-s {addr}/{len} -m comment --comment \"{key} loadBalancerSourceRanges\" -j {}",
                        name.ext_chain()
                    )
                })
                .collect();
            chains.insert(nat(&name.fw_chain()), rules);
        }
    }
    for (chain, mut rules) in host_first {
        let rest = chains.get_mut(&chain).expect("fixed chain");
        rules.append(rest);
        *rest = rules;
    }
    // As kube-proxy: without localhost NodePorts, 127.0.0.0/8 never reaches them.
    let not_localhost = if opts.localhost_node_ports {
        ""
    } else {
        " ! -d 127.0.0.0/8"
    };
    chains.get_mut(&nat(SERVICES)).expect("fixed chain").push(format!(
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL{not_localhost} -j {NODEPORTS}"
    ));
    if opts.localhost_node_ports {
        chains
            .get_mut(&filter(FIREWALL))
            .expect("fixed chain")
            .push(LOCALNET_GUARD.to_owned());
    }
    Ok(chains)
}

/// What kube-proxy's `KUBE-SVC` comments do not say but `dump` shows: ` (terminating)`,
/// ` (local)` or ` (terminating,local)` after `ns/svc:port -> ip:port`.
pub fn endpoint_state(ep: &Endpoint) -> &'static str {
    match (ep.terminating, ep.local) {
        (false, false) => "",
        (true, false) => " (terminating)",
        (false, true) => " (local)",
        (true, true) => " (terminating,local)",
    }
}

/// The set's endpoint-choosing chain and one KUBE-SEP chain per endpoint.
fn set_rules(chains: &mut Chains, name: &SetName, set: &BackendSet, set_chain: &str) {
    let base = &name.base;
    let n = set.endpoints.len();
    let mut rules = Vec::new();
    if let Some(timeout) = set.affinity_timeout_s {
        for ep in &set.endpoints {
            let sep = name.sep_chain(&ep.backend);
            rules.push(format!(
                "-m comment --comment \"{base} -> {}{}\" -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {timeout} --reap -j {sep}",
                ep.backend.socket(),
                endpoint_state(ep)
            ));
        }
    }
    for (i, ep) in set.endpoints.iter().enumerate() {
        let sep = name.sep_chain(&ep.backend);
        let comment = format!(
            "-m comment --comment \"{base} -> {}{}\"",
            ep.backend.socket(),
            endpoint_state(ep)
        );
        if i + 1 < n {
            rules.push(format!(
                "{comment} -m statistic --mode random --probability {} -j {sep}",
                probability(n - i)
            ));
        } else {
            rules.push(format!("{comment} -j {sep}"));
        }
        let p = proto_lower(ep.backend.proto);
        let recent = if set.affinity_timeout_s.is_some() {
            format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
        } else {
            String::new()
        };
        // Shared by both scopes of a Service port (same name, same content).
        chains.entry((Table::Nat, sep)).or_insert_with(|| {
            vec![
                // Hairpin: a pod reaching itself through the Service.
                format!("-s {}/32 -m comment --comment \"{base}\" -j {MARK_MASQ}", ep.backend.addr),
                format!(
                    "-p {p} -m comment --comment \"{base}\"{recent} -m {p} -j DNAT --to-destination {}",
                    ep.backend.socket()
                ),
            ]
        });
    }
    chains.insert((Table::Nat, set_chain.to_owned()), rules);
}
