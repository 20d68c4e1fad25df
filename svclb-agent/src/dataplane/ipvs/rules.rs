//! The iptables rules IPVS mode needs besides the virtual servers (pure). kube-proxy
//! keeps these matches in ipsets (KUBE-NODE-PORT-*, KUBE-LOOP-BACK, …); plain rules
//! carry the same matches here, in the same chains:
//! - nat `KUBE-SERVICES`: external frontends (NodePort, externalIPs, load balancer) of
//!   a Cluster-policy set are marked for masquerade, so replies return through this node;
//! - nat `KUBE-POSTROUTING`: masquerade of marked traffic, and of hairpin traffic (a pod
//!   reaching itself through a VIP);
//! - filter `KUBE-EXTERNAL-SERVICES` (INPUT and FORWARD): REJECT for frontends without
//!   endpoints (there is no virtual server for them; the VIP is local, so INPUT sees them);
//! - nat `KUBE-SERVICES`: every other frontend with endpoints ACCEPTs (IPVS translates
//!   it), as kube-proxy's KUBE-CLUSTER-IP match does; each rule's comment names its
//!   Service, which is how `dump` names the virtual servers;
//! - `127.0.0.1:<NodePort>`: IPVS cannot serve it (the kernel will not forward a
//!   loopback source to another host: `crosses_local_route_boundary` in ip_vs_xmit.c;
//!   kubernetes#96879), so iptables mode's own rules for it DNAT in nat OUTPUT before
//!   IPVS sees the packet and masquerade it; the virtual server stays, as kube-proxy's
//!   `ipvsadm -Ln` lists it. Filter `KUBE-FIREWALL` gets the `route_localnet` guard.
//!   The node's own view of a Local-policy external frontend (every endpoint) is
//!   iptables mode's OUTPUT rules in the same way.
use crate::{
    dataplane::iptables::names::SetName,
    dataplane::iptables::rules::{
        self as iptables_rules, Chains, EXTERNAL_SERVICES, FIREWALL, FIXED, LOCALNET_GUARD,
        MARK_MASQ, MASQ_MARK, NODEPORTS, PER_SERVICE, POSTROUTING, RulesError, SERVICES, Table,
        kind_words,
    },
    model::{BackendSet, DesiredState, FrontendKind, Proto, Scope},
};

