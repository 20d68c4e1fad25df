//! `dump` in iptables mode: the rules read back with `iptables-save -c` and turned into
//! the same view as the eBPF maps give (pure parsing, unit-tested). The frontend's
//! packet and byte counters are its jump rule's: in the nat table only the first
//! packet of each connection is seen, so they count new connections.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4},
};

use super::{
    exec::split_rule,
    rules::{EXTERNAL_SERVICES, MARK_MASQ, NODEPORTS, SERVICES, Table, kind_words},
};
use crate::{
    dump::{BackendView, DumpView, FrontendView},
    model::FrontendKind,
};

/// One rule of `iptables-save` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedRule {
    pub packets: u64,
    pub bytes: u64,
    pub words: Vec<String>,
}

impl SavedRule {
    /// The word after `flag`.
    pub fn arg(&self, flag: &str) -> Option<&str> {
        self.words
            .iter()
            .position(|w| w == flag)
            .and_then(|i| self.words.get(i + 1))
            .map(String::as_str)
    }
    pub fn has(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }
}

/// Chains of one `iptables-save` text, in order, with their rules.
pub type Saved = BTreeMap<(Table, String), Vec<SavedRule>>;

/// Parses `iptables-save [-c]` output (any tables).
pub fn parse_save(text: &str, into: &mut Saved) {
    let mut table = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            table = match t {
                "nat" => Some(Table::Nat),
                "filter" => Some(Table::Filter),
                _ => None,
            };
            continue;
        }
        let Some(table) = table else { continue };
        if let Some(decl) = line.strip_prefix(':') {
            if let Some(chain) = decl.split_whitespace().next() {
                into.entry((table, chain.to_owned())).or_default();
            }
            continue;
        }
        let (counters, rest) = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Some((c, rest)) => (Some(c), rest),
            None => (None, line),
        };
        let Some(rest) = rest.strip_prefix("-A ") else {
            continue;
        };
        let Some((chain, rule)) = rest.split_once(' ') else {
            continue;
        };
        let (packets, bytes) = counters
            .and_then(|c| c.split_once(':'))
            .map(|(p, b)| (p.parse().unwrap_or(0), b.parse().unwrap_or(0)))
            .unwrap_or((0, 0));
        into.entry((table, chain.to_owned()))
            .or_default()
            .push(SavedRule {
                packets,
                bytes,
                words: split_rule(rule),
            });
    }
}

/// `"KEY KIND[ has no [local ]endpoints]"` → (KEY, KIND).
fn parse_comment(comment: &str) -> Option<(String, FrontendKind)> {
    let comment = comment
        .strip_suffix(" has no endpoints")
        .or_else(|| comment.strip_suffix(" has no local endpoints"))
        .unwrap_or(comment);
    [
        FrontendKind::ClusterIp,
        FrontendKind::NodePort,
        FrontendKind::ExternalIp,
        FrontendKind::LoadBalancer,
    ]
    .into_iter()
    .find_map(|k| {
        Some((
            comment
                .strip_suffix(kind_words(k))?
                .strip_suffix(' ')?
                .to_owned(),
            k,
        ))
    })
}

struct Found {
    key: String,
    kind: FrontendKind,
    addr: Ipv4Addr,
    port: u16,
    proto: &'static str,
    /// The chain that picks the endpoint (KUBE-SVC-/KUBE-SVL-); None for a reject.
    set_chain: Option<String>,
    /// "node-local" for a host-scope rule (`--src-type LOCAL`), else "all".
    scope: &'static str,
    packets: u64,
    bytes: u64,
}

fn frontend_of(rule: &SavedRule) -> Option<(String, FrontendKind, Ipv4Addr, u16, &'static str)> {
    let (key, kind) = parse_comment(rule.arg("--comment")?)?;
    let addr = rule.arg("-d")?.trim_end_matches("/32").parse().ok()?;
    let port = rule.arg("--dport")?.parse().ok()?;
    let proto = match rule.arg("-p")? {
        "tcp" => "TCP",
        "udp" => "UDP",
        _ => return None,
    };
    Some((key, kind, addr, port, proto))
}

/// Host-scope frontends' rules match only what the node sends (rules::match_frontend).
fn scope_of(rule: &SavedRule) -> &'static str {
    if rule.arg("--src-type") == Some("LOCAL") {
        "node-local"
    } else {
        "all"
    }
}

/// The dump view of the rules in `saved`; None when none of ours is there.
pub fn build(saved: &Saved) -> Option<DumpView> {
    if !saved.contains_key(&(Table::Nat, SERVICES.to_owned())) {
        return None;
    }
    let empty = Vec::new();
    let chain = |t: Table, c: &str| saved.get(&(t, c.to_owned())).unwrap_or(&empty);
    let mut found = Vec::new();
    for c in [SERVICES, NODEPORTS] {
        for rule in chain(Table::Nat, c) {
            let Some((key, kind, addr, port, proto)) = frontend_of(rule) else {
                continue;
            };
            let Some(target) = rule.arg("-j") else {
                continue;
            };
            // KUBE-FW- (source ranges) → KUBE-EXT- → the set's chain.
            let target = if target.starts_with("KUBE-FW-") {
                match chain(Table::Nat, target).iter().find_map(|r| r.arg("-j")) {
                    Some(t) => t,
                    None => continue,
                }
            } else {
                target
            };
            let set_chain = if target.starts_with("KUBE-EXT-") {
                chain(Table::Nat, target)
                    .iter()
                    .filter_map(|r| r.arg("-j"))
                    .find(|t| *t != MARK_MASQ)
                    .map(str::to_owned)
            } else {
                Some(target.to_owned())
            };
            found.push(Found {
                key,
                kind,
                addr,
                port,
                proto,
                set_chain,
                scope: scope_of(rule),
                packets: rule.packets,
                bytes: rule.bytes,
            });
        }
    }
    for c in [SERVICES, EXTERNAL_SERVICES] {
        for rule in chain(Table::Filter, c) {
            let no_local = rule
                .arg("--comment")
                .is_some_and(|c| c.ends_with(" has no local endpoints"));
            if rule.arg("-j") != Some("REJECT") && !no_local {
                continue;
            }
            let Some((key, kind, addr, port, proto)) = frontend_of(rule) else {
                continue;
            };
            found.push(Found {
                key,
                kind,
                addr,
                port,
                proto,
                set_chain: None,
                scope: scope_of(rule),
                packets: rule.packets,
                bytes: rule.bytes,
            });
        }
    }
    let keys: BTreeSet<&str> = found.iter().map(|f| f.key.as_str()).collect();
    let svc_id = |key: &str| {
        keys.iter()
            .position(|k| *k == key)
            .map_or(0, |i| i as u32 + 1)
    };
    let mut backend_ids: BTreeMap<(SocketAddrV4, &'static str), u32> = BTreeMap::new();
    let mut frontends = Vec::new();
    for f in &found {
        let mut backends = Vec::new();
        let mut affinity = None;
        // The set's Local traffic policy (its chain holds local endpoints only).
        let local = f
            .set_chain
            .as_deref()
            .is_some_and(|c| c.starts_with("KUBE-SVL-"));
        if let Some(set_chain) = &f.set_chain {
            let mut seen = BTreeSet::new();
            for rule in chain(Table::Nat, set_chain) {
                if rule.has("--rcheck") {
                    affinity = rule.arg("--seconds").and_then(|s| s.parse::<u32>().ok());
                }
                let Some(sep) = rule.arg("-j") else { continue };
                if !seen.insert(sep.to_owned()) {
                    continue;
                }
                let dest = chain(Table::Nat, sep)
                    .iter()
                    .find_map(|r| r.arg("--to-destination")?.parse::<SocketAddrV4>().ok());
                let Some(dest) = dest else { continue };
                // The endpoint's state, from the comment's suffix (see rules::endpoint_state).
                let state = rule
                    .arg("--comment")
                    .and_then(|c| c.rsplit_once(" (")?.1.strip_suffix(')'))
                    .unwrap_or_default();
                let next = backend_ids.len() as u32 + 1;
                let id = *backend_ids.entry((dest, f.proto)).or_insert(next);
                backends.push(BackendView {
                    id,
                    address: *dest.ip(),
                    port: dest.port(),
                    protocol: f.proto,
                    terminating: state.split(',').any(|w| w == "terminating"),
                    local: state.split(',').any(|w| w == "local"),
                });
            }
        }
        let mut flags = Vec::new();
        if affinity.is_some() {
            flags.push("affinity");
        }
        if local {
            flags.push("local");
        }
        frontends.push(FrontendView {
            kind: f.kind.as_str(),
            scope: f.scope,
            address: f.addr,
            port: f.port,
            protocol: f.proto,
            service: f.key.clone(),
            svc_id: svc_id(&f.key),
            flags,
            affinity_timeout_s: affinity.unwrap_or(0),
            backend_count: backends.len() as u16,
            backends,
            draining: Vec::new(),
            packets: f.packets,
            bytes: f.bytes,
        });
    }
    frontends.sort_by(|a, b| {
        (&a.service, a.kind, a.address, a.port).cmp(&(&b.service, b.kind, b.address, b.port))
    });
    Some(DumpView {
        frontends,
        conntrack: Default::default(),
        kernel: None,
        counters: BTreeMap::new(),
    })
}