fn p(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

pub fn generate(state: &DesiredState) -> Result<Chains, RulesError> {
    let mut chains = Chains::new();
    for (table, chain) in FIXED {
        chains.insert((*table, (*chain).to_owned()), Vec::new());
    }
    let mut post = vec![
        format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-j MARK --xor-mark {MASQ_MARK}"),
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".to_owned(),
    ];
    chains.insert(
        (Table::Nat, MARK_MASQ.to_owned()),
        vec![format!("-j MARK --or-mark {MASQ_MARK}")],
    );
    let mut hairpin = std::collections::BTreeSet::new();
    let mut localhost = false;
    for (key, set) in &state.sets {
        for (fe, kind) in &set.frontends {
            // Of the host-scope frontends IPVS serves 127.0.0.1 only (see mod.rs); a
            // source-ranged load balancer is all iptables mode's (by_iptables below).
            if (fe.scope == Scope::Host && !fe.addr.is_loopback())
                || (source_ranged(*kind, set) && !set.endpoints.is_empty())
            {
                continue;
            }
            localhost |= fe.addr.is_loopback();
            let m = format!(
                "-d {}/32 -p {pr} -m comment --comment \"{key} {}{}\" -m {pr} --dport {}",
                fe.addr,
                kind_words(*kind),
                if set.endpoints.is_empty() {
                    " has no endpoints"
                } else {
                    ""
                },
                fe.port,
                pr = p(fe.proto)
            );
            if set.endpoints.is_empty() {
                chains
                    .get_mut(&(Table::Filter, EXTERNAL_SERVICES.to_owned()))
                    .expect("fixed")
                    .push(format!(
                        "{m} -j REJECT --reject-with {}",
                        if fe.proto == Proto::Tcp {
                            "tcp-reset"
                        } else {
                            "icmp-port-unreachable"
                        }
                    ));
            } else if fe.addr.is_loopback() || (kind.is_external() && !set.local_policy) {
                // 127.0.0.1 as a source cannot leave the node: always masqueraded.
                chains
                    .get_mut(&(Table::Nat, SERVICES.to_owned()))
                    .expect("fixed")
                    .push(format!("{m} -j {MARK_MASQ}"));
            } else {
                // Nothing for iptables to do (IPVS translates it), as kube-proxy's
                // KUBE-CLUSTER-IP set match: the rule names the frontend for `dump`.
                chains
                    .get_mut(&(Table::Nat, SERVICES.to_owned()))
                    .expect("fixed")
                    .push(format!("{m} -j ACCEPT"));
            }
        }
        for ep in &set.endpoints {
            hairpin.insert(ep.backend);
        }
    }
    for be in hairpin {
        post.insert(
            0,
            format!(
                "-s {a}/32 -d {a}/32 -p {pr} -m comment --comment \"hairpin\" -m {pr} --dport {} -j MASQUERADE",
                be.port,
                a = be.addr,
                pr = p(be.proto)
            ),
        );
    }
    chains.insert((Table::Nat, POSTROUTING.to_owned()), post);
    by_iptables(state, &mut chains)?;
    if localhost {
        chains
            .get_mut(&(Table::Filter, FIREWALL.to_owned()))
            .expect("fixed")
            .push(LOCALNET_GUARD.to_owned());
    }
    Ok(chains)
}

/// A load balancer frontend whose Service has `loadBalancerSourceRanges`. IPVS has no
/// source match, and its LOCAL_OUT hook runs before the filter table, so the node's own
/// connections could not be kept out: iptables mode's rules serve these instead.
pub fn source_ranged(kind: FrontendKind, set: &BackendSet) -> bool {
    kind == FrontendKind::LoadBalancer && set.source_ranges.is_some()
}

/// iptables mode's rules for what IPVS cannot serve, of sets with endpoints: the
/// host-scope frontends (the `127.0.0.1:<NodePort>`s, and the node's own view of
/// Local-policy external frontends: every endpoint, as in iptables mode) and the
/// source-ranged load balancers. Their nat rules DNAT before IPVS sees the packet
/// (PREROUTING and OUTPUT at NF_IP_PRI_NAT_DST, IPVS after it). Their KUBE-SERVICES
/// matches go first (before IPVS mode's rules for the same address), the jump to
/// KUBE-NODEPORTS last; KUBE-NODEPORTS, the per-Service chains and the filter DROPs
/// of the ranges come along.
fn by_iptables(state: &DesiredState, chains: &mut Chains) -> Result<(), RulesError> {
    let mut only = DesiredState::default();
    for (key, set) in &state.sets {
        let mut part = set.clone();
        part.frontends
            .retain(|fe, kind| fe.scope == Scope::Host || source_ranged(*kind, set));
        if !part.frontends.is_empty() && !part.endpoints.is_empty() {
            only.sets.insert(key.clone(), part);
        }
    }
    if only.sets.is_empty() {
        return Ok(());
    }
    let jump = format!("-j {NODEPORTS}");
    let mut generated = iptables_rules::generate(&only)?;
    // The node's own connection to a VIP on kube-ipvs0 leaves from the VIP itself: let
    // it in when a range holds a node address (as kube-proxy's IPVS mode does).
    for (key, set) in &only.sets {
        let name = SetName::parse(key).ok_or_else(|| RulesError::BadKey(key.clone()))?;
        let Some(fw) = generated.get_mut(&(Table::Nat, name.fw_chain())) else {
            continue;
        };
        if set.node_denied {
            continue;
        }
        for (fe, kind) in &set.frontends {
            if source_ranged(*kind, set) {
                fw.push(format!(
                    "-s {}/32 -m comment --comment \"{key} the node itself\" -j {}",
                    fe.addr,
                    name.ext_chain()
                ));
            }
        }
    }
    for ((table, chain), rules) in generated {
        let per_service = PER_SERVICE.iter().any(|p| chain.starts_with(p));
        let into = match (table, chain.as_str()) {
            (Table::Nat, c) if per_service || c == NODEPORTS || c == SERVICES => {
                chains.entry((table, chain.clone())).or_default()
            }
            (Table::Filter, EXTERNAL_SERVICES) => chains.entry((table, chain.clone())).or_default(),
            _ => continue,
        };
        if chain == SERVICES {
            let (last, first): (Vec<String>, Vec<String>) =
                rules.into_iter().partition(|r| r.ends_with(&jump));
            into.splice(0..0, first);
            into.extend(last);
        } else {
            into.extend(rules);
        }
    }
    Ok(())
}
